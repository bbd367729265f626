"""Claims checked when the workflow is planned (beyond the experiments schema's key and type checks): every
claim names methods the paper runs (each seed once per arm and setting), a metric and statistic the aggregation knows, a
``secondary_to`` claim that exists, and ``reported:`` / ``reported_baseline:`` filters that pick rows of a
well-formed reported.csv — so a broken claim fails ``snakemake -n`` instead of vanishing from the tables
after hours of training."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..registry import did_you_mean
from .claims import KNOWN_METRICS, STATISTICS, claim_arms
from .runs import REPORTED_COLUMNS, _label, load_reported, matches, seed_linked_ok

SCALES = ("quick", "cpu", "paper")


def _arms(cfgs: list[dict]) -> list[dict]:
    runs = [{"config": c} for c in cfgs]
    _label(runs)
    return runs


def validate_claims(paper: str, exp: dict, run_cfgs, reported_csv: Path | None) -> None:
    """Raise :class:`common.methods.ConfigError` naming the file and claim for every claim of ``exp`` (the
    paper's experiments.yaml) with an unknown metric or statistic, a method or baseline absent
    from the paper's runs at every scale the claim applies to (or matching two runs of one seed in a setting),
    a ``secondary_to`` naming no claim of the paper, or a ``reported:`` / ``reported_baseline:`` filter matching
    no row of ``reported_csv``; and for a malformed reported.csv.

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
    ids = {c.get("id") for c in exp.get("claims") or []}
    for i, c in enumerate(exp.get("claims") or []):
        at = f"{where}, claim {c.get('id', f'#{i + 1}')!r}"
        errors += [f"{at}: {e}" for e in _claim_keys(c, ids)]
        scales = c.get("scales") or [s for s in SCALES if s in (exp.get("scales") or {})]
        cfgs = [cfg for s in scales for cfg in run_cfgs.get(s, [])] if isinstance(run_cfgs, dict) else list(run_cfgs)
        errors += [f"{at}: {e}" for e in _claim_runs(c, cfgs, scales)]
        for key in ("reported", "reported_baseline"):
            if c.get(key):
                errors += [f"{at}: {e}" for e in _reported_filter(c[key], key, reported, reported_csv, paper)]
    if errors:
        raise ConfigError("\n".join(errors))


def _claim_keys(c: dict, ids: set) -> list[str]:
    """What is wrong with a claim's own keys beyond the schema's checks (common/schemas/experiments.schema.json:
    unknown keys, types, the direction's values), so a claims dict built in code is checked too."""
    errors = []
    for where, stat in [("statistic", c.get("statistic", "last")),
                        *((f"statistic_at.{k}", v) for k, v in (c.get("statistic_at") or {}).items())]:
        if stat not in STATISTICS:
            errors.append(f"{where}: unknown statistic {stat!r}.{did_you_mean(stat, STATISTICS)} "
                          f"Known: {', '.join(STATISTICS)}")
    metric = c.get("metric")
    if metric not in KNOWN_METRICS:
        errors.append(f"unknown metric {metric!r}.{did_you_mean(metric, KNOWN_METRICS)} "
                      f"Known: {', '.join(sorted(KNOWN_METRICS))}")
    if c.get("secondary_to") is not None and (c["secondary_to"] not in ids or c["secondary_to"] == c.get("id")):
        errors.append(f"secondary_to {c['secondary_to']!r} names no other claim of this paper.{did_you_mean(c['secondary_to'], ids)}")
    linked = c.get("seed_linked") or []
    if not isinstance(linked, list) or not all(isinstance(k, str) for k in linked):
        errors.append(f"seed_linked must be a list of dotted config keys, got {linked!r}")
    return errors


def _claim_runs(c: dict, cfgs: list[dict], scales: list[str]) -> list[str]:
    """A method or baseline the runs do not have, or that matches two runs of one seed in one setting."""
    linked = c.get("seed_linked") if isinstance(c.get("seed_linked"), list) else []
    distinct = {json.dumps(cfg, sort_keys=True, default=str): cfg for cfg in cfgs}.values()  # one run per config
    runs = [r for r in _arms(list(distinct)) if matches(r, c.get("match")) and seed_linked_ok(r, linked)]
    names = sorted({r["config"]["method"]["name"] for r in runs} | {r["label"] for r in runs})
    errors = []
    for arm in ("method", "baseline"):
        want = c.get(arm)
        if want not in names:
            filt = (f" matching {c['match']}" if c.get("match") else "") + (
                f" with {', '.join(linked)} equal to the seed" if linked else "")
            errors.append(f"{arm} {want!r} is not among the paper's runs{filt} at scales "
                          f"{', '.join(scales)}.{did_you_mean(want, names)} Runs: {', '.join(names) or 'none'}")
    if errors or not all(isinstance(c.get(k), str) for k in ("id", "method", "baseline")):
        return errors
    for arms in claim_arms({**c, "seed_linked": linked}, runs).values():
        for arm in ("method", "baseline"):
            seeds = [r["config"]["seed"] for r in arms[arm]]
            twice = sorted({s for s in seeds if seeds.count(s) > 1})
            if twice:
                labels = sorted({r["label"] for r in arms[arm]})
                errors.append(f"{arm} {c[arm]!r} matches several runs of seed(s) {twice} in one setting "
                              f"(labels {', '.join(labels)}); name one label")
    return errors


def _reported_filter(filt: dict, key: str, reported, reported_csv, paper: str) -> list[str]:
    """A ``reported:`` / ``reported_baseline:`` filter that names an unknown column or matches no row."""
    if reported is None:
        return [f"names {key}: {filt} but {reported_csv or f'papers/{paper}/reported.csv'} does not exist"]
    unknown = [k for k in filt if k not in REPORTED_COLUMNS]
    if unknown:
        return [f"{key}: filters on unknown column(s) {', '.join(unknown)} of {reported_csv}; "
                f"columns: {', '.join(REPORTED_COLUMNS)}"]
    sel = reported
    for k, v in filt.items():
        sel = sel[sel[k].astype(str) == str(v)]
    return [f"{key}: {filt} matches no row of {reported_csv}" + _closest(reported, filt)] if sel.empty else []


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
