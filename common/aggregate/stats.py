"""Per-setting statistics: seed means of every metric (the per-paper tables), the settings the tables and
figures show, the cross-method matrix and the cross-paper calibration view. The claims, their tests and
verdicts are in :mod:`.claims`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .runs import flat, read_benchmark_files, scalar_metrics, seed_linked_ok, setting_config, setting_id, varying_keys

# headline metric per task, and the extra columns shown in Markdown tables
MAIN = {"classification": ["top1", "ece", "adaece", "ts_ece", "nll", "occ_center_25", "occ_random_50"],
        "regression": ["rmse", "mape"]}
LOWER_BETTER = {"ece", "adaece", "cw_ece", "nll", "ts_ece", "ts_adaece", "ts_nll", "rmse", "mape", "mae", "mse",
                "rmse_domain_avg", "rmse_domain_worst"}
# calibration errors are stored as fractions in metrics.json (and in the CSVs) and shown in percent in
# Markdown/LaTeX, the unit the papers report them in
PERCENT = {"ece", "adaece", "cw_ece", "ts_ece", "ts_adaece", "ts_cw_ece"}
MATRIX_METRICS = ("top1", "ece", "adaece", "ts_ece", "ts_adaece", "nll", "occ_center_25", "occ_center_50",
                  "occ_random_25", "occ_random_50")

LONG_COLUMNS = ["paper", "method", "dataset", "model", "setting", "setting_label", "metric", "mean", "std", "n_seeds",
                "seeds"]


def shown(metric: str, x):
    """A value as displayed: calibration errors in percent, everything else as stored."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return x
    return 100.0 * x if metric in PERCENT else x


def points(metric: str) -> bool:
    """Whether a difference of ``metric`` (as displayed) is in percentage points."""
    return metric in PERCENT or metric.startswith(("top", "occ_")) or metric == "mape"


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


# --------------------------------------------------------------------------- the settings tables and figures show
def linked_sets(exp: dict) -> list[tuple[str, ...]]:
    """The ``seed_linked`` key sets of a paper's claims (each names config keys that hold the run's seed)."""
    return sorted({tuple(c["seed_linked"]) for c in exp.get("claims") or [] if c.get("seed_linked")})


def shown_settings(runs: list[dict], linked: list[tuple[str, ...]] = ()) -> dict[str, list[dict]]:
    """``{setting: [run, ...]}`` as tables and figures show them: each run's own setting and, per ``seed_linked``
    key set, one setting pooling the runs whose keys hold their seed (the per-seed-split arm: seed k trained on
    split k, as the claims pool them). A run's own setting is dropped when every run in it is pooled that way
    (a split used by one seed only), so such an arm is one setting with its seeds, not one setting per split."""
    own = group_by(runs, lambda r: r["setting"])
    out: dict[str, list[dict]] = {}
    pooled: set[int] = set()
    for keys in linked:
        members = [r for r in runs if seed_linked_ok(r, keys)]
        pooled |= {id(r) for r in members}
        for r in members:
            out.setdefault(setting_id(r["config"], keys), []).append(r)
    for setting, rs in own.items():
        if not all(id(r) in pooled for r in rs):
            out[setting] = rs
    return out


def setting_labels(groups: dict[str, list[dict]], linked: list[tuple[str, ...]] = ()) -> dict[str, str]:
    """``{setting: "train_size 5000, epochs 20"}``: the config values that tell settings of the same dataset and
    model apart (the last part of each dotted key; a key some settings' runs lack is no difference), with
    ``key = seed`` for a pooled per-seed setting; "" for a dataset and model with one setting."""
    def described(setting: str, rs: list[dict]) -> dict:
        keys = next((k for k in linked if setting_id(rs[0]["config"], k) == setting), ())
        return {k: ("= seed" if k in keys else v) for k, v in flat(setting_config(rs[0]["config"])).items()}

    flats = {s: described(s, rs) for s, rs in groups.items()}
    out = {}
    for same in group_by(list(groups), lambda s: (groups[s][0]["dataset"], groups[s][0]["model"])).values():
        if len(same) < 2:
            out.update({s: "" for s in same})
            continue
        keys = sorted(set.intersection(*(set(flats[s]) for s in same)))
        differ = varying_keys([flats[s] for s in same], keys)
        out.update({s: ", ".join(_key_value(k, flats[s].get(k)) for k in differ) for s in same})
    return out


def _key_value(key: str, value) -> str:
    name = key.split(".")[-1]
    return f"{name} {value}" if value != "= seed" else f"{name} = seed"


# --------------------------------------------------------------------------- per-paper tables
def long_table(runs: list[dict], paper: str, linked: list[tuple[str, ...]] = ()) -> pd.DataFrame:
    """One row per (method label, shown setting, metric): mean, std and number of seeds."""
    rows = []
    groups = shown_settings(runs, linked)
    labels = setting_labels(groups, linked)
    for setting, rs in sorted(groups.items(), key=lambda kv: (kv[1][0]["dataset"], kv[1][0]["model"], kv[0])):
        for label, g in sorted(group_by(rs, lambda r: r["label"]).items()):
            vals: dict[str, list[float]] = {}
            for r in g:
                for k, v in scalar_metrics(r).items():
                    vals.setdefault(k, []).append(float(v))
            for k, vs in sorted(vals.items()):
                mean, std = seed_stats(vs)
                rows.append({"paper": paper, "method": label, "dataset": g[0]["dataset"], "model": g[0]["model"],
                             "setting": setting, "setting_label": labels[setting], "metric": k, "mean": mean,
                             "std": std, "n_seeds": len(vs),
                             "seeds": " ".join(str(r["config"]["seed"]) for r in g)})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


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


def read_machine_units(path) -> dict[str, dict]:
    """``{run id: {"batch", "factor", "unit"}}`` from a ``results/bench/machine_units_<scale>.csv`` (written by
    ``benchmarks.rebench``); {} for None or a missing file."""
    if path is None or not Path(path).is_file():
        return {}
    df = pd.read_csv(path, dtype={"batch": str})
    return df.set_index("run_id")[["batch", "factor", "unit"]].to_dict("index")


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


def matrix_times(rs: list[dict], ref: str | None, secs: dict[int, float], units: dict[str, dict]) -> dict[str, dict]:
    """``{label: {"train_time_sec", "time_vs_reference", "time_basis", "time_unit", "time_vs_reference_raw"}}``
    for one setting's runs: each row's time, and its ratio to the reference method's, in one machine's
    units where ``benchmarks.rebench`` measured factors for every run involved (the unit is that rerun
    machine), as measured where all runs involved come from one machine, and flagged "mixed machines"
    otherwise. ``units``: :func:`read_machine_units`."""
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


def matrix(runs: list[dict], references: dict[str, str] | None = None,
           units: dict[str, dict] | None = None) -> pd.DataFrame:
    """Every classification method per setting: top-1, calibration before/after temperature
    scaling, occlusion robustness, and training time relative to the setting's reference method.

    ``references`` maps a run id (the run's folder name) to the method its paper names as the time
    reference of its setting (``time_reference:`` of the scale in experiments.yaml); a setting whose
    runs name no reference, or name one it does not have, shows seconds instead.

    Time per run, the first kind every run of the setting has (column ``time_clock``): "cpu" = the
    epoch loop's process CPU time (``train_cpu_sec``); "cpu, whole job" = the CPU time in Snakemake's
    benchmark file for the run (``<scale>/benchmarks/<run id>.tsv``: also start-up and evaluation);
    "wall" = the epoch loop's wall-clock time, which other jobs on the machine inflate. Times are put in one
    machine's units where ``units`` (:func:`read_machine_units`) has a factor for every run compared
    (:func:`matrix_times`)."""
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
        times = matrix_times(rs, ref, secs, units or {})
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
    regime a calibration comparison there is made in ("data-limited, CE ECE 35%", "CE ECE 6%")."""
    if ce_ece is None or pd.isna(ce_ece):
        return "no CE run"
    return f"data-limited, CE ECE {ce_ece:.0f}%" if ce_ece >= OVERFIT_ECE else f"CE ECE {ce_ece:.0f}%"
