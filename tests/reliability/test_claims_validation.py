"""Claims are checked when the workflow is planned (``common.aggregate.validate_claims``): a claim naming
an unknown method, baseline, metric or statistic, a ``reported:`` filter that matches no row, and a
malformed reported.csv are ``ConfigError``s naming the file and the claim — before any training."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.aggregate import REPORTED_COLUMNS, validate_claims, validate_paper
from common.config import discover_papers
from common.methods import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CFG = {"seed": 0, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}, "train": {"epochs": 1}}
RUNS = {"quick": [{**CFG, "method": {"name": "erm"}}, {**CFG, "method": {"name": "mixup", "alpha": 1.0}}],
        "cpu": [{**CFG, "method": {"name": "erm"}}, {**CFG, "method": {"name": "cutmix", "alpha": 1.0}}]}
HEADER = ",".join(REPORTED_COLUMNS)
ROW = "p,Mixup,CIFAR-10,ResNet-18,200,top1_err,3.0,ERM,4.0,Table 1"


def _exp(**claim) -> dict:
    c = {"id": "c1", "text": "t", "metric": "top1", "method": "mixup", "baseline": "erm", **claim}
    return {"paper": "p", "scales": {"quick": {}, "cpu": {}}, "claims": [c]}


def _csv(tmp_path, *lines) -> Path:
    p = tmp_path / "reported.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_a_valid_claim_passes(tmp_path):
    validate_claims("p", _exp(reported={"method": "Mixup", "metric": "top1_err"}), RUNS, _csv(tmp_path, HEADER, ROW))
    validate_claims("p", _exp(statistic="best_epoch"), list(RUNS["quick"]), None)  # configs as one list


@pytest.mark.parametrize("paper", sorted(discover_papers(ROOT)))
def test_every_papers_claims_pass(paper):
    validate_paper(paper, ROOT)


@pytest.mark.parametrize("arm", ["method", "baseline"])
def test_unknown_method_or_baseline_names_the_file_claim_and_the_runs(arm):
    with pytest.raises(ConfigError, match=rf"papers/p/experiments.yaml, claim 'c1': {arm} 'mixupp' is not among the "
                                          r"paper's runs at scales quick, cpu\. Did you mean 'mixup'.*Runs: cutmix, erm, mixup"):
        validate_claims("p", _exp(**{arm: "mixupp"}), RUNS, None)


def test_a_method_run_only_at_a_scale_the_claim_does_not_apply_to_is_unknown():
    with pytest.raises(ConfigError, match=r"method 'cutmix' is not among the paper's runs at scales quick"):
        validate_claims("p", _exp(method="cutmix", scales=["quick"]), RUNS, None)
    validate_claims("p", _exp(method="cutmix", scales=["cpu"]), RUNS, None)


def test_match_filters_the_runs_a_claim_can_name():
    with pytest.raises(ConfigError, match=r"matching \{'dataset.name': 'cifar10'\}"):
        validate_claims("p", _exp(match={"dataset.name": "cifar10"}), RUNS, None)


def test_unknown_metric_has_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"claim 'c1': unknown metric 'top_1'\. Did you mean 'top1'"):
        validate_claims("p", _exp(metric="top_1"), RUNS, None)


def test_unknown_statistic_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"claim 'c1': statistic: unknown statistic 'best'.*Known: last, best_epoch, "
                                          r"median_last_10, ema_best, ema_last"):
        validate_claims("p", _exp(statistic="best"), RUNS, None)


def test_a_reported_filter_that_matches_no_row(tmp_path):
    csv = _csv(tmp_path, HEADER, ROW)
    with pytest.raises(ConfigError, match=r"claim 'c1': reported: \{'method': 'MixUp'\} matches no row of .*reported"
                                          r"\.csv \(no row with method = 'MixUp'\. Did you mean 'Mixup'\?\)"):
        validate_claims("p", _exp(reported={"method": "MixUp"}), RUNS, csv)
    with pytest.raises(ConfigError, match=r"unknown column\(s\) modell"):
        validate_claims("p", _exp(reported={"modell": "ResNet-18"}), RUNS, csv)
    with pytest.raises(ConfigError, match=r"claim 'c1': names reported: .* does not exist"):
        validate_claims("p", _exp(reported={"method": "Mixup"}), RUNS, tmp_path / "absent.csv")


@pytest.mark.parametrize("lines, message", [
    ((HEADER.replace("source", "src"), ROW), r"reported\.csv: header must be paper,method"),
    ((HEADER, ROW + ",extra"), r"reported\.csv, line 2: expected 10 columns, got 11"),
    ((HEADER, ROW.replace(",3.0,", ",three,")), r"reported\.csv, line 2: column 'value' must be a number"),
    ((HEADER, ROW.replace(",Table 1", ",")), r"reported\.csv, line 2: column 'source' is empty"),
    ((HEADER, ROW.replace(",3.0,", ",inf,")), r"reported\.csv, line 2: column 'value' is 'inf'; a figure must be a "
                                              r"finite number"),
    ((HEADER, ROW.replace(",4.0,", ",-inf,").replace("Table 1", "UNVERIFIED: Table 1")),
     r"line 2: column 'baseline_value' is '-inf'; a figure must be a finite number"),
    ((HEADER, ROW.replace(",3.0,", ",nan,")), r"line 2: column 'value' is 'nan'; only a row whose source starts with "
                                              r"UNVERIFIED may leave a figure out"),
    ((HEADER, ROW.replace(",3.0,", ",,")), r"line 2: column 'value' is empty; only a row whose source starts"),
])
def test_a_malformed_reported_csv_names_file_and_line(tmp_path, lines, message):
    with pytest.raises(ConfigError, match=message + r".*\(reported\.csv of paper 'p'\)"):
        validate_claims("p", _exp(), RUNS, _csv(tmp_path, *lines))


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        validate_claims("p", _exp(method="nope", metric="nope", statistic="nope"), RUNS, None)
    assert len(str(e.value).splitlines()) == 3


def test_seed_linked_keeps_only_runs_whose_key_holds_their_seed():
    # the quick runs are seed 0 on a split with shuffle_seed 1: no run has shuffle_seed == seed
    cfg = {**CFG, "dataset": {"name": "digits", "options": {"shuffle_seed": 1}}}
    runs = {"quick": [{**cfg, "method": {"name": "erm"}}, {**cfg, "method": {"name": "mixup", "alpha": 1.0}}]}
    with pytest.raises(ConfigError, match=r"with dataset\.options\.shuffle_seed equal to the seed"):
        validate_claims("p", _exp(scales=["quick"], seed_linked=["dataset.options.shuffle_seed"]), runs, None)
    with pytest.raises(ConfigError, match=r"claim 'c1': seed_linked must be a list of dotted config keys"):
        validate_claims("p", _exp(scales=["quick"], seed_linked="dataset.options.shuffle_seed"), RUNS, None)


def test_nan_means_no_figure_on_an_unverified_row_and_an_empty_baseline_means_none(tmp_path):
    from common.aggregate import load_reported

    csv = _csv(tmp_path, HEADER, ROW.replace(",3.0,", ",nan,").replace("Table 1", "UNVERIFIED: not read"),
               ROW.replace(",4.0,", ",,"))
    rows = load_reported(csv)
    assert rows["value"].isna().iloc[0] and not rows["verified"].iloc[0]
    assert rows["baseline_value"].isna().iloc[1] and rows["verified"].iloc[1]
    validate_claims("p", _exp(reported={"method": "Mixup", "metric": "top1_err"}), RUNS, csv)


def test_secondary_to_must_name_another_claim_of_the_paper():
    exp = _exp(secondary_to="c2")
    with pytest.raises(ConfigError, match=r"claim 'c1': secondary_to 'c2' names no other claim of this paper"):
        validate_claims("p", exp, RUNS, None)
    exp["claims"].append({"id": "c2", "text": "t", "metric": "top1", "method": "mixup", "baseline": "erm"})
    validate_claims("p", exp, RUNS, None)


def test_an_arm_matching_two_runs_of_one_seed_is_ambiguous():
    runs = {"quick": RUNS["quick"] + [{**CFG, "method": {"name": "mixup", "alpha": 0.2}}]}
    with pytest.raises(ConfigError, match=r"claim 'c1': method 'mixup' matches several runs of seed\(s\) \[0\] in one "
                                          r"setting \(labels mixup\(alpha=0.2\), mixup\(alpha=1.0\)\); name one label"):
        validate_claims("p", _exp(scales=["quick"]), runs, None)
    validate_claims("p", _exp(scales=["quick"], method="mixup(alpha=0.2)"), runs, None)


def test_a_reported_baseline_filter_is_checked_like_reported(tmp_path):
    csv = _csv(tmp_path, HEADER, ROW)
    with pytest.raises(ConfigError, match=r"claim 'c1': reported_baseline: \{'method': 'ERM'\} matches no row"):
        validate_claims("p", _exp(reported={"method": "Mixup"}, reported_baseline={"method": "ERM"}), RUNS, csv)
