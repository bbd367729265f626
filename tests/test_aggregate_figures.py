"""common.aggregate figures and the summary CLI's guards: readable per-claim figures (no overlapping
titles, the paper's pair shown, points with per-seed values), the forest plot of every claim, and a
summary that refuses to leave papers out."""
from pathlib import Path

import matplotlib
import pytest

from common import aggregate as agg
from common.aggregate.figures import claim_figure, forest_plot

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent


def _row(**kw):
    r = {"paper": "cutmix", "claim": "cutmix_beats_mixup", "setting": "b1936d", "dataset": "cifar10",
         "model": "resnet20", "metric": "top1", "higher_is_better": True, "statistic": "last",
         "text": "CutMix beats mixup (alpha 1) in top-1 with a claim text long enough to wrap over two lines of the "
                 "figure title (Table 7, CIFAR-10: 2.88 vs 3.09 top-1 error)",
         "method": "cutmix", "baseline": "mixup", "method_mean": 52.3, "method_std": 1.98, "baseline_mean": 56.54,
         "baseline_std": 1.04, "n_method": 3, "n_baseline": 3, "delta": -4.24, "ci_low": -8.32, "ci_high": -0.16,
         "mde": 4.85, "outcome": "not reproduced at this scale", "verdict": "not reproduced at this scale",
         "method_values": "50.8 51.6 54.5", "baseline_values": "57.0 57.2 55.4", "reported_effect": 0.21}
    r.update(kw)
    return agg.pd.Series(r)


def test_claim_figure_title_does_not_overlap_the_panel_titles():
    fig = claim_figure(_row(**agg.stats.reported_from_text({"metric": "top1", "text": _row()["text"]})), "cpu")
    fig.canvas.draw()
    rend = fig.canvas.get_renderer()
    top = fig._suptitle.get_window_extent(rend)
    for ax in fig.axes:
        assert ax.get_title(), "each panel has its subtitle"
        assert not top.overlaps(ax.title.get_window_extent(rend)), ax.get_title()
    assert fig.get_layout_engine() is not None  # constrained layout places the title above the panels


def test_the_paper_panel_shows_the_pair_quoted_in_the_claim_text():
    fig = claim_figure(_row(**agg.stats.reported_from_text({"metric": "top1", "text": _row()["text"]})), "cpu")
    paper, ours = fig.axes
    assert paper.axison and "no reported figure" not in [t.get_text() for t in paper.texts]
    ys = sorted(y for line in paper.get_lines() for y in line.get_ydata())
    assert ys == [2.88, 3.09]
    # ours: points with intervals, no bars; every seed drawn
    assert not [p for p in ours.patches if p.get_height() > 0]
    seeds = sorted(y for line in ours.get_lines() if line.get_label() in ("seeds", "_child0")
                   for y in line.get_ydata())
    assert {50.8, 51.6, 54.5, 57.0, 57.2, 55.4} <= set(seeds)


def test_without_any_paper_figure_the_panel_says_so():
    fig = claim_figure(_row(text="MixPro beats TransMix (no paper number readable)"), "cpu")
    assert not fig.axes[0].axison and "no reported figure" in [t.get_text() for t in fig.axes[0].texts]


def test_forest_plot_has_one_row_per_claim_grouped_by_paper(tmp_path):
    ct = agg.pd.DataFrame([_row(), _row(claim="cutmix_beats_erm", delta=2.13, ci_low=-1.91, ci_high=6.17,
                                        outcome="inconclusive"),
                           _row(paper="rankmixup", claim="mrl_lowers_ece", metric="ece", higher_is_better=False,
                                delta=-0.045, ci_low=-0.11, ci_high=0.02, mde=0.067, reported_effect=-0.027)])
    paths = forest_plot(ct, "cpu", tmp_path / "figs" / "summary_forest.png")
    assert [p.name for p in paths] == ["summary_forest.png", "summary_forest.pdf"] and all(p.exists() for p in paths)


def test_summary_refuses_to_leave_papers_out(tmp_path):
    claims = tmp_path / "cutmix_claims.csv"
    claims.write_text(",".join(agg.stats.CLAIM_COLUMNS) + "\n")
    outs = [a for k in ("md", "csv", "tex", "matrix", "matrix-csv") for a in (f"--out-{k}", str(tmp_path / k))]
    with pytest.raises(SystemExit, match=r"the cpu summary would leave out c_mixup, decoupled_mixup, mixpro, mixup, "
                                         r"rankmixup, resizemix, transmix: pass every paper's"):
        agg.main(["summary", "--scale", "cpu", "--claims", str(claims), *outs])
    assert not list(tmp_path.glob("m*"))  # nothing written
    agg.main(["summary", "--scale", "cpu", "--claims", str(claims), *outs, "--allow-subset",
              "--out-format", str(tmp_path / "aggregate_format.txt")])
    assert (tmp_path / "aggregate_format.txt").read_text() == f"{agg.AGGREGATE_FORMAT}\n"
    md = (tmp_path / "md").read_text()
    assert "Verdicts: none" in md and "_Partial summary: not included (not aggregated in this invocation): c_mixup, " in md
    # quick results are not committed: a paper subset writes a partial summary that says so
    assert agg.main(["summary", "--scale", "quick", "--claims", str(claims), *outs]) == 0
    assert "Partial summary" in (tmp_path / "md").read_text()


def test_a_missing_claims_table_is_a_message_and_exit_1(tmp_path, capsys):
    outs = [a for k in ("md", "csv", "tex", "matrix", "matrix-csv") for a in (f"--out-{k}", str(tmp_path / k))]
    assert agg.main(["summary", "--scale", "cpu", "--claims", str(tmp_path / "x_claims.csv"), "--allow-subset",
                     *outs]) == 1
    assert "error: python -m common.aggregate summary: claims tables not found: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
