"""Figures of one paper at one scale (the headline metric per setting, each claim's difference with its
intervals, learning curves, and the paper's own plots from ``papers/<paper>/plots.py: make_figures``) and the
forest plot of every claim of a scale.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), and every
colour-coded mark also has its own marker shape, so no figure relies on colour alone.
"""
from __future__ import annotations

import importlib
import math
import textwrap
from pathlib import Path

import pandas as pd

from .claims import NOT_EVALUATED, STATISTICS, claim_sign, claims_table
from .render import header, method_order, regime_cell, row_name
from .stats import PERCENT, group_by, linked_sets, long_table, points, regime, setting_labels, shown, shown_settings

#: verdict word -> (colour, marker) in the forest plot and the per-claim figures
OUTCOME_STYLE = {
    "reproduced": ("#009E73", "o"),
    "contradicted": ("#D55E00", "X"),
    "inconsistent with the paper's effect size": ("#E69F00", "s"),
    "underpowered": ("#0072B2", "^"),
    "inconclusive, no paper figure": ("#56B4E9", "v"),
    "not testable": ("#999999", "."),
}
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]
PAPER_STYLE = {"color": "#CC79A7", "marker": "D", "ls": "", "ms": 6, "mfc": "none", "mew": 1.5}
ARM_STYLE = {"baseline": ("#56B4E9", "o"), "method": ("#E69F00", "s")}
MIN_CURVE_POINTS = 5  # a learning curve needs at least this many evaluated epochs


def style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9,
                         "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO)})
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


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _values(cell) -> list[float]:
    return [float(v) for v in str(cell).split()] if cell is not None and not pd.isna(cell) and str(cell).strip() else []


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width))


# --------------------------------------------------------------------------- per setting
def _ce_regime(long: pd.DataFrame, setting: str) -> str:
    """The setting's regime by cross-entropy's ECE (:func:`.stats.regime`), or "" without a CE run."""
    ce = long[(long["setting"] == setting) & (long["method"] == "erm") & (long["metric"] == "ece")]
    return regime(100 * float(ce["mean"].iloc[0])) if len(ce) else ""


def bars(long: pd.DataFrame, paper: str, task: str, scale: str, out_dir: Path, first=()) -> None:
    """The headline metric (top-1 or RMSE) per method and shown setting: mean ± SD over seeds (the number of seeds
    in the title), the baselines first."""
    plt = style()
    metric = "top1" if task == "classification" else "rmse"
    for (ds, model, setting), g in long[long["metric"] == metric].groupby(["dataset", "model", "setting"]):
        g = g.set_index("method").loc[method_order(list(g["method"]), first)].reset_index()
        fig, ax = plt.subplots(figsize=(max(3.8, 0.9 * len(g) + 1.6), 3.4))
        x = range(len(g))
        ax.bar(x, g["mean"], yerr=g["std"].fillna(0), capsize=3, color="#56B4E9", edgecolor="k", lw=0.5)
        ax.set_xticks(list(x), g["method"], rotation=25, ha="right")
        ax.set_ylabel(f"test {metric} (mean ± SD over seeds)")
        ax.set_ylim(0, (g["mean"] + g["std"].fillna(0)).max() * 1.1 + 1e-9)  # a bar's length is its value
        label = ", ".join(x for x in (g["setting_label"].iloc[0], _ce_regime(long, setting)) if x)
        ax.set_title(f"{paper}: {ds}/{model} ({scale})" + (f"\n{label}" if label else "")
                     + f"\nn = {' / '.join(str(int(n)) for n in g['n_seeds'])} seeds", fontsize=8)
        save_fig(fig, out_dir, f"bars_{ds}_{model}_{setting}")


def curves(runs: list[dict], paper: str, task: str, scale: str, out_dir: Path, linked=(), first=()) -> None:
    """Test metric per evaluated epoch per shown setting (mean over seeds with markers, band = min-max); only
    settings whose runs were evaluated at ``MIN_CURVE_POINTS`` epochs or more (fewer points are no curve)."""
    plt = style()
    key = "test_top1" if task == "classification" else "test_rmse"
    groups = shown_settings([r for r in runs if r["epochs"]], linked)
    labels = setting_labels(groups, linked)
    for setting, rs in sorted(groups.items()):
        series = {lab: pd.concat([pd.Series({e["epoch"]: e[key] for e in r["epochs"] if e.get(key) is not None})
                                  for r in g], axis=1)
                  for lab, g in group_by(rs, lambda r: r["label"]).items()}
        if min(len(df.dropna(how="all")) for df in series.values()) < MIN_CURVE_POINTS:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
        markers = "osD^vXP*"
        for i, lab in enumerate(method_order(list(series), first)):
            df = series[lab]
            every = max(1, len(df) // 10)
            ax.plot(df.index, df.mean(axis=1), marker=markers[i % len(markers)], ms=4, markevery=every, lw=1.2,
                    label=f"{lab} (n={df.shape[1]})")
            if df.shape[1] > 1:
                ax.fill_between(df.index, df.min(axis=1), df.max(axis=1), alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " ") + " (mean over seeds; band: min-max)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        title = f"{paper}: {rs[0]['dataset']}/{rs[0]['model']} ({scale})"
        ax.set_title(title + (f"\n{labels[setting]}" if labels[setting] else ""), fontsize=8)
        save_fig(fig, out_dir, f"curves_{rs[0]['dataset']}_{rs[0]['model']}_{setting}")


# --------------------------------------------------------------------------- per claim
def _arm_points(ax, r, paired: bool) -> None:
    """Every seed of both arms (baseline left, method right), the arms' means, and a line per pair."""
    m = r["metric"]
    vals = {arm: [shown(m, v) for v in _values(r.get(f"{arm}_values"))] for arm in ("baseline", "method")}
    seeds = {arm: str(r.get(f"{arm}_seeds") or "").split() for arm in ("baseline", "method")}
    if paired:
        by_seed = {arm: dict(zip(seeds[arm], vals[arm])) for arm in vals}
        for s in sorted(set(by_seed["baseline"]) & set(by_seed["method"]), key=int):
            ax.plot([0, 1], [by_seed["baseline"][s], by_seed["method"][s]], color="0.6", lw=0.8, zorder=1)
    for x, arm in enumerate(("baseline", "method")):
        color, marker = ARM_STYLE[arm]
        ax.plot([x] * len(vals[arm]), vals[arm], marker, color=color, mec="k", mew=0.4, ms=5, ls="", zorder=2,
                label=f"{r[arm]}: one seed each")
        mean = shown(m, _num(r[f"{arm}_mean"]))
        ax.plot([x - 0.18, x + 0.18], [mean, mean], color="k", lw=2, zorder=3, label="arm mean" if x else None)
    ax.set_xticks([0, 1], [f"{r['baseline']}\n(baseline)", f"{r['method']}\n(method)"])
    ax.set_xlim(-0.5, 1.5)
    ax.margins(y=0.15)
    stat = r.get("statistic") or "last"
    ax.set_ylabel(header(m) + ("" if stat == "last" else f", {STATISTICS.get(stat, stat)}"), fontsize=8)
    ax.set_title("every seed" + (" (lines join the seeds of one split)" if paired else ""), fontsize=8)


def _difference(ax, r) -> None:
    """The difference method - baseline: its 95% interval (thick), the family-adjusted interval the verdict
    reads (thin), the paper's difference (open diamond) and zero."""
    m = r["metric"]
    d, lo95, hi95, lo, hi = (shown(m, _num(r.get(k))) for k in ("delta", "ci95_low", "ci95_high", "ci_low", "ci_high"))
    color, marker = OUTCOME_STYLE.get(str(r.get("outcome")), ("#999999", "."))
    ax.axhline(0, color="k", lw=0.8)
    level = 100 * _num(r.get("level_adj"))
    if not math.isnan(lo):
        ax.plot([0, 0], [lo, hi], color=color, lw=1.2, label=f"{level:.4g}% interval (adjusted; the verdict's)")
        ax.plot([0, 0], [lo95, hi95], color=color, lw=4, alpha=0.6, label="95% interval")
    ax.plot([0], [d], marker, color=color, mec="k", ms=8, ls="", label="our difference")
    eff = shown(m, _num(r.get("reported_effect")))
    if not math.isnan(eff):
        unverified = str(r.get("reported_verified")) in ("False", "false")
        ax.plot([0.25], [eff], **PAPER_STYLE, label="paper's difference" + (" (UNVERIFIED)" if unverified else ""))
    ax.set_xlim(-0.6, 0.8)
    ax.set_xticks([])
    ax.margins(y=0.15)
    claimed = "< 0" if r["direction"] == "lower" else "> 0"
    ax.set_ylabel(f"{r['method']} − {r['baseline']} ({header(m)})\nclaimed: {claimed}", fontsize=8)
    ax.set_title(_wrap(f"verdict: {r['verdict']}", 42), fontsize=8)


def claim_figure(r, scale: str):
    """One claims_table row: every seed of both arms (paired seeds joined) beside the difference with its
    intervals and the paper's difference; the claim text and our regime as the title, legends below the panels."""
    plt = style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 4.0), width_ratios=[1.3, 1], layout="constrained")
    _arm_points(left, r, r.get("test") == "paired t")
    _difference(right, r)
    for ax in (left, right):
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=1, frameon=False)
    test = f"{r['test']}, n = {int(_num(r['n']))}" + (" pairs" if r.get("test") == "paired t" else " (smaller arm)")
    fig.suptitle(_wrap(r["text"], 100) + "\n" + _wrap(f"ours ({scale}): {regime_cell(r)}; {test}", 110), fontsize=8)
    return fig


def claim_figures(ct: pd.DataFrame, scale: str, out_dir: Path) -> None:
    """One :func:`claim_figure` per tested claims_table row."""
    for _, r in ct[ct["outcome"] != NOT_EVALUATED].iterrows():
        save_fig(claim_figure(r, scale), out_dir, f"claim_{r['claim']}_{r['setting']}")


# --------------------------------------------------------------------------- forest
def metric_family(r) -> tuple[int, str, str]:
    """The panel a claim row goes to, as (order, title, unit): differences that share units and scale
    (accuracies; calibration errors; MAPE; RMSE per dataset)."""
    m = r["metric"]
    if m in PERCENT:
        return 1, "calibration error (ECE family)", "percentage points"
    if m == "mape":
        return 2, "MAPE", "percentage points"
    if points(m):
        return 0, "accuracy (top-1, occlusion)", "percentage points"
    return 3, f"{m.upper()} on {r['dataset']}", m.upper()


def forest_verdict(r) -> str:
    """The verdict beside a forest row: the word, whether the paper figure it was compared with is UNVERIFIED,
    and whether the row is secondary."""
    text = str(r["verdict"]).replace(" (against an UNVERIFIED paper figure)", " (vs an UNVERIFIED figure)")
    return text + ("; secondary" if str(r.get("role", "")).startswith("secondary") else "")


def _forest_rows(ax, rows: list, ct: pd.DataFrame) -> None:
    from matplotlib.transforms import blended_transform_factory

    text_at = blended_transform_factory(ax.transAxes, ax.transData)
    y, ticks, labels, heads, prev = 0, [], [], [], None
    for r in rows:
        if r["paper"] != prev:
            ticks.append(y)
            labels.append(r["paper"])
            heads.append(len(labels) - 1)
            y -= 1
            prev = r["paper"]
        m, s = r["metric"], claim_sign(r["direction"])
        color, marker = OUTCOME_STYLE.get(str(r["outcome"]), ("#999999", "."))
        lo, hi = sorted((s * shown(m, _num(r["ci_low"])), s * shown(m, _num(r["ci_high"]))))
        lo95, hi95 = sorted((s * shown(m, _num(r["ci95_low"])), s * shown(m, _num(r["ci95_high"]))))
        if not math.isnan(lo):
            ax.plot([lo, hi], [y, y], color=color, lw=1.0)
            ax.plot([lo95, hi95], [y, y], color=color, lw=3.5, alpha=0.6)
        ax.plot([s * shown(m, _num(r["delta"]))], [y], marker, color=color, mec="k", mew=0.5, ms=6, ls="")
        eff = _num(r.get("reported_effect"))
        if not math.isnan(eff):
            ax.plot([s * shown(m, eff)], [y], **{**PAPER_STYLE, "ms": 5})
        ax.text(1.01, y, forest_verdict(r), transform=text_at, fontsize=7, va="center", color=color, clip_on=False)
        ticks.append(y)
        labels.append(row_name(r, ct))
        y -= 1
    ax.axvline(0, color="k", lw=0.7)
    ax.set_yticks(ticks, labels, fontsize=7)
    for i in heads:
        ax.get_yticklabels()[i].set_fontweight("bold")
        ax.get_yticklabels()[i].set_fontsize(8)
    ax.set_ylim(y + 0.5, 0.8)


def forest_plot(ct: pd.DataFrame, scale: str, out_png: Path):
    """Every tested claim row, one panel per metric family (:func:`metric_family`), grouped by paper: our
    difference turned so that right = the claimed direction, with its 95% interval (thick) and the family-adjusted
    interval the verdict reads (thin), the paper's difference (open diamond) and the verdict beside each row."""
    plt = style()
    tested = ct[ct["outcome"] != NOT_EVALUATED].reset_index(drop=True) if not ct.empty else ct
    families = group_by([r for _, r in tested.iterrows()], metric_family)
    families = {k: sorted(v, key=lambda r: r["paper"]) for k, v in sorted(families.items())}
    sizes = [len(rs) + len({r["paper"] for r in rs}) for rs in families.values()] or [1]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(12.5, 0.25 * sum(sizes) + 0.9 * len(sizes) + 1.4),
                             height_ratios=sizes, layout="constrained", squeeze=False)
    for ax, ((_, title, unit), rs) in zip(axes[:, 0], families.items()):
        _forest_rows(ax, rs, tested)
        ax.set_title(title, fontsize=9, loc="left", fontweight="bold")
        ax.set_xlabel(f"improvement in the claimed direction ({unit}): right of 0 = as claimed", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker=mk, mec="k", mew=0.5, ls="", label=w) for w, (c, mk) in OUTCOME_STYLE.items()
               if w in set(tested["outcome"])]
    handles += [Line2D([], [], **PAPER_STYLE, label="paper's difference"),
                Line2D([], [], color="0.4", lw=3.5, alpha=0.6, label="95% interval"),
                Line2D([], [], color="0.4", lw=1.0, label="adjusted interval (Bonferroni per paper; the verdict's)")]
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=3)
    fig.suptitle(f"Every claim at the `{scale}` scale: our difference in the claimed direction, its intervals and the "
                 f"paper's difference", fontsize=9)
    out_png = Path(out_png)
    return save_fig(fig, out_png.parent, out_png.stem)


# --------------------------------------------------------------------------- per paper
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
    linked = linked_sets(exp)
    first = [c["baseline"] for c in exp.get("claims") or []]
    bars(long_table(runs, exp["paper"], linked), exp["paper"], task, scale, out_dir, first)
    claim_figures(claims_table(runs, exp, reported, scale), scale, out_dir)
    curves(runs, exp["paper"], task, scale, out_dir, linked, first)
    hook = paper_hook(exp["paper"])
    if hook is not None:
        hook(runs, out_dir)
