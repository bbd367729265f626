"""The cross-paper calibration table: every classification run of every paper, grouped by
training setting and method, with accuracy and ECE / AdaECE before and after temperature scaling
(mean and sample std over seeds). Calibration errors are shown in percent, as the papers print
them; the trainer stores fractions (``metrics.json["test"]["ece"]`` etc., see
:mod:`common.calibration`).

    from papers.rankmixup.tables import calibration_table, to_markdown
    df = calibration_table(["results/cpu/runs/<id>/metrics.json", ...])

or ``python -m papers.rankmixup.tables --out-csv t.csv --out-md t.md results/cpu/runs/*/metrics.json``.

A "setting" is (dataset, train_size, model with its kwargs, epochs); a "method" is the method
name plus its non-default-looking parameters as written in the run config (so mixup alpha 0.2 and
alpha 1.0 stay separate rows). A run listed twice (shared by two papers) counts once.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

#: (column prefix, key in metrics.json["test"], scale) -- ECE-type values are fractions -> %
METRICS = (
    ("top1", "top1", 1.0),
    ("ece", "ece", 100.0),
    ("adaece", "adaece", 100.0),
    ("ts_ece", "ts_ece", 100.0),
    ("ts_adaece", "ts_adaece", 100.0),
    ("cw_ece", "cw_ece", 100.0),
    ("nll", "nll", 1.0),
    ("ts_nll", "ts_nll", 1.0),
    ("temperature", "temperature", 1.0),
)
KEYS = ["dataset", "train_size", "model", "epochs", "method", "params"]


def _load(p) -> dict:
    if isinstance(p, dict):
        return p
    return json.loads(Path(p).read_text())


def _describe(spec: dict, skip=("name",)) -> str:
    items = {k: v for k, v in sorted(spec.items()) if k not in skip}
    return json.dumps(items, sort_keys=True, separators=(",", ":")) if items else ""


def run_rows(paths) -> pd.DataFrame:
    """One row per distinct classification run: setting keys, seed, run id and the metrics."""
    rows, seen = [], set()
    for p in paths:
        m = _load(p)
        if m.get("task") != "classification":
            continue
        cfg = m.get("provenance", {}).get("config", {})
        rid = m.get("run_id") or (str(p) if not isinstance(p, dict) else str(id(p)))
        ident = (rid, json.dumps(cfg, sort_keys=True, default=str))  # a shared run listed twice counts once
        if ident in seen:
            continue
        seen.add(ident)
        ds, model, meth, tr = cfg.get("dataset", {}), cfg.get("model", {}), cfg.get("method", {}), cfg.get("train", {})
        row = {
            "dataset": ds.get("name"),
            "train_size": str(ds.get("train_size") or "full"),
            "model": model.get("name", "") + (f" {_describe(model)}" if _describe(model) else ""),
            "epochs": tr.get("epochs"),
            "method": meth.get("name"),
            "params": _describe(meth),
            "seed": cfg.get("seed"),
            "run_id": rid,
        }
        test = m.get("test", {})
        for col, key, scale in METRICS:
            v = test.get(key)
            row[col] = float(v) * scale if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=KEYS + ["seed", "run_id"] + [c for c, _, _ in METRICS])


def calibration_table(paths, metrics=("top1", "ece", "adaece", "ts_ece", "ts_adaece")) -> pd.DataFrame:
    """Per (setting, method): ``n`` seeds and ``<metric>_mean`` / ``<metric>_std`` (sample std,
    NaN for one seed) for each of ``metrics``; ECE-type values in percent. Rows sorted by setting,
    then by ECE before temperature scaling."""
    runs = run_rows(paths)
    cols = KEYS + ["n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    g = runs.groupby(KEYS, dropna=False, sort=False)
    out = g.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1)
    out = out.reset_index()
    sort_by = [k for k in ("dataset", "model", "train_size", "epochs") if k in out] + (
        ["ece_mean"] if "ece_mean" in out else [])
    return out.sort_values(sort_by, kind="stable").reset_index(drop=True)[cols]


def _fmt(mean, std, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(df: pd.DataFrame) -> str:
    """Markdown with ``mean ± std`` cells: Top-1 (%), ECE, AdaECE, and both after TS (%)."""
    metrics = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    heads = {"top1": "Top-1 (%)", "ece": "ECE (%)", "adaece": "AdaECE (%)", "ts_ece": "ECE after TS (%)",
             "ts_adaece": "AdaECE after TS (%)", "cw_ece": "cw-ECE (%)", "nll": "NLL", "ts_nll": "NLL after TS",
             "temperature": "T"}
    header = ["Dataset", "Train images", "Model", "Epochs", "Method", "n"] + [heads.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in df.iterrows():
        meth = r["method"] + (f" `{r['params']}`" if r["params"] else "")
        cells = [str(r["dataset"]), str(r["train_size"]), str(r["model"]), str(r["epochs"]), meth, str(r["n"])]
        cells += [_fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def make_tables(paths, out_dir) -> list[Path]:
    """Workflow hook (``common.aggregate summary`` calls it with every run of the scale): the
    cross-paper calibration table as ``calibration.csv`` / ``calibration.md`` in ``out_dir``."""
    from common.io import atomic_write_text

    df = calibration_table(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = ("# Cross-paper calibration table\n\nEvery classification run of this scale, grouped by setting "
            "and method; mean ± sample std over seeds; ECE-type errors in percent (15 equal-width bins; "
            "AdaECE: 15 equal-mass bins; TS: temperature fitted on the validation split). Generated by "
            "`papers/rankmixup/tables.py`; do not edit.\n\n")
    atomic_write_text(out / "calibration.csv", df.to_csv(index=False))
    atomic_write_text(out / "calibration.md", head + to_markdown(df))
    return [out / "calibration.csv", out / "calibration.md"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="cross-paper calibration table from metrics.json files")
    ap.add_argument("metrics", nargs="+", help="metrics.json paths")
    ap.add_argument("--out-csv", required=True)
    ap.add_argument("--out-md", default=None)
    a = ap.parse_args(argv)
    df = calibration_table(a.metrics)
    Path(a.out_csv).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out_csv, index=False)
    if a.out_md:
        Path(a.out_md).write_text(to_markdown(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
