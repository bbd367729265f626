"""A rerun against the committed runs: bit-identical, within seed noise, or outside it; and the claims
recomputed with the reruns in place of the committed seeds they replace.

* **bit-identical**: ``metrics.json`` and ``epochs.jsonl`` equal in every number the run computed
  (:func:`comparable` leaves out only the folder name, provenance, clock readings and throughput);
* **within seed noise**: every checked metric inside the 95% prediction interval of one new seed
  from the committed seeds of the same method and setting, ``mean ± t(n-1, 0.975) · sd · sqrt(1 + 1/n)``
  (:func:`prediction_interval`);
* **outside seed noise**: some checked metric outside it (named in the report);
* **not comparable**: fewer than two committed seeds, so no interval.

Claims are evaluated by the aggregation through one adapter, :func:`claim_rows`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

#: keys of a run's output that are not computed results: its folder name, provenance, a clock reading
NOT_RESULTS = ("run_id", "provenance", "train_images_per_sec")
EPOCH_CLOCK_KEYS = ("train_secs",)


def comparable(run_dir) -> dict:
    """What two runs of one config must agree on to be bit-identical: ``metrics.json`` without its
    folder name, provenance and throughput, and every ``epochs.jsonl`` row without its epoch time."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in NOT_RESULTS:
        metrics.pop(key, None)
    for key in ("last_epoch", "best_epoch_test"):
        if isinstance(metrics.get(key), dict):
            for k in EPOCH_CLOCK_KEYS:
                metrics[key].pop(k, None)
    epochs_file = run_dir / "epochs.jsonl"
    lines = epochs_file.read_text().splitlines() if epochs_file.exists() else []
    epochs = [{k: v for k, v in json.loads(ln).items() if k not in EPOCH_CLOCK_KEYS} for ln in lines if ln.strip()]
    return {"metrics": metrics, "epochs": epochs}


def first_difference(a, b, path="") -> str | None:
    """The first place (dotted path) where two JSON-like values differ, with both values; None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}{k}: only in {'the first' if k in a else 'the second'}"
            d = first_difference(a[k], b[k], f"{path}{k}.")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path.rstrip('.')}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}{i}.")
            if d:
                return d
        return None
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return None if same else f"{path.rstrip('.')}: {a!r} vs {b!r}"


def prediction_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Interval that holds one new seed's value with probability ``level`` (normal seeds):
    ``mean ± t(n-1, (1+level)/2) · sd · sqrt(1 + 1/n)``; None for fewer than two values."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    return float(mean - half), float(mean + half)


def inside(x: float, interval: tuple[float, float]) -> bool:
    return interval[0] <= x <= interval[1]


def metric_check(committed: float, rerun: float, others: list[float]) -> dict:
    """One metric of one rerun. Each of the two values (the committed seed and its rerun) is judged
    against the prediction interval from the other one plus the other committed seeds of the method and
    setting, so neither value widens the interval it is judged by."""
    pi_rerun = prediction_interval([committed, *others])
    pi_committed = prediction_interval([rerun, *others])
    ok = None if pi_rerun is None else inside(rerun, pi_rerun) and inside(committed, pi_committed)
    return {"committed": committed, "rerun": rerun, "interval_for_rerun": pi_rerun,
            "interval_for_committed": pi_committed, "inside": ok}


def agreement(committed_run: dict, rerun: dict, group: list[dict], metrics: list[str]) -> dict:
    """Status of one rerun: "bit-identical", "within seed noise", "outside seed noise" or "not comparable"
    (one committed seed), the first difference, and the per-metric checks. ``group``: the committed runs
    of the same method and setting (run dicts of :func:`common.aggregate.load_runs`)."""
    from ..aggregate.runs import scalar_metrics

    diff = first_difference(comparable(committed_run["dir"]), comparable(rerun["dir"]))
    if diff is None:
        return {"status": "bit-identical", "first_difference": None, "checks": {}}
    mine, theirs = scalar_metrics(committed_run), scalar_metrics(rerun)
    others = [r for r in group if r["dir"].name != committed_run["dir"].name]
    checks = {m: metric_check(float(mine[m]), float(theirs[m]), [float(scalar_metrics(o)[m]) for o in others
                                                                  if m in scalar_metrics(o)])
              for m in metrics if m in mine and m in theirs}
    verdicts = [c["inside"] for c in checks.values()]
    status = ("not comparable" if not verdicts or None in verdicts
              else "within seed noise" if all(verdicts) else "outside seed noise")
    return {"status": status, "first_difference": diff, "checks": checks}


def _number(x):
    """A float, None for missing/NaN (the claims table mixes both)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def claim_rows(runs: list[dict], root, scale: str) -> list[dict]:
    """THE adapter to the aggregation's claim evaluation (the one place this package calls it): every
    (paper, claim, setting) row at ``scale`` evaluated on ``runs`` (run dicts of
    :func:`common.aggregate.load_runs`), as ``{paper, claim, setting, metric, outcome, delta, ci_low,
    ci_high, reported_effect, run_ids}``; ``outcome`` is the verdict's class, ``run_ids`` the runs of
    both arms."""
    from pathlib import Path

    from ..aggregate.claims import claims_table
    from ..aggregate.runs import load_reported
    from ..config import discover_papers, load_experiments

    rows = []
    for paper, path in discover_papers(root).items():
        exp = load_experiments(path)
        if scale not in exp["scales"]:
            continue
        for r in claims_table(runs, exp, load_reported(Path(path).parent / "reported.csv"), scale).to_dict("records"):
            arms = [r.get(f"{arm}_runs") for arm in ("method", "baseline")]
            rows.append({"paper": paper, "claim": r["claim"], "setting": r["setting"], "metric": r["metric"],
                         "outcome": r.get("outcome") or r["verdict"], "delta": _number(r["delta"]),
                         "ci_low": _number(r["ci_low"]), "ci_high": _number(r["ci_high"]),
                         "reported_effect": _number(r.get("reported_effect")),
                         "run_ids": sorted(rid for ids in arms if isinstance(ids, str) for rid in ids.split())})
    return rows


def seed_groups(runs: list[dict], claims: list[dict]) -> dict[str, tuple]:
    """``{run id: (method label, setting)}``: the runs that are seeds of one another. A run's setting is
    the claims' where a claim pools settings (``seed_linked``: e.g. a split drawn per seed, so each seed is
    a setting of its own), else the run's own."""
    label = {r["dir"].name: r["label"] for r in runs}
    out = {r["dir"].name: (r["label"], r["setting"]) for r in runs}
    for c in claims:
        for rid in c["run_ids"]:
            if rid in out and c["setting"] != out[rid][1]:
                out[rid] = (label[rid], c["setting"])
    return out


def claim_stability(before: list[dict], after: list[dict], reruns: set[str]) -> list[dict]:
    """The claim rows whose arms hold a rerun: the verdict from the committed runs and with the reruns in
    place of the seeds they replace, and whether it would change."""
    new = {(r["paper"], r["claim"], r["setting"]): r for r in after}
    out = []
    for b in before:
        touched = sorted(reruns & set(b["run_ids"]))
        if not touched:
            continue
        a = new.get((b["paper"], b["claim"], b["setting"]), {})
        out.append({"paper": b["paper"], "claim": b["claim"], "setting": b["setting"], "metric": b["metric"],
                    "reruns": touched, "committed": {k: b[k] for k in ("outcome", "delta", "ci_low", "ci_high")},
                    "with_reruns": {k: a.get(k) for k in ("outcome", "delta", "ci_low", "ci_high")},
                    "changes": a.get("outcome") != b["outcome"]})
    return out
