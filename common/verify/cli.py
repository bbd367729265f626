"""Command line of the workflow's verify rules (workflow/rules/verify.smk):

    python -m common.verify calibrate --scale cpu --out results/cpu/verify/<id>/calibration.json
    python -m common.verify plan --scale cpu --budget 30 [--calibration FILE] --out results/cpu/verify/<id>/plan.json
    python -m common.verify plan --scale cpu --runs ID [ID ...] --out ...
    python -m common.verify report --scale cpu --plan FILE --verify-dir results/cpu/verify/<id> --out-md ... --out-json ...
    python -m common.verify machine-id

Exit status 2 with ``error: ...`` for a bad request (unknown run id, no budget at a committed scale,
missing data files); nothing is written then.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: scales whose runs are committed: retraining all of them is hours, so verify needs a budget or a list there
COMMITTED_SCALES = ("cpu",)
#: the metric every rerun is checked on, besides the metrics of its claims
HEADLINE = {"classification": "top1", "regression": "rmse"}


class RequestError(Exception):
    """A verify request that cannot be carried out (named key, file or run id)."""


def committed_ids(root: Path, scale: str, papers: list[str]) -> list[str]:
    """Run ids of the plan of ``scale`` (``papers``: a subset) that have a committed metrics.json."""
    from ..config import plan

    runs, _ = plan(scale, root, only=papers or None)
    return sorted(r for r in runs if (root / "results" / scale / "runs" / r / "metrics.json").is_file())


def load(root: Path, scale: str, ids: list[str], replaced: dict[str, Path] | None = None) -> list[dict]:
    """Run dicts (:func:`common.aggregate.load_runs`) of ``ids``, each from ``replaced[id]`` where given."""
    from ..aggregate.runs import load_runs

    replaced = replaced or {}
    return load_runs([replaced.get(r, root / "results" / scale / "runs" / r) / "metrics.json" for r in ids])


def groups_of(runs: list[dict], claims: list[dict]) -> dict[tuple, list[str]]:
    """``{(method label, setting): [run ids]}``, the seeds of each method and setting
    (:func:`common.verify.compare.seed_groups`)."""
    from .compare import seed_groups

    out: dict[tuple, list[str]] = {}
    for rid, key in seed_groups(runs, claims).items():
        out.setdefault(key, []).append(rid)
    return out


def units_csv(root: Path, scale: str) -> Path:
    return root / "results" / "bench" / f"machine_units_{scale}.csv"


# ----------------------------------------------------------------------------- calibrate
def cmd_calibrate(a) -> None:
    from ..fileio import atomic_write_json
    from .costs import calibrate, calibration_runs, committed_costs
    from .machine import describe

    root = Path(a.root)
    ids = committed_ids(root, a.scale, a.papers)
    if not ids:
        raise RequestError(f"no committed runs at scale '{a.scale}' (results/{a.scale}/runs/*/metrics.json)")
    costs = committed_costs(root / "results" / a.scale, ids, units_csv(root, a.scale))
    check_data(root, a.scale, sorted(calibration_runs(costs).values()))
    kinds = calibrate(root / "results" / a.scale, costs, Path(a.out).parent / "calibration", log=print)
    atomic_write_json(a.out, {"machine": describe(), "kinds": kinds,
                              "cpu_s": sum(k["job_cpu_s"] for k in kinds.values())})


def check_data(root: Path, scale: str, ids: list[str]) -> None:
    """The data files the runs ``ids`` read exist (their dataset blocks, checked once each)."""
    if scale == "quick":
        return
    from ..data import missing_files

    cfgs = {rid: json.loads((root / "results" / scale / "runs" / rid / "metrics.json").read_text())["provenance"]["config"]
            for rid in ids}
    missing = sorted({str(f) for cfg in cfgs.values() if not cfg["dataset"].get("download")
                      for f in missing_files(cfg["dataset"])})
    if missing:
        raise RequestError(f"the runs to retrain need data files that are missing: {', '.join(missing[:10])}. "
                           f"Point the workflow at the data root: --config data_root=/path/to/data")


# ----------------------------------------------------------------------------- plan
def cmd_plan(a) -> None:
    from ..fileio import atomic_write_json
    from .compare import claim_rows
    from .costs import committed_costs, estimates
    from .select import choose, closeness

    root = Path(a.root)
    ids = committed_ids(root, a.scale, a.papers)
    if a.runs and a.budget is not None:
        raise RequestError("verify_runs and verify_budget exclude each other: give a run list or a budget")
    check_known(a.runs, ids, a.scale)
    costs = committed_costs(root / "results" / a.scale, ids, units_csv(root, a.scale))
    cal = json.loads(Path(a.calibration).read_text()) if a.calibration else None
    est = estimates(costs, cal["kinds"] if cal else None).to_dict()
    if not a.runs and a.budget is None and a.scale in COMMITTED_SCALES:
        raise RequestError(f"verify at scale '{a.scale}' retrains committed runs: give verify_budget=<CPU-minutes> "
                           f"or verify_runs=[<run id>, ...] (all {len(ids)} runs would take "
                           f"~{sum(est.values()) / 60:.0f} CPU-minutes)")
    not_covered = []
    if a.runs:
        chosen = [{"run_id": r, "reason": "listed in verify_runs", "est_cpu_s": est[r]} for r in dict.fromkeys(a.runs)]
    else:
        runs = load(root, a.scale, ids)
        claims = [{**c, "closeness": closeness(c)} for c in claim_rows(runs, root, a.scale)]
        budget_s = float("inf") if a.budget is None else a.budget * 60 - (cal["cpu_s"] if cal else 0.0)
        groups = groups_of(runs, claims)
        chosen = choose(groups, est, budget_s, claims)
        picked = {c["run_id"] for c in chosen}
        not_covered = sorted(f"{label} ({setting})" for (label, setting), rs in groups.items() if not picked & set(rs))
    check_data(root, a.scale, sorted(c["run_id"] for c in chosen))
    atomic_write_json(a.out, {
        "scale": a.scale, "budget_min": a.budget, "explicit": bool(a.runs), "papers": a.papers, "runs": chosen,
        "calibration": cal["kinds"] if cal else None, "calibration_cpu_s": cal["cpu_s"] if cal else 0.0,
        "not_covered": not_covered})
    print(f"verify plan: {len(chosen)} run(s), ~{sum(c['est_cpu_s'] for c in chosen) / 60:.1f} CPU-minutes here")


def check_known(wanted: list[str], ids: list[str], scale: str) -> None:
    """Every listed run id is a committed run of the scale."""
    import difflib

    for rid in wanted:
        if rid not in ids:
            near = difflib.get_close_matches(rid, ids, n=1, cutoff=0.8)
            raise RequestError(f"verify_runs: '{rid}' is not a committed run at scale '{scale}' "
                               f"(results/{scale}/runs/<id>/metrics.json).{f' Did you mean {near[0]}?' if near else ''}")


# ----------------------------------------------------------------------------- report
def cmd_report(a) -> None:
    from ..fileio import atomic_write_json, atomic_write_text, git_commit
    from . import report
    from .compare import claim_rows, claim_stability
    from .machine import committed_versions, describe, version_differences

    root, vdir = Path(a.root), Path(a.verify_dir)
    plan = json.loads(Path(a.plan).read_text())
    ids = committed_ids(root, a.scale, plan["papers"])
    picked = [s["run_id"] for s in plan["runs"]]
    committed = load(root, a.scale, ids)
    with_reruns = load(root, a.scale, ids, {r: vdir / "runs" / r for r in picked})
    before, after = claim_rows(committed, root, a.scale), claim_rows(with_reruns, root, a.scale)
    machine = describe()
    runs = [rerun_entry(r, committed, with_reruns, before, plan, vdir, root, a.scale) for r in picked]
    rep = {"scale": a.scale, "machine": machine, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "git": git_commit(root), "command": command(plan),
           "machine_dir": vdir.name, "version_differences": version_differences(
               committed_versions([r["metrics"]["provenance"] for r in committed]), machine["versions"]),
           "selection": plan, "runs": runs, "claims": claim_stability(before, after, set(picked)),
           "time": totals(runs, plan, root, a.scale)}
    if vdir.name != machine["id"]:
        rep["warning"] = f"the reruns are under {vdir.name}, but this job runs on {machine['id']}"
    rep["summary"] = report.summary_line(rep)
    atomic_write_json(a.out_json, rep)
    atomic_write_text(a.out_md, report.markdown(rep))
    print(rep["summary"])


def rerun_entry(rid: str, committed: list[dict], with_reruns: list[dict], claims: list[dict], plan: dict, vdir: Path,
                root: Path, scale: str) -> dict:
    from ..aggregate.runs import read_benchmark_files
    from .compare import agreement, seed_groups
    from .costs import committed_costs

    mine = next(r for r in committed if r["dir"].name == rid)
    rerun = next(r for r in with_reruns if r["dir"].name == rid)
    seeds = seed_groups(committed, claims)
    group = [r for r in committed if seeds[r["dir"].name] == seeds[rid]]
    in_claims = [c for c in claims if rid in c["run_ids"]]
    metrics = list(dict.fromkeys([HEADLINE[mine["task"]], *(c["metric"] for c in in_claims)]))
    cost = committed_costs(root / "results" / scale, [rid], units_csv(root, scale)).iloc[0]
    bench = read_benchmark_files(vdir / "benchmarks").set_index("run_id")
    prov = rerun["metrics"]["provenance"]
    est = next(s["est_cpu_s"] for s in plan["runs"] if s["run_id"] == rid)
    return {"run_id": rid, "method": mine["label"], "setting": mine["setting"], "seed": mine["config"]["seed"],
            **agreement(mine, rerun, group, metrics),
            "claims": sorted({f"{c['paper']}/{c['claim']}" for c in in_claims}),
            "code_digest_same": prov.get("code_digest") == mine["metrics"]["provenance"].get("code_digest"),
            "time": {"committed_cpu_s": float(cost["cpu_s"]), "committed_units_cpu_s": float(cost["cpu_s"] * cost["factor"]),
                     "est_cpu_s": est, "rerun_cpu_s": float(bench["cpu_time"].get(rid, prov.get("train_cpu_sec"))),
                     "rerun_wall_s": float(bench["s"].get(rid, prov.get("wall_time_sec")))}}


def totals(runs: list[dict], plan: dict, root: Path, scale: str) -> dict:
    import pandas as pd

    f = units_csv(root, scale)
    unit = sorted(set(pd.read_csv(f)["unit"].dropna())) if f.is_file() else []
    return {"rerun_cpu_s": sum(r["time"]["rerun_cpu_s"] for r in runs),
            "rerun_wall_s": sum(r["time"]["rerun_wall_s"] for r in runs),
            "committed_cpu_s": sum(r["time"]["committed_cpu_s"] for r in runs),
            "est_cpu_s": sum(r["time"]["est_cpu_s"] for r in runs),
            "calibration_cpu_s": plan["calibration_cpu_s"], "unit": " and ".join(unit)}


def command(plan: dict) -> str:
    parts = [f"scale={plan['scale']}"]
    if plan["explicit"]:
        parts.append("verify_runs='[" + ",".join(s["run_id"] for s in plan["runs"]) + "]'")
    elif plan["budget_min"] is not None:
        parts.append(f"verify_budget={plan['budget_min']:g}")
    if plan["papers"]:
        parts.append("papers='[" + ",".join(plan["papers"]) + "]'")
    return "snakemake verify --config " + " ".join(parts)


# ----------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m common.verify", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("calibrate", "plan", "report"):
        p = sub.add_parser(name)
        p.add_argument("--scale", required=True)
        p.add_argument("--root", default=".")
        p.add_argument("--papers", nargs="*", default=[])
    sub.choices["calibrate"].add_argument("--out", required=True)
    p = sub.choices["plan"]
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, help="CPU-minutes for calibration and reruns")
    p.add_argument("--runs", nargs="*", default=[], help="run ids to retrain (no budget)")
    p.add_argument("--calibration", help="calibration.json of this machine")
    p = sub.choices["report"]
    for opt in ("--plan", "--verify-dir", "--out-md", "--out-json"):
        p.add_argument(opt, required=True)
    sub.add_parser("machine-id")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.cmd == "machine-id":
            from .machine import effective_hardware, machine_id

            print(machine_id(effective_hardware()))
        else:
            {"calibrate": cmd_calibrate, "plan": cmd_plan, "report": cmd_report}[a.cmd](a)
    except RequestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def rerun_targets(plan_file, verify_dir: str) -> list[str]:
    """The metrics.json files of the reruns a plan lists (the inputs of the workflow's verify rule)."""
    return [f"{verify_dir}/runs/{s['run_id']}/metrics.json" for s in json.loads(Path(plan_file).read_text())["runs"]]


def plan_arguments(budget, runs: list[str], calibration) -> str:
    """The ``plan`` command's options for the workflow config's verify_budget / verify_runs."""
    import shlex

    args = [f"--calibration {shlex.quote(str(c))}" for c in calibration]
    args += [f"--budget {budget:g}"] if budget is not None else []
    args += ["--runs " + " ".join(shlex.quote(r) for r in runs)] if runs else []
    return " ".join(args)
