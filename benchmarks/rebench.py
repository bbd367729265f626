"""Is the committed CPU-time sum of a scale comparable with itself? Rerun a sample, same day, same machine.

The whole-scale budget (CPU-time sum of ``results/<scale>/benchmarks/*.tsv`` / 2 cores) adds
files written on different days, often on different machines: the same run can cost 30% more
or less CPU time from one day to the next. This script retrains a few committed runs in a
scratch clone, through the workflow (``snakemake --cores 2``, one thread per run, as the
committed runs were trained), and reports for each *measurement batch* (the files committed on one day,
i.e. by one working session on one machine) how today's CPU time compares with the committed
one. Scaling each batch by its measured ratio puts the whole scale in one set of units:
today's machine, or the machine of the largest batch (:func:`one_machine_factors`, used by
``benchmarks.run`` for the workflow-time tables and the cpu budget).

    python -m benchmarks.rebench --scale cpu --data-root ../shared/data RUN_ID [RUN_ID ...] \\
        --out results/bench/rebench.csv
    python -m benchmarks.rebench --scale cpu --units-only    # machine_units_cpu.csv from rebench.csv

Per committed run, :func:`machine_units` gives the factor that puts its CPU time in the rerun machine's
units, from the reruns of its own batch and workload kind (model); ``results/bench/machine_units_<scale>.csv``
holds them for the matrix's time column (:mod:`common.aggregate`) and ``snakemake verify``.

It also says whether each rerun's metrics equal the committed ones: they do on the machine that
trained them, and differ in the low float bits on a CPU with another instruction set (oneDNN
and ATen pick their kernels by ISA), which training then amplifies to seed-sized differences.
Nothing in the repository is changed; the clone is deleted afterwards.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from common.aggregate import read_benchmark_files
from common.verify.compare import comparable


def measurement_batches(scale: str, root=".") -> pd.DataFrame:
    """One row per committed benchmark file: run_id, cpu_time, batch (the date of the last commit
    that wrote it; ``uncommitted`` when git does not know it)."""
    folder = f"results/{scale}/benchmarks"
    try:
        log = subprocess.run(["git", "log", "--format=@%cs", "--name-only", "--", folder], cwd=root,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        log = ""
    batch, last = None, {}
    for line in log.splitlines():
        if line.startswith("@"):
            batch = line[1:]
        elif line.strip():
            last.setdefault(Path(line).stem, batch)
    df = read_benchmark_files(Path(root) / folder)[["run_id", "cpu_time"]]
    return df.assign(batch=[last.get(r, "uncommitted") for r in df["run_id"]])


def rerun(run_ids: list[str], scale: str, data_root: str, root=".", cores: int = 2) -> pd.DataFrame:
    """Retrain ``run_ids`` in a scratch clone of ``root``'s HEAD through the workflow; one row per
    run: run_id, rerun_cpu_time, rerun_s, metrics_equal."""
    root = Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="rebench-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
        targets = []
        for rid in run_ids:
            run_dir = clone / "results" / scale / "runs" / rid
            if not (run_dir / "metrics.json").is_file():
                raise SystemExit(f"error: {run_dir.relative_to(clone)}/metrics.json is not committed")
            for f in run_dir.iterdir():
                f.unlink()
            targets.append(str(run_dir.relative_to(clone) / "metrics.json"))
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--config", f"scale={scale}",
               f"data_root={Path(data_root).resolve()}", "--", *targets]
        done = subprocess.run(cmd, cwd=clone, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"error: snakemake failed in the scratch clone:\n{done.stderr[-3000:]}")
        bench = read_benchmark_files(clone / "results" / scale / "benchmarks").set_index("run_id")
        return pd.DataFrame([{
            "run_id": rid, "rerun_cpu_time": bench.loc[rid, "cpu_time"], "rerun_s": bench.loc[rid, "s"],
            "metrics_equal": comparable(root / "results" / scale / "runs" / rid)["metrics"]
            == comparable(clone / "results" / scale / "runs" / rid)["metrics"],
        } for rid in run_ids])


def estimate(batches: pd.DataFrame, reruns: pd.DataFrame) -> pd.DataFrame:
    """Per batch: runs, committed CPU-s, reruns in it, today/committed ratio (median over its
    reruns) and the batch's CPU-s on today's machine (empty when no rerun falls in the batch)."""
    r = reruns.merge(batches, on="run_id")
    ratio = (r["rerun_cpu_time"] / r["cpu_time"]).groupby(r["batch"]).median()
    out = batches.groupby("batch").agg(runs=("run_id", "size"), committed_cpu_s=("cpu_time", "sum"))
    out["reruns"] = r.groupby("batch").size().reindex(out.index).fillna(0).astype(int)
    out["ratio"] = ratio.reindex(out.index)
    out["today_cpu_s"] = out["committed_cpu_s"] * out["ratio"]
    return out.reset_index()


def one_machine_factors(scale: str, root=".", csv=None) -> tuple[dict[str, float], dict] | None:
    """``({run_id: factor}, info)``: multiplying a committed run's CPU time by its factor expresses it
    in the units of the *reference* batch (the one holding the most CPU time), using the reruns in
    ``csv`` (default ``results/bench/rebench.csv``) whose committed benchmark file is unchanged.
    ``info``: reference batch, today/reference ratio, the per-batch table and the reruns' meta
    (``<csv stem>_meta.json``: date, hardware; empty if absent). None when the file is missing or
    some batch has no valid rerun."""
    csv = Path(csv) if csv else Path(root) / "results" / "bench" / "rebench.csv"
    if not csv.is_file():
        return None
    reruns = pd.read_csv(csv)
    batches = measurement_batches(scale, root)
    committed = reruns["run_id"].map(batches.set_index("run_id")["cpu_time"])
    fresh = reruns[(committed - reruns["cpu_time"]).abs() < 0.01]
    est = estimate(batches, fresh[["run_id", "rerun_cpu_time"]])
    if est.empty or est["ratio"].isna().any():
        return None
    ref = est.loc[est["committed_cpu_s"].idxmax()]
    by_batch = est.set_index("batch")["ratio"] / ref["ratio"]
    factors = batches.set_index("run_id")["batch"].map(by_batch).to_dict()
    meta = csv.with_name(csv.stem + "_meta.json")
    return factors, {"reference": ref["batch"], "today_per_reference": float(ref["ratio"]), "batches": est,
                     "meta": json.loads(meta.read_text()) if meta.is_file() else {}}


def run_kinds(scale: str, root=".") -> dict[str, str]:
    """``{run_id: model name}`` of the committed runs of ``scale`` (the workload kind a rerun factor holds for)."""
    kinds = {}
    for f in sorted(Path(root, "results", scale, "runs").glob("*/metrics.json")):
        try:
            kinds[f.parent.name] = json.loads(f.read_text())["provenance"]["config"]["model"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return kinds


#: columns of results/bench/machine_units_<scale>.csv
UNIT_COLUMNS = ["run_id", "batch", "kind", "factor", "reruns", "unit"]


def machine_units(scale: str, root=".", csv=None) -> pd.DataFrame:
    """Per committed run: its measurement batch, kind (model) and ``factor``, the median over the fresh
    reruns in ``csv`` (default ``results/bench/rebench.csv``) of the same batch *and* kind of (rerun CPU
    time / committed CPU time); committed CPU time x factor is the run's CPU time on the rerun machine
    (``unit``: its CPU model and date, from ``<csv stem>_meta.json``). Per kind, because one machine change
    moves workloads differently (start-up-bound MLP jobs and compute-bound ResNet jobs of one batch
    rescale by 1.4x and 0.66x); NaN where the batch has no rerun of that kind. Empty without ``csv``."""
    csv = Path(csv) if csv else Path(root) / "results" / "bench" / "rebench.csv"
    if not csv.is_file():
        return pd.DataFrame(columns=UNIT_COLUMNS)
    reruns = pd.read_csv(csv)
    batches = measurement_batches(scale, root)
    batches["kind"] = batches["run_id"].map(run_kinds(scale, root))
    committed = reruns["run_id"].map(batches.set_index("run_id")["cpu_time"])
    fresh = reruns[(committed - reruns["cpu_time"]).abs() < 0.01][["run_id", "rerun_cpu_time"]]
    r = fresh.merge(batches, on="run_id")
    ratio = (r["rerun_cpu_time"] / r["cpu_time"]).groupby([r["batch"], r["kind"]])
    keys = list(zip(batches["batch"], batches["kind"]))
    meta = csv.with_name(csv.stem + "_meta.json")
    meta = json.loads(meta.read_text()) if meta.is_file() else {}
    unit = f"{meta['hardware']['cpu_model']}, {meta['date'][:10]}" if meta else "the rerun machine"
    return batches.assign(factor=[ratio.median().get(k, float("nan")) for k in keys],
                          reruns=[int(ratio.size().get(k, 0)) for k in keys], unit=unit)[UNIT_COLUMNS]


def write_machine_units(scale: str, root=".", csv=None, out=None) -> Path:
    """Write :func:`machine_units` to ``results/bench/machine_units_<scale>.csv`` (or ``out``), the file
    the matrix's time column and ``snakemake verify`` read."""
    from common.fileio import atomic_write_text

    out = Path(out) if out else Path(root) / "results" / "bench" / f"machine_units_{scale}.csv"
    atomic_write_text(out, machine_units(scale, root, csv).to_csv(index=False))
    return out


def write_meta(out: Path, run_ids: list[str], cores: int) -> None:
    """``<out stem>_meta.json``: when and on which machine the reruns were measured."""
    from common.fileio import atomic_write_json, git_commit, hardware, package_versions

    atomic_write_json(Path(out).with_name(Path(out).stem + "_meta.json"), {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "hardware": hardware(),
        "versions": package_versions(), "git": git_commit(), "cores": cores, "run_ids": list(run_ids),
        "command": "python -m benchmarks.rebench --scale cpu --data-root <data root> " + " ".join(run_ids)})


def _hours(cpu_s: float, cores: int = 2) -> str:
    m = round(cpu_s / cores / 60)
    return f"{m // 60} h {m % 60:02d} min"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_ids", nargs="*")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--data-root")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, help="CSV of the reruns (and <out stem>_batches.csv, _meta.json, "
                                             "results/bench/machine_units_<scale>.csv)")
    ap.add_argument("--units-only", action="store_true",
                    help="only rewrite results/bench/machine_units_<scale>.csv from the existing reruns (--out or "
                         "results/bench/rebench.csv)")
    a = ap.parse_args(argv)
    if a.units_only:
        print(f"wrote {write_machine_units(a.scale, csv=a.out)}")
        return 0
    if not a.run_ids or not a.data_root:
        ap.error("give the run ids to retrain and --data-root (or --units-only)")
    batches = measurement_batches(a.scale)
    unknown = sorted(set(a.run_ids) - set(batches["run_id"]))
    if unknown:
        ap.error(f"no committed benchmark file for: {', '.join(unknown)}")
    measured = rerun(a.run_ids, a.scale, a.data_root, cores=a.cores)
    reruns = measured.merge(batches, on="run_id")
    if a.out:  # the measurements first: they took the time
        a.out.parent.mkdir(parents=True, exist_ok=True)
        reruns.to_csv(a.out, index=False)
        write_meta(a.out, a.run_ids, a.cores)
        write_machine_units(a.scale, csv=a.out)
    est = estimate(batches, measured)
    if a.out:
        est.to_csv(a.out.with_name(a.out.stem + "_batches.csv"), index=False)
    print(reruns.to_markdown(index=False, floatfmt=".2f"))
    print()
    print(est.to_markdown(index=False, floatfmt=".3f"))
    total = est["committed_cpu_s"].sum()
    print(f"\ncommitted sum: {total:.0f} CPU-s = {_hours(total, a.cores)} on {a.cores} cores")
    if est["ratio"].notna().all():
        today = est["today_cpu_s"].sum()
        print(f"on today's machine: {today:.0f} CPU-s = {_hours(today, a.cores)} on {a.cores} cores")
    else:
        missing = est.loc[est["ratio"].isna(), "committed_cpu_s"].sum()
        print(f"batches without a rerun hold {missing:.0f} CPU-s; no whole-scale estimate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
