"""``report.json`` and ``report.md`` of a verification, and its one-line summary."""
from __future__ import annotations

import math

STATUSES = ("bit-identical", "within seed noise", "outside seed noise", "not comparable")
RULE = ("Each rerun is compared with the committed run it repeats. **bit-identical**: `metrics.json` and "
        "`epochs.jsonl` equal in every computed number (provenance, clock readings and throughput left out). "
        "Otherwise each checked metric (the task's headline metric and the metric of every claim the run is in) "
        "is judged by 95% prediction intervals for one seed, `mean ± t(n-1, 0.975) · sd · sqrt(1 + 1/n)`: the "
        "rerun's value against the interval from the committed value and the other committed seeds of its method "
        "and setting, and the committed value against the interval from the rerun and those other seeds, so "
        "neither value widens the interval it is judged by. **within seed noise**: every checked metric inside "
        "both; **outside seed noise**: some metric outside (listed); **not comparable**: one committed seed, no "
        "interval. Each interval misses a genuine new seed 5% of the time, so with several metrics an occasional "
        "single miss is expected.")


def summary_line(rep: dict) -> str:
    counts = {s: sum(r["status"] == s for r in rep["runs"]) for s in STATUSES}
    runs = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"
    outside = [r["run_id"] for r in rep["runs"] if r["status"] == "outside seed noise"]
    changed = [f"{c['paper']}/{c['claim']}" for c in rep["claims"] if c["changes"]]
    t = rep["time"]
    line = (f"verify {rep['scale']} on {rep['machine']['id']}: {len(rep['runs'])} run(s) rerun: {runs}"
            f"{' (' + ', '.join(outside) + ')' if outside else ''}; {len(changed)} of {len(rep['claims'])} affected "
            f"claim verdict(s) would change{' (' + ', '.join(changed) + ')' if changed else ''}; "
            f"{t['rerun_cpu_s'] / 60:.1f} CPU-min of reruns + {t['calibration_cpu_s'] / 60:.1f} calibration"
            f"{'' if rep['selection']['budget_min'] is None else ' (budget ' + str(rep['selection']['budget_min']) + ')'}")
    if rep["version_differences"]:
        line += "; versions differ from the committed runs: " + ", ".join(
            f"{d['package']} {'/'.join(d['committed'])} -> {d['here']}" for d in rep["version_differences"])
    return line


def _num(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}g}"


def _interval(iv) -> str:
    return "–" if iv is None else f"[{_num(iv[0])}, {_num(iv[1])}]"


def _verdict(v: dict) -> str:
    ci = f" [{_num(v['ci_low'])}, {_num(v['ci_high'])}]" if v.get("ci_low") is not None else ""
    return f"{v.get('outcome')} (Δ {_num(v.get('delta'))}{ci})"


def machine_markdown(m: dict, diffs: list[dict]) -> list[str]:
    th = m["threads"]
    p = m["portable"]
    lines = ["## Machine", "", "| | |", "|---|---|", f"| machine id | `{m['id']}` |", f"| CPU | {m['cpu_model']} |",
             f"| ISA flags | {', '.join(m['cpu_flags']) or 'none of avx2/avx512/amx'} |",
             f"| torch CPU capability | {m['torch_cpu_capability']} |",
             (f"| threads | torch {th['torch_num_threads']} intra-op, OMP_NUM_THREADS={th['OMP_NUM_THREADS']}, "
             f"{th['cpu_count']} logical CPUs |"),
             f"| portable mode | {'on' if p['portable'] else 'off'} |",
             "| versions | " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "platform") + " |",
             f"| platform | {m['versions'].get('platform', '')} |", ""]
    if diffs:
        lines += ["Versions that differ from what the committed runs' provenance records:", ""]
        lines += [f"- {d['package']}: committed {', '.join(d['committed'])}, here {d['here'] or 'not installed'}"
                  for d in diffs]
    else:
        lines.append("Every library version equals what the committed runs' provenance records.")
    return lines + [""]


def selection_markdown(sel: dict, runs: list[dict]) -> list[str]:
    how = (f"explicit run list ({len(sel['runs'])} runs)" if sel["explicit"]
           else f"budget {sel['budget_min']} CPU-minutes" if sel["budget_min"] is not None else "every committed run")
    lines = ["## What was rerun", "", f"Selection: {how}."]
    if sel.get("calibration"):
        lines += ["", ("Calibration (one epoch per model kind here vs the committed run's mean epoch, epoch-loop CPU "
                      "time):"), "", "| kind | run | committed (s/epoch) | here (s/epoch) | ratio |", "|---|---|---|---|---|"]
        lines += [f"| {k} | `{c['run_id']}` | {c['committed_epoch_cpu_s']:.2f} | {c['here_epoch_cpu_s']:.2f} | "
                  f"{c['ratio']:.2f} |" for k, c in sel["calibration"].items()]
    if sel.get("not_covered"):
        lines += ["", f"Method x setting groups not rerun ({len(sel['not_covered'])}): "
                      + ", ".join(f"{g}" for g in sel["not_covered"]) + "."]
    lines += ["", "| run | why | estimated CPU-s | CPU-s here |", "|---|---|---|---|"]
    here = {r["run_id"]: r["time"]["rerun_cpu_s"] for r in runs}
    lines += [f"| `{s['run_id']}` | {s['reason']} | {_num(s.get('est_cpu_s'))} | {_num(here.get(s['run_id']))} |"
              for s in sel["runs"]]
    return lines + [""]


def runs_markdown(runs: list[dict]) -> list[str]:
    lines = ["## Per-run agreement", "", RULE, "", "| run | status | outside the interval | claims it is in |",
             "|---|---|---|---|"]
    for r in runs:
        out = [f"{m}: committed {_num(c['committed'])} {_interval(c['interval_for_committed'])}, rerun "
               f"{_num(c['rerun'])} {_interval(c['interval_for_rerun'])}"
               for m, c in r["checks"].items() if c["inside"] is False]
        lines.append(f"| `{r['run_id']}` | {r['status']} | {'; '.join(out) or '–'} | "
                     f"{', '.join(r['claims']) or '–'} |")
    return lines + [""]


def claims_markdown(claims: list[dict]) -> list[str]:
    lines = ["## Claims", "", ("Each claim whose runs include a rerun, evaluated by the aggregation on the committed "
                              "runs and again with the reruns in place of the seeds they replace."), ""]
    if not claims:
        return lines + ["No claim rests on the rerun runs.", ""]
    lines += ["| claim | setting | reruns | committed | with reruns | verdict changes |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['paper']}/{c['claim']} | `{c['setting']}` | {len(c['reruns'])} | {_verdict(c['committed'])} | "
              f"{_verdict(c['with_reruns'])} | {'**yes**' if c['changes'] else 'no'} |" for c in claims]
    return lines + [""]


def time_markdown(runs: list[dict], t: dict) -> list[str]:
    lines = ["## Time", "", ("CPU seconds of each whole job (Snakemake's benchmark files). *Committed, one machine*: "
                            "the committed time x its `benchmarks.rebench` factor, i.e. on the rerun machine "
                            f"({t['unit'] or 'no factors'})."), "",
             "| run | committed | committed, one machine | estimate here | here (CPU) | here (wall) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{r['run_id']}` | {_num(r['time']['committed_cpu_s'])} | {_num(r['time']['committed_units_cpu_s'])} | "
              f"{_num(r['time']['est_cpu_s'])} | {_num(r['time']['rerun_cpu_s'])} | {_num(r['time']['rerun_wall_s'])} |"
              for r in runs]
    lines += ["", (f"Total: {t['rerun_cpu_s']:.0f} CPU-s of reruns (estimate {t['est_cpu_s']:.0f}; committed "
                  f"{t['committed_cpu_s']:.0f}) and {t['calibration_cpu_s']:.0f} CPU-s of calibration.")]
    return lines + [""]


def markdown(rep: dict) -> str:
    lines = [f"# Verification of the `{rep['scale']}` runs on `{rep['machine']['id']}`", "",
             f"**{rep['summary']}**", "", f"Command: `{rep['command']}`; {rep['date']}; git `{rep['git']}`.", ""]
    lines += machine_markdown(rep["machine"], rep["version_differences"])
    lines += selection_markdown(rep["selection"], rep["runs"])
    lines += runs_markdown(rep["runs"])
    lines += claims_markdown(rep["claims"])
    lines += time_markdown(rep["runs"], rep["time"])
    return "\n".join(lines)
