"""Wall time of the workflow's training runs, from Snakemake's per-run benchmark files.

The ``train`` rule writes ``results/<scale>/benchmarks/<run_id>.tsv`` (Snakemake ``benchmark:``
directive: columns ``s``, ``h:m:s``, ``max_rss``, ..., ``cpu_time``). :func:`summarize` sums
them per paper over the run ids :func:`common.config.plan` lists for that scale. A run shared by
two papers counts in both papers' rows; the ``all papers`` row counts every run once. Sums are
serial time: with ``--cores 2`` and one thread per run, the workflow's elapsed time is roughly
half (plus the aggregation rules).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ["paper", "runs_planned", "runs_measured", "wall_s", "cpu_s", "cpu_one_machine_s", "max_rss_mb",
           "mean_run_s", "max_run_s", "complete"]


def read_benchmarks(scale: str, root=".") -> pd.DataFrame:
    """One row per ``results/<scale>/benchmarks/<run_id>.tsv`` (the last line if a file has several):
    run_id, s, cpu_time, max_rss."""
    from common.aggregate import read_benchmark_files

    return read_benchmark_files(Path(root) / "results" / scale / "benchmarks")


def summarize(scale: str, root=".", only: list[str] | None = None,
              factors: dict[str, float] | None = None) -> pd.DataFrame:
    """Per-paper sums of the training runs' benchmark files at ``scale`` (see the module docstring).

    Columns: ``paper, runs_planned, runs_measured, wall_s, cpu_s, cpu_one_machine_s, max_rss_mb,
    mean_run_s, max_run_s, complete``; the last row is ``all papers`` (unique runs). Papers with
    no planned runs are left out; an empty frame (with those columns) if nothing was measured.
    ``cpu_one_machine_s`` sums ``cpu_time * factors[run_id]`` (files measured on different
    machines put in one machine's units, :func:`benchmarks.rebench.one_machine_factors`); NaN
    without ``factors`` or when a run has none."""
    from common.config import plan

    _, by_paper = plan(scale, root, only)
    bench = read_benchmarks(scale, root).set_index("run_id")
    rows = []

    def summary(name: str, ids: list[str]) -> dict:
        got = bench.loc[[i for i in ids if i in bench.index]]
        return {"paper": name, "runs_planned": len(ids), "runs_measured": len(got),
                "wall_s": float(got["s"].sum()), "cpu_s": float(got["cpu_time"].sum()),
                "cpu_one_machine_s": float((got["cpu_time"] * got.index.map(factors or {}).astype(float)).sum(
                    min_count=len(got))) if len(got) else float("nan"),
                "max_rss_mb": float(got["max_rss"].max()) if len(got) else float("nan"),
                "mean_run_s": float(got["s"].mean()) if len(got) else float("nan"),
                "max_run_s": float(got["s"].max()) if len(got) else float("nan"),
                "complete": len(got) == len(ids)}

    for paper in sorted(by_paper):
        if by_paper[paper]:
            rows.append(summary(paper, by_paper[paper]))
    if not rows or not any(r["runs_measured"] for r in rows):
        return pd.DataFrame(columns=COLUMNS)
    unique = sorted({i for ids in by_paper.values() for i in ids})
    rows.append(summary("all papers", unique))
    return pd.DataFrame(rows, columns=COLUMNS)


def format_seconds(s: float) -> str:
    if s != s:  # NaN
        return "-"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
