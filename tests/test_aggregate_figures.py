"""common.aggregate figures and the summary CLI's guards: per-claim figures that show every seed (paired seeds
joined), the difference with its intervals and the paper's difference, with no empty panel and legends off the
data; a forest plot per metric family in the claimed direction with the verdict beside each row; curves only
where there is a curve; and a summary that refuses to leave papers out."""
import json
from pathlib import Path

import matplotlib
import pytest

from common import aggregate as agg
from common.aggregate.figures import OUTCOME_STYLE, claim_figure, curves, forest_plot, metric_family

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent


def _row(**kw):
    r = {"paper": "cutmix", "claim": "cutmix_beats_mixup", "label": "CutMix > mixup, top-1", "setting": "b1936d",
         "dataset": "cifar10", "model": "resnet20", "metric": "top1", "direction": "higher", "statistic": "last",
         "role": "primary", "regime_name": "data-limited, CE ECE 35%",
         "regime": "cifar10 (1000 train images), 100 epochs, resnet20 w16, one fixed split",
         "text": "CutMix beats mixup (alpha 1) in top-1 with a claim text long enough to wrap over two lines of the "
                 "figure title (Table 7, CIFAR-10: 2.88 vs 3.09 top-1 error)",
         "method": "cutmix", "baseline": "mixup", "method_mean": 52.3, "method_std": 1.98, "baseline_mean": 56.54,
         "baseline_std": 1.04, "n_method": 3, "n_baseline": 3, "n": 3, "test": "Welch t", "delta": -4.24,
         "ci95_low": -8.32, "ci95_high": -0.16, "ci_low": -10.45, "ci_high": 1.97, "level_adj": 1 - 0.05 / 3,
         "p": 0.046, "p_adj": 0.137, "family_size": 3, "mde": 9.33, "outcome": "underpowered",
         "verdict": "underpowered", "method_values": "50.8 51.6 54.5", "method_seeds": "0 1 2",
         "baseline_values": "57.0 57.2 55.4", "baseline_seeds": "0 1 2", "reported_effect": 0.21,
         "reported_verified": True}
    r.update(kw)
    return agg.pd.Series(r)


def _lines(ax):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata())]


def test_claim_figure_shows_every_seed_and_the_difference_with_both_intervals_and_the_papers():
    fig = claim_figure(_row(), "cpu")
    seeds, diff = fig.axes
    ys = sorted(y for ln in _lines(seeds) if ln.get_linestyle() == "None" for y in ln.get_ydata())
    assert ys == sorted([50.8, 51.6, 54.5, 57.0, 57.2, 55.4])
    spans = sorted(tuple(sorted(ln.get_ydata())) for ln in _lines(diff) if len(ln.get_ydata()) == 2)
    assert (-10.45, 1.97) in spans and (-8.32, -0.16) in spans  # adjusted and 95% intervals, not +- SD
    assert [0.21] in [list(ln.get_ydata()) for ln in _lines(diff) if ln.get_marker() == "D"]  # the paper's difference
    assert all(ax.axison for ax in fig.axes)  # no empty panel, even without a paper figure
    assert all(ax.axison for ax in claim_figure(_row(reported_effect=None), "cpu").axes)
    assert "data-limited, CE ECE 35%" in fig._suptitle.get_text()  # our regime in the title


def test_claim_figure_legends_sit_below_the_data_and_the_title_clears_the_panels():
    fig = claim_figure(_row(), "cpu")
    fig.canvas.draw()
    rend = fig.canvas.get_renderer()
    top = fig._suptitle.get_window_extent(rend)
    for ax in fig.axes:
        box = ax.get_window_extent(rend)
        legend = ax.get_legend().get_window_extent(rend)
        assert legend.y1 <= box.y0 + 1, "legend off the data"
        assert not top.overlaps(ax.title.get_window_extent(rend))


def test_paired_seeds_are_joined_by_lines():
    paired = claim_figure(_row(test="paired t", n=3), "cpu").axes[0]
    welch = claim_figure(_row(), "cpu").axes[0]
    joins = lambda ax: [ln for ln in _lines(ax) if list(ln.get_xdata()) == [0, 1]]  # noqa: E731
    assert len(joins(paired)) == 3 and not joins(welch)
    assert sorted((ln.get_ydata()[0], ln.get_ydata()[1]) for ln in joins(paired))[0] == (55.4, 54.5)  # seed 2's pair


def test_forest_plot_has_a_panel_per_metric_family_in_the_claimed_direction_with_verdicts(tmp_path):
    ct = agg.pd.DataFrame([
        _row(),
        _row(claim="cutmix_beats_erm", label="CutMix > ERM, top-1", delta=2.13, ci95_low=-1.91, ci95_high=6.17,
             ci_low=-3.9, ci_high=8.2),
        _row(paper="rankmixup", claim="mrl_lowers_ece", label="MRL < CE, ECE", metric="ece", direction="lower",
             delta=-0.045, ci95_low=-0.11, ci95_high=0.02, ci_low=-0.28, ci_high=0.19, reported_effect=-0.027),
        _row(paper="c_mixup", claim="cmix", label="C-Mixup < ERM, NO2 RMSE", metric="rmse", dataset="no2",
             direction="lower", delta=0.026, ci95_low=0.015, ci95_high=0.038, ci_low=0.009, ci_high=0.044,
             outcome="contradicted", verdict="contradicted", reported_effect=-0.028)])
    import matplotlib.pyplot as plt

    captured = {}
    real_close = plt.close
    plt.close = lambda fig=None: captured.setdefault("fig", fig)
    try:
        paths = forest_plot(ct, "cpu", tmp_path / "figs" / "summary_forest.png")
    finally:
        plt.close = real_close
    assert [p.name for p in paths] == ["summary_forest.png", "summary_forest.pdf"] and all(p.exists() for p in paths)
    axes = [ax for ax in captured["fig"].axes if ax.get_yticklabels()]
    assert [ax.get_title(loc="left") for ax in axes] == ["accuracy (top-1, occlusion)",
                                                         "calibration error (ECE family)", "RMSE on no2"]
    assert all(ax.get_xlabel().startswith("improvement in the claimed direction") for ax in axes)
    ece, rmse = axes[1], axes[2]
    # a lower-is-better claim is turned: the ECE drop of 4.5 points is +4.5, the RMSE rise is negative
    assert [pytest.approx(4.5)] == [list(ln.get_xdata()) for ln in _lines(ece) if ln.get_marker() == "^"][0]
    assert any(ln.get_xdata()[0] < 0 for ln in _lines(rmse) if ln.get_marker() == OUTCOME_STYLE["contradicted"][1])
    assert "contradicted" in [t.get_text() for t in rmse.texts]  # the verdict beside the row
    assert "MRL < CE, ECE" in [t.get_text() for t in ece.get_yticklabels()]


def test_metric_families_keep_rmse_apart_per_dataset():
    assert metric_family({"metric": "rmse", "dataset": "airfoil"}) != metric_family({"metric": "rmse", "dataset": "no2"})
    assert metric_family({"metric": "ece", "dataset": "x"}) == metric_family({"metric": "adaece", "dataset": "y"})


def _epoch_run(tmp_path, method, seed, evaluated):
    cfg = {"seed": seed, "method": {"name": method}, "dataset": {"name": "cifar10"}, "model": {"name": "resnet20"},
           "train": {"epochs": max(evaluated)}}
    d = tmp_path / f"{method}-s{seed}-{len(evaluated)}"
    d.mkdir()
    rows = [{"epoch": e, **({"test_top1": 10.0 + e} if e in evaluated else {})} for e in range(1, max(evaluated) + 1)]
    (d / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "metrics.json").write_text(json.dumps({"task": "classification", "test": {"top1": 50.0},
                                                "provenance": {"config": cfg, "train_time_sec": 1.0}}))
    return d / "metrics.json"


def test_curves_only_with_five_evaluated_epochs_and_with_markers(tmp_path):
    two = agg.load_runs([_epoch_run(tmp_path, m, 0, [50, 100]) for m in ("erm", "mixup")])
    curves(two, "p", "classification", "cpu", tmp_path / "two")
    assert not list(tmp_path.glob("two/*.png"))
    five = agg.load_runs([_epoch_run(tmp_path, m, 1, [10, 20, 30, 40, 50]) for m in ("erm", "mixup")])
    curves(five, "p", "classification", "cpu", tmp_path / "five")
    assert len(list((tmp_path / "five").glob("curves_*.png"))) == 1


def test_summary_refuses_to_leave_papers_out(tmp_path):
    claims = tmp_path / "cutmix_claims.csv"
    claims.write_text(",".join(agg.CLAIM_COLUMNS) + "\n")
    outs = [a for k in ("md", "csv", "tex", "matrix", "matrix-csv") for a in (f"--out-{k}", str(tmp_path / k))]
    with pytest.raises(SystemExit, match=r"the cpu summary would leave out c_mixup, decoupled_mixup, mixpro, mixup, "
                                         r"rankmixup, resizemix, transmix: pass every paper's"):
        agg.main(["summary", "--scale", "cpu", "--claims", str(claims), *outs])
    assert not list(tmp_path.glob("m*"))  # nothing written
    agg.main(["summary", "--scale", "cpu", "--claims", str(claims), *outs, "--allow-subset",
              "--out-format", str(tmp_path / "aggregate_format.txt")])
    assert (tmp_path / "aggregate_format.txt").read_text() == f"{agg.AGGREGATE_FORMAT}\n"
    md = (tmp_path / "md").read_text()
    assert "_no claims_" in md and "_Partial summary: not included (not aggregated in this invocation): c_mixup, " in md
    # quick results are not committed: a paper subset writes a partial summary that says so
    assert agg.main(["summary", "--scale", "quick", "--claims", str(claims), *outs]) == 0
    assert "Partial summary" in (tmp_path / "md").read_text()


def test_a_missing_claims_table_is_a_message_and_exit_1(tmp_path, capsys):
    outs = [a for k in ("md", "csv", "tex", "matrix", "matrix-csv") for a in (f"--out-{k}", str(tmp_path / k))]
    assert agg.main(["summary", "--scale", "cpu", "--claims", str(tmp_path / "x_claims.csv"), "--allow-subset",
                     *outs]) == 1
    assert "error: python -m common.aggregate summary: claims tables not found: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
