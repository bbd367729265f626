"""Rendering: Markdown and LaTeX tables of the statistics, and README blocks between generated markers.

Units: calibration errors are fractions in the CSVs and percent in Markdown/LaTeX (``stats.PERCENT``).
"""
from __future__ import annotations

import math
import re

import pandas as pd

from . import power as pw
from . import templates
from .claims import NOT_EVALUATED, OUTCOMES, STATISTICS, group_rows, shared_runs
from .stats import MAIN, PERCENT, points, shown


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


def method_order(labels, first=()) -> list[str]:
    """Method labels with the baselines first (``erm``, then the claims' baselines in order), then the rest."""
    rank = {name: i for i, name in enumerate(dict.fromkeys(["erm", *first]))}
    return sorted(labels, key=lambda lab: (rank.get(lab, rank.get(lab.split("(")[0], len(rank))), lab))


def wide_markdown(long: pd.DataFrame, extra_metrics=(), first=()) -> str:
    """One Markdown table per setting: methods as rows (baselines first), the headline metrics and every metric
    a claim names (``extra_metrics``) as columns; the setting named by what tells it apart."""
    if long.empty:
        return "_no runs_\n"
    parts = []
    wanted = list(dict.fromkeys(MAIN["classification"] + MAIN["regression"] + list(extra_metrics)))
    for (ds, model, setting), g in long.groupby(["dataset", "model", "setting"], sort=True):
        metrics = [m for m in wanted if m in set(g["metric"])]
        head = ["method", "n"] + [header(m) for m in metrics]
        label = g["setting_label"].iloc[0] if "setting_label" in g else ""
        title = f"**{ds} / {model}**" + (f", {label}" if isinstance(label, str) and label else "")
        lines = [f"{title} (setting `{setting}`)\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method in method_order(set(g["method"]), first):
            gm = g[g["method"] == method]
            row = [f"`{method}`", str(int(gm["n_seeds"].max()))]
            for m in metrics:
                x = gm[gm["metric"] == m]
                row.append(fmt(shown(m, x["mean"].iloc[0]), shown(m, x["std"].iloc[0]), digits=digits(m))
                           if len(x) else "–")
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _num(x) -> float:
    """A cell as a float (NaN for None, empty or text)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _present(x) -> bool:
    return not math.isnan(_num(x))


def unit(metric: str) -> str:
    """The unit a difference of ``metric`` is shown in."""
    return " pt" if points(metric) else ""


def paper_cell(r) -> str:
    """The paper's figures in our metric's convention (an error rate shown as accuracy), its difference and
    setting; labelled UNVERIFIED where the source could not be read."""
    m, d = r["metric"], digits(r["metric"])
    pm, pb = shown(m, _num(r.get("paper_method"))), shown(m, _num(r.get("paper_baseline")))
    if math.isnan(pm) and math.isnan(pb):
        return "–"
    if math.isnan(pb):
        s = f"{r['method']} {pm:.{d}f} (no baseline figure)"
    elif math.isnan(pm):
        s = f"{r['baseline']} {pb:.{d}f} (no method figure)"
    else:
        s = f"{pm:.{d}f} vs {pb:.{d}f}, Δ {pm - pb:+.{d}f}"
    setting = r.get("paper_setting")
    s += f" ({header(m)}; {setting})" if isinstance(setting, str) and setting else f" ({header(m)})"
    if str(r.get("reported_verified")) in ("False", "false"):
        s = "UNVERIFIED: " + s
    return s


def claim_display(r) -> tuple[int, dict]:
    """(digits, displayed values) of one claims_table row."""
    m, d = r["metric"], digits(r["metric"])
    v = {k: shown(m, _num(r.get(k))) for k in ("method_mean", "method_std", "baseline_mean", "baseline_std", "delta",
                                                "ci_low", "ci_high", "ci95_low", "ci95_high", "mde",
                                                "reported_effect")}
    return d, v


def interval_cell(r, v: dict, d: int) -> str:
    """``Δ [lo, hi]`` with the adjusted interval the verdict reads (its level) and the unadjusted 95% one."""
    if not _present(v["ci_low"]):
        return f"{v['delta']:+.{d}f} [–]" if _present(v["delta"]) else "–"
    level = 100 * _num(r.get("level_adj"))
    return (f"{v['delta']:+.{d}f} [{v['ci_low']:.{d}f}, {v['ci_high']:.{d}f}] ({level:.4g}%); "
            f"95%: [{v['ci95_low']:.{d}f}, {v['ci95_high']:.{d}f}]")


def p_cell(r) -> str:
    if not _present(r.get("p")):
        return "–"
    return f"{_num(r['p']):.2g} / {_num(r['p_adj']):.2g} (×{int(_num(r['family_size']))})"


def test_cell(r) -> str:
    """The test with why, short: the full reason is the row's ``test_why`` (CSV) and the table's preamble."""
    n = int(_num(r.get("n"))) if _present(r.get("n")) else 0
    if r.get("test") == "paired t":
        return f"paired t, {n} pairs (seed k of both arms on split k)"
    return f"Welch t, {int(_num(r['n_method']))} vs {int(_num(r['n_baseline']))} seeds (one split; seeds not pairs)"


def detectable_cell(r, mde, d: int) -> str:
    """``≥ MDE`` at the adjusted level for the test run and, when the paper's effect is known, the order of
    magnitude of seeds per arm (pairs) that would give it 80% power."""
    if mde is None or not _present(mde):
        return "–"
    s = f"≥ {mde:.{d}f}{unit(r['metric'])}"
    eff = r.get("reported_effect")
    if _present(eff):
        n = r.get("seeds_needed")
        need = pw.order_of_magnitude(int(n) if _present(n) else None)
        s += f"; the paper's {abs(shown(r['metric'], _num(eff))):.{d}f} needs {need} per arm"
    return s


def ours_cell(r, v: dict, d: int) -> str:
    stat = r.get("statistic") or "last"
    s = (f"`{r['method']}` {fmt(v['method_mean'], v['method_std'], digits=d)} vs "
         f"`{r['baseline']}` {fmt(v['baseline_mean'], v['baseline_std'], digits=d)} ({header(r['metric'])}")
    s += f", {STATISTICS.get(stat, stat)}" if stat != "last" else ""
    paper_stat = r.get("paper_statistic")
    if isinstance(paper_stat, str) and paper_stat:  # statistic_at: these runs cannot give the paper's statistic
        s += f"; the paper: {STATISTICS.get(paper_stat, paper_stat)}"
    return s + ")"


def regime_cell(r) -> str:
    name, details = r.get("regime_name"), r.get("regime")
    if not isinstance(details, str):
        return "–"
    return f"{name}: {details}" if isinstance(name, str) and name and name not in details else details


def claim_cell(r) -> str:
    role = r.get("role")
    tag = f" *({role})*" if isinstance(role, str) and role.startswith("secondary") else ""
    return f"**{r['label']}**{tag}: {r['text']}"


CLAIMS_HEAD = ["claim", "our regime", "paper (our convention; its setting)", "ours: method vs baseline",
               "test", "Δ [adjusted CI] (level); 95% CI", "p raw / adjusted", "detectable (80% power, adjusted)",
               "verdict"]


def _claims_table(ct: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(CLAIMS_HEAD) + " |", "|" + "---|" * len(CLAIMS_HEAD)]
    for _, r in ct.iterrows():
        d, v = claim_display(r)
        lines.append(f"| {claim_cell(r)} | {regime_cell(r)} | {paper_cell(r)} | {ours_cell(r, v, d)} | "
                     f"{test_cell(r)} | {interval_cell(r, v, d)} | {p_cell(r)} | {detectable_cell(r, v['mde'], d)} "
                     f"| **{r['verdict']}** |")
    return lines


def claims_markdown(ct: pd.DataFrame) -> str:
    """One paper's claims: the one-line answer, one table per regime the claims were tested in (rows: our
    regime, the paper's figures in our convention, ours, the test and why, the adjusted interval, raw and
    adjusted p, what the seeds could detect, the verdict), the claims not evaluated with the reason, and the
    runs several rows rest on."""
    if ct.empty:
        return "_no claims evaluated at this scale_\n"
    tested = ct[ct["outcome"] != NOT_EVALUATED]
    out = [paper_answer(ct), ""]
    groups = group_rows(tested)
    for name, g in groups.items():
        if len(groups) > 1:
            out += [f"**{name}**" + (f" — {g['regime'].iloc[0]}" if name not in str(g["regime"].iloc[0]) else ""), ""]
        out += _claims_table(g) + [""]
    out += [f"- Not evaluated: **{r['label']}** (`{r['claim']}`) — {r['verdict']}"
            for _, r in ct[ct["outcome"] == NOT_EVALUATED].iterrows()]
    shared = shared_runs(tested)
    if shared:
        out += ["", "Rows resting on the same runs (their verdicts are not independent):", ""]
        out += [f"- {what}: {', '.join(rows)}" for what, rows in shared]
    return "\n".join(out).rstrip() + "\n"


def rules() -> str:
    """How to read a claims table: the test, the family, the verdict words, the power (templates.py)."""
    return "\n\n".join([templates.TEST_RULE, templates.FAMILY_RULE, templates.verdict_rule(OUTCOMES),
                         templates.POWER_RULE])


def outcome_counts(ct: pd.DataFrame) -> str:
    """``"2 reproduced, 1 contradicted, ..."`` over the primary rows (words that occur, in :data:`OUTCOME_ORDER`)."""
    prim = ct[(ct["role"] == "primary") & (ct["outcome"] != NOT_EVALUATED)] if not ct.empty else ct
    n = {w: int((prim["outcome"] == w).sum()) for w in OUTCOME_ORDER} if not prim.empty else {}
    return ", ".join(f"{k} {w}" for w, k in n.items() if k) or "none"


#: the verdict words in the order the one-line answers and counts list them
OUTCOME_ORDER = ["reproduced", "contradicted", "inconsistent with the paper's effect size", "underpowered",
                 "inconclusive, no paper figure", "not testable"]


def row_name(r, ct: pd.DataFrame) -> str:
    """A row's short name: the claim's label, with the regime when the claim was tested in several."""
    several = (ct["claim"] == r["claim"]).sum() > 1
    return r["label"] + (f" [{r['regime_name']}]" if several else "")


def paper_answer(ct: pd.DataFrame, named=OUTCOME_ORDER[:3], lead: str = "**Answer at this scale** ") -> str:
    """The one-line answer of one paper from its verdicts: the primary rows per verdict word, named for the words
    in ``named`` (by default the decisive ones: reproduced, contradicted, inconsistent with the paper's size) and
    counted for the rest; ``lead`` starts the line."""
    prim = ct[(ct["role"] == "primary") & (ct["outcome"] != NOT_EVALUATED)]
    if prim.empty:
        return lead + "no primary claim tested at this scale."
    m = int(_num(prim["family_size"].iloc[0]))
    parts = []
    for word in OUTCOME_ORDER:
        g = prim[prim["outcome"] == word]
        if not g.empty:
            names = "; ".join(row_name(r, ct) for _, r in g.iterrows())
            parts.append(f"{word} {len(g)} ({names})" if word in named else f"{word} {len(g)}")
    sec = int(((ct["role"] != "primary") & (ct["outcome"] != NOT_EVALUATED)).sum())
    rows = f"{len(prim)} primary row{'s' if len(prim) > 1 else ''}"
    return (f"{lead}({rows}, Bonferroni ×{m}): " + "; ".join(parts) + "."
            + (f" ({sec} secondary row{'s' if sec > 1 else ''} not counted.)" if sec else ""))


def summary_tex(ct: pd.DataFrame) -> str:
    lines = [r"\begin{tabular}{llllllll}", r"\toprule",
             r"Claim & Regime & Test & $\Delta$ [adj.\ CI] & $p$ / $p_{adj}$ & Paper $\Delta$ & Detectable & Verdict \\",
             r"\midrule"]
    esc = lambda s: re.sub(r"([_%&#$])", r"\\\1", str(s))  # noqa: E731
    for _, r in ct[ct["outcome"] != NOT_EVALUATED].iterrows():
        d, v = claim_display(r)
        ci = f"[{v['ci_low']:.{d}f}, {v['ci_high']:.{d}f}]" if _present(v["ci_low"]) else "[--]"
        eff = f"{v['reported_effect']:+.{d}f}" if _present(v["reported_effect"]) else "--"
        row = [esc(r["label"]), esc(regime_cell(r)), esc(r["test"]), f"{v['delta']:+.{d}f} {ci}",
               esc(p_cell(r)).replace("×", r"$\times$"), eff,
               f"$\\geq$ {v['mde']:.{d}f}" if _present(v["mde"]) else "--", esc(r["verdict"])]
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
                   f"top-1, centre half occluded | occlusion (mean top-1) | {tcol} |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for _, r in g.iterrows():
            pct = [fmt(shown(m, r.get(m)), shown(m, r.get(m + "_std"))) for m in ("ece", "adaece", "ts_ece", "ts_adaece")]
            out.append(f"| `{r['method']}` | {r['n']} | {fmt(r.get('top1'), r.get('top1_std'))} | "
                       f"{' | '.join(pct)} | {fmt(r.get('occ_center_50'), r.get('occ_center_50_std'))} | "
                       f"{fmt(r.get('occ_mean'), None)} | {time_cell(r, bool(ref))} |")
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
