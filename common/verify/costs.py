"""What a rerun of a committed run costs on this machine.

The committed cost of a run is the CPU time of its whole job in Snakemake's benchmark file
(``results/<scale>/benchmarks/<id>.tsv``; else the epoch loop's CPU time its provenance records).
Those files come from several machines; ``results/bench/machine_units_<scale>.csv``
(``benchmarks.rebench``) holds per-run factors that put them in one machine's units where they were
measured. The **calibration** trains, per model kind, the cheapest committed run of that kind for one
epoch here (:func:`calibration_config`) and compares its epoch-loop CPU time with the committed run's
per-epoch loop CPU time. The estimate of a rerun here is then

    committed job CPU time x (here / committed per-epoch CPU of the calibrated run of its kind)
                           x (factor of the run / factor of the calibrated run, where both are known)
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

#: config changes that make one calibration epoch: no warmup or cool-down, no occlusion or temperature
#: passes (only the epoch loop is timed); the test split is capped at CALIBRATION_TEST_SIZE
CALIBRATION_SET = {"train.epochs": 1, "train.warmup_epochs": 0, "train.cooldown_epochs": 0, "train.ema": None,
                   "eval.occlusion": None, "eval.temperature_scaling": False}
CALIBRATION_TEST_SIZE = 1000


def kind(cfg: dict) -> str:
    """The workload kind a calibration holds for: the model's name."""
    return str(cfg["model"]["name"])


def committed_costs(scale_dir: Path, run_ids: list[str], units_csv: Path | None = None) -> pd.DataFrame:
    """One row per committed run: run_id, kind, cpu_s (whole job, else loop), loop_cpu_per_epoch, factor
    (NaN without one)."""
    from ..aggregate.runs import read_benchmark_files

    bench = read_benchmark_files(scale_dir / "benchmarks").set_index("run_id")["cpu_time"].dropna().to_dict()
    units = {}
    if units_csv is not None and Path(units_csv).is_file():
        units = pd.read_csv(units_csv).set_index("run_id")["factor"].to_dict()
    rows = []
    for rid in run_ids:
        m = json.loads((scale_dir / "runs" / rid / "metrics.json").read_text())
        p = m["provenance"]
        epochs = max(1, int(p["config"]["train"]["epochs"]) + int(p["config"]["train"].get("cooldown_epochs") or 0))
        loop = p.get("train_cpu_sec", p.get("train_time_sec"))
        rows.append({"run_id": rid, "kind": kind(p["config"]), "cpu_s": float(bench.get(rid, loop)),
                     "loop_cpu_per_epoch": float(loop) / epochs, "factor": float(units.get(rid, float("nan")))})
    return pd.DataFrame(rows, columns=["run_id", "kind", "cpu_s", "loop_cpu_per_epoch", "factor"])


def calibration_runs(costs: pd.DataFrame) -> dict[str, str]:
    """``{kind: run id}``: per kind, the committed run with the cheapest epoch (what the calibration trains)."""
    best = costs.sort_values(["loop_cpu_per_epoch", "run_id"]).groupby("kind", sort=True).head(1)
    return dict(zip(best["kind"], best["run_id"]))


def with_values(cfg: dict, values: dict) -> dict:
    """A copy of ``cfg`` with the dotted keys of ``values`` set."""
    cfg = json.loads(json.dumps(cfg))
    for dotted, v in values.items():
        *parents, last = dotted.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return cfg


def calibration_config(cfg: dict) -> dict:
    from ..shortened import capped_sizes

    c = with_values(cfg, CALIBRATION_SET)
    c["dataset"] = capped_sizes(c["dataset"], test=CALIBRATION_TEST_SIZE)
    return c


def calibrate(scale_dir: Path, costs: pd.DataFrame, work: Path, log=print) -> dict:
    """Train one calibration epoch per kind here (one thread, as the workflow's jobs) and return
    ``{kind: {run_id, committed_epoch_cpu_s, here_epoch_cpu_s, ratio, job_cpu_s}}``. A failed calibration
    run raises SystemExit with its log."""
    import os
    import resource

    out = {}
    for k, rid in calibration_runs(costs).items():
        cfg = json.loads((scale_dir / "runs" / rid / "metrics.json").read_text())["provenance"]["config"]
        run_dir = work / rid
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "common.train", "--config-json",
                            json.dumps(calibration_config(cfg)), "--out", str(run_dir), "--ckpt-dir", str(work / ".ckpt" / rid)],
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode:
            raise SystemExit(f"error: calibration run of {rid} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
        here = json.loads((run_dir / "metrics.json").read_text())["provenance"]["train_cpu_sec"]
        committed = float(costs.set_index("run_id").loc[rid, "loop_cpu_per_epoch"])
        out[k] = {"run_id": rid, "committed_epoch_cpu_s": committed, "here_epoch_cpu_s": here,
                  "ratio": here / committed if committed > 0 else float("nan"),
                  "job_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                  "wall_s": time.time() - t0}
        log(f"calibration {k}: {rid}, one epoch {committed:.2f} CPU-s committed, {here:.2f} here")
    return out


def estimates(costs: pd.DataFrame, calibration: dict | None) -> pd.Series:
    """Estimated CPU seconds of each rerun here (index run_id); without a calibration the committed cost."""
    est = {}
    for r in costs.itertuples():
        cal = (calibration or {}).get(r.kind)
        if cal is None:
            est[r.run_id] = r.cpu_s
            continue
        f_cal = costs.set_index("run_id").loc[cal["run_id"], "factor"]
        adjust = r.factor / f_cal if pd.notna(r.factor) and pd.notna(f_cal) and f_cal > 0 else 1.0
        est[r.run_id] = r.cpu_s * cal["ratio"] * adjust
    return pd.Series(est, dtype=float)
