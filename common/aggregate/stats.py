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
import re
import statistics

import pandas as pd

from . import power as pw
from .runs import (flat, matches, read_benchmark_files, scalar_metrics, seed_linked_ok, setting_config, setting_id,
                   varying_keys)

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
#: metrics a claim may name: the test block of metrics.json (as fractions for calibration errors)
KNOWN_METRICS = {"top1", "top5", "ece", "adaece", "cw_ece", "nll", "ts_ece", "ts_adaece", "ts_cw_ece", "ts_nll",
                 "temperature", "occ_center_25", "occ_center_50", "occ_random_25", "occ_random_50", "rmse", "mape",
                 "mae", "mse", "rmse_domain_avg", "rmse_domain_worst", "train_images_per_sec"}
#: how a claim reduces each run to one number (``statistic:`` of a claim; default "last")
STATISTICS = {
    "last": "final evaluation (metrics.json)",
    "best_epoch": "best epoch",
    "median_last_10": "median of the last 10 epochs",
    "ema_best": "EMA model, best epoch",
    "ema_last": "EMA model, final evaluation",
}
#: reported.csv / claim-text metric names -> (our metric, sign): the paper's difference times the sign is a
#: difference of our metric in displayed units (error rates are 100 - accuracy)
REPORTED_UNITS = [
    (r"^top1_err", "top1", -1), (r"^top1_acc", "top1", 1), (r"^top-?1 error", "top1", -1),
    (r"^top-?1 acc", "top1", 1), (r"^top5_err", "top5", -1), (r"^ece_percent$", "ece", 1),
    (r"^adaece_percent$", "adaece", 1), (r"^ece_after_ts_percent$", "ts_ece", 1),
    (r"^adaece_after_ts_percent$", "ts_adaece", 1), (r"^rmse$", "rmse", 1), (r"^mape_percent$", "mape", 1),
]
CLAIM_COLUMNS = ["paper", "claim", "text", "scale", "dataset", "model", "setting", "regime", "metric", "higher_is_better",
                 "method", "method_mean", "method_std", "n_method", "baseline", "baseline_mean", "baseline_std",
                 "n_baseline", "delta", "ci_low", "ci_high", "verdict", "reported_metric", "reported_method",
                 "reported_baseline", "reported_dataset", "reported_model", "reported_source", "reported_verified",
                 "statistic", "outcome", "mde", "reported_effect", "seeds_needed", "method_values", "baseline_values"]


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


def verdict_text(outcome: str, metric: str, mde: float, effect: float | None) -> str:
    """The verdict with its reason: what the test could detect against the paper's own effect (the seeds that
    would resolve that effect are in the ``seeds_needed`` column)."""
    if outcome != "inconclusive" or mde is None or math.isnan(mde):
        return outcome
    d = 4 if metric in ("nll", "ts_nll", "rmse", "mse", "mae") else 2
    unit = " points" if metric in PERCENT or metric.startswith(("top", "occ_")) or metric == "mape" else ""
    detects = f"detects ≥ {shown(metric, mde):.{d}f}{unit}"
    if effect is None or math.isnan(effect):
        return f"inconclusive — {detects}; no paper effect in these units to compare"
    paper = f"paper effect {shown(metric, abs(effect)):.{d}f}"
    if abs(effect) < mde:
        return f"inconclusive — underpowered: {detects}, {paper}"
    return f"inconclusive — {detects}, {paper}: our difference is smaller than the paper's"


def reported_effect(c: dict, rep: dict) -> float | None:
    """The paper's (method - baseline) difference as a difference of the claim's metric in stored units
    (fractions for calibration errors), or None when the paper's figures are not in the metric's units."""
    if rep.get("reported_method") is None or rep.get("reported_baseline") is None:
        return None
    if any(isinstance(v, float) and math.isnan(v) for v in (rep["reported_method"], rep["reported_baseline"])):
        return None
    name = str(rep.get("reported_metric", "")).strip().lower()
    if name == c["metric"]:  # a claim text quoting the pair in the metric's own (displayed) units
        diff = float(rep["reported_method"]) - float(rep["reported_baseline"])
        return diff / 100.0 if name in PERCENT else diff
    for pattern, metric, sign in REPORTED_UNITS:
        if re.search(pattern, name) and metric == c["metric"]:
            diff = sign * (float(rep["reported_method"]) - float(rep["reported_baseline"]))
            return diff / 100.0 if metric in PERCENT else diff
    return None


_TEXT_PAIR = re.compile(r"(\d+(?:\.\d+)?)%?\s+vs\.?\s+(\d+(?:\.\d+)?)%?\s*([A-Za-z][A-Za-z0-9 \-]*)?")


def reported_from_text(c: dict) -> dict:
    """``reported_*`` columns from a claim text that quotes the paper's pair ("2.88 vs 3.09 top-1 error"),
    method first; {} when the text quotes none."""
    m = _TEXT_PAIR.search(c.get("text", ""))
    if not m:
        return {}
    return {"reported_metric": (m.group(3) or "").strip() or c["metric"], "reported_method": float(m.group(1)),
            "reported_baseline": float(m.group(2)), "reported_dataset": "", "reported_model": "",
            "reported_source": "claim text (experiments.yaml)", "reported_verified": True}


def reported_row(c: dict, reported: pd.DataFrame) -> dict:
    """The claim's reported.csv row (its ``reported:`` filter), as ``reported_*`` columns; {} if none."""
    if not c.get("reported"):
        return reported_from_text(c)
    sel = reported
    for k, v in c["reported"].items():
        sel = sel[sel[k].astype(str) == str(v)]
    if len(sel) < 1:
        return reported_from_text(c)
    r0 = sel.iloc[0]
    return {"reported_metric": r0["metric"], "reported_method": r0["value"],
            "reported_baseline": r0["baseline_value"], "reported_dataset": r0["dataset"],
            "reported_model": r0["model"], "reported_source": r0["source"],
            "reported_verified": bool(r0["verified"])}


def _per_epoch(run: dict, key: str, claim: str, statistic: str) -> list[tuple[int, float]]:
    """(epoch, value) of ``key`` over the run's epochs; an error unless every epoch was evaluated."""
    vals = [(int(e["epoch"]), float(e[key])) for e in run["epochs"] if e.get(key) is not None]
    last = max((int(e["epoch"]) for e in run["epochs"]), default=0)
    if not vals or len({ep for ep, _ in vals}) < last:
        every = run["config"].get("train", {}).get("eval_every", 1)
        raise ValueError(f"claim {claim!r}: statistic {statistic!r} needs {key!r} at every epoch, but run "
                         f"{run['dir'].name} has it at {len(vals)} of {last} epochs (train.eval_every: {every}); "
                         f"set eval_every: 1 for these runs or use statistic: last")
    return vals


def run_value(run: dict, metric: str, statistic: str = "last", higher_is_better: bool = True,
              claim: str = "?") -> float:
    """One run's number for a claim: its ``metric`` reduced by ``statistic`` (see ``STATISTICS``)."""
    if statistic == "last":
        return float(scalar_metrics(run).get(metric, float("nan")))
    if statistic == "ema_last":
        ema = run["metrics"].get("test_ema") or {}
        if isinstance(ema.get(metric), (int, float)):
            return float(ema[metric])
        vals = _per_epoch(run, f"test_{metric}_ema", claim, statistic)
        return max(vals)[1]
    key = f"test_{metric}_ema" if statistic == "ema_best" else f"test_{metric}"
    vals = [v for _, v in sorted(_per_epoch(run, key, claim, statistic))]
    if statistic in ("best_epoch", "ema_best"):
        return max(vals) if higher_is_better else min(vals)
    if statistic == "median_last_10":
        if len(vals) < 10:
            raise ValueError(f"claim {claim!r}: statistic 'median_last_10' needs 10 epochs, run {run['dir'].name} "
                             f"has {len(vals)}")
        return float(statistics.median(vals[-10:]))
    raise ValueError(f"claim {claim!r}: unknown statistic {statistic!r}; known: {', '.join(STATISTICS)}")


def claim_arms(c: dict, runs: list[dict]) -> dict[str, dict]:
    """``{setting: {"method": [run, ...], "baseline": [run, ...], "run": a run}}`` for one claim.

    A claim's ``seed_linked:`` (dotted config keys) keeps only runs whose value there is their seed and
    pools them into one setting: e.g. ``[dataset.options.shuffle_seed]`` compares methods over seeds that
    each draw their own split."""
    linked = tuple(c.get("seed_linked") or ())
    settings: dict[str, dict] = {}
    for r in runs:
        if not matches(r, c.get("match")) or not seed_linked_ok(r, linked):
            continue
        setting = setting_id(r["config"], linked) if linked else r["setting"]
        name = r["config"]["method"]["name"]
        for arm, want in (("method", c["method"]), ("baseline", c["baseline"])):
            if want in (name, r["label"]):
                settings.setdefault(setting, {"method": [], "baseline": [], "run": r})[arm].append(r)
    return settings


def setting_differences(runs_by_setting: dict[str, dict]) -> dict[str, str]:
    """``{setting: "train_size 5000, epochs 20"}``: the config values that tell one claim's settings apart
    (last part of each dotted key, among keys every setting's config records; empty when the claim has
    one setting)."""
    if len(runs_by_setting) < 2:
        return {}
    flats = {k: flat(setting_config(r["config"])) for k, r in runs_by_setting.items()}
    # keys every setting has (runs recorded before a key existed lack it: that is not a difference)
    keys = sorted(set.intersection(*(set(f) for f in flats.values())))
    differ = varying_keys(list(flats.values()), keys)
    return {k: ", ".join(f"{kk.split('.')[-1]} {f.get(kk)}" for kk in differ) for k, f in flats.items()}


def claims_table(runs: list[dict], exp: dict, reported: pd.DataFrame, scale: str) -> pd.DataFrame:
    """One row per (claim, setting) at ``scale``: both arms' seed means of the claim's statistic, the Welch
    interval, the verdict with its reason (detectable effect against the paper's effect) and the paper's
    reported figures."""
    rows = []
    for c in exp.get("claims") or []:
        if c.get("scales") and scale not in c["scales"]:
            continue
        hib = c.get("higher_is_better", c["metric"] not in LOWER_BETTER)
        stat = c.get("statistic", "last")
        rep = reported_row(c, reported)
        effect = reported_effect(c, rep)
        arms_by_setting = claim_arms(c, runs)
        regimes = setting_differences({k: v["run"] for k, v in arms_by_setting.items() if v["method"] and v["baseline"]})
        for setting, arms in sorted(arms_by_setting.items()):
            a, b = ([run_value(r, c["metric"], stat, hib, c["id"]) for r in arms[arm]] for arm in ("method", "baseline"))
            a = [x for x in a if not math.isnan(x)]
            b = [x for x in b if not math.isnan(x)]
            if not a or not b:
                continue
            delta, lo, hi = welch_ci(a, b)
            (ma, sa), (mb, sb) = seed_stats(a), seed_stats(b)
            outcome = verdict(delta, lo, hi, hib)
            mde = pw.mde(pw.pooled_sd(a, b), len(a), len(b)) if len(a) > 1 and len(b) > 1 else float("nan")
            needed = (pw.seeds_needed(effect, pw.pooled_sd(a, b))
                      if effect is not None and not math.isnan(mde) else None)
            rows.append({
                "paper": exp["paper"], "claim": c["id"], "text": c["text"], "scale": scale,
                "dataset": arms["run"]["dataset"], "model": arms["run"]["model"], "setting": setting,
                "regime": regimes.get(setting, ""),
                "metric": c["metric"], "higher_is_better": hib,
                "method": c["method"], "method_mean": ma, "method_std": sa if len(a) > 1 else None,
                "n_method": len(a), "baseline": c["baseline"], "baseline_mean": mb,
                "baseline_std": sb if len(b) > 1 else None, "n_baseline": len(b),
                "delta": delta, "ci_low": lo, "ci_high": hi,
                "verdict": verdict_text(outcome, c["metric"], mde, effect), **rep,
                "statistic": stat, "outcome": outcome, "mde": mde, "reported_effect": effect,
                "seeds_needed": needed, "method_values": " ".join(repr(x) for x in a),
                "baseline_values": " ".join(repr(x) for x in b),
            })
    out = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    out["seeds_needed"] = out["seeds_needed"].astype("Int64")
    return out


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


def _machine_units(rs: list[dict]) -> dict[str, dict]:
    """``{run id: {"batch", "factor", "unit"}}`` from ``results/bench/machine_units_<scale>.csv`` (written by
    ``benchmarks.rebench``), found beside the runs' ``results/<scale>/runs/`` folder; {} when absent."""
    out: dict[str, dict] = {}
    for scale_dir in {r["dir"].parent.parent for r in rs}:
        f = scale_dir.parent / "bench" / f"machine_units_{scale_dir.name}.csv"
        if f.is_file():
            df = pd.read_csv(f, dtype={"batch": str})
            out.update(df.set_index("run_id")[["batch", "factor", "unit"]].to_dict("index"))
    return out


def _machine_key(r: dict, units: dict[str, dict]):
    """What tells apart the machines runs were timed on: the measurement batch the units file records,
    else the CPU the run's provenance records, else None (unknown)."""
    if r["dir"].name in units:
        return units[r["dir"].name]["batch"]
    hw = r["metrics"]["provenance"].get("hardware")
    return json.dumps(hw, sort_keys=True) if hw else None


def _time_basis(rs: list[dict], units: dict[str, dict]) -> str:
    """How the times of ``rs`` can be compared: "one-machine units" (every run has a factor), "same
    machine" (one batch or one recorded CPU), else "mixed machines"."""
    if all(pd.notna(units.get(r["dir"].name, {}).get("factor")) for r in rs):
        return "one-machine units"
    keys = {_machine_key(r, units) for r in rs}
    return "same machine" if len(keys) == 1 and None not in keys else "mixed machines"


def matrix_times(rs: list[dict], ref: str | None, secs: dict[int, float]) -> dict[str, dict]:
    """``{label: {"train_time_sec", "time_vs_reference", "time_basis", "time_unit", "time_vs_reference_raw"}}``
    for one setting's runs: each row's time, and its ratio to the reference method's, in one machine's
    units where ``benchmarks.rebench`` measured factors for every run involved (the unit is that rerun
    machine), as measured where all runs involved come from one machine, and flagged "mixed machines"
    otherwise."""
    units = _machine_units(rs)
    base = [r for r in rs if r["config"]["method"]["name"] == ref]

    def mean(g: list[dict], scaled: bool) -> float:
        return sum(secs[id(r)] * (units[r["dir"].name]["factor"] if scaled else 1.0) for r in g) / len(g)

    out = {}
    for label in sorted({r["label"] for r in rs}):
        g = [r for r in rs if r["label"] == label]
        basis = _time_basis(g + base, units)
        scaled = basis == "one-machine units"
        raw = mean(g, False) / mean(base, False) if base else float("nan")
        out[label] = {"train_time_sec": mean(g, scaled), "time_basis": basis, "time_vs_reference_raw": raw,
                      "time_vs_reference": mean(g, scaled) / mean(base, scaled) if base else float("nan"),
                      "time_unit": units[g[0]["dir"].name]["unit"] if scaled else ""}
    return out


def matrix(runs: list[dict], references: dict[str, str] | None = None) -> pd.DataFrame:
    """Every classification method per setting: top-1, calibration before/after temperature
    scaling, occlusion robustness, and training time relative to the setting's reference method.

    ``references`` maps a run id (the run's folder name) to the method its paper names as the time
    reference of its setting (``time_reference:`` of the scale in experiments.yaml); a setting whose
    runs name no reference, or name one it does not have, shows seconds instead.

    Time per run, the first kind every run of the setting has (column ``time_clock``): "cpu" = the
    epoch loop's process CPU time (``train_cpu_sec``); "cpu, whole job" = the CPU time in Snakemake's
    benchmark file for the run (``<scale>/benchmarks/<run id>.tsv``: also start-up and evaluation);
    "wall" = the epoch loop's wall-clock time, which other jobs on the machine inflate. Times are put in one
    machine's units where they can be (:func:`matrix_times`)."""
    references = references or {}
    rows = []
    cls = [r for r in runs if r["task"] == "classification"]
    for setting in sorted({r["setting"] for r in cls}):
        rs = [r for r in cls if r["setting"] == setting]
        clock, secs = _train_seconds(rs)
        names = {r["config"]["method"]["name"] for r in rs}
        named = sorted({references[r["dir"].name] for r in rs if r["dir"].name in references})
        if len(named) > 1:
            from ..errors import ConfigError

            raise ConfigError(f"setting {setting} ({rs[0]['dataset']}/{rs[0]['model']}): the papers sharing it name "
                              f"different time_reference methods {named}; name the same one in each experiments.yaml")
        ref = named[0] if named and named[0] in names else None
        times = matrix_times(rs, ref, secs)
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
            row.update(times[label], time_clock=clock, time_reference=ref or "")
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
    if "ece" in metrics:
        setting = ["dataset", "train_size", "model", "epochs"]
        ce = out[out["method"] == "erm"].set_index(setting)["ece_mean"].to_dict()
        out["regime"] = [regime(ce.get(k)) for k in out[setting].itertuples(index=False, name=None)]
        cols.insert(cols.index("method"), "regime")
    sort_by = ["dataset", "model", "train_size", "epochs"] + (["ece_mean"] if "ece" in metrics else [])
    return out.sort_values(sort_by, kind="stable").reset_index(drop=True)[cols]


#: cross-entropy ECE (percent) at or above which a setting counts as data-limited: over-fitting, not the
#: method's calibration mechanism, then decides the comparison (the papers' CE: 3-5% on full CIFAR)
OVERFIT_ECE = 15.0


def regime(ce_ece: float | None) -> str:
    """How over-confident cross-entropy (``erm``) ends in a setting, from its mean ECE in percent: the
    regime a calibration comparison there is made in."""
    if ce_ece is None or pd.isna(ce_ece):
        return "no CE run"
    kind = "data-limited" if ce_ece >= OVERFIT_ECE else "single-digit CE ECE" if ce_ece < 10 else "CE ECE 10-15%"
    return f"{kind} (CE ECE {ce_ece:.1f}%)"
