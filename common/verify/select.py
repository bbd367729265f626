"""The sample of committed runs a verification retrains within a CPU budget.

1. **Coverage**: one seed (the cheapest here) of every method x setting, settings in order of that
   cost, cheapest first, while the budget allows.
2. **Claims nearest a change**: then every seed of both arms of each claim, in order of
   :func:`closeness` (the verdict nearest to changing first), a claim whole or not at all, while the
   budget allows.

With an explicit list of run ids there is no budget: exactly those runs.
"""
from __future__ import annotations

import math


def closeness(row: dict) -> float:
    """How near a claim's verdict is to changing: the distance from its confidence interval's nearer end
    to the nearest boundary a verdict turns on (0, and the paper's effect where known), in widths of the
    interval. Infinite without an interval."""
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return math.inf
    width = hi - lo
    effect = row.get("reported_effect")
    bounds = [0.0] if effect is None or math.isnan(effect) else [0.0, effect]
    near = min(abs(end - b) for end in (lo, hi) for b in bounds)
    return near / width if width > 0 else (0.0 if near == 0 else math.inf)


def choose(groups: dict[tuple, list[str]], est: dict[str, float], budget_s: float,
           claims: list[dict]) -> list[dict]:
    """``[{run_id, reason, est_cpu_s}]`` within ``budget_s`` estimated CPU seconds.

    ``groups``: ``{(method label, setting): [run ids]}``; ``est``: run id -> estimated CPU seconds here;
    ``claims``: the claim rows of :func:`common.verify.compare.claim_rows` (``run_ids``, ``closeness``)."""
    chosen: dict[str, dict] = {}
    spent = 0.0
    firsts = sorted((min(ids, key=lambda r: (est[r], r)), key) for key, ids in groups.items())
    for rid, (label, setting) in sorted(firsts, key=lambda x: (est[x[0]], x[0])):
        if spent + est[rid] > budget_s:
            break
        chosen[rid] = {"run_id": rid, "reason": f"coverage: {label} in setting {setting}", "est_cpu_s": est[rid]}
        spent += est[rid]
    for c in sorted(claims, key=lambda c: (c["closeness"], c["paper"], c["claim"], c["setting"])):
        if math.isinf(c["closeness"]):
            continue
        new = [r for r in c["run_ids"] if r not in chosen and r in est]
        cost = sum(est[r] for r in new)
        if not new or spent + cost > budget_s:
            continue
        for r in new:
            chosen[r] = {"run_id": r, "est_cpu_s": est[r],
                         "reason": f"claim {c['paper']}/{c['claim']} (setting {c['setting']}, "
                                   f"{c['closeness']:.2f} interval widths from a verdict change)"}
        spent += cost
    return list(chosen.values())
