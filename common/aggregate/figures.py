"""Figures of one paper at one scale: the headline metric per setting, each claim next to the paper's
figures, learning curves, and the paper's own plots (``papers/<paper>/plots.py: make_figures``)."""
from __future__ import annotations

import importlib
import math
import textwrap
from pathlib import Path

import pandas as pd

from .render import header, statistic_name, where
from .stats import PERCENT, claims_table, long_table, shown

OUTCOME_COLORS = {"reproduced": "#2a9d8f", "not reproduced at this scale": "#c44e52", "inconclusive": "#4c72b0"}


def style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9})
    return plt


def save_fig(fig, out_dir: Path, name: str) -> list[Path]:
    """``<name>.png`` and a reproducible ``<name>.pdf`` (no creation date) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def bars(long: pd.DataFrame, paper: str, task: str, scale: str, out_dir: Path) -> None:
    plt = style()
    metric = "top1" if task == "classification" else "rmse"
    for (ds, model, setting), g in long[long["metric"] == metric].groupby(["dataset", "model", "setting"]):
        fig, ax = plt.subplots(figsize=(max(3.5, 0.8 * len(g) + 1.5), 3.2))
        ax.bar(range(len(g)), g["mean"], yerr=g["std"].fillna(0), capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(g)), g["method"], rotation=30, ha="right")
        ax.set_ylabel(f"test {metric} (mean ± std over seeds)")
        hi = (g["mean"] + g["std"].fillna(0)).max()
        ax.set_ylim(0, hi * 1.08 + 1e-9)  # a bar's length is its value
        ax.set_title(f"{paper} — {ds}/{model} ({scale}, setting {setting})")
        save_fig(fig, out_dir, f"bars_{ds}_{model}_{setting}")


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _values(cell) -> list[float]:
    return [float(v) for v in str(cell).split()] if cell is not None and not pd.isna(cell) and str(cell).strip() else []


def claim_figure(r, scale: str):
    """One claim (a claims_table row): the paper's pair (left) and ours (right) as points, our seeds as dots
    and our means with their std; the claim text as the figure title above both panels."""
    plt = style()
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 3.3), layout="constrained")
    m = r["metric"]
    rep_m, rep_b = _num(r.get("reported_method")), _num(r.get("reported_baseline"))
    if not math.isnan(rep_m):
        axes[0].plot([1], [rep_m], "D", color="#dd8452", ms=7)
        if not math.isnan(rep_b):
            axes[0].plot([0], [rep_b], "D", color="#999999", ms=7)
        for x, v in ((0, rep_b), (1, rep_m)):
            if not math.isnan(v):
                axes[0].annotate(f"{v:g}", (x, v), textcoords="offset points", xytext=(8, 0), va="center", fontsize=7)
        axes[0].set_xticks([0, 1], ["baseline", "method"])
        axes[0].set_xlim(-0.6, 1.6)
        lab = "" if r.get("reported_verified", True) in (True, "True", None) else " [UNVERIFIED]"
        where = ", ".join(str(x) for x in (r.get("reported_dataset"),) if x and not pd.isna(x))
        axes[0].set_title(f"paper: {r['reported_metric']}{lab}" + (f"\n{where}" if where else ""), fontsize=8)
        axes[0].margins(y=0.3)
    else:
        axes[0].text(0.5, 0.5, "no reported figure", ha="center", va="center")
        axes[0].set_axis_off()
    ax = axes[1]
    for x, arm, color in ((0, "baseline", "#999999"), (1, "method", "#4c72b0")):
        vals = [shown(m, v) for v in _values(r.get(f"{arm}_values"))]
        if vals:
            jitter = [x + 0.12 * (i - (len(vals) - 1) / 2) / max(1, len(vals) - 1) for i in range(len(vals))]
            ax.plot(jitter, vals, "o", color=color, alpha=0.5, ms=4, label="seeds" if x == 1 else None)
        mean, std = shown(m, _num(r[f"{arm}_mean"])), shown(m, _num(r.get(f"{arm}_std")))
        ax.errorbar([x + 0.25], [mean], yerr=[0 if math.isnan(std) else std], fmt="s", color=color, capsize=3,
                    label="mean ± std" if x == 1 else None)
    ax.set_xticks([0, 1], [r["baseline"], r["method"]])
    ax.set_xlim(-0.6, 1.6)
    ax.margins(y=0.2)
    ax.set_ylabel(header(m), fontsize=8)
    ax.legend(fontsize=6, loc="best")
    ax.set_title(f"ours ({scale}, {statistic_name(r)}): {m}, {r['dataset']}\n{r.get('outcome') or r['verdict']}",
                 fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(str(r["text"]), 90)), fontsize=9)
    return fig


def claim_figures(ct: pd.DataFrame, scale: str, out_dir: Path) -> None:
    """One :func:`claim_figure` per claims_table row."""
    for _, r in ct.iterrows():
        save_fig(claim_figure(r, scale), out_dir, f"claim_{r['claim']}_{r['setting']}")


def unit_family(metric: str) -> str:
    """Claims whose differences share an axis: percentage points (accuracies, calibration errors in percent,
    MAPE) or the metric's own units."""
    return "percentage points" if metric in PERCENT or metric.startswith(("top", "occ_")) or metric == "mape" \
        else metric


def _forest_rows(ax, rows: list) -> None:
    y, ticks, labels, heads, prev = 0, [], [], [], None
    for r in rows:
        if r["paper"] != prev:
            ticks.append(y)
            labels.append(r["paper"])
            heads.append(len(labels) - 1)
            y -= 1
            prev = r["paper"]
        m = r["metric"]
        sign = 1 if r["higher_is_better"] in (True, "True") else -1
        lo, hi = sorted((sign * shown(m, _num(r["ci_low"])), sign * shown(m, _num(r["ci_high"]))))
        mde = shown(m, _num(r.get("mde")))
        if not math.isnan(mde):
            ax.fill_between([-mde, mde], y - 0.4, y + 0.4, color="0.85", lw=0)
        color = OUTCOME_COLORS.get(str(r.get("outcome") or r["verdict"]).split(" —")[0].split(" (")[0], "#4c72b0")
        if not math.isnan(lo):
            ax.plot([lo, hi], [y, y], color=color, lw=1.5)
        ax.plot([sign * shown(m, _num(r["delta"]))], [y], "o", color=color, ms=5)
        eff = _num(r.get("reported_effect"))
        if not math.isnan(eff):
            ax.plot([sign * shown(m, eff)], [y + 0.25], "D", color="#dd8452", ms=4)
        ticks.append(y)
        labels.append(f"{r['claim']} ({where(r)}, {header(m)})")
        y -= 1
    ax.axvline(0, color="k", lw=0.7)
    ax.set_yticks(ticks, labels, fontsize=6)
    for i in heads:
        ax.get_yticklabels()[i].set_fontweight("bold")
        ax.get_yticklabels()[i].set_fontsize(8)
    ax.set_ylim(y + 0.5, 0.8)


def forest_plot(ct: pd.DataFrame, scale: str, out_png: Path):
    """Every claim in one figure, grouped by paper, one panel per unit (:func:`unit_family`): our difference
    (method - baseline, signed so that right = the claimed direction) with its 95% CI, the paper's difference
    beside it, and the difference the seeds could detect with 80% power shaded around zero."""
    plt = style()
    rows = [r for _, r in ct.iterrows()]
    families: dict[str, list] = {}
    for r in rows:
        families.setdefault(unit_family(r["metric"]), []).append(r)
    sizes = [len(rs) + len({r["paper"] for r in rs}) for rs in families.values()] or [1]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(8.0, 0.3 * sum(sizes) + 1.2 * len(sizes) + 0.6),
                             height_ratios=sizes, layout="constrained", squeeze=False)
    for ax, (family, rs) in zip(axes[:, 0], families.items()):
        _forest_rows(ax, rs)
        ax.set_xlabel(f"method − baseline ({family}); right = the claimed direction", fontsize=8)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=c, marker="o", label=f"ours: {k}") for k, c in OUTCOME_COLORS.items()]
    handles += [Line2D([], [], color="#dd8452", marker="D", ls="", label="paper's difference"),
                Patch(color="0.85", label="not detectable at 80% power (± detectable effect)")]
    fig.legend(handles=handles, fontsize=6, loc="outside lower center", ncols=3)
    fig.suptitle(f"Every claim at the `{scale}` scale: our difference with its 95% CI against the paper's", fontsize=9)
    out_png = Path(out_png)
    return save_fig(fig, out_png.parent, out_png.stem)


def curves(runs: list[dict], paper: str, task: str, scale: str, out_dir: Path) -> None:
    """Learning curves per setting (mean over seeds, band = min-max)."""
    plt = style()
    key = "test_top1" if task == "classification" else "test_rmse"
    for setting in sorted({r["setting"] for r in runs}):
        rs = [r for r in runs if r["setting"] == setting and r["epochs"]]
        if not rs:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for label in sorted({r["label"] for r in rs}):
            cs = [pd.Series({e["epoch"]: e.get(key) for e in r["epochs"] if key in e}) for r in rs if r["label"] == label]
            df = pd.concat(cs, axis=1)
            ax.plot(df.index, df.mean(axis=1), label=label)
            if df.shape[1] > 1:
                ax.fill_between(df.index, df.min(axis=1), df.max(axis=1), alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.legend(fontsize=7)
        ax.set_title(f"{paper} — {rs[0]['dataset']}/{rs[0]['model']} ({scale})")
        save_fig(fig, out_dir, f"curves_{rs[0]['dataset']}_{rs[0]['model']}_{setting}")


def paper_hook(paper: str):
    """``papers.<paper>.plots.make_figures`` or None (a missing dependency of plots.py is an error)."""
    try:
        mod = importlib.import_module(f"papers.{paper}.plots")
    except ModuleNotFoundError as e:
        if e.name != f"papers.{paper}.plots":
            raise
        return None
    return getattr(mod, "make_figures", None)


def figures(runs: list[dict], exp: dict, reported: pd.DataFrame, scale: str, out_dir: Path) -> None:
    """Every figure of one paper at one scale into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    task = runs[0]["task"] if runs else "classification"
    bars(long_table(runs, exp["paper"]), exp["paper"], task, scale, out_dir)
    claim_figures(claims_table(runs, exp, reported, scale), scale, out_dir)
    curves(runs, exp["paper"], task, scale, out_dir)
    hook = paper_hook(exp["paper"])
    if hook is not None:
        hook(runs, out_dir)
