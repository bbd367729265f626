"""RankMixup's cross-paper calibration table: every classification run of the scale, grouped by
setting (dataset, train images, model, epochs) and method with its parameters as written, with
accuracy and ECE / AdaECE before and after temperature scaling (mean and sample std over seeds, in
percent). The statistics and rendering are the shared aggregation code's
(:func:`common.aggregate.calibration_table`, :func:`common.aggregate.calibration_markdown`).

    python -m papers.rankmixup.tables --out-csv t.csv --out-md t.md results/cpu/runs/*/metrics.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from common.aggregate import calibration_markdown, load_runs
from common.aggregate import calibration_table as _table
from common.aggregate.templates import CALIBRATION
from common.fileio import atomic_write_text


def calibration_table(paths) -> pd.DataFrame:
    """The calibration table of the runs whose metrics.json are ``paths`` (a run listed twice counts once)."""
    return _table(load_runs(paths))


def to_markdown(df: pd.DataFrame) -> str:
    return calibration_markdown(df)


def make_tables(paths, out_dir) -> list[Path]:
    """Workflow hook (``common.aggregate summary`` calls it with every run of the scale):
    ``calibration.csv`` / ``calibration.md`` in ``out_dir``."""
    df = calibration_table(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "calibration.csv", df.to_csv(index=False))
    atomic_write_text(out / "calibration.md", CALIBRATION + to_markdown(df))
    return [out / "calibration.csv", out / "calibration.md"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="cross-paper calibration table from metrics.json files")
    ap.add_argument("metrics", nargs="+", help="metrics.json paths")
    ap.add_argument("--out-csv", required=True)
    ap.add_argument("--out-md", default=None)
    a = ap.parse_args(argv)
    df = calibration_table(a.metrics)
    atomic_write_text(a.out_csv, df.to_csv(index=False))
    if a.out_md:
        atomic_write_text(a.out_md, to_markdown(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
