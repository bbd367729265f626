"""Figures of one paper at one scale: the headline metric per setting, each claim next to the paper's
figures, learning curves, and the paper's own plots (``papers/<paper>/plots.py: make_figures``)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from .stats import claims_table, long_table


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
        lo = (g["mean"] - g["std"].fillna(0)).min()
        hi = (g["mean"] + g["std"].fillna(0)).max()
        ax.set_ylim(max(0, lo - (hi - lo) * 0.5 - 1e-9) if task == "classification" else 0, hi + (hi - lo) * 0.2 + 1e-9)
        ax.set_title(f"{paper} — {ds}/{model} ({scale}, setting {setting})")
        save_fig(fig, out_dir, f"bars_{ds}_{model}_{setting}")


def claim_figures(ct: pd.DataFrame, scale: str, out_dir: Path) -> None:
    """The paper's pair next to ours, on separate axes, one figure per claims_table row."""
    plt = style()
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
