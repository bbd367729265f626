"""Per-epoch lambda plots of attention-relabelling methods (TransMix, MixPro), read from each run's
``epochs.jsonl``.

``plot_lambdas(run_dirs, out_png)`` draws, per method (mean over seeds, min-max band):

1. the attention lambda ``train_lam_attn`` (solid) and the area lambda ``train_lam_area``
   (dashed) of the relabelled batches;
2. their difference ``lam_attn - lam_area`` (how far the attention label moves from the area
   label as training proceeds);
3. if logged (MixPro), the progressive factor ``train_alpha``.

``make_figures(runs, out_dir)`` is a figure hook a paper's ``plots.py`` re-exports: one
``lambdas_<dataset>_<model>_<setting>.png`` per setting. Orientation: TransMix logs the *partner's*
(pasted box) share; MixPro logs the *own* image's share (each paper's own convention).
"""
from __future__ import annotations

import json
from pathlib import Path

KEYS = ("train_lam_attn", "train_lam_area", "train_alpha")


def _read_run(d: Path) -> tuple[str, list[dict]]:
    d = Path(d)
    rows = [json.loads(x) for x in (d / "epochs.jsonl").read_text().splitlines() if x.strip()]
    label = d.name
    mpath = d / "metrics.json"
    if mpath.exists():
        cfg = json.loads(mpath.read_text()).get("provenance", {}).get("config", {})
        label = (cfg.get("method") or {}).get("name", label)
    return label, rows


def _curves(series: list[list[dict]], key: str):
    """epochs, mean, min, max of ``key`` over runs (epochs where at least one run logged it)."""
    by_epoch: dict[int, list[float]] = {}
    for rows in series:
        for r in rows:
            v = r.get(key)
            if v is not None:
                by_epoch.setdefault(int(r["epoch"]), []).append(float(v))
    ep = sorted(by_epoch)
    return (ep, [sum(by_epoch[e]) / len(by_epoch[e]) for e in ep], [min(by_epoch[e]) for e in ep],
            [max(by_epoch[e]) for e in ep])


def plot_lambdas(run_dirs, out_png, title: str | None = None, labels: list[str] | None = None) -> Path:
    """Plot the per-epoch lambdas of ``run_dirs`` (grouped by method) into ``out_png`` (+ .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[list[dict]]] = {}
    for i, d in enumerate(run_dirs):
        label, rows = _read_run(Path(d))
        if labels is not None:
            label = labels[i]
        groups.setdefault(label, []).append(rows)
    has_alpha = any(any("train_alpha" in r for r in rows) for s in groups.values() for rows in s)
    ncol = 3 if has_alpha else 2
    fig, axes = plt.subplots(1, ncol, figsize=(3.6 * ncol, 3.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, (label, series) in enumerate(sorted(groups.items())):
        c = colors[ci % len(colors)]
        for key, ls in (("train_lam_attn", "-"), ("train_lam_area", "--")):
            ep, mean, lo, hi = _curves(series, key)
            if ep:
                axes[0].plot(ep, mean, ls, color=c, label=f"{label}: {key[6:]}")
                if len(series) > 1:
                    axes[0].fill_between(ep, lo, hi, color=c, alpha=0.12)
        diff = [[{"epoch": r["epoch"], "d": r["train_lam_attn"] - r["train_lam_area"]} for r in rows
                 if "train_lam_attn" in r and "train_lam_area" in r] for rows in series]
        ep, mean, lo, hi = _curves(diff, "d")
        if ep:
            axes[1].plot(ep, mean, color=c, label=label)
            if len(series) > 1:
                axes[1].fill_between(ep, lo, hi, color=c, alpha=0.12)
        if has_alpha:
            ep, mean, lo, hi = _curves(series, "train_alpha")
            if ep:
                axes[2].plot(ep, mean, color=c, label=label)
                if len(series) > 1:
                    axes[2].fill_between(ep, lo, hi, color=c, alpha=0.12)
    axes[0].set_title("mean lambda of relabelled batches", fontsize=9)
    axes[0].set_ylabel("lambda")
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set_title("lam_attn - lam_area", fontsize=9)
    if has_alpha:
        axes[2].set_title("progressive factor alpha (MixPro)", fontsize=9)
        axes[2].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9, y=1.03)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, bbox_inches="tight")
    fig.savefig(out_png.with_suffix(".pdf"), bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return out_png


def make_figures(runs: list[dict], out_dir) -> None:
    """Workflow hook: one lambda plot per (dataset, model, setting) with any lambda logged."""
    by_setting: dict[tuple, list[dict]] = {}
    for r in runs:
        if any(k in e for e in r.get("epochs", []) for k in KEYS):
            by_setting.setdefault((r["dataset"], r["model"], r["setting"]), []).append(r)
    for (ds, model, setting), rs in sorted(by_setting.items()):
        plot_lambdas([r["dir"] for r in rs], Path(out_dir) / f"lambdas_{ds}_{model}_{setting}.png",
                     title=f"{ds}/{model}: per-epoch lambdas (mean over seeds, band = min-max)",
                     labels=[r.get("label", r["config"]["method"]["name"]) for r in rs])
