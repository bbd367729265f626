"""common.aggregate: claim statistics over epochs, the detectable effect and seeds needed, verdict reasons."""
import json
import math

import pytest

from common import aggregate as agg
from common.aggregate import power as pw

NO_REPORTED = agg.pd.DataFrame(columns=agg.REPORTED_COLUMNS + ["verified"])


def _run(tmp_path, method, seed, top1s, *, last=None, ema=None, ema_final=None, eval_every=1):
    """A run whose epochs.jsonl records test_top1 (and test_top1_ema) at every ``eval_every``-th epoch."""
    cfg = {"seed": seed, "method": {"name": method}, "dataset": {"name": "cifar10"}, "model": {"name": "resnet20"},
           "train": {"epochs": len(top1s), "eval_every": eval_every}}
    d = tmp_path / f"{method}-s{seed}"
    d.mkdir()
    rows = []
    for i, v in enumerate(top1s, start=1):
        row = {"epoch": i, "train_loss": 1.0}
        if i % eval_every == 0 or i == len(top1s):
            row["test_top1"] = v
            if ema is not None:
                row["test_top1_ema"] = ema[i - 1]
        rows.append(row)
    (d / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = {"task": "classification", "test": {"top1": top1s[-1] if last is None else last},
         "provenance": {"config": cfg, "train_time_sec": 1.0}}
    if ema_final is not None:
        m["test_ema"] = {"top1": ema_final}
    (d / "metrics.json").write_text(json.dumps(m))
    return d / "metrics.json"


def _one(tmp_path, **kw):
    return agg.load_runs([_run(tmp_path, "erm", 0, **kw)])[0]


def test_statistics_reduce_the_epochs_as_named(tmp_path):
    curve = [10.0, 30.0, 20.0, 25.0, 24.0, 26.0, 22.0, 23.0, 21.0, 27.0, 28.0, 29.0]
    r = _one(tmp_path, top1s=curve, last=28.5, ema=[c + 1 for c in curve], ema_final=31.5)
    assert agg.stats.run_value(r, "top1", "last") == 28.5  # metrics.json, as before
    assert agg.stats.run_value(r, "top1", "best_epoch", higher_is_better=True) == 30.0
    assert agg.stats.run_value(r, "top1", "best_epoch", higher_is_better=False) == 10.0
    assert agg.stats.run_value(r, "top1", "median_last_10") == 24.5  # epochs 3..12: sorted middle pair 24, 25
    assert agg.stats.run_value(r, "top1", "ema_best") == 31.0
    assert agg.stats.run_value(r, "top1", "ema_last") == 31.5  # metrics.json's test_ema block


def test_ema_last_falls_back_to_the_last_epoch_and_needs_ema(tmp_path):
    r = _one(tmp_path, top1s=[1.0, 2.0, 3.0], ema=[5.0, 7.0, 6.0])
    assert agg.stats.run_value(r, "top1", "ema_last") == 6.0
    r = agg.load_runs([_run(tmp_path, "mixup", 0, [1.0, 2.0, 3.0])])[0]
    with pytest.raises(ValueError, match=r"claim 'c': statistic 'ema_last' needs 'test_top1_ema' at every epoch"):
        agg.stats.run_value(r, "top1", "ema_last", claim="c")


def test_statistics_needing_every_epoch_name_the_claim_and_run(tmp_path):
    r = _one(tmp_path, top1s=[1.0] * 10, eval_every=5)
    with pytest.raises(ValueError, match=r"claim 'acc': statistic 'best_epoch' needs 'test_top1' at every epoch, "
                                         r"but run erm-s0 has it at 2 of 10 epochs \(train.eval_every: 5\)"):
        agg.stats.run_value(r, "top1", "best_epoch", claim="acc")
    r = agg.load_runs([_run(tmp_path, "mixup", 0, [1.0] * 5)])[0]
    with pytest.raises(ValueError, match=r"'median_last_10' needs 10 epochs, run mixup-s0 has 5"):
        agg.stats.run_value(r, "top1", "median_last_10", claim="acc")


def test_claims_table_uses_and_names_the_statistic(tmp_path):
    paths = [_run(tmp_path, m, s, [base + s, base + 5 + s, base + s]) for m, base in (("erm", 50.0), ("mixup", 60.0))
             for s in (0, 1, 2)]
    exp = {"paper": "p", "claims": [{"id": "c", "text": "t", "metric": "top1", "method": "mixup", "baseline": "erm",
                                     "statistic": "best_epoch"}]}
    ct = agg.claims_table(agg.load_runs(paths), exp, NO_REPORTED, "cpu")
    assert ct["method_mean"].iloc[0] == 66.0 and ct["baseline_mean"].iloc[0] == 56.0
    assert ct["statistic"].iloc[0] == "best_epoch" and ct["method_values"].iloc[0] == "65.0 66.0 67.0"
    assert "| best epoch |" in agg.claims_markdown(ct)


def test_mde_against_a_hand_computed_case():
    # 3 seeds per arm, per-seed SD 1: se = sqrt(2/3), df = 4, t_0.975(4) = 2.7764451. Integrating the noncentral t
    # by hand (power = E_V[1 - Phi(c sqrt(V/4) - d/se) + Phi(-c sqrt(V/4) - d/se)], V ~ chi2(4)) gives power 0.8
    # at d = 3.07089; the textbook approximation (t_0.975 + t_0.8) * se = 3.035 is a little smaller.
    assert pw.mde(1.0, 3, 3) == pytest.approx(3.07089, abs=2e-5)
    assert pw.mde(2.0, 3, 3) == pytest.approx(2 * 3.07089, abs=4e-5)  # scales with the SD
    c = 2.7764451052
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    d, h = 3.07089 / math.sqrt(2 / 3), 80.0 / 40000
    power = sum((1 - phi(c * math.sqrt(v / 4) - d) + phi(-c * math.sqrt(v / 4) - d)) * v * math.exp(-v / 2) / 4 * h
                for v in (i * h for i in range(1, 40000)))
    assert power == pytest.approx(0.8, abs=1e-4)
    # many seeds: the normal-theory value (z_0.975 + z_0.8) * se
    assert pw.mde(1.0, 2000, 2000) == pytest.approx((1.959964 + 0.841621) * math.sqrt(2 / 2000), rel=2e-3)
    assert math.isnan(pw.mde(1.0, 1, 3)) and pw.mde(0.0, 3, 3) == 0.0


def test_seeds_needed_is_the_first_n_whose_mde_reaches_the_effect():
    n = pw.seeds_needed(1.0, 1.0)
    assert n == 17 and pw.mde(1.0, n, n) <= 1.0 < pw.mde(1.0, n - 1, n - 1)
    big = pw.seeds_needed(0.2, 1.0)
    assert pw.mde(1.0, big, big) <= 0.2 < pw.mde(1.0, big - 1, big - 1)
    assert pw.seeds_needed(0.001, 1.0) is None and pw.seeds_needed(None, 1.0) is None


def test_verdict_says_why_it_is_inconclusive():
    assert agg.stats.verdict_text("inconclusive", "top1", 3.9, 1.0) == (
        "inconclusive — underpowered: detects ≥ 3.90 points, paper effect 1.00")
    assert agg.stats.verdict_text("inconclusive", "ece", 0.05, -0.02) == (
        "inconclusive — underpowered: detects ≥ 5.00 points, paper effect 2.00")  # fractions shown in percent
    assert agg.stats.verdict_text("inconclusive", "top1", 0.5, 1.0).endswith("smaller than the paper's")
    assert agg.stats.verdict_text("reproduced", "top1", 3.9, 1.0) == "reproduced"


def test_tables_show_the_detectable_effect_and_the_seeds_the_papers_effect_needs(tmp_path):
    paths = [_run(tmp_path, m, s, [v]) for m, vals in (("erm", (50.0, 52.0, 51.0)), ("mixup", (51.0, 53.0, 52.5)))
             for s, v in enumerate(vals)]
    exp = {"paper": "p", "claims": [{"id": "c", "text": "mixup beats ERM (paper: 4.0 vs 4.5 top-1 error)",
                                     "metric": "top1", "method": "mixup", "baseline": "erm"}]}
    r = agg.claims_table(agg.load_runs(paths), exp, NO_REPORTED, "cpu").iloc[0]
    sd = pw.pooled_sd([51.0, 53.0, 52.5], [50.0, 52.0, 51.0])
    assert r["mde"] == pytest.approx(pw.mde(sd, 3, 3)) and r["reported_effect"] == pytest.approx(0.5)
    assert r["seeds_needed"] == pw.seeds_needed(0.5, sd) and r["outcome"] == "inconclusive"
    assert r["verdict"] == f"inconclusive — underpowered: detects ≥ {r['mde']:.2f} points, paper effect 0.50"
    line = agg.claims_markdown(agg.pd.DataFrame([r])).splitlines()[-1]
    assert f"| ≥ {r['mde']:.2f}; paper's 0.50 needs {r['seeds_needed']} seeds/arm |" in line


def test_paper_effect_in_the_claims_units():
    c = {"metric": "top1"}
    err = {"reported_metric": "top1_err_best_epoch", "reported_method": 2.88, "reported_baseline": 3.09}
    assert agg.stats.reported_effect(c, err) == pytest.approx(0.21)  # lower error = higher accuracy
    ece = {"reported_metric": "ECE_percent", "reported_method": 1.01, "reported_baseline": 3.75}
    assert agg.stats.reported_effect({"metric": "ece"}, ece) == pytest.approx(-0.0274)  # stored as fractions
    assert agg.stats.reported_effect({"metric": "top1"}, ece) is None  # other units
    text = {"id": "x", "metric": "top1", "text": "CutMix beats mixup (Table 7, CIFAR-10: 2.88 vs 3.09 top-1 error)"}
    rep = agg.stats.reported_from_text(text)
    assert (rep["reported_method"], rep["reported_baseline"], rep["reported_metric"]) == (2.88, 3.09, "top-1 error")
    assert agg.stats.reported_effect(text, rep) == pytest.approx(0.21)
    assert agg.stats.reported_from_text({"metric": "top1", "text": "no numbers here"}) == {}
