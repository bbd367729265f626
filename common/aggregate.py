"""Tables, figures, the cross-paper summary and README sections, built from runs' metrics.json.

Called by the Snakefile's aggregate rules (``python -m common.aggregate <table|figures|summary|readmes>``).
Nothing here holds a number: every value comes from a run's metrics.json or a paper's
reported.csv (whose ``source`` is carried along; rows whose source says UNVERIFIED are labelled so).

Verdict rule for a claim "method beats baseline on metric": the difference of the seed means,
with a Welch 95% confidence interval (t distribution). Interval entirely on the claimed side ->
"reproduced"; entirely on the other side -> "not reproduced at this scale"; otherwise, or with
fewer than 2 seeds per arm -> "inconclusive".
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

from .config import discover_papers, load_experiments
from .io import atomic_write_text, files_digest

REPORTED_COLUMNS = ["paper", "method", "dataset", "model", "epochs", "metric", "value", "baseline_method",
                    "baseline_value", "source"]
# headline metric per task, and the extra columns shown in Markdown tables
MAIN = {"classification": ["top1", "ece", "adaece", "ts_ece", "nll", "occ_center_25", "occ_random_50"],
        "regression": ["rmse", "mape"]}
LOWER_BETTER = {"ece", "adaece", "cw_ece", "nll", "ts_ece", "ts_adaece", "ts_nll", "rmse", "mape", "mae", "mse"}
# calibration errors are stored as fractions in metrics.json (and in the CSVs) and shown in percent in
# Markdown/LaTeX, the unit the papers report them in
PERCENT = {"ece", "adaece", "cw_ece", "ts_ece", "ts_adaece", "ts_cw_ece"}
# training-time reference per setting in the matrix: the first of these that the setting has
TIME_REFERENCE = ("erm", "deit_mix", "mixup", "cutmix")


# --------------------------------------------------------------------------- loading
def load_reported(path) -> pd.DataFrame:
    """Read and check a paper's reported.csv; a malformed row is named by its line number."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=REPORTED_COLUMNS + ["verified"])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != REPORTED_COLUMNS:
        raise ValueError(f"{path}: header must be {','.join(REPORTED_COLUMNS)}; got {','.join(rows[0]) if rows else '(empty)'}")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in r):
            continue
        if len(r) != len(REPORTED_COLUMNS):
            raise ValueError(f"{path}, line {i}: expected {len(REPORTED_COLUMNS)} columns, got {len(r)}")
        d = dict(zip(REPORTED_COLUMNS, r))
        for col in ("value", "baseline_value"):
            if d[col].strip() == "" and col == "baseline_value":
                d[col] = None
                continue
            try:
                d[col] = float(d[col])
            except ValueError:
                raise ValueError(f"{path}, line {i}: column {col!r} must be a number, got {d[col]!r}") from None
        if not d["source"].strip():
            raise ValueError(f"{path}, line {i}: column 'source' is empty (every figure needs its source)")
        d["verified"] = not d["source"].strip().upper().startswith("UNVERIFIED")
        out.append(d)
    return pd.DataFrame(out, columns=REPORTED_COLUMNS + ["verified"])


def load_runs(paths) -> list[dict]:
    runs = []
    for p in paths:
        p = Path(p)
        m = json.loads(p.read_text())
        cfg = m["provenance"]["config"]
        ep_path = p.parent / "epochs.jsonl"
        epochs = [json.loads(line) for line in ep_path.read_text().splitlines() if line.strip()] if ep_path.exists() else []
        runs.append({"path": p, "dir": p.parent, "metrics": m, "config": cfg, "epochs": epochs, "task": m["task"]})
    _label(runs)
    return runs


def _flat(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _label(runs: list[dict]) -> None:
    """Give each run a setting id (everything but seed and method) and a method label: the name
    plus the params that distinguish same-named variants within one setting."""
    for r in runs:
        c = {k: v for k, v in r["config"].items() if k not in ("seed", "method", "resources")}
        c["dataset"] = {k: v for k, v in c["dataset"].items() if k not in ("root", "download")}
        r["setting"] = hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:6]
        r["dataset"] = r["config"]["dataset"]["name"]
        r["model"] = r["config"]["model"]["name"].replace("timm:", "")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["config"]["method"]["name"], r["setting"]), []).append(r)
    for (name, _), rs in groups.items():
        flats = [_flat({k: v for k, v in r["config"]["method"].items() if k != "name"}) for r in rs]
        keys = sorted({k for f in flats for k in f})
        varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
        for r, f in zip(rs, flats):
            extra = ",".join(f"{k}={f.get(k)}" for k in varying)
            r["label"] = f"{name}({extra})" if extra else name


def scalar_metrics(run: dict) -> dict:
    out = {k: v for k, v in run["metrics"]["test"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    ips = run["metrics"].get("train_images_per_sec")
    if ips:
        out["train_images_per_sec"] = ips
    best = run["metrics"].get("best_epoch_test") or {}
    for k, v in best.items():
        if k != "epoch" and isinstance(v, (int, float)):
            out[f"best_epoch_{k.replace('test_', '')}"] = v
    return out


# --------------------------------------------------------------------------- tables
def long_table(runs: list[dict], paper: str) -> pd.DataFrame:
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["label"], r["dataset"], r["model"], r["setting"]), []).append(r)
    for (label, ds, model, setting), rs in sorted(groups.items()):
        vals: dict[str, list[float]] = {}
        for r in rs:
            for k, v in scalar_metrics(r).items():
                vals.setdefault(k, []).append(float(v))
        for k, vs in sorted(vals.items()):
            s = pd.Series(vs)
            rows.append({"paper": paper, "method": label, "dataset": ds, "model": model, "setting": setting,
                         "metric": k, "mean": s.mean(), "std": s.std(ddof=1) if len(vs) > 1 else float("nan"),
                         "n_seeds": len(vs), "seeds": " ".join(str(r["config"]["seed"]) for r in rs)})
    return pd.DataFrame(rows, columns=["paper", "method", "dataset", "model", "setting", "metric", "mean", "std",
                                       "n_seeds", "seeds"])


def fmt(mean, std, n=None, digits=2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    s = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std:.{digits}f}"
    return s


def _digits(metric: str) -> int:
    return 4 if metric in ("nll", "ts_nll", "rmse", "mse", "mae") else 2


def _shown(metric: str, x):
    """A value as displayed: calibration errors in percent, everything else as stored."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return x
    return 100.0 * x if metric in PERCENT else x


def _header(metric: str) -> str:
    return f"{metric} (%)" if metric in PERCENT else metric


def wide_markdown(long: pd.DataFrame) -> str:
    if long.empty:
        return "_no runs_\n"
    parts = []
    for (ds, model, setting), g in long.groupby(["dataset", "model", "setting"], sort=True):
        metrics = [m for m in MAIN["classification"] + MAIN["regression"] if m in set(g["metric"])]
        header = ["method", "n"] + [_header(m) for m in metrics]
        lines = [f"**{ds} / {model}** (setting `{setting}`)\n", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        for label, gm in g.groupby("method", sort=True):
            row = [f"`{label}`", str(int(gm["n_seeds"].max()))]
            for m in metrics:
                x = gm[gm["metric"] == m]
                row.append(fmt(_shown(m, x["mean"].iloc[0]), _shown(m, x["std"].iloc[0]), digits=_digits(m))
                           if len(x) else "–")
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _match(run: dict, match: dict | None) -> bool:
    flat = _flat(run["config"])
    for k, v in (match or {}).items():
        if flat.get(k) != v:
            return False
    return True


def welch_ci(a: list[float], b: list[float], level=0.95):
    """CI of mean(a) - mean(b) (Welch)."""
    from scipy import stats

    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    if na < 2 or nb < 2:
        return ma - mb, None, None
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se = math.sqrt(va / na + vb / nb)
    if se == 0:
        return ma - mb, ma - mb, ma - mb
    df = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    t = stats.t.ppf(0.5 + level / 2, df)
    return ma - mb, ma - mb - t * se, ma - mb + t * se


def verdict(delta, lo, hi, higher_is_better: bool) -> str:
    if lo is None:
        return "inconclusive (fewer than 2 seeds)"
    sign = 1 if higher_is_better else -1
    lo_s, hi_s = sorted((sign * lo, sign * hi))
    if lo_s > 0:
        return "reproduced"
    if hi_s < 0:
        return "not reproduced at this scale"
    return "inconclusive"


def claims_table(runs: list[dict], exp: dict, reported: pd.DataFrame, scale: str) -> pd.DataFrame:
    rows = []
    for c in exp.get("claims") or []:
        if c.get("scales") and scale not in c["scales"]:
            continue
        hib = c.get("higher_is_better", c["metric"] not in LOWER_BETTER)
        rep = {}
        if c.get("reported"):
            sel = reported
            for k, v in c["reported"].items():
                sel = sel[sel[k].astype(str) == str(v)]
            if len(sel) >= 1:
                r0 = sel.iloc[0]
                rep = {"reported_metric": r0["metric"], "reported_method": r0["value"],
                       "reported_baseline": r0["baseline_value"], "reported_dataset": r0["dataset"],
                       "reported_model": r0["model"], "reported_source": r0["source"],
                       "reported_verified": bool(r0["verified"])}
        settings: dict[str, dict] = {}
        for r in runs:
            if not _match(r, c.get("match")):
                continue
            name = r["config"]["method"]["name"]
            for arm, want in (("method", c["method"]), ("baseline", c["baseline"])):
                if want in (name, r["label"]):
                    settings.setdefault(r["setting"], {"method": [], "baseline": [], "run": r})[arm].append(r)
        for setting, arms in sorted(settings.items()):
            a = [float(scalar_metrics(r).get(c["metric"], float("nan"))) for r in arms["method"]]
            b = [float(scalar_metrics(r).get(c["metric"], float("nan"))) for r in arms["baseline"]]
            a = [x for x in a if not math.isnan(x)]
            b = [x for x in b if not math.isnan(x)]
            if not a or not b:
                continue
            delta, lo, hi = welch_ci(a, b)
            sa = pd.Series(a)
            sb = pd.Series(b)
            rows.append({
                "paper": exp["paper"], "claim": c["id"], "text": c["text"], "scale": scale,
                "dataset": arms["run"]["dataset"], "model": arms["run"]["model"], "setting": setting,
                "metric": c["metric"], "higher_is_better": hib,
                "method": c["method"], "method_mean": sa.mean(), "method_std": sa.std(ddof=1) if len(a) > 1 else None,
                "n_method": len(a), "baseline": c["baseline"], "baseline_mean": sb.mean(),
                "baseline_std": sb.std(ddof=1) if len(b) > 1 else None, "n_baseline": len(b),
                "delta": delta, "ci_low": lo, "ci_high": hi, "verdict": verdict(delta, lo, hi, hib), **rep,
            })
    cols = ["paper", "claim", "text", "scale", "dataset", "model", "setting", "metric", "higher_is_better", "method",
            "method_mean", "method_std", "n_method", "baseline", "baseline_mean", "baseline_std", "n_baseline", "delta",
            "ci_low", "ci_high", "verdict", "reported_metric", "reported_method", "reported_baseline",
            "reported_dataset", "reported_model", "reported_source", "reported_verified"]
    return pd.DataFrame(rows, columns=cols)


def _reported_cell(r) -> str:
    if pd.isna(r.get("reported_method")) if "reported_method" in r else True:
        return "–"
    base = r.get("reported_baseline")
    s = f"{r['reported_method']:g}"
    if base is not None and not pd.isna(base):
        s += f" vs {base:g}"
    s += f" ({r['reported_metric']}, {r['reported_dataset']})"
    if not r.get("reported_verified", True):
        s = "UNVERIFIED: " + s
    return s


def _claim_display(r) -> tuple[str, int, dict, str]:
    """(metric, digits, displayed values, "[lo, hi]" or "") of one claims_table row."""
    m, d = r["metric"], _digits(r["metric"])
    v = {k: _shown(m, r[k]) for k in ("method_mean", "method_std", "baseline_mean", "baseline_std", "delta",
                                      "ci_low", "ci_high")}
    ci = f"[{v['ci_low']:.{d}f}, {v['ci_high']:.{d}f}]" if v["ci_low"] is not None and not pd.isna(v["ci_low"]) else ""
    return m, d, v, ci


def claims_markdown(ct: pd.DataFrame) -> str:
    if ct.empty:
        return "_no claims evaluated at this scale_\n"
    lines = ["| claim | paper reports | setting (ours) | ours: method | ours: baseline | delta [95% CI] | verdict |",
             "|---|---|---|---|---|---|---|"]
    for _, r in ct.iterrows():
        m, d, v, ci = _claim_display(r)
        lines.append(
            f"| {r['text']} | {_reported_cell(r)} | {r['dataset']}/{r['model']} ({_header(m)}) | "
            f"`{r['method']}` {fmt(v['method_mean'], v['method_std'], digits=d)} (n={r['n_method']}) | "
            f"`{r['baseline']}` {fmt(v['baseline_mean'], v['baseline_std'], digits=d)} (n={r['n_baseline']}) | "
            f"{v['delta']:+.{d}f} {ci or '[–]'} | **{r['verdict']}** |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figures
def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9})
    return plt


def save_fig(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def figures(runs: list[dict], exp: dict, reported: pd.DataFrame, scale: str, out_dir: Path) -> None:
    plt = _style()
    out_dir.mkdir(parents=True, exist_ok=True)
    long = long_table(runs, exp["paper"])
    task = runs[0]["task"] if runs else "classification"
    metric = "top1" if task == "classification" else "rmse"
    # 1) bar chart of the headline metric per setting
    for (ds, model, setting), g in long[long["metric"] == metric].groupby(["dataset", "model", "setting"]):
        fig, ax = plt.subplots(figsize=(max(3.5, 0.8 * len(g) + 1.5), 3.2))
        ax.bar(range(len(g)), g["mean"], yerr=g["std"].fillna(0), capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(g)), g["method"], rotation=30, ha="right")
        ax.set_ylabel(f"test {metric} (mean ± std over seeds)")
        lo = (g["mean"] - g["std"].fillna(0)).min()
        hi = (g["mean"] + g["std"].fillna(0)).max()
        ax.set_ylim(max(0, lo - (hi - lo) * 0.5 - 1e-9) if task == "classification" else 0, hi + (hi - lo) * 0.2 + 1e-9)
        ax.set_title(f"{exp['paper']} — {ds}/{model} ({scale}, setting {setting})")
        save_fig(fig, out_dir, f"bars_{ds}_{model}_{setting}")
    # 2) paper vs ours for each claim: the paper's pair next to ours, on separate axes
    ct = claims_table(runs, exp, reported, scale)
    for _, r in ct.iterrows():
        fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8))
        if "reported_method" in r and not pd.isna(r.get("reported_method")):
            vals = [r["reported_baseline"] if not pd.isna(r["reported_baseline"]) else float("nan"), r["reported_method"]]
            axes[0].bar([0, 1], vals, color=["#999999", "#dd8452"])
            axes[0].set_xticks([0, 1], ["baseline", "method"])
            lab = "" if r.get("reported_verified", True) else " [UNVERIFIED]"
            axes[0].set_title(f"paper: {r['reported_metric']}{lab}\n{r['reported_dataset']}", fontsize=8)
        else:
            axes[0].text(0.5, 0.5, "no reported figure", ha="center", va="center")
            axes[0].set_axis_off()
        axes[1].bar([0, 1], [r["baseline_mean"], r["method_mean"]],
                    yerr=[r["baseline_std"] or 0, r["method_std"] or 0], capsize=3, color=["#999999", "#4c72b0"])
        axes[1].set_xticks([0, 1], [r["baseline"], r["method"]])
        axes[1].set_title(f"ours ({scale}): {r['metric']}, {r['dataset']}\n{r['verdict']}", fontsize=8)
        fig.suptitle(r["text"], fontsize=9)
        save_fig(fig, out_dir, f"claim_{r['claim']}_{r['setting']}")
    # 3) learning curves (mean over seeds)
    key = "test_top1" if task == "classification" else "test_rmse"
    settings = sorted({r["setting"] for r in runs})
    for setting in settings:
        rs = [r for r in runs if r["setting"] == setting and r["epochs"]]
        if not rs:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for label in sorted({r["label"] for r in rs}):
            curves = [pd.Series({e["epoch"]: e.get(key) for e in r["epochs"] if key in e}) for r in rs if r["label"] == label]
            df = pd.concat(curves, axis=1)
            ax.plot(df.index, df.mean(axis=1), label=label)
            if df.shape[1] > 1:
                ax.fill_between(df.index, df.min(axis=1), df.max(axis=1), alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.legend(fontsize=7)
        ax.set_title(f"{exp['paper']} — {rs[0]['dataset']}/{rs[0]['model']} ({scale})")
        save_fig(fig, out_dir, f"curves_{rs[0]['dataset']}_{rs[0]['model']}_{setting}")
    # 4) the paper's own plots (papers/<paper>/plots.py: make_figures(runs, out_dir))
    try:
        mod = importlib.import_module(f"papers.{exp['paper']}.plots")
    except ModuleNotFoundError as e:
        if e.name != f"papers.{exp['paper']}.plots":  # a missing dependency of plots.py is an error
            raise
        mod = None
    if mod is not None and hasattr(mod, "make_figures"):
        mod.make_figures(runs, out_dir)


# --------------------------------------------------------------------------- summary
def read_benchmark_files(folder) -> pd.DataFrame:
    """Snakemake's per-run benchmark files ``<folder>/<run_id>.tsv`` (``benchmark:`` directive), one row
    per file (its last line): run_id, s, cpu_time, max_rss. Unreadable files are skipped."""
    folder = Path(folder)
    rows = []
    for f in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        try:
            df = pd.read_csv(f, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError):
            continue
        if df.empty or "s" not in df.columns:
            continue
        last = df.iloc[-1]
        rows.append({"run_id": f.stem, "s": float(last["s"]),
                     "cpu_time": float(last.get("cpu_time", float("nan"))),
                     "max_rss": float(last.get("max_rss", float("nan")))})
    return pd.DataFrame(rows, columns=["run_id", "s", "cpu_time", "max_rss"])


def _train_seconds(rs: list[dict]) -> tuple[str, dict[int, float]]:
    prov = [r["metrics"]["provenance"] for r in rs]
    if all("train_cpu_sec" in p for p in prov):
        return "cpu", {id(r): p["train_cpu_sec"] for r, p in zip(rs, prov)}
    cpu_time = {}  # the runs' benchmark folder is results/<scale>/benchmarks, next to runs/
    for folder in {r["dir"].parent.parent / "benchmarks" for r in rs}:
        cpu_time.update(read_benchmark_files(folder).set_index("run_id")["cpu_time"].dropna().to_dict())
    if all(r["dir"].name in cpu_time for r in rs):
        return "cpu, whole job", {id(r): cpu_time[r["dir"].name] for r in rs}
    return "wall", {id(r): p["train_time_sec"] for r, p in zip(rs, prov)}


def matrix(runs: list[dict]) -> pd.DataFrame:
    """Every classification method per setting: top-1, calibration before/after temperature
    scaling, occlusion robustness, and training time relative to a reference method of the same
    setting (the first of ``TIME_REFERENCE`` it has; ``erm`` where it exists).

    Time per run, the first kind every run of the setting has (column ``time_clock``): "cpu" = the
    epoch loop's process CPU time (``train_cpu_sec``); "cpu, whole job" = the CPU time in Snakemake's
    benchmark file for the run (``<scale>/benchmarks/<run id>.tsv``: also start-up and evaluation);
    "wall" = the epoch loop's wall-clock time, which other jobs on the machine inflate."""
    rows = []
    cls = [r for r in runs if r["task"] == "classification"]
    for setting in sorted({r["setting"] for r in cls}):
        rs = [r for r in cls if r["setting"] == setting]
        clock, secs = _train_seconds(rs)
        names = {r["config"]["method"]["name"] for r in rs}
        ref = next((n for n in TIME_REFERENCE if n in names), None)
        base_t = [secs[id(r)] for r in rs if r["config"]["method"]["name"] == ref]
        base_t = sum(base_t) / len(base_t) if base_t else None
        for label in sorted({r["label"] for r in rs}):
            g = [r for r in rs if r["label"] == label]
            row = {"dataset": g[0]["dataset"], "model": g[0]["model"], "setting": setting, "method": label, "n": len(g)}
            for m in ("top1", "ece", "adaece", "ts_ece", "ts_adaece", "nll", "occ_center_25", "occ_center_50",
                      "occ_random_25", "occ_random_50"):
                v = [scalar_metrics(r).get(m) for r in g]
                v = [x for x in v if x is not None]
                if v:
                    s = pd.Series(v)
                    row[m] = s.mean()
                    row[m + "_std"] = s.std(ddof=1) if len(v) > 1 else float("nan")
            occ = [k for k in row if k.startswith("occ_") and not k.endswith("_std")]
            row["occ_mean"] = sum(row[k] for k in occ) / len(occ) if occ else float("nan")
            t = sum(secs[id(r)] for r in g) / len(g)
            row["train_time_sec"] = t
            row["time_clock"] = clock
            row["time_reference"] = ref or ""
            row["time_vs_reference"] = t / base_t if base_t else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def matrix_markdown(mx: pd.DataFrame) -> str:
    if mx.empty:
        return "_no classification runs_\n"
    out = []
    for (ds, model, setting), g in mx.groupby(["dataset", "model", "setting"]):
        ref, clock = g["time_reference"].iloc[0], g["time_clock"].iloc[0]
        out.append(f"**{ds} / {model}** (setting `{setting}`)\n")
        what = {"cpu": "CPU time", "cpu, whole job": "CPU time, whole job", "wall": "wall clock"}[clock]
        tcol = f"train time vs `{ref}` ({what})" if ref else f"train time ({what})"
        out.append("| method | n | top-1 | ECE (%) | AdaECE (%) | ECE after TS (%) | AdaECE after TS (%) | "
                   f"occlusion (mean top-1) | {tcol} |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for _, r in g.iterrows():
            pct = [fmt(_shown(m, r.get(m)), _shown(m, r.get(m + "_std"))) for m in ("ece", "adaece", "ts_ece", "ts_adaece")]
            t = f"{r['time_vs_reference']:.2f}x" if ref else f"{r['train_time_sec']:.0f} s"
            out.append(f"| `{r['method']}` | {r['n']} | {fmt(r.get('top1'), r.get('top1_std'))} | "
                       f"{' | '.join(pct)} | {fmt(r.get('occ_mean'), None)} | {t} |")
        out.append("")
    notes = {"cpu": "*CPU time*: CPU seconds of the training loop, recorded by each run.",
             "cpu, whole job": "*CPU time, whole job*: CPU seconds of each run's whole job from Snakemake's benchmark "
                               "file (start-up and evaluation included), which other jobs on the machine barely "
                               "disturb.",
             "wall": "*wall clock*: the training loop's elapsed time; other jobs sharing the cores inflate it by "
                     "tens of percent."}
    out += [notes[c] for c in notes if (mx["time_clock"] == c).any()]
    out.append("Per-step overheads measured in one process, as ratios, are in `results/bench/` (README, "
               "*Performance*).\n")
    return "\n".join(out) + "\n"


def summary_tex(ct: pd.DataFrame) -> str:
    lines = [r"\begin{tabular}{llllll}", r"\toprule",
             r"Claim & Setting & Method & Baseline & $\Delta$ [95\% CI] & Verdict \\", r"\midrule"]
    esc = lambda s: re.sub(r"([_%&#$])", r"\\\1", str(s))  # noqa: E731
    for _, r in ct.iterrows():
        m, d, v, ci = _claim_display(r)
        pm = "$\\pm$"
        m_s = fmt(v["method_mean"], v["method_std"], digits=d).replace("±", pm)
        b_s = fmt(v["baseline_mean"], v["baseline_std"], digits=d).replace("±", pm)
        row = [f"{esc(r['text'])}", f"{esc(r['dataset'])}/{esc(r['model'])} ({esc(_header(m))})", m_s, b_s,
               f"{v['delta']:+.{d}f} {ci}", esc(r["verdict"])]
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- READMEs
def replace_block(text: str, tag: str, content: str) -> str:
    begin, end = f"<!-- BEGIN generated:{tag} -->", f"<!-- END generated:{tag} -->"
    if begin not in text or end not in text:
        return text
    pre, rest = text.split(begin, 1)
    _, post = rest.split(end, 1)
    return f"{pre}{begin}\n{content.rstrip()}\n{end}{post}"


# --------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("--paper", required=True)
    t.add_argument("--scale", required=True)
    t.add_argument("--out-csv", required=True)
    t.add_argument("--out-md", required=True)
    t.add_argument("--out-claims", required=True)
    t.add_argument("metrics", nargs="*")
    f = sub.add_parser("figures")
    f.add_argument("--paper", required=True)
    f.add_argument("--scale", required=True)
    f.add_argument("--out-dir", required=True)
    f.add_argument("metrics", nargs="*")
    s = sub.add_parser("summary")
    s.add_argument("--scale", required=True)
    s.add_argument("--claims", nargs="*", default=[])
    s.add_argument("--runs", nargs="*", default=[])
    for k in ("md", "csv", "tex", "matrix", "matrix-csv"):
        s.add_argument(f"--out-{k}", required=True)
    s.add_argument("--out-extra", default=None, help="directory for the papers' cross-paper tables")
    r = sub.add_parser("readmes")
    r.add_argument("--scale", required=True)
    r.add_argument("tables", nargs="*")
    r.add_argument("--stamp", help="file to write the digest of --stamp-inputs to (the rule's output)")
    r.add_argument("--stamp-inputs", nargs="*", default=[],
                   help="every file the scale's aggregates are computed from (runs' metrics.json, papers' files)")
    a = ap.parse_args(argv)
    root = Path(__file__).resolve().parent.parent

    if a.cmd in ("table", "figures"):
        exp = load_experiments(root / "papers" / a.paper / "experiments.yaml")
        reported = load_reported(root / "papers" / a.paper / "reported.csv")
        runs = load_runs(a.metrics)
        if a.cmd == "table":
            long = long_table(runs, a.paper)
            ct = claims_table(runs, exp, reported, a.scale)
            atomic_write_text(a.out_csv, long.to_csv(index=False))
            atomic_write_text(a.out_claims, ct.to_csv(index=False))
            title = exp.get("title", a.paper)
            md = (f"### {title} — `{a.scale}` scale\n\nTest metrics, mean ± std over seeds (generated by "
                  f"`snakemake --config scale={a.scale}`; do not edit).\n\n{wide_markdown(long)}\n"
                  f"**Paper vs ours** (verdict rule: Welch 95% CI of the difference over seeds; see README).\n\n"
                  f"{claims_markdown(ct)}")
            atomic_write_text(a.out_md, md)
        else:
            figures(runs, exp, reported, a.scale, Path(a.out_dir))
        return 0
    if a.cmd == "summary":
        frames = [pd.read_csv(p) for p in a.claims if Path(p).exists() and Path(p).stat().st_size > 1]
        frames = [x for x in frames if not x.empty]
        ct = pd.concat(frames, ignore_index=True) if frames else claims_table([], {"paper": ""}, load_reported("/nonexistent"), a.scale)
        ct = ct.astype(object).where(pd.notna(ct), None)
        counts = ct["verdict"].value_counts().to_dict() if not ct.empty else {}
        md = (f"# Reproduction summary — `{a.scale}` scale\n\nEvery headline claim, the paper's figure and ours "
              f"(mean ± std over n seeds). Verdict: Welch 95% CI of (method − baseline) entirely on the claimed side "
              f"= reproduced; entirely on the other side = not reproduced at this scale; otherwise inconclusive. "
              f"Paper figures marked UNVERIFIED could not be read in the paper itself.\n\n"
              f"Verdicts: {', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'}\n\n{claims_markdown(ct)}")
        atomic_write_text(a.out_md, md)
        atomic_write_text(a.out_csv, ct.to_csv(index=False))
        atomic_write_text(a.out_tex, summary_tex(ct) if not ct.empty else "% no claims\n")
        runs = load_runs(a.runs)
        mx = matrix(runs)
        atomic_write_text(a.out_matrix, f"# Cross-method matrix — `{a.scale}` scale\n\n{matrix_markdown(mx)}")
        atomic_write_text(a.out_matrix_csv, mx.to_csv(index=False))
        if a.out_extra:  # cross-paper tables a paper contributes (papers/<paper>/tables.py: make_tables)
            extra = Path(a.out_extra)
            extra.mkdir(parents=True, exist_ok=True)
            for paper in sorted(discover_papers(root)):
                try:
                    mod = importlib.import_module(f"papers.{paper}.tables")
                except ModuleNotFoundError as e:
                    if e.name != f"papers.{paper}.tables":
                        raise
                    continue
                if hasattr(mod, "make_tables"):
                    mod.make_tables(a.runs, extra)
        return 0
    if a.cmd == "readmes":
        for tpath in a.tables:
            paper = Path(tpath).stem
            readme = root / "papers" / paper / "README.md"
            if readme.exists():
                new = replace_block(readme.read_text(), a.scale, Path(tpath).read_text())
                atomic_write_text(readme, new)
        top = root / "README.md"
        for name in ("summary", "matrix"):  # without their own "# ..." title line
            src = Path(f"results/{a.scale}/{name}.md")
            if top.exists() and src.exists():
                body = src.read_text().split("\n", 2)[-1]
                atomic_write_text(top, replace_block(top.read_text(), f"{name}-{a.scale}", body))
        bench = Path("results/bench/README_section.md")
        if top.exists() and bench.exists():
            atomic_write_text(top, replace_block(top.read_text(), "bench", bench.read_text()))
        if a.stamp:
            atomic_write_text(Path(a.stamp), files_digest(a.stamp_inputs) + "\n")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
