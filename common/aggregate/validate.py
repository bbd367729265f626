"""Claims checked when the workflow is planned: every claim names methods the paper runs, a metric and a
statistic the aggregation knows, and a ``reported:`` filter that picks a row of a well-formed
reported.csv — so a broken claim fails ``snakemake -n`` instead of vanishing from the tables after
hours of training."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..registry import did_you_mean
from .runs import REPORTED_COLUMNS, _label, load_reported, matches, seed_linked_ok
from .stats import KNOWN_METRICS, STATISTICS

SCALES = ("quick", "cpu", "paper")


def _arms(cfgs: list[dict]) -> list[dict]:
    runs = [{"config": c} for c in cfgs]
    _label(runs)
    return runs


def validate_claims(paper: str, exp: dict, run_cfgs, reported_csv: Path | None) -> None:
    """Raise :class:`common.methods.ConfigError` naming the file and claim for every claim of ``exp`` (the
    paper's experiments.yaml) that names a method or baseline absent from the paper's runs at every scale
    the claim applies to, an unknown metric or statistic, or a ``reported:`` filter matching no row of
    ``reported_csv``; and for a malformed reported.csv.

    ``run_cfgs``: the paper's resolved run configs, either ``{scale: [config, ...]}`` (checked per scale the
    claim applies to) or one list of configs of all those scales."""
    where = f"papers/{paper}/experiments.yaml"
    errors = []
    reported = None
    if reported_csv is not None and Path(reported_csv).exists():
        try:
            reported = load_reported(reported_csv)
        except ValueError as e:
            raise ConfigError(f"{e} (reported.csv of paper {paper!r})") from None
    by_scale = run_cfgs if isinstance(run_cfgs, dict) else None
    for i, c in enumerate(exp.get("claims") or []):
        cid = c.get("id", f"#{i + 1}")
        at = f"{where}, claim {cid!r}"
        stat = c.get("statistic", "last")
        if stat not in STATISTICS:
            errors.append(f"{at}: unknown statistic {stat!r}.{did_you_mean(stat, STATISTICS)} "
                          f"Known: {', '.join(STATISTICS)}")
        metric = c.get("metric")
        if metric not in KNOWN_METRICS:
            errors.append(f"{at}: unknown metric {metric!r}.{did_you_mean(metric, KNOWN_METRICS)} "
                          f"Known: {', '.join(sorted(KNOWN_METRICS))}")
        scales = c.get("scales") or [s for s in SCALES if s in (exp.get("scales") or {})]
        if by_scale is not None:
            cfgs = [cfg for s in scales for cfg in by_scale.get(s, [])]
        else:
            cfgs = list(run_cfgs)
        linked = c.get("seed_linked") or []
        if not isinstance(linked, list) or not all(isinstance(k, str) for k in linked):
            errors.append(f"{at}: seed_linked must be a list of dotted config keys, got {linked!r}")
            linked = []
        runs = [r for r in _arms(cfgs) if matches(r, c.get("match")) and seed_linked_ok(r, linked)]
        names = sorted({r["config"]["method"]["name"] for r in runs} | {r["label"] for r in runs})
        for arm in ("method", "baseline"):
            want = c.get(arm)
            if want not in names:
                filt = (f" matching {c['match']}" if c.get("match") else "") + (
                    f" with {', '.join(linked)} equal to the seed" if linked else "")
                errors.append(f"{at}: {arm} {want!r} is not among the paper's runs{filt} at scales "
                              f"{', '.join(scales)}.{did_you_mean(want, names)} Runs: {', '.join(names) or 'none'}")
        if c.get("reported"):
            if reported is None:
                errors.append(f"{at}: names reported: {c['reported']} but {reported_csv or f'papers/{paper}/reported.csv'} "
                              "does not exist")
                continue
            unknown = [k for k in c["reported"] if k not in REPORTED_COLUMNS]
            if unknown:
                errors.append(f"{at}: reported: filters on unknown column(s) {', '.join(unknown)} of {reported_csv}; "
                              f"columns: {', '.join(REPORTED_COLUMNS)}")
                continue
            sel = reported
            for k, v in c["reported"].items():
                sel = sel[sel[k].astype(str) == str(v)]
            if sel.empty:
                errors.append(f"{at}: reported: {c['reported']} matches no row of {reported_csv}"
                              + _closest(reported, c["reported"]))
    if errors:
        raise ConfigError("\n".join(errors))


def _closest(reported: pd.DataFrame, filt: dict) -> str:
    """A hint: the values of the first filter key that fails, given the filters before it."""
    sel = reported
    for k, v in filt.items():
        nxt = sel[sel[k].astype(str) == str(v)]
        if nxt.empty:
            vals = sorted(set(sel[k].astype(str)))
            return f" (no row with {k} = {v!r}.{did_you_mean(str(v), vals)})"
        sel = nxt
    return ""


def validate_paper(paper: str, root=".") -> None:
    """:func:`validate_claims` for ``papers/<paper>`` with the runs of every scale it defines."""
    from ..config import expand_grid, load_experiments

    path = Path(root) / "papers" / paper / "experiments.yaml"
    exp = load_experiments(path)
    cfgs = {s: expand_grid(exp, s, str(path)) for s in SCALES if s in exp["scales"]}
    validate_claims(paper, exp, cfgs, Path(root) / "papers" / paper / "reported.csv")
