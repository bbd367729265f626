"""Every paper's claims against its reported figures: the direction a claim tests is the direction of the
paper's own difference (derived from reported.csv, or the pair the claim text quotes), unless the claim says
why it differs; the test each claim gets follows from its design."""
from pathlib import Path

import pytest

from common.aggregate import load_reported
from common.aggregate.claims import claim_design, claim_direction, reported_effect, reported_row
from common.config import discover_papers, load_experiments

ROOT = Path(__file__).resolve().parent.parent
PAPERS = sorted(discover_papers(ROOT))


def _claims(paper):
    exp = load_experiments(ROOT / "papers" / paper / "experiments.yaml")
    reported = load_reported(ROOT / "papers" / paper / "reported.csv")
    return [(c, reported_row(c, reported)) for c in exp.get("claims") or []]


@pytest.mark.parametrize("paper", PAPERS)
def test_each_claim_tests_the_direction_of_the_papers_own_difference(paper):
    wrong = []
    for c, rep in _claims(paper):
        effect = reported_effect(c, rep)
        if effect is None or effect == 0 or c.get("direction_note"):
            continue
        expected = "higher" if effect > 0 else "lower"
        if claim_direction(c) != expected:
            wrong.append(f"{c['id']}: tests {claim_direction(c)!r} but the paper's figures "
                         f"({rep['reported_method']} vs {rep['reported_baseline']}, {rep['reported_metric']}) go {expected!r}")
    assert not wrong, "\n".join(wrong)


def test_the_paper_rows_that_give_each_sign_are_found():
    """The check above only means something if the figures are found: the claims that name paper rows or
    quote a pair all yield an effect (RankMixup's accuracy claims among them)."""
    found = {c["id"]: reported_effect(c, rep) for p in PAPERS for c, rep in _claims(p)}
    for cid in ("mrl_top1_vs_ce", "mndcg_top1_vs_ce", "cutmix_beats_mixup", "cmixup_beats_mixup_airfoil_rmse",
                "erm_beats_mixup_airfoil_rmse", "mrl_lowers_ece_vs_mixup"):
        assert found[cid] is not None, cid
    assert found["erm_beats_mixup_airfoil_rmse"] == pytest.approx(2.901 - 3.730)
    assert found["mndcg_top1_vs_ce"] == pytest.approx(94.88 - 95.38)


def test_the_test_follows_the_design_not_the_data():
    """Seed-linked splits (seed k of both methods on split k) are pairs; one split for every seed is not."""
    per_split = claim_design({"seed_linked": ["dataset.options.shuffle_seed"]})
    fixed = claim_design({"match": {"dataset.options.shuffle_seed": 0}})
    assert per_split["test"] == "paired t" and "split" in per_split["seed_controls"]
    assert fixed["test"] == "Welch t" and "split fixed" in fixed["seed_controls"]
    for paper in PAPERS:
        for c, _ in _claims(paper):
            assert claim_design(c)["test"] == ("paired t" if c.get("seed_linked") else "Welch t"), c["id"]


def test_statistic_at_a_scale_replaces_the_papers_and_the_row_names_both():
    """mixup's claim is the paper's median of the last 10 epochs; its cpu runs are evaluated twice, so
    ``statistic_at: {cpu: last}`` evaluates the final epoch there and the table says the paper used the median."""
    from common.aggregate.claims import at_scale
    from common.aggregate.render import ours_cell
    from common.aggregate.validate import _claim_keys

    c = {"id": "c", "text": "t", "metric": "top1", "method": "mixup", "baseline": "erm",
         "statistic": "median_last_10", "statistic_at": {"cpu": "last"}}
    assert at_scale(c, "quick")["statistic"] == "median_last_10" and "paper_statistic" not in at_scale(c, "quick")
    cpu = at_scale(c, "cpu")
    assert (cpu["statistic"], cpu["paper_statistic"]) == ("last", "median_last_10")
    row = {"method": "mixup", "baseline": "erm", "metric": "top1", "statistic": "last", "paper_statistic": "median_last_10"}
    cell = ours_cell(row, {"method_mean": 70.0, "method_std": 1.0, "baseline_mean": 64.0, "baseline_std": 1.0}, 1)
    assert "the paper: median of the last 10 evaluated epochs" in cell
    assert any("statistic_at.cpu" in e for e in _claim_keys({**c, "statistic_at": {"cpu": "lasst"}}, {"c"}))
