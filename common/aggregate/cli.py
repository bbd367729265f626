"""Command line of the workflow's aggregate rules: ``python -m common.aggregate <table|figures|summary|readmes>``."""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

import pandas as pd

from ..config import COMMITTED_SCALES, expand_grid, load_experiments, run_id
from ..fileio import atomic_write_text, files_digest
from . import templates
from .claims import CLAIM_COLUMNS, NOT_EVALUATED, claims_table, shared_runs
from .figures import figures
from .render import (
    claims_markdown,
    matrix_markdown,
    outcome_counts,
    paper_answer,
    replace_block,
    rules,
    summary_tex,
    wide_markdown,
)
from .runs import load_reported, load_runs
from .stats import linked_sets, long_table, matrix, read_machine_units

#: version of what the aggregation writes; ``summary --out-format`` records it beside a scale's summary so that
#: a test can tell whether the committed aggregates were built by this code (bump on any change of output)
AGGREGATE_FORMAT = 4  # 4: the matrix time column in one machine's units

ROOT = Path(__file__).resolve().parent.parent.parent
DESCRIPTION = """Tables, figures, the cross-paper summary and README sections, built from runs' metrics.json.

Nothing here holds a number: every value comes from a run's metrics.json or a paper's reported.csv
(whose ``source`` is carried along; rows whose source says UNVERIFIED are labelled so)."""


def paper_files(paper: str, files: list[str] | None) -> tuple[Path, Path | None]:
    """The paper's experiments.yaml and reported.csv (None if it has none) among ``files`` (``--paper-files``,
    what the workflow declares), or by default those of ``papers/<paper>/`` in this repository."""
    if files is None:
        files = [p for p in (ROOT / "papers" / paper / n for n in ("experiments.yaml", "reported.csv")) if p.exists()]
    by_name = {Path(f).name: Path(f) for f in files}
    if "experiments.yaml" not in by_name:
        raise FileNotFoundError(f"--paper-files of paper {paper!r} name no experiments.yaml: {' '.join(map(str, files))}")
    return by_name["experiments.yaml"], by_name.get("reported.csv")


def every_paper_file(files: list[str] | None, name: str) -> dict[str, Path]:
    """``{paper: papers/<paper>/<name>}`` among ``files`` (``--paper-files``), or by default of every paper
    folder of this repository that has one."""
    if files is None:
        files = [str(p) for p in sorted((ROOT / "papers").glob(f"*/{name}")) if (p.parent / "experiments.yaml").exists()]
    return dict(sorted((Path(f).parent.name, Path(f)) for f in files if Path(f).name == name))


def time_references(experiments: dict[str, Path], scale: str) -> dict[str, str]:
    """``{run id: method}``: the ``time_reference`` each paper names (its experiments.yaml) for its runs at
    ``scale``; papers sharing a setting must name the same method."""
    refs: dict[str, str] = {}
    for path in experiments.values():
        exp = load_experiments(path)
        ref = exp.get("time_reference")
        if ref and scale in exp["scales"]:
            for cfg in expand_grid(exp, scale, str(path)):
                refs.setdefault(run_id(cfg), ref)
    return refs


def paper_table(paper: str, scale: str, metrics: list[str], files: list[str] | None, out_csv, out_md,
                out_claims) -> None:
    experiments, reported = paper_files(paper, files)
    exp = load_experiments(experiments)
    runs = load_runs(metrics)
    long = long_table(runs, paper, linked_sets(exp))
    ct = claims_table(runs, exp, load_reported(reported), scale)
    claims = exp.get("claims") or []
    wide = wide_markdown(long, [c["metric"] for c in claims], [c["baseline"] for c in claims])
    atomic_write_text(out_csv, long.to_csv(index=False))
    atomic_write_text(out_claims, ct.to_csv(index=False))
    atomic_write_text(out_md, templates.PAPER_TABLE.format(title=exp.get("title", paper), scale=scale, wide=wide,
                                                           claims=claims_markdown(ct), rule=rules()))


def paper_figures(paper: str, scale: str, metrics: list[str], files: list[str] | None, out_dir) -> None:
    experiments, reported = paper_files(paper, files)
    figures(load_runs(metrics), load_experiments(experiments), load_reported(reported), scale, Path(out_dir))


def read_claims(paths) -> pd.DataFrame:
    """The papers' ``*_claims.csv`` tables concatenated (empty files skipped; a missing file is an error).
    A table written by an older aggregation (without the ``outcome`` of this one) is an error naming it."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"claims tables not found: {', '.join(missing)}")
    frames = []
    for p in paths:
        if Path(p).stat().st_size > 1:
            df = pd.read_csv(p)
            old = [c for c in ("outcome", "family_size", "role") if c not in df.columns]
            if old and not df.empty:
                raise ValueError(f"{p}: written by an older aggregation (no {', '.join(old)} column); rebuild it "
                                 f"(snakemake --forcerun paper_table)")
            frames.append(df)
    frames = [x for x in frames if not x.empty]
    ct = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CLAIM_COLUMNS)
    ct = ct.reindex(columns=CLAIM_COLUMNS + [c for c in ct.columns if c not in CLAIM_COLUMNS])
    return ct.astype(object).where(pd.notna(ct), None)


def papers_left_out(claims: list, scale: str, experiments: dict[str, Path]) -> list[str]:
    """Papers with claims at ``scale`` whose ``<paper>_claims.csv`` is not among ``claims``. A committed
    scale's summary must cover every paper (a paper subset run must not shrink it); at other scales a subset
    summary is written with a note naming the papers left out."""
    given = {Path(p).name[: -len("_claims.csv")] for p in claims if Path(p).name.endswith("_claims.csv")}
    want = []
    for paper, path in experiments.items():
        exp = load_experiments(path)
        if scale in exp["scales"] and any(not c.get("scales") or scale in c["scales"] for c in exp.get("claims") or []):
            want.append(paper)
    return sorted(set(want) - given)


def summary_markdown(ct: pd.DataFrame, scale: str) -> str:
    """The summary: how to read it, the counts, one section per paper (its answer and claims tables) and the
    runs rows of different papers share."""
    papers = [f"## [{p}](../../papers/{p})\n\n" + claims_markdown(g.reset_index(drop=True))
              for p, g in ct.groupby("paper", sort=True)] if not ct.empty else ["_no claims_\n"]
    shared = [(what, rows) for what, rows in shared_runs(ct, with_paper=True) if len({r.split("/")[0] for r in rows}) > 1]
    across = ["## Runs several papers' rows rest on\n", *[f"- {what}: {', '.join(rows)}" for what, rows in shared]]
    counts = f"**Primary rows:** {outcome_counts(ct)} (each paper's family adjusted on its own)."
    return templates.SUMMARY.format(scale=scale, rule=rules(), counts=counts,
                                    papers="\n".join(papers + (["\n".join(across) + "\n"] if shared else [])))


def summary(a) -> None:
    experiments = every_paper_file(a.paper_files, "experiments.yaml")
    lacking = papers_left_out(a.claims, a.scale, experiments)
    if lacking and a.scale in COMMITTED_SCALES and not a.allow_subset:
        raise SystemExit(f"error: the {a.scale} summary would leave out {', '.join(lacking)}: pass every paper's "
                         f"results/{a.scale}/tables/<paper>_claims.csv to --claims (committed or rebuilt), or "
                         f"--allow-subset for a partial summary outside results/")
    ct = read_claims(a.claims)
    atomic_write_text(a.out_md, summary_markdown(ct, a.scale)
                      + (templates.SUBSET.format(papers=", ".join(lacking)) if lacking else ""))
    atomic_write_text(a.out_csv, ct.to_csv(index=False))
    atomic_write_text(a.out_tex, summary_tex(ct) if not ct.empty else "% no claims\n")
    mx = matrix(load_runs(a.runs), time_references(experiments, a.scale), read_machine_units(a.machine_units))
    atomic_write_text(a.out_matrix, templates.MATRIX.format(scale=a.scale, body=matrix_markdown(mx)))
    atomic_write_text(a.out_matrix_csv, mx.to_csv(index=False))
    if a.out_extra:  # cross-paper tables a paper contributes (papers/<paper>/tables.py: make_tables)
        extra = Path(a.out_extra)
        extra.mkdir(parents=True, exist_ok=True)
        for paper in sorted(every_paper_file(a.paper_files, "tables.py")):
            mod = importlib.import_module(f"papers.{paper}.tables")
            if hasattr(mod, "make_tables"):
                mod.make_tables(a.runs, extra)
    if a.out_forest:
        from .figures import forest_plot

        forest_plot(ct, a.scale, Path(a.out_forest))
    if a.out_format:
        atomic_write_text(a.out_format, f"{AGGREGATE_FORMAT}\n")


#: scales whose tables are written into the tracked READMEs; quick-scale results stay under results/quick
#: (linked from the READMEs, never inlined), so a first `snakemake` leaves the working tree clean
INLINE_SCALES = ("cpu", "paper")


def _update_block(path: Path, tag: str, content: str) -> None:
    """Replace one generated block of ``path``; the file is rewritten only when its text changes."""
    old = path.read_text()
    new = replace_block(old, tag, content)
    if new != old:
        atomic_write_text(path, new)


def results_headline(ct: pd.DataFrame, scale: str) -> str:
    """The top README's compact view of a scale's claims, generated from the verdicts: the counts over every
    paper's primary rows, one answer line per paper (naming the reproduced and contradicted rows), the forest
    plot and links to the full tables."""
    if ct.empty:
        return f"_no claims at `{scale}` scale_\n"
    summary = f"[`results/{scale}/summary.md`](results/{scale}/summary.md)"
    n = int(((ct["role"] == "primary") & (ct["outcome"] != NOT_EVALUATED)).sum())
    lines = [f"**{outcome_counts(ct)}** ({n} primary claim rows at `{scale}` scale; verdicts from each paper's "
             f"Bonferroni-adjusted intervals, words defined in {summary}).", ""]
    for paper, g in ct.groupby("paper", sort=True):
        lines.append(paper_answer(g.reset_index(drop=True), named=("reproduced", "contradicted"),
                                  lead=f"- [{paper}](papers/{paper}) "))
    lines += ["", f"![every claim: our difference in the claimed direction with its intervals, the paper's "
                  f"difference, the verdict](figures/{scale}/summary_forest.png)", "",
              f"Every claim with our regime, the paper's figure, the test and both p values: {summary}. Every "
              f"method on the shared settings: [`results/{scale}/matrix.md`](results/{scale}/matrix.md); "
              f"calibration across papers: [`results/{scale}/cross/`](results/{scale}/cross)."]
    return "\n".join(lines) + "\n"


def _duration(hms: str) -> str:
    """``"1:03:17"`` -> ``"1 h 03 min"``, ``"24:09"`` -> ``"24 min"``, ``"0:23"`` -> ``"23 s"`` (``"-"`` stays)."""
    if not re.fullmatch(r"\d+(:\d\d){1,2}", hms):
        return hms
    h, m, s = ([0] + [int(x) for x in hms.split(":")])[-3:]
    if h:
        return f"{h} h {m + (s >= 30):02d} min" if m + (s >= 30) < 60 else f"{h + 1} h 00 min"
    return f"{m + (s >= 30)} min" if m else f"{s} s"


def workflow_elapsed(section: str) -> dict[str, list[list[str]]]:
    """``{scale: [[paper, runs planned, elapsed], ...]}`` from the benchmark section's "Workflow wall time,
    `<scale>` scale" tables (benchmarks.report), elapsed = the CPU-time sum / 2 column."""
    out = {}
    for m in re.finditer(r"\*\*Workflow wall time, `(\w+)` scale\*\*[^\n]*\n\n((?:\|[^\n]*\n?)+)", section):
        head, _, *body = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in m.group(2).splitlines()]
        col = next(i for i, h in enumerate(head) if h.startswith("~ elapsed"))
        out[m.group(1)] = [[r[0], r[1].split("/")[-1], r[col]] for r in body]
    return out


def bench_headline(section: str, *more: str) -> str:
    """The top README's performance headline from the benchmark section: how it was measured (its first
    paragraph), the targets met and the ones missed, the workflow's elapsed time per paper and scale,
    the conclusions (``* **...`` lines) of further sections such as the file-based loader's, and a link
    to the whole section."""
    intro = section.strip().split("\n\n", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and r.rstrip().endswith(" |")]
    verdicts = [(r.split(" | ")[0].lstrip("| "), r.rstrip(" |").rsplit(" | ", 1)[-1]) for r in rows
                if r.rstrip(" |").rsplit(" | ", 1)[-1].startswith(("met", "missed"))]
    met = [m for m, v in verdicts if v.startswith("met")]
    missed = [m for m, v in verdicts if v.startswith("missed")]
    out = [intro.split(" Every figure is")[0], "",
           f"Targets: {len(met)} of {len(verdicts)} met." + (f" Missed: {'; '.join(missed)}." if missed else "")]
    elapsed = workflow_elapsed(section)
    if elapsed:
        scales = list(elapsed)
        papers = list(dict.fromkeys(r[0] for s in scales for r in elapsed[s]))
        papers.sort(key=lambda p: p == "all papers")  # the total last
        cell = {(s, r[0]): _duration(r[2]) for s in scales for r in elapsed[s]}
        one = ("; `cpu` in one machine's units, see `benchmarks/README.md`"
               if "cpu, one machine (sum)" in section else "")
        out += ["", f"Workflow time per paper on 2 idle cores (CPU-time sum of its runs / 2{one}):", "",
                "| paper | " + " | ".join(f"`{s}`" for s in scales) + " |", "|---" * (len(scales) + 1) + "|",
                *[f"| {p} | " + " | ".join(cell.get((s, p), "-") for s in scales) + " |" for p in papers]]
    out += ["", "Every table, with the reasons for each verdict: "
            "[`results/bench/README_section.md`](results/bench/README_section.md)."]
    for extra in more:
        out += ["", *[line for line in extra.splitlines() if line.startswith("* **")]]
    return "\n".join(out) + "\n"


def readmes(a, root: Path = ROOT) -> None:
    """The scale's blocks (and only those) in README.md and papers/<paper>/README.md under ``root``."""
    if a.scale in INLINE_SCALES:
        for tpath in a.tables:
            readme = root / "papers" / Path(tpath).stem / "README.md"
            if readme.exists():
                _update_block(readme, a.scale, Path(tpath).read_text())
        top = root / "README.md"
        summary_csv = Path(a.summary_md or f"results/{a.scale}/summary.md").with_suffix(".csv")
        if top.exists() and summary_csv.exists():
            _update_block(top, f"results-{a.scale}", results_headline(pd.read_csv(summary_csv), a.scale))
        if a.bench_section and top.exists():
            _update_block(top, "bench", bench_headline(*(Path(f).read_text() for f in a.bench_section)))
    else:
        print(f"readmes: {a.scale} results are not written into tracked READMEs (see results/{a.scale}/)")
    if a.stamp:
        atomic_write_text(Path(a.stamp), files_digest(a.stamp_inputs) + "\n")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m common.aggregate", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="one paper's table (.csv, .md) and claims (_claims.csv)")
    t.add_argument("--paper", required=True)
    t.add_argument("--scale", required=True)
    t.add_argument("--out-csv", required=True)
    t.add_argument("--out-md", required=True)
    t.add_argument("--out-claims", required=True)
    f = sub.add_parser("figures", help="one paper's figures")
    f.add_argument("--paper", required=True)
    f.add_argument("--scale", required=True)
    f.add_argument("--out-dir", required=True)
    for p in (t, f):
        p.add_argument("--paper-files", nargs="+", default=None,
                       help="the paper's experiments.yaml and reported.csv (default: those in papers/<paper>/)")
        p.add_argument("metrics", nargs="*")
    s = sub.add_parser("summary", help="cross-paper summary, matrix and cross-paper tables")
    s.add_argument("--scale", required=True)
    s.add_argument("--claims", nargs="*", default=[])
    s.add_argument("--runs", nargs="*", default=[])
    s.add_argument("--machine-units", default=None,
                   help="results/bench/machine_units_<scale>.csv: per-run factors that put the matrix's times in one "
                        "machine's units (benchmarks.rebench)")
    for k in ("md", "csv", "tex", "matrix", "matrix-csv"):
        s.add_argument(f"--out-{k}", required=True)
    s.add_argument("--out-extra", default=None, help="directory for the papers' cross-paper tables")
    s.add_argument("--out-forest", default=None, help="forest plot of every claim (PNG; a PDF is written beside it)")
    s.add_argument("--out-format", default=None,
                   help="file recording the aggregation format version the outputs were built with")
    s.add_argument("--paper-files", nargs="*", default=None,
                   help="every paper's experiments.yaml (time references, papers left out) and tables.py "
                        "(cross-paper table hooks); default: those of every papers/*/ folder")
    s.add_argument("--allow-subset", action="store_true",
                   help="at a committed scale (cpu), accept --claims that leave out papers with claims "
                        "(a partial summary, noted as such; not for results/)")
    r = sub.add_parser("readmes", help="write the tables between the READMEs' generated markers")
    r.add_argument("--scale", required=True)
    r.add_argument("tables", nargs="*")
    r.add_argument("--summary-md", default=None, help="the scale's summary.md (default results/<scale>/summary.md)")
    r.add_argument("--matrix-md", default=None, help="the scale's matrix.md (default results/<scale>/matrix.md)")
    r.add_argument("--bench-section", default=None, nargs="+",
                   help="results/bench/README_section.md to write into README.md's bench block (not written without)")
    r.add_argument("--stamp", help="file to write the digest of --stamp-inputs to (the rule's output)")
    r.add_argument("--stamp-inputs", nargs="*", default=[],
                   help="every file the scale's aggregates are computed from (runs' metrics.json, papers' files)")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.cmd == "table":
            paper_table(a.paper, a.scale, a.metrics, a.paper_files, a.out_csv, a.out_md, a.out_claims)
        elif a.cmd == "figures":
            paper_figures(a.paper, a.scale, a.metrics, a.paper_files, a.out_dir)
        elif a.cmd == "summary":
            summary(a)
        else:
            readmes(a)
    except (ValueError, FileNotFoundError) as e:  # ConfigError, a claim's statistic, reported.csv, a missing input
        print(f"error: python -m common.aggregate {a.cmd}: {e}", file=sys.stderr)
        return 1
    return 0
