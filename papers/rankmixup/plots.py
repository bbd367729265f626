"""Reliability diagrams (Guo et al. 2017, Fig. 1 style) from the trainer's
``metrics.json["test"]["reliability"]`` = ``{"edges", "count", "conf", "acc"}`` per equal-width bin
(see :func:`common.calibration.reliability_bins`).

Runs that differ only in the seed are pooled: per bin the counts are summed and the mean
confidence and accuracy are count-weighted, so the pooled diagram is that of all test predictions
of all seeds together. The panel title carries the mean ECE over seeds (in %, ``test.ece``).

    from papers.rankmixup.plots import reliability_diagram, figures
    reliability_diagram(paths, "figures/cpu/rankmixup/reliability.png")  # metrics.json paths or run dicts
    figures(paths, "figures/cpu/rankmixup")            # the hook the workflow calls
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from common.aggregate.runs import load_runs, matches
from common.aggregate.stats import group_by, regime

#: preferred panel order; other methods follow alphabetically
METHOD_ORDER = ("erm", "label_smoothing", "focal", "mixup", "rankmixup_mrl", "rankmixup_mndcg")
LABELS = {"erm": "CE", "label_smoothing": "LS", "focal": "FL", "mixup": "Mixup",
          "rankmixup_mrl": "RankMixup (MRL)", "rankmixup_mndcg": "RankMixup (M-NDCG)"}


def pool_reliability(bins_list: list[dict]) -> dict:
    """Pool several runs' reliability bins (same edges): summed counts, count-weighted means."""
    if not bins_list:
        raise ValueError("no reliability bins to pool")
    edges = bins_list[0]["edges"]
    for b in bins_list[1:]:
        if len(b["edges"]) != len(edges) or any(abs(x - y) > 1e-12 for x, y in zip(b["edges"], edges)):
            raise ValueError("cannot pool reliability bins with different edges")
    n_bins = len(edges) - 1
    count = [0] * n_bins
    sconf = [0.0] * n_bins
    sacc = [0.0] * n_bins
    for b in bins_list:
        for i in range(n_bins):
            c = int(b["count"][i])
            if c:
                count[i] += c
                sconf[i] += c * float(b["conf"][i])
                sacc[i] += c * float(b["acc"][i])
    return {"edges": list(edges), "count": count,
            "conf": [s / c if c else None for s, c in zip(sconf, count)],
            "acc": [s / c if c else None for s, c in zip(sacc, count)]}


def pooled_ece(bins: dict) -> float:
    """ECE of pooled bins: ``sum_b n_b / N * |acc_b - conf_b|``."""
    n = sum(bins["count"])
    if not n:
        return math.nan
    return sum(c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["acc"], bins["conf"]) if c)


def _runs(paths) -> list[dict]:
    """Run dicts of ``common.aggregate`` from metrics.json paths, or the run dicts themselves."""
    paths = list(paths)
    if paths and all(isinstance(p, dict) and "config" in p for p in paths):
        return paths
    return load_runs(paths)


def _group(paths, match: dict | None = None) -> dict:
    """{(setting label, method): [metrics dict, ...]} for classification runs with reliability bins."""
    def key(r):
        ds, model, meth = r["config"]["dataset"], r["config"]["model"], r["config"]["method"]
        params = {k: v for k, v in meth.items() if k != "name"}
        return (f"{ds.get('name')} ({ds.get('train_size') or 'full'} train), {model.get('name')}",
                meth.get("name", "?") + (" " + json.dumps(params, sort_keys=True) if params else ""))

    runs = [r for r in _runs(paths) if r["task"] == "classification" and "reliability" in r["metrics"].get("test", {})
            and matches(r, match)]
    return {k: [r["metrics"] for r in rs] for k, rs in group_by(runs, key).items()}


def _regime(groups: dict, setting: str) -> str:
    """The setting's regime named by cross-entropy's mean ECE there (``common.aggregate.stats.regime``)."""
    ce = [float(m["test"]["ece"]) for (s, meth), runs in groups.items() if s == setting and meth == "erm"
          for m in runs if "ece" in m["test"]]
    return regime(100 * sum(ce) / len(ce) if ce else None)


def _method_sort_key(method: str):
    base = method.split(" ")[0]
    return (METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER), method)


def reliability_diagram(paths, out_path, match: dict | None = None, title: str | None = None, dpi: int = 120,
                        formats=("png",)):
    """One panel per (setting, method): accuracy per confidence bin (bars), the gap to the bin's
    mean confidence (red), the diagonal of perfect calibration, and the share of test samples per
    bin (grey line, right axis). Returns the written path, or ``None`` when no run has bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _group(paths, match)
    if not groups:
        return None
    settings = sorted({s for s, _ in groups})
    methods = sorted({m for _, m in groups}, key=_method_sort_key)
    nr, nc = len(settings), len(methods)
    fig, axes = plt.subplots(nr, nc, figsize=(2.6 * nc + 0.4, 2.7 * nr + 0.6), squeeze=False, sharex=True, sharey=True)
    for r, s in enumerate(settings):
        for c, meth in enumerate(methods):
            ax = axes[r][c]
            runs = groups.get((s, meth))
            if not runs:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=7, color="0.5")
                continue
            ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.4")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            bins = pool_reliability([m["test"]["reliability"] for m in runs])
            edges = bins["edges"]
            lo, w = edges[:-1], [b - a for a, b in zip(edges[:-1], edges[1:])]
            acc = [a if a is not None else 0.0 for a in bins["acc"]]
            conf = [f if f is not None else 0.0 for f in bins["conf"]]
            has = [cnt > 0 for cnt in bins["count"]]
            ax.bar(lo, acc, width=w, align="edge", color="#0072B2", edgecolor="k", lw=0.4, label="accuracy")
            gap_bottom = [min(a, f) for a, f in zip(acc, conf)]
            gap_h = [abs(f - a) if h else 0.0 for a, f, h in zip(acc, conf, has)]
            ax.bar(lo, gap_h, bottom=gap_bottom, width=w, align="edge", color="#D55E00", alpha=0.35,
                   edgecolor="#D55E00", lw=0.4, label="gap to confidence")
            n = sum(bins["count"])
            share = ax.twinx()
            share.plot([a + ww / 2 for a, ww in zip(lo, w)], [cnt / n for cnt in bins["count"]], color="0.3",
                       lw=0.9, marker=".", ms=3)
            share.set_ylim(0, 1)
            share.set_yticks([] if c < nc - 1 else [0, 0.5, 1])
            if c == nc - 1:
                share.set_ylabel("share of samples", fontsize=7)
            share.tick_params(labelsize=6)
            eces = [100.0 * float(m["test"]["ece"]) for m in runs if "ece" in m["test"]]
            ece_txt = f"ECE {sum(eces) / len(eces):.2f}%" if eces else ""
            base = meth.split(" ")[0]
            ax.set_title(f"{LABELS.get(base, base)}{meth[len(base):]}\n{ece_txt} (n={len(runs)})", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{s}\n{_regime(groups, s)}\naccuracy", fontsize=7)
            if r == nr - 1:
                ax.set_xlabel("confidence", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.suptitle(title or "Reliability diagrams (test set, before temperature scaling; seeds pooled)", fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    for ext in formats:
        if out_path.with_suffix(f".{ext}") != out_path:
            fig.savefig(out_path.with_suffix(f".{ext}"), dpi=dpi, metadata={"CreationDate": None} if ext == "pdf" else None)
    plt.close(fig)
    return out_path


def figures(paths, out_dir) -> list[Path]:
    """``<out_dir>/reliability.png`` from metrics.json paths (all settings present)."""
    out = reliability_diagram(paths, Path(out_dir) / "reliability.png")
    return [out] if out is not None else []


def make_figures(runs, out_dir) -> list[Path]:
    """The hook ``common.aggregate figures`` calls with its run dicts: ``reliability.png`` + ``.pdf``."""
    out = reliability_diagram(runs, Path(out_dir) / "reliability.png", formats=("png", "pdf"))
    return [out, out.with_suffix(".pdf")] if out is not None else []
