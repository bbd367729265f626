"""The claims of a paper tested on the runs the workflow did, with verdicts a reader can take at their word.

One row per (claim, setting) at a scale (:func:`claims_table`):

1. **The test follows the design** (:func:`claim_design`), never the data: paired t test where the seed
   draws the data split and both methods use the split of their seed (seed k trains and tests on split
   k); Welch's t test otherwise. Each row says which test and why, and what a seed controls.
2. **Our numbers**: each run reduced to one value by the claim's ``statistic`` (:func:`run_value`); the
   difference ``method - baseline`` in the metric's units; the raw p value and 95% interval.
3. **The family** (:func:`adjust_family`): the primary rows of one paper at one scale (the question a
   reader asks is "does this paper reproduce?"). Bonferroni: adjusted p = min(1, m p) and the adjusted
   interval at level 1 - 0.05/m. The verdict reads the adjusted interval only, which excludes 0 exactly
   when the adjusted p is below 0.05, and the same interval is compared with the paper's difference, so
   every part of a verdict rests on one rule with 95% simultaneous coverage over the family (Holm's
   step-down would reject a little more often but has no matching intervals). Secondary rows (a second
   metric of the same predictions, e.g. AdaECE beside ECE) are shown at the family's level but are not
   members of the family and not counted in the headline.
4. **Verdict words** (:data:`OUTCOMES`, :func:`outcome`) from the adjusted interval ``[L, U]`` of the
   difference in the claimed direction (positive = as claimed) and the paper's difference ``E`` in the
   same orientation; they partition every case.
5. **What the seeds could detect** (:mod:`.power`) for the test actually run at the adjusted level, and
   the order of magnitude of seeds the paper's difference would need.

Claim keys (papers/<paper>/experiments.yaml; common/schemas/experiments.schema.json and :mod:`.validate`
check them): ``id``, ``label`` (a short
human-readable name), ``text``, ``metric``, ``direction`` (``higher`` / ``lower``: the sign the claim
asserts for method - baseline; default the metric's better side), ``method``, ``baseline``, ``match``,
``scales``, ``statistic``, ``seed_linked``, ``reported`` (the reported.csv row of the method's figure),
``reported_baseline`` (the row whose value is the baseline's figure, when it is not the method row's
``baseline_value``), ``secondary_to`` (the primary claim it duplicates) and ``direction_note`` (why the
claimed direction differs from the paper's rows, when it does).
"""
from __future__ import annotations

import math
import re
import statistics

import pandas as pd

from . import power as pw
from .runs import matches, scalar_metrics, seed_linked_ok
from .stats import LOWER_BETTER, PERCENT, regime, shown_settings

#: metrics a claim may name: the test block of metrics.json (as fractions for calibration errors)
KNOWN_METRICS = {"top1", "top5", "ece", "adaece", "cw_ece", "nll", "ts_ece", "ts_adaece", "ts_cw_ece", "ts_nll",
                 "temperature", "occ_center_25", "occ_center_50", "occ_random_25", "occ_random_50", "rmse", "mape",
                 "mae", "mse", "rmse_domain_avg", "rmse_domain_worst", "train_images_per_sec"}
#: how a claim reduces each run to one number (``statistic:`` of a claim; default "last")
STATISTICS = {
    "last": "final evaluation (metrics.json)",
    "best_epoch": "best epoch",
    "median_last_10": "median of the last 10 evaluated epochs",
    "ema_best": "EMA model, best epoch",
    "ema_last": "EMA model, final evaluation",
}
#: reported.csv / claim-text metric names -> (our metric, sign): sign -1 marks an error rate, 100 - accuracy
REPORTED_UNITS = [
    (r"^top1_err", "top1", -1), (r"^top1_acc", "top1", 1), (r"^top-?1 error", "top1", -1),
    (r"^top-?1 acc", "top1", 1), (r"^top5_err", "top5", -1), (r"^ece_percent$", "ece", 1),
    (r"^adaece_percent$", "adaece", 1), (r"^ece_after_ts_percent$", "ts_ece", 1),
    (r"^adaece_after_ts_percent$", "ts_adaece", 1), (r"^rmse$", "rmse", 1), (r"^mape_percent$", "mape", 1),
]
ALPHA = pw.ALPHA

#: every verdict word and when it applies ([L, U]: the family-adjusted interval of the difference in the claimed
#: direction; E: the paper's difference in the same orientation). Exactly one applies to each row.
OUTCOMES = {
    "reproduced": "L > 0: the interval excludes 0 on the claimed side",
    "contradicted": "U < 0: the interval excludes 0 on the opposite side",
    "inconsistent with the paper's effect size": "L <= 0 <= U, and E lies outside [L, U]",
    "underpowered": "L <= 0 <= U, and E lies inside [L, U]: the seeds cannot tell the paper's effect from none",
    "inconclusive, no paper figure": "L <= 0 <= U, and the paper gives no difference in the claim's units",
    "not testable": "fewer than 2 seeds (pairs) in an arm: no interval",
}
NOT_EVALUATED = "not evaluated"

CLAIM_COLUMNS = [
    "paper", "claim", "label", "text", "role", "scale", "dataset", "model", "setting", "regime_name", "regime",
    "metric", "direction", "statistic", "paper_statistic", "method", "method_mean", "method_std", "n_method", "baseline",
    "baseline_mean", "baseline_std", "n_baseline", "test", "test_why", "seed_controls", "n", "delta", "ci95_low",
    "ci95_high", "p", "family_size", "p_adj", "level_adj", "ci_low", "ci_high", "mde", "outcome", "verdict",
    "reported_metric", "reported_method", "reported_baseline", "reported_baseline_method", "reported_dataset",
    "reported_model", "reported_epochs", "reported_source", "reported_verified", "paper_setting", "paper_method",
    "paper_baseline", "reported_effect", "seeds_needed", "method_seeds", "method_values", "method_runs",
    "baseline_seeds", "baseline_values", "baseline_runs"]


def claim_direction(c: dict) -> str:
    """The sign the claim asserts for method - baseline: its ``direction`` or the metric's better side."""
    return c.get("direction") or ("lower" if c["metric"] in LOWER_BETTER else "higher")


def claim_sign(direction: str) -> int:
    """+1 when the claim asserts a higher value for the method, -1 when a lower one."""
    return 1 if direction == "higher" else -1


def claim_label(c: dict) -> str:
    return c.get("label") or f"{c['method']} vs {c['baseline']} ({c['metric']})"


# --------------------------------------------------------------------------- design -> test
def claim_design(c: dict) -> dict:
    """The test the claim's design allows, read from the claim (never from the runs' values).

    What a seed sets in a run (common/train.py, common/data.py): the initial weights (seeded right before the
    model is built), the batch order and crop/flip draws (a generator keyed by (seed, epoch)) and the mixing
    draws (lambda, partners, boxes: another generator keyed by (seed, epoch) that each method consumes in its own
    way). The data split is fixed by the dataset config (``split_seed``, ``options.shuffle_seed``), except where
    the claim's ``seed_linked`` keys say that key equals the seed.

    * ``seed_linked`` (a split drawn per seed): seed k of both methods trains and tests on split k. The split
      is shared within a seed and changes the test set itself, so the seeds are pairs by design: paired t test
      over the per-split differences.
    * otherwise every run uses the same split. Same-seed runs of the two methods start from the same weights
      and batch order, but not from the same mixing draws, and each method's gradients change the trajectory
      from the first step on: the design makes no unit that both methods share up to the test metric, so the
      arms are independent samples of the training randomness: Welch's t test (unpooled: a method may change
      the spread). Had same-seed runs stayed positively correlated after all, Welch's interval would only be
      wider than necessary, never too narrow.
    """
    linked = list(c.get("seed_linked") or [])
    if linked:
        keys = ", ".join(k.split(".")[-1] for k in linked)
        return {"test": "paired t",
                "why": f"seed k of both methods trains and tests on split k ({keys} = seed): pairs over splits",
                "seed_controls": "split, initial weights, batch order, mixing draws"}
    return {"test": "Welch t",
            "why": "one split for every seed; same-seed runs share only their start (weights, batch order), "
                   "not their mixing draws: independent arms",
            "seed_controls": "initial weights, batch order, mixing draws (split fixed)"}


# --------------------------------------------------------------------------- one number per run
def _evaluated(run: dict, key: str) -> list[tuple[int, float]]:
    """(epoch, value) of ``key`` at the run's evaluated epochs, in epoch order."""
    return sorted((int(e["epoch"]), float(e[key])) for e in run["epochs"] if e.get(key) is not None)


def _every_epoch(run: dict, key: str, claim: str, statistic: str) -> list[tuple[int, float]]:
    """(epoch, value) of ``key`` over the run's epochs; an error unless every epoch was evaluated."""
    vals = _evaluated(run, key)
    last = max((int(e["epoch"]) for e in run["epochs"]), default=0)
    if not vals or len({ep for ep, _ in vals}) < last:
        every = run["config"].get("train", {}).get("eval_every", 1)
        raise ValueError(f"claim {claim!r}: statistic {statistic!r} needs {key!r} at every epoch, but run "
                         f"{run['dir'].name} has it at {len(vals)} of {last} epochs (train.eval_every: {every}); "
                         f"set eval_every: 1 for these runs or use statistic: last")
    return vals


def run_value(run: dict, metric: str, statistic: str = "last", claim: str = "?") -> float:
    """One run's number for a claim: its ``metric`` reduced by ``statistic`` (see ``STATISTICS``; the best epoch
    is the metric's best, whatever the claim's direction)."""
    if statistic == "last":
        return float(scalar_metrics(run).get(metric, float("nan")))
    if statistic == "ema_last":
        ema = run["metrics"].get("test_ema") or {}
        if isinstance(ema.get(metric), (int, float)):
            return float(ema[metric])
        return _every_epoch(run, f"test_{metric}_ema", claim, statistic)[-1][1]
    if statistic == "median_last_10":
        vals = _evaluated(run, f"test_{metric}")
        if len(vals) < 10:
            every = run["config"].get("train", {}).get("eval_every", 1)
            raise ValueError(f"claim {claim!r}: statistic 'median_last_10' needs 10 evaluated epochs, run "
                             f"{run['dir'].name} has {len(vals)} (train.eval_every: {every})")
        return float(statistics.median(v for _, v in vals[-10:]))
    if statistic in ("best_epoch", "ema_best"):
        key = f"test_{metric}_ema" if statistic == "ema_best" else f"test_{metric}"
        vals = [v for _, v in _every_epoch(run, key, claim, statistic)]
        return min(vals) if metric in LOWER_BETTER else max(vals)
    raise ValueError(f"claim {claim!r}: unknown statistic {statistic!r}; known: {', '.join(STATISTICS)}")


def claim_arms(c: dict, runs: list[dict]) -> dict[str, dict]:
    """``{setting: {"method": [run, ...], "baseline": [run, ...], "setting_runs": [run, ...]}}`` for one claim:
    the settings as tables show them (:func:`.stats.shown_settings`), so a ``seed_linked`` claim pools the
    runs whose linked keys hold their seed into one setting (e.g. the per-seed-split arm)."""
    linked = tuple(c.get("seed_linked") or ())
    out: dict[str, dict] = {}
    for setting, rs in shown_settings(runs, [linked] if linked else []).items():
        if linked and not all(seed_linked_ok(r, linked) for r in rs):
            continue  # a claim over the per-seed arm reads that arm only
        arms = {arm: [r for r in rs if matches(r, c.get("match")) and want in (r["config"]["method"]["name"], r["label"])]
                for arm, want in (("method", c["method"]), ("baseline", c["baseline"]))}
        if arms["method"] and arms["baseline"]:
            out[setting] = {**arms, "setting_runs": rs}
    return out


def _by_seed(c: dict, arm: str, rs: list[dict], setting: str) -> dict[int, tuple[float, str]]:
    """``{seed: (value, run id)}`` of one arm; two runs of one seed make the arm ambiguous (an error)."""
    out: dict[int, tuple[float, str]] = {}
    for r in sorted(rs, key=lambda r: r["config"]["seed"]):
        seed = r["config"]["seed"]
        if seed in out:
            raise ValueError(f"claim {c['id']!r}: {arm} {c[arm]!r} matches two runs of seed {seed} in setting "
                             f"{setting} (labels {sorted({x['label'] for x in rs})}); name one label")
        out[seed] = (run_value(r, c["metric"], c.get("statistic", "last"), c["id"]), r["dir"].name)
    return {s: v for s, v in out.items() if not math.isnan(v[0])}


# --------------------------------------------------------------------------- the test
class Test:
    """The claim's test on its two arms' values: difference of means, p value, interval at any level."""

    def __init__(self, kind: str, a: dict[int, float], b: dict[int, float]):
        from scipy import stats

        self.kind = kind
        if kind == "paired t":
            seeds = sorted(set(a) & set(b))
            self.x, self.y = [a[s] for s in seeds], [b[s] for s in seeds]
            self.n = len(seeds)
            self.sds = (statistics.stdev(x - y for x, y in zip(self.x, self.y)),) if self.n > 1 else (math.nan,)
            self.ns = (self.n,)
        else:
            self.x, self.y = list(a.values()), list(b.values())
            self.n = min(len(self.x), len(self.y))
            self.sds = tuple(statistics.stdev(v) if len(v) > 1 else math.nan for v in (self.x, self.y))
            self.ns = (len(self.x), len(self.y))
        self.delta = statistics.fmean(self.x) - statistics.fmean(self.y) if self.x and self.y else math.nan
        self.testable = self.n >= 2 and len(self.x) >= 2 and len(self.y) >= 2
        scale = max([1.0] + [abs(v) for v in self.x + self.y])
        self.flat = self.testable and all(s <= 1e-12 * scale for s in self.sds)  # nothing varies (to rounding)
        self.res = None
        if self.testable and not self.flat:
            self.res = (stats.ttest_rel(self.x, self.y) if kind == "paired t"
                        else stats.ttest_ind(self.x, self.y, equal_var=False))

    @property
    def p(self) -> float:
        if not self.testable:
            return math.nan
        if self.flat:
            return 0.0 if self.delta != 0 else 1.0
        return float(self.res.pvalue)

    def interval(self, level: float) -> tuple[float, float]:
        if not self.testable:
            return math.nan, math.nan
        if self.flat:
            return self.delta, self.delta
        ci = self.res.confidence_interval(level)
        return float(ci.low), float(ci.high)

    @property
    def engine(self) -> str:
        return "paired" if self.kind == "paired t" else "welch"


# --------------------------------------------------------------------------- verdict words
def outcome(lo: float, hi: float, direction: str, effect: float | None) -> str:
    """The verdict word (:data:`OUTCOMES`) of an interval ``[lo, hi]`` of method - baseline (metric units), the
    claimed ``direction`` and the paper's difference ``effect`` (same units; None when unknown)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "not testable"
    s = claim_sign(direction)
    low, high = sorted((s * lo, s * hi))
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    if effect is None or math.isnan(effect):
        return "inconclusive, no paper figure"
    return "underpowered" if low <= s * effect <= high else "inconsistent with the paper's effect size"


def verdict_text(word: str, lo: float, hi: float, direction: str, effect: float | None, verified: bool) -> str:
    """The verdict word with what qualifies it: a reproduced effect smaller or larger than the paper's, and a
    comparison with the paper's difference made against a figure marked UNVERIFIED."""
    has_effect = effect is not None and not math.isnan(effect)
    if word == "reproduced" and has_effect:
        s = claim_sign(direction)
        low, high = sorted((s * lo, s * hi))
        if s * effect > high:
            word += ", smaller than the paper's effect"
        elif s * effect < low:
            word += ", larger than the paper's effect"
    if has_effect and not verified and (word.startswith(("underpowered", "inconsistent")) or "paper's effect" in word):
        word += " (against an UNVERIFIED paper figure)"
    return word


# --------------------------------------------------------------------------- the paper's figures
def _select(reported: pd.DataFrame, filt: dict) -> pd.DataFrame:
    sel = reported
    for k, v in filt.items():
        sel = sel[sel[k].astype(str) == str(v)]
    return sel


_TEXT_PAIR = re.compile(r"(\d+(?:\.\d+)?)%?\s+vs\.?\s+(\d+(?:\.\d+)?)%?\s*([A-Za-z][A-Za-z0-9 \-]*)?")


def reported_from_text(c: dict) -> dict:
    """``reported_*`` columns from a claim text that quotes the paper's pair ("2.88 vs 3.09 top-1 error"),
    method first; {} when the text quotes none."""
    m = _TEXT_PAIR.search(c.get("text", ""))
    if not m:
        return {}
    return {"reported_metric": (m.group(3) or "").strip() or c["metric"], "reported_method": float(m.group(1)),
            "reported_baseline": float(m.group(2)), "reported_baseline_method": "", "reported_dataset": "",
            "reported_model": "", "reported_epochs": "", "reported_source": "claim text (experiments.yaml)",
            "reported_verified": True}


def reported_row(c: dict, reported: pd.DataFrame) -> dict:
    """The paper's figures of a claim as ``reported_*`` columns: the method's from its ``reported:`` row, the
    baseline's from its ``reported_baseline:`` row (the value there) or else the method row's ``baseline_value``;
    from the claim text when it names no row; {} when neither gives a figure."""
    if not c.get("reported"):
        return reported_from_text(c)
    sel = _select(reported, c["reported"])
    if sel.empty:
        return reported_from_text(c)
    r0 = sel.iloc[0]
    base, base_name, verified = r0["baseline_value"], r0["baseline_method"], bool(r0["verified"])
    if c.get("reported_baseline"):
        b = _select(reported, c["reported_baseline"])
        if not b.empty:
            base, base_name, verified = b.iloc[0]["value"], b.iloc[0]["method"], verified and bool(b.iloc[0]["verified"])
    return {"reported_metric": r0["metric"], "reported_method": r0["value"], "reported_baseline": base,
            "reported_baseline_method": base_name, "reported_dataset": r0["dataset"], "reported_model": r0["model"],
            "reported_epochs": r0["epochs"], "reported_source": r0["source"], "reported_verified": verified}


def in_our_units(metric: str, reported_metric: str, value) -> float | None:
    """A paper figure as our metric stores it (fractions for calibration errors; an error rate becomes
    100 - error), or None when the figure is missing or in other units."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    name = str(reported_metric or "").strip().lower()
    if name == metric:  # a claim text quoting the pair in the metric's own (displayed) units
        return float(value) / 100.0 if metric in PERCENT else float(value)
    for pattern, ours, sign in REPORTED_UNITS:
        if re.search(pattern, name) and ours == metric:
            v = float(value) if sign > 0 else 100.0 - float(value)
            return v / 100.0 if ours in PERCENT else v
    return None


def reported_pair(c: dict, rep: dict) -> tuple[float | None, float | None]:
    """(method, baseline) figures of the paper in our metric's stored units (None where unknown)."""
    return tuple(in_our_units(c["metric"], rep.get("reported_metric"), rep.get(k))
                 for k in ("reported_method", "reported_baseline"))


def reported_effect(c: dict, rep: dict) -> float | None:
    """The paper's (method - baseline) difference in the claim's metric (stored units), or None."""
    m, b = reported_pair(c, rep)
    return None if m is None or b is None else m - b


_PAPER_STATISTICS = [(r"best_epoch", "best epoch"), (r"median_last(\d+)", "median of the last {} epochs"),
                     (r"mean(\d+)", "mean of {} runs"), (r"after_ts", "after temperature scaling")]


def paper_setting(rep: dict) -> str:
    """The paper's setting of a reported figure: dataset, model, epochs and the statistic its metric name says."""
    if not rep:
        return ""
    if str(rep.get("reported_source", "")).startswith("claim text"):
        return "as quoted in the claim text"
    parts = [str(rep.get(k)) for k in ("reported_dataset", "reported_model") if rep.get(k) and not pd.isna(rep.get(k))]
    epochs = rep.get("reported_epochs")
    if epochs and not pd.isna(epochs) and str(epochs).strip():
        parts.append(f"{epochs} epochs" if str(epochs).isdigit() else str(epochs))
    name = str(rep.get("reported_metric", "")).lower()
    for pattern, text in _PAPER_STATISTICS:
        m = re.search(pattern, name)
        if m:
            parts.append(text.format(*m.groups()))
    return ", ".join(parts)


# --------------------------------------------------------------------------- our regime
def _model_name(cfg: dict) -> str:
    model = cfg.get("model", {})
    width = model.get("width")
    return str(model.get("name", "?")).replace("timm:", "") + (f" w{width}" if width else "")


def our_regime(c: dict, arms: dict) -> tuple[str, str]:
    """(name, details) of the setting a claim row was tested in. Details: dataset and training images, epochs,
    model, the split protocol, the baseline's accuracy. Name: for classification settings with a
    cross-entropy run, how over-confident CE ends there (:func:`.stats.regime`); for regression the split
    protocol; else none."""
    cfg = arms["baseline"][0]["config"]
    ds = cfg["dataset"]
    size = ds.get("train_size")
    split = "split drawn per seed" if c.get("seed_linked") else "one fixed split"
    details = [f"{ds['name']} ({size} train images)" if size else ds["name"], f"{cfg['train'].get('epochs')} epochs",
               _model_name(cfg), split]
    base_top1 = [scalar_metrics(r).get("top1") for r in arms["baseline"]]
    if all(isinstance(v, (int, float)) for v in base_top1) and base_top1:
        details.append(f"baseline top-1 {statistics.fmean(base_top1):.0f}%")
    ce = [scalar_metrics(r).get("ece") for r in arms["setting_runs"] if r["config"]["method"]["name"] == "erm"]
    ce = [v for v in ce if isinstance(v, (int, float))]
    if ce:
        return regime(100 * statistics.fmean(ce)), ", ".join(details)
    return ("" if arms["baseline"][0]["task"] == "classification" else split), ", ".join(details)


# --------------------------------------------------------------------------- the table
def _not_evaluated(c: dict, paper: str, scale: str, reason: str) -> dict:
    return {"paper": paper, "claim": c["id"], "label": claim_label(c), "text": c["text"], "role": claim_role(c),
            "scale": scale, "metric": c["metric"], "direction": claim_direction(c),
            "statistic": c.get("statistic", "last"), "method": c["method"], "baseline": c["baseline"],
            "outcome": NOT_EVALUATED, "verdict": f"not evaluated: {reason}"}


def claim_role(c: dict) -> str:
    return f"secondary to {c['secondary_to']}" if c.get("secondary_to") else "primary"


def _arm_columns(arm: str, vals: dict[int, tuple[float, str]]) -> dict[str, str]:
    """``<arm>_seeds``, ``<arm>_values`` and ``<arm>_runs``: space-separated, in seed order."""
    return {f"{arm}_seeds": " ".join(str(s) for s in vals), f"{arm}_values": " ".join(repr(v) for v, _ in vals.values()),
            f"{arm}_runs": " ".join(rid for _, rid in vals.values())}


def claim_rows(c: dict, runs: list[dict], paper: str, reported: pd.DataFrame, scale: str) -> list[dict]:
    """The rows of one claim before the family adjustment: per setting both arms, the test's raw p and 95%
    interval, our regime and the paper's figures in our units (rows keep their ``Test`` under ``_test``)."""
    direction, design = claim_direction(c), claim_design(c)
    rep = reported_row(c, reported)
    effect = reported_effect(c, rep)
    paper_m, paper_b = reported_pair(c, rep)
    try:
        arms_by_setting = claim_arms(c, runs)
        values = {s: {arm: _by_seed(c, arm, arms[arm], s) for arm in ("method", "baseline")}
                  for s, arms in arms_by_setting.items()}
    except ValueError as e:  # a statistic the runs cannot give, an ambiguous arm
        return [_not_evaluated(c, paper, scale, str(e))]
    values = {s: v for s, v in values.items() if v["method"] and v["baseline"]}
    if not values:
        return [_not_evaluated(c, paper, scale, f"no setting of this paper's {scale} runs has both "
                                                 f"{c['method']!r} and {c['baseline']!r} with a value of {c['metric']!r}")]
    rows = []
    for setting, v in sorted(values.items()):
        arms = arms_by_setting[setting]
        test = Test(design["test"], {s: x for s, (x, _) in v["method"].items()},
                    {s: x for s, (x, _) in v["baseline"].items()})
        (ma, sa), (mb, sb) = ([statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else math.nan]
                              for xs in ([x for x, _ in v[arm].values()] for arm in ("method", "baseline")))
        name, details = our_regime(c, arms)
        lo95, hi95 = test.interval(1 - ALPHA)
        rows.append({
            "paper": paper, "claim": c["id"], "label": claim_label(c), "text": c["text"], "role": claim_role(c),
            "scale": scale, "dataset": arms["baseline"][0]["dataset"], "model": arms["baseline"][0]["model"],
            "setting": setting, "regime_name": name, "regime": details, "metric": c["metric"],
            "direction": direction, "statistic": c.get("statistic", "last"),
            "paper_statistic": c.get("paper_statistic"), "method": c["method"], "method_mean": ma, "method_std": sa, "n_method": len(v["method"]),
            "baseline": c["baseline"], "baseline_mean": mb, "baseline_std": sb, "n_baseline": len(v["baseline"]),
            "test": design["test"], "test_why": design["why"], "seed_controls": design["seed_controls"],
            "n": test.n, "delta": test.delta, "ci95_low": lo95, "ci95_high": hi95, "p": test.p,
            **rep, "paper_setting": paper_setting(rep), "paper_method": paper_m, "paper_baseline": paper_b,
            "reported_effect": effect, **_arm_columns("method", v["method"]),
            **_arm_columns("baseline", v["baseline"]), "_test": test,
        })
    return rows


def adjust_family(rows: list[dict]) -> None:
    """Bonferroni over the primary, testable rows (one paper at one scale): adjusted p, the interval at level
    1 - 0.05/m, the detectable effect and seeds needed at that level, and the verdict from that interval."""
    tested = [r for r in rows if "_test" in r]
    m = max(1, sum(1 for r in tested if r["role"] == "primary" and r["_test"].testable))
    alpha = ALPHA / m
    for r in tested:
        test = r.pop("_test")
        lo, hi = test.interval(1 - alpha)
        effect = r["reported_effect"]
        r.update({"family_size": m, "level_adj": 1 - alpha, "ci_low": lo, "ci_high": hi,
                  "p_adj": min(1.0, m * test.p) if test.testable else math.nan,
                  "mde": pw.mde(test.engine, test.sds, test.ns, alpha),
                  "seeds_needed": pw.seeds_needed(effect, test.engine, test.sds, alpha) if test.testable else None})
        r["outcome"] = outcome(lo, hi, r["direction"], effect)
        r["verdict"] = verdict_text(r["outcome"], lo, hi, r["direction"], effect, bool(r.get("reported_verified", True)))


def at_scale(c: dict, scale: str) -> dict:
    """The claim as evaluated at ``scale``: ``statistic_at: {<scale>: <statistic>}`` replaces the paper's
    ``statistic`` at a scale whose runs cannot give it (e.g. evaluated twice, so no median of the last 10
    epochs); the row then keeps the paper's as ``paper_statistic``, and the tables name both."""
    over = (c.get("statistic_at") or {}).get(scale)
    if over is None or over == c.get("statistic", "last"):
        return c
    return {**c, "statistic": over, "paper_statistic": c.get("statistic", "last")}


def claims_table(runs: list[dict], exp: dict, reported: pd.DataFrame, scale: str) -> pd.DataFrame:
    """One row per (claim, setting) at ``scale`` (claims whose ``scales`` leave it out are skipped); a claim
    with no setting to test is one "not evaluated" row with the reason."""
    rows = []
    for c in exp.get("claims") or []:
        if not c.get("scales") or scale in c["scales"]:
            rows += claim_rows(at_scale(c, scale), runs, exp["paper"], reported, scale)
    adjust_family(rows)
    out = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    out["seeds_needed"] = out["seeds_needed"].astype("Int64")
    return out


def shared_runs(ct: pd.DataFrame, with_paper: bool = False) -> list[tuple[str, list[str]]]:
    """Arms several claim rows rest on: ``[(description, [row, ...]), ...]`` for every set of runs (one method
    in one setting) that more than one row uses, so a reader sees which verdicts are not independent. Rows are
    named by claim id (``paper/claim`` with ``with_paper``), with the regime for a claim tested in several."""
    uses: dict[tuple, list[str]] = {}
    regimes: dict[tuple, str] = {}
    for _, r in ct.iterrows():
        if r.get("outcome") == NOT_EVALUATED:
            continue
        name = (f"{r['paper']}/" if with_paper else "") + r["claim"] + (
            f" [{r['regime_name']}]" if ((ct["claim"] == r["claim"]) & (ct["paper"] == r["paper"])).sum() > 1 else "")
        for arm in ("method", "baseline"):
            runs = r.get(f"{arm}_runs")
            if isinstance(runs, str) and runs:
                key = (r[arm], r["dataset"], r["model"], tuple(sorted(runs.split())))
                uses.setdefault(key, []).append(name)
                if isinstance(r.get("regime_name"), str) and r["regime_name"]:  # papers without a CE run name none
                    regimes[key] = r["regime_name"]
    out = [(f"`{k[0]}` on {k[1]}/{k[2]}" + (f" ({regimes[k]})" if k in regimes else "") + f", {len(k[3])} runs",
            sorted(set(v))) for k, v in sorted(uses.items()) if len(set(v)) > 1]
    keys = sorted(uses)
    for i, a in enumerate(keys):  # different run sets of one method that share some runs (e.g. a seed in two arms)
        for b in keys[i + 1:]:
            common = set(a[3]) & set(b[3])
            if a[:3] == b[:3] and common and a[3] != b[3]:
                first, second = sorted((regimes.get(a, "one"), regimes.get(b, "other")))
                out.append((f"`{a[0]}` on {a[1]}/{a[2]}: {len(common)} run(s) in both the {first} and the {second} rows",
                            sorted(set(uses[a]) | set(uses[b]))))
    return out


def group_rows(ct: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{regime name: rows}`` in order of first appearance (claims tested in several regimes are read per regime)."""
    if ct.empty:
        return {}
    names = ct["regime_name"].fillna("").astype(str)
    return {n: ct[names == n] for n in dict.fromkeys(names)}

