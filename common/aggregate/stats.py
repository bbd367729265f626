"""Statistics and verdicts: per-setting seed means, the claims' Welch intervals and verdicts, the
cross-method matrix and the cross-paper calibration view.

Verdict rule for a claim "method beats baseline on metric": the difference of the seed means,
with a Welch 95% confidence interval (t distribution). Interval entirely on the claimed side ->
"reproduced"; entirely on the other side -> "not reproduced at this scale"; otherwise, or with
fewer than 2 seeds per arm -> "inconclusive".
"""
from __future__ import annotations

import json
import math

import pandas as pd

from .runs import matches, read_benchmark_files, scalar_metrics

# headline metric per task, and the extra columns shown in Markdown tables
MAIN = {"classification": ["top1", "ece", "adaece", "ts_ece", "nll", "occ_center_25", "occ_random_50"],
        "regression": ["rmse", "mape"]}
LOWER_BETTER = {"ece", "adaece", "cw_ece", "nll", "ts_ece", "ts_adaece", "ts_nll", "rmse", "mape", "mae", "mse"}
# calibration errors are stored as fractions in metrics.json (and in the CSVs) and shown in percent in
# Markdown/LaTeX, the unit the papers report them in
PERCENT = {"ece", "adaece", "cw_ece", "ts_ece", "ts_adaece", "ts_cw_ece"}
MATRIX_METRICS = ("top1", "ece", "adaece", "ts_ece", "ts_adaece", "nll", "occ_center_25", "occ_center_50",
                  "occ_random_25", "occ_random_50")

LONG_COLUMNS = ["paper", "method", "dataset", "model", "setting", "metric", "mean", "std", "n_seeds", "seeds"]
CLAIM_COLUMNS = ["paper", "claim", "text", "scale", "dataset", "model", "setting", "metric", "higher_is_better",
                 "method", "method_mean", "method_std", "n_method", "baseline", "baseline_mean", "baseline_std",
                 "n_baseline", "delta", "ci_low", "ci_high", "verdict", "reported_metric", "reported_method",
                 "reported_baseline", "reported_dataset", "reported_model", "reported_source", "reported_verified"]


def shown(metric: str, x):
    """A value as displayed: calibration errors in percent, everything else as stored."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return x
    return 100.0 * x if metric in PERCENT else x


def seed_stats(values) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value) over seeds."""
    s = pd.Series(list(values), dtype=float)
    return s.mean(), (s.std(ddof=1) if len(s) > 1 else float("nan"))


def group_by(runs: list[dict], key) -> dict:
    """``{key(run): [run, ...]}`` in order of first appearance."""
    out: dict = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return out


# --------------------------------------------------------------------------- per-paper tables
def long_table(runs: list[dict], paper: str) -> pd.DataFrame:
    """One row per (method label, setting, metric): mean, std and number of seeds."""
    rows = []
    groups = group_by(runs, lambda r: (r["label"], r["dataset"], r["model"], r["setting"]))
    for (label, ds, model, setting), rs in sorted(groups.items()):
        vals: dict[str, list[float]] = {}
        for r in rs:
            for k, v in scalar_metrics(r).items():
                vals.setdefault(k, []).append(float(v))
        for k, vs in sorted(vals.items()):
            mean, std = seed_stats(vs)
            rows.append({"paper": paper, "method": label, "dataset": ds, "model": model, "setting": setting,
                         "metric": k, "mean": mean, "std": std, "n_seeds": len(vs),
                         "seeds": " ".join(str(r["config"]["seed"]) for r in rs)})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def welch_ci(a: list[float], b: list[float], level=0.95):
    """CI of mean(a) - mean(b) (Welch)."""
    from scipy import stats

    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    if na < 2 or nb < 2:
        return ma - mb, None, None
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se = math.sqrt(va / na + vb / nb)
    if se == 0:
        return ma - mb, ma - mb, ma - mb
    df = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    t = stats.t.ppf(0.5 + level / 2, df)
    return ma - mb, ma - mb - t * se, ma - mb + t * se


def verdict(delta, lo, hi, higher_is_better: bool) -> str:
    if lo is None:
        return "inconclusive (fewer than 2 seeds)"
    sign = 1 if higher_is_better else -1
    lo_s, hi_s = sorted((sign * lo, sign * hi))
    if lo_s > 0:
        return "reproduced"
    if hi_s < 0:
        return "not reproduced at this scale"
    return "inconclusive"


def reported_row(c: dict, reported: pd.DataFrame) -> dict:
    """The claim's reported.csv row (its ``reported:`` filter), as ``reported_*`` columns; {} if none."""
    if not c.get("reported"):
        return {}
    sel = reported
    for k, v in c["reported"].items():
        sel = sel[sel[k].astype(str) == str(v)]
    if len(sel) < 1:
        return {}
    r0 = sel.iloc[0]
    return {"reported_metric": r0["metric"], "reported_method": r0["value"],
            "reported_baseline": r0["baseline_value"], "reported_dataset": r0["dataset"],
            "reported_model": r0["model"], "reported_source": r0["source"],
            "reported_verified": bool(r0["verified"])}


def claim_arms(c: dict, runs: list[dict]) -> dict[str, dict]:
    """``{setting: {"method": [run, ...], "baseline": [run, ...], "run": a run}}`` for one claim."""
    settings: dict[str, dict] = {}
    for r in runs:
        if not matches(r, c.get("match")):
            continue
        name = r["config"]["method"]["name"]
        for arm, want in (("method", c["method"]), ("baseline", c["baseline"])):
            if want in (name, r["label"]):
                settings.setdefault(r["setting"], {"method": [], "baseline": [], "run": r})[arm].append(r)
    return settings


def claims_table(runs: list[dict], exp: dict, reported: pd.DataFrame, scale: str) -> pd.DataFrame:
    """One row per (claim, setting) at ``scale``: both arms' seed means, the Welch interval, the verdict
    and the paper's reported figures."""
    rows = []
    for c in exp.get("claims") or []:
        if c.get("scales") and scale not in c["scales"]:
            continue
        hib = c.get("higher_is_better", c["metric"] not in LOWER_BETTER)
        rep = reported_row(c, reported)
        for setting, arms in sorted(claim_arms(c, runs).items()):
            a = [float(scalar_metrics(r).get(c["metric"], float("nan"))) for r in arms["method"]]
            b = [float(scalar_metrics(r).get(c["metric"], float("nan"))) for r in arms["baseline"]]
            a = [x for x in a if not math.isnan(x)]
            b = [x for x in b if not math.isnan(x)]
            if not a or not b:
                continue
            delta, lo, hi = welch_ci(a, b)
            (ma, sa), (mb, sb) = seed_stats(a), seed_stats(b)
            rows.append({
                "paper": exp["paper"], "claim": c["id"], "text": c["text"], "scale": scale,
                "dataset": arms["run"]["dataset"], "model": arms["run"]["model"], "setting": setting,
                "metric": c["metric"], "higher_is_better": hib,
                "method": c["method"], "method_mean": ma, "method_std": sa if len(a) > 1 else None,
                "n_method": len(a), "baseline": c["baseline"], "baseline_mean": mb,
                "baseline_std": sb if len(b) > 1 else None, "n_baseline": len(b),
                "delta": delta, "ci_low": lo, "ci_high": hi, "verdict": verdict(delta, lo, hi, hib), **rep,
            })
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# --------------------------------------------------------------------------- cross-method matrix
def _train_seconds(rs: list[dict]) -> tuple[str, dict[int, float]]:
    prov = [r["metrics"]["provenance"] for r in rs]
    if all("train_cpu_sec" in p for p in prov):
        return "cpu", {id(r): p["train_cpu_sec"] for r, p in zip(rs, prov)}
    cpu_time = {}  # the runs' benchmark folder is results/<scale>/benchmarks, next to runs/
    for folder in {r["dir"].parent.parent / "benchmarks" for r in rs}:
        cpu_time.update(read_benchmark_files(folder).set_index("run_id")["cpu_time"].dropna().to_dict())
    if all(r["dir"].name in cpu_time for r in rs):
        return "cpu, whole job", {id(r): cpu_time[r["dir"].name] for r in rs}
    return "wall", {id(r): p["train_time_sec"] for r, p in zip(rs, prov)}


def matrix(runs: list[dict], references: dict[str, str] | None = None) -> pd.DataFrame:
    """Every classification method per setting: top-1, calibration before/after temperature
    scaling, occlusion robustness, and training time relative to the setting's reference method.

    ``references`` maps a run id (the run's folder name) to the method its paper names as the time
    reference of its setting (``time_reference:`` of the scale in experiments.yaml); a setting whose
    runs name no reference, or name one it does not have, shows seconds instead.

    Time per run, the first kind every run of the setting has (column ``time_clock``): "cpu" = the
    epoch loop's process CPU time (``train_cpu_sec``); "cpu, whole job" = the CPU time in Snakemake's
    benchmark file for the run (``<scale>/benchmarks/<run id>.tsv``: also start-up and evaluation);
    "wall" = the epoch loop's wall-clock time, which other jobs on the machine inflate."""
    references = references or {}
    rows = []
    cls = [r for r in runs if r["task"] == "classification"]
    for setting in sorted({r["setting"] for r in cls}):
        rs = [r for r in cls if r["setting"] == setting]
        clock, secs = _train_seconds(rs)
        names = {r["config"]["method"]["name"] for r in rs}
        named = sorted({references[r["dir"].name] for r in rs if r["dir"].name in references})
        if len(named) > 1:
            from ..methods import ConfigError

            raise ConfigError(f"setting {setting} ({rs[0]['dataset']}/{rs[0]['model']}): the papers sharing it name "
                              f"different time_reference methods {named}; name the same one in each experiments.yaml")
        ref = named[0] if named and named[0] in names else None
        base_t = [secs[id(r)] for r in rs if r["config"]["method"]["name"] == ref]
        base_t = sum(base_t) / len(base_t) if base_t else None
        for label in sorted({r["label"] for r in rs}):
            g = [r for r in rs if r["label"] == label]
            row = {"dataset": g[0]["dataset"], "model": g[0]["model"], "setting": setting, "method": label, "n": len(g)}
            for m in MATRIX_METRICS:
                v = [scalar_metrics(r).get(m) for r in g]
                v = [x for x in v if x is not None]
                if v:
                    row[m], row[m + "_std"] = seed_stats(v)
            occ = [k for k in row if k.startswith("occ_") and not k.endswith("_std")]
            row["occ_mean"] = sum(row[k] for k in occ) / len(occ) if occ else float("nan")
            t = sum(secs[id(r)] for r in g) / len(g)
            row["train_time_sec"] = t
            row["time_clock"] = clock
            row["time_reference"] = ref or ""
            row["time_vs_reference"] = t / base_t if base_t else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- calibration view
CALIBRATION_KEYS = ["dataset", "train_size", "model", "epochs", "method", "params"]
CALIBRATION_METRICS = ("top1", "ece", "adaece", "ts_ece", "ts_adaece")


def _describe(spec: dict) -> str:
    items = {k: v for k, v in sorted(spec.items()) if k != "name"}
    return json.dumps(items, sort_keys=True, separators=(",", ":")) if items else ""


def calibration_key(run: dict) -> tuple:
    """(dataset, train images, model with its kwargs, epochs, method, method params as written)."""
    cfg = run["config"]
    ds, model, meth = cfg.get("dataset", {}), cfg.get("model", {}), cfg.get("method", {})
    desc = _describe(model)
    return (ds.get("name"), str(ds.get("train_size") or "full"), model.get("name", "") + (f" {desc}" if desc else ""),
            cfg.get("train", {}).get("epochs"), meth.get("name"), _describe(meth))


def calibration_table(runs: list[dict], metrics=CALIBRATION_METRICS) -> pd.DataFrame:
    """Every classification run grouped by :func:`calibration_key`: ``n`` seeds and ``<metric>_mean`` /
    ``<metric>_std`` per metric (pandas' grouped mean and sample std), calibration errors in percent;
    sorted by setting, then by ECE."""
    cols = CALIBRATION_KEYS + ["n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    rows = []
    for r in runs:
        if r["task"] != "classification":
            continue
        vals = scalar_metrics(r)
        rows.append({**dict(zip(CALIBRATION_KEYS, calibration_key(r))),
                     **{m: shown(m, float(vals[m])) if m in vals else math.nan for m in metrics}})
    if not rows:
        return pd.DataFrame(columns=cols)
    g = pd.DataFrame(rows).groupby(CALIBRATION_KEYS, dropna=False, sort=False)
    out = g.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1)
    out = out.reset_index()
    sort_by = ["dataset", "model", "train_size", "epochs"] + (["ece_mean"] if "ece" in metrics else [])
    return out.sort_values(sort_by, kind="stable").reset_index(drop=True)[cols]
