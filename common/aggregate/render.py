"""Rendering: Markdown and LaTeX tables of the statistics, and README blocks between generated markers.

Units: calibration errors are fractions in the CSVs and percent in Markdown/LaTeX (``stats.PERCENT``).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from . import templates
from .stats import MAIN, PERCENT, STATISTICS, shown


def fmt(mean, std, n=None, digits=2, missing="–") -> str:
    """``mean ± std`` (``mean`` alone when std is missing; ``missing`` when mean is)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return missing
    s = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std:.{digits}f}"
    return s


def digits(metric: str) -> int:
    return 4 if metric in ("nll", "ts_nll", "rmse", "mse", "mae") else 2


def header(metric: str) -> str:
    return f"{metric} (%)" if metric in PERCENT else metric


def wide_markdown(long: pd.DataFrame) -> str:
    """One Markdown table per setting: methods as rows, the headline metrics as columns."""
    if long.empty:
        return "_no runs_\n"
    parts = []
    for (ds, model, setting), g in long.groupby(["dataset", "model", "setting"], sort=True):
        metrics = [m for m in MAIN["classification"] + MAIN["regression"] if m in set(g["metric"])]
        head = ["method", "n"] + [header(m) for m in metrics]
        lines = [f"**{ds} / {model}** (setting `{setting}`)\n", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for label, gm in g.groupby("method", sort=True):
            row = [f"`{label}`", str(int(gm["n_seeds"].max()))]
            for m in metrics:
                x = gm[gm["metric"] == m]
                row.append(fmt(shown(m, x["mean"].iloc[0]), shown(m, x["std"].iloc[0]), digits=digits(m))
                           if len(x) else "–")
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def reported_cell(r) -> str:
    if pd.isna(r.get("reported_method")) if "reported_method" in r else True:
        return "–"
    base = r.get("reported_baseline")
    s = f"{r['reported_method']:g}"
    if base is not None and not pd.isna(base):
        s += f" vs {base:g}"
    where = ", ".join(str(x) for x in (r["reported_metric"], r.get("reported_dataset")) if x and not pd.isna(x))
    s += f" ({where})"
    if str(r.get("reported_source", "")).startswith("claim text"):
        s += ", from the claim text"
    if not r.get("reported_verified", True):
        s = "UNVERIFIED: " + s
    return s


def claim_display(r) -> tuple[str, int, dict, str]:
    """(metric, digits, displayed values, "[lo, hi]" or "") of one claims_table row."""
    m, d = r["metric"], digits(r["metric"])
    v = {k: shown(m, r.get(k)) for k in ("method_mean", "method_std", "baseline_mean", "baseline_std", "delta",
                                         "ci_low", "ci_high", "mde")}
    ci = f"[{v['ci_low']:.{d}f}, {v['ci_high']:.{d}f}]" if v["ci_low"] is not None and not pd.isna(v["ci_low"]) else ""
    return m, d, v, ci


def statistic_name(r) -> str:
    stat = r.get("statistic") or "last"
    return STATISTICS.get(stat, stat)


def detectable_cell(r, mde, d: int) -> str:
    """``≥ MDE`` and, when the paper's effect is known, the seeds per arm that would resolve it."""
    if mde is None or pd.isna(mde):
        return "–"
    s = f"≥ {mde:.{d}f}"
    eff, n = r.get("reported_effect"), r.get("seeds_needed")
    if eff is not None and not pd.isna(eff):
        need = f"{int(n)} seeds/arm" if n is not None and not pd.isna(n) else "> 1000 seeds/arm"
        s += f"; paper's {abs(shown(r['metric'], float(eff))):.{d}f} needs {need}"
    return s


def where(r) -> str:
    """``dataset/model``, plus what tells this setting apart from the claim's other settings."""
    regime = r.get("regime")
    return f"{r['dataset']}/{r['model']}" + (f", {regime}" if isinstance(regime, str) and regime else "")


def claims_markdown(ct: pd.DataFrame) -> str:
    """One row per claim and setting: the paper's figures, ours (with the statistic used), the difference
    with its interval, the smallest difference the seeds could detect, and the verdict with its reason."""
    if ct.empty:
        return "_no claims evaluated at this scale_\n"
    lines = ["| claim | paper reports | setting (ours) | statistic | ours: method | ours: baseline | delta [95% CI] | "
             "detectable (80% power) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in ct.iterrows():
        m, d, v, ci = claim_display(r)
        det = detectable_cell(r, v["mde"], d)
        lines.append(
            f"| {r['text']} | {reported_cell(r)} | {where(r)} ({header(m)}) | {statistic_name(r)} | "
            f"`{r['method']}` {fmt(v['method_mean'], v['method_std'], digits=d)} (n={r['n_method']}) | "
            f"`{r['baseline']}` {fmt(v['baseline_mean'], v['baseline_std'], digits=d)} (n={r['n_baseline']}) | "
            f"{v['delta']:+.{d}f} {ci or '[–]'} | {det} | **{r['verdict']}** |")
    return "\n".join(lines) + "\n"


def summary_tex(ct: pd.DataFrame) -> str:
    lines = [r"\begin{tabular}{lllllll}", r"\toprule",
             r"Claim & Setting & Method & Baseline & $\Delta$ [95\% CI] & Detectable & Verdict \\", r"\midrule"]
    esc = lambda s: re.sub(r"([_%&#$])", r"\\\1", str(s))  # noqa: E731
    for _, r in ct.iterrows():
        m, d, v, ci = claim_display(r)
        pm = "$\\pm$"
        m_s = fmt(v["method_mean"], v["method_std"], digits=d).replace("±", pm)
        b_s = fmt(v["baseline_mean"], v["baseline_std"], digits=d).replace("±", pm)
        row = [f"{esc(r['text'])}", f"{esc(where(r))} ({esc(header(m))})", m_s, b_s,
               f"{v['delta']:+.{d}f} {ci}",
               f"$\\geq$ {v['mde']:.{d}f}" if v["mde"] is not None and not pd.isna(v["mde"]) else "--",
               esc(r["verdict"]).replace("≥", "$\\geq$").replace("—", "---")]
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def time_cell(r, vs_reference: bool) -> str:
    """The matrix's time cell: the ratio to the setting's reference method (or seconds without one), in
    one machine's units with the ratio as measured in brackets where that differs, or marked † where
    the runs were timed on different machines and cannot be put in one machine's units."""
    basis = r.get("time_basis", "same machine")
    if not vs_reference:
        return f"{r['train_time_sec']:.0f} s" + ("†" if basis == "mixed machines" else "")
    if basis == "mixed machines":
        return f"{r['time_vs_reference_raw']:.2f}x†"
    cell = f"{r['time_vs_reference']:.2f}x"
    raw = f"{r['time_vs_reference_raw']:.2f}x"
    return cell + (f" (as measured {raw})" if basis == "one-machine units" and raw != cell else "")


def matrix_markdown(mx: pd.DataFrame) -> str:
    if mx.empty:
        return "_no classification runs_\n"
    out = []
    for (ds, model, setting), g in mx.groupby(["dataset", "model", "setting"]):
        ref, clock = g["time_reference"].iloc[0], g["time_clock"].iloc[0]
        out.append(f"**{ds} / {model}** (setting `{setting}`)\n")
        what = templates.TIME_CLOCK_NAMES[clock]
        tcol = f"train time vs `{ref}` ({what})" if ref else f"train time ({what})"
        out.append("| method | n | top-1 | ECE (%) | AdaECE (%) | ECE after TS (%) | AdaECE after TS (%) | "
                   f"occlusion (mean top-1) | {tcol} |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for _, r in g.iterrows():
            pct = [fmt(shown(m, r.get(m)), shown(m, r.get(m + "_std"))) for m in ("ece", "adaece", "ts_ece", "ts_adaece")]
            out.append(f"| `{r['method']}` | {r['n']} | {fmt(r.get('top1'), r.get('top1_std'))} | "
                       f"{' | '.join(pct)} | {fmt(r.get('occ_mean'), None)} | {time_cell(r, bool(ref))} |")
        out.append("")
    out += [note for c, note in templates.TIME_CLOCK_NOTES.items() if (mx["time_clock"] == c).any()]
    units = sorted({u for u in mx.get("time_unit", pd.Series(dtype=str)) if u})
    out += [note.format(unit=" and ".join(units)) for b, note in templates.TIME_BASIS_NOTES.items()
            if (mx.get("time_basis", pd.Series(dtype=str)) == b).any()]
    out.append(templates.MATRIX_FOOTER)
    return "\n".join(out) + "\n"


def calibration_markdown(df: pd.DataFrame) -> str:
    """The calibration view (``stats.calibration_table``) with ``mean ± std`` cells."""
    metrics = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    has_regime = "regime" in df.columns
    head = ["Dataset", "Train images", "Model", "Epochs"] + (["Regime"] if has_regime else []) + [
        "Method", "n"] + [templates.CALIBRATION_HEADS.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        meth = r["method"] + (f" `{r['params']}`" if r["params"] else "")
        cells = [str(r["dataset"]), str(r["train_size"]), str(r["model"]), str(r["epochs"])]
        cells += [str(r["regime"])] if has_regime else []
        cells += [meth, str(r["n"])]
        cells += [fmt(r[f"{m}_mean"], r[f"{m}_std"], missing="-") for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_block(text: str, tag: str, content: str) -> str:
    """Replace what is between ``<!-- BEGIN generated:<tag> -->`` and its END marker (unchanged text
    when the markers are absent)."""
    begin, end = f"<!-- BEGIN generated:{tag} -->", f"<!-- END generated:{tag} -->"
    if begin not in text or end not in text:
        return text
    pre, rest = text.split(begin, 1)
    _, post = rest.split(end, 1)
    return f"{pre}{begin}\n{content.rstrip()}\n{end}{post}"
