"""common.aggregate: the verdict rule, units in the generated tables, and the cross-method matrix.

Runs are written as minimal metrics.json files, the same input the workflow's aggregate rules read.
"""
import json

import pytest

from common import aggregate as agg


def _run(tmp_path, method, seed, test, *, model="resnet20", train_time=100.0, cpu=None, **method_params):
    cfg = {"seed": seed, "method": {"name": method, **method_params}, "dataset": {"name": "cifar10", "root": "/x"},
           "model": {"name": model}, "train": {"epochs": 3}}
    prov = {"config": cfg, "train_time_sec": train_time}
    if cpu is not None:
        prov["train_cpu_sec"] = cpu
    d = tmp_path / f"{method}-{model}-s{seed}"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"task": "classification", "test": test, "provenance": prov}))
    return d / "metrics.json"


def test_welch_interval_matches_a_hand_computed_case(tmp_path):
    # a = 1,2,3 (method) and b = 4,5,6 (baseline): delta -3, se = sqrt(1/3 + 1/3), Welch df = 4, t_0.975(4) = 2.7764451
    paths = [_run(tmp_path, m, s, {"top1": v}) for m, vals in (("mixup", (1.0, 2.0, 3.0)), ("erm", (4.0, 5.0, 6.0)))
             for s, v in enumerate(vals)]
    exp = {"paper": "p", "claims": [{"id": "c", "text": "t", "metric": "top1", "method": "mixup", "baseline": "erm",
                                     "direction": "lower"}]}
    r = agg.claims_table(agg.load_runs(paths), exp, agg.pd.DataFrame(columns=agg.REPORTED_COLUMNS + ["verified"]),
                         "cpu").iloc[0]
    half = 2.7764451052 * (2 / 3) ** 0.5
    assert r["delta"] == -3.0 and r["test"] == "Welch t" and r["family_size"] == 1
    assert r["ci95_low"] == pytest.approx(-3 - half, abs=1e-8) and r["ci95_high"] == pytest.approx(-3 + half, abs=1e-8)
    assert (r["ci_low"], r["ci_high"]) == (r["ci95_low"], r["ci95_high"])  # a family of one: no adjustment
    assert r["outcome"] == "reproduced"


def test_calibration_errors_are_shown_in_percent_and_stored_as_fractions(tmp_path):
    paths = [_run(tmp_path, m, s, {"top1": 50.0 + s, "ece": e + 0.01 * s})
             for m, e in (("erm", 0.30), ("rankmixup_mrl", 0.10)) for s in (0, 1, 2)]
    runs = agg.load_runs(paths)
    long = agg.long_table(runs, "p")
    assert long[(long.method == "erm") & (long.metric == "ece")]["mean"].iloc[0] == pytest.approx(0.31)  # CSV: fraction
    md = agg.wide_markdown(long)
    assert "ece (%)" in md and "31.00 ± 1.00" in md and "0.3100" not in md
    exp = {"paper": "p", "claims": [{"id": "c", "text": "lower ECE", "metric": "ece", "method": "rankmixup_mrl",
                                     "baseline": "erm"}]}
    ct = agg.claims_table(runs, exp, agg.pd.DataFrame(columns=agg.REPORTED_COLUMNS + ["verified"]), "quick")
    assert ct["delta"].iloc[0] == pytest.approx(-0.20) and ct["verdict"].iloc[0] == "reproduced"
    line = [ln for ln in agg.claims_markdown(ct).splitlines() if ln.startswith("| **")][-1]
    assert "(ece (%))" in line and "11.00 ± 1.00" in line and "-20.00 [-" in line
    assert "-20.00" in agg.summary_tex(ct)


def _refs(paths, ref):
    return {p.parent.name: ref for p in paths}


def test_matrix_times_against_the_reference_each_setting_names(tmp_path):
    cnn = [_run(tmp_path, "erm", 0, {"top1": 50.0}, train_time=100.0),
           _run(tmp_path, "rankmixup_mrl", 0, {"top1": 51.0}, train_time=210.0)]
    vit = [_run(tmp_path, "deit_mix", 0, {"top1": 40.0}, model="vit", train_time=80.0, cpu=40.0),
           _run(tmp_path, "transmix", 0, {"top1": 41.0}, model="vit", train_time=90.0, cpu=42.0)]
    paths = cnn + vit
    mx = agg.matrix(agg.load_runs(paths), {**_refs(cnn, "erm"), **_refs(vit, "deit_mix")})
    row = mx.set_index("method")
    assert row.loc["rankmixup_mrl", "time_vs_reference"] == pytest.approx(2.1)
    assert row.loc["rankmixup_mrl", "time_reference"] == "erm" and row.loc["rankmixup_mrl", "time_clock"] == "wall"
    # no erm with the ViT: deit_mix is the reference, and CPU time is used since every run recorded it
    assert row.loc["transmix", "time_reference"] == "deit_mix" and row.loc["transmix", "time_clock"] == "cpu"
    assert row.loc["transmix", "time_vs_reference"] == pytest.approx(42 / 40)
    md = agg.matrix_markdown(mx)
    # † these runs record no CPU model, so nothing says they were timed on one machine
    assert "train time vs `deit_mix` (CPU time)" in md and "| 1.05x† |" in md and "–x" not in md
    assert "inflate" in md and "*CPU time*" in md  # each clock used is explained
    # no reference named (or one the setting does not have): seconds, not a ratio
    row = agg.matrix(agg.load_runs(paths), _refs(cnn, "mixup")).set_index("method")
    assert row.loc["rankmixup_mrl", "time_reference"] == "" and row.isna().loc["transmix", "time_vs_reference"]
    assert "| 210 s† |" in agg.matrix_markdown(agg.matrix(agg.load_runs(cnn)))


def test_papers_sharing_a_setting_must_name_the_same_time_reference(tmp_path):
    from common.methods import ConfigError

    paths = [_run(tmp_path, "erm", 0, {"top1": 50.0}), _run(tmp_path, "mixup", 0, {"top1": 51.0})]
    with pytest.raises(ConfigError, match=r"different time_reference methods \['erm', 'mixup'\]"):
        agg.matrix(agg.load_runs(paths), {paths[0].parent.name: "erm", paths[1].parent.name: "mixup"})


def test_every_paper_names_a_time_reference_it_runs():
    from common.aggregate.cli import ROOT, time_references
    from common.config import discover_papers, expand_grid, load_experiments

    for paper, path in discover_papers(ROOT).items():
        exp = load_experiments(path)
        ref = exp.get("time_reference")
        assert ref, f"{path}: no time_reference"
        names = {c["method"]["name"] for s in exp["scales"] for c in expand_grid(exp, s, str(path))}
        assert ref in names, (path, ref)
    assert set(time_references(discover_papers(ROOT), "cpu").values()) == {"erm", "deit_mix"}


def test_matrix_uses_snakemakes_benchmark_cpu_time_when_runs_lack_their_own(tmp_path):
    runs_dir, bench = tmp_path / "runs", tmp_path / "benchmarks"
    runs_dir.mkdir(), bench.mkdir()
    paths = [_run(runs_dir, "erm", 0, {"top1": 50.0}, train_time=700.0),
             _run(runs_dir, "cutmix", 0, {"top1": 52.0}, train_time=300.0)]
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for p, cpu in zip(paths, (330.0, 346.5)):
        (bench / f"{p.parent.name}.tsv").write_text(head + f"1.0\t0:00:01\t1\t1\t1\t1\t0\t0\t1\t{cpu}\n")
    row = agg.matrix(agg.load_runs(paths), _refs(paths, "erm")).set_index("method")
    assert row.loc["cutmix", "time_clock"] == "cpu, whole job"
    assert row.loc["cutmix", "time_vs_reference"] == pytest.approx(346.5 / 330.0)
    (bench / f"{paths[0].parent.name}.tsv").unlink()  # one run without it: every run falls back to wall clock
    row = agg.matrix(agg.load_runs(paths), _refs(paths, "erm")).set_index("method")
    assert row.loc["cutmix", "time_clock"] == "wall" and row.loc["cutmix", "time_vs_reference"] == pytest.approx(3 / 7)


def _split_run(tmp_path, method, seed, split, rmse):
    cfg = {"seed": seed, "method": {"name": method}, "dataset": {"name": "airfoil", "options": {"shuffle_seed": split}},
           "model": {"name": "mlp"}, "train": {"epochs": 3}}
    d = tmp_path / f"{method}-s{seed}-split{split}"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"task": "regression", "test": {"rmse": rmse},
                                                "provenance": {"config": cfg, "train_time_sec": 1.0}}))
    return d / "metrics.json"


def test_seed_linked_claims_pool_one_split_per_seed_and_skip_the_rest(tmp_path):
    # fixed-split arm: split 0 for seeds 0-2; per-seed arm: split k for seed k (seed 0 shared)
    paths = []
    for m, base in (("c_mixup", 1.0), ("erm", 2.0)):
        paths += [_split_run(tmp_path, m, s, 0, base + s) for s in (0, 1, 2)]
        paths += [_split_run(tmp_path, m, s, s, base + 10 * s) for s in (1, 2)]
    runs = agg.load_runs(paths)
    before = json.dumps([r["config"] for r in runs], sort_keys=True)
    claim = {"id": "c", "text": "t", "metric": "rmse", "higher_is_better": False, "method": "c_mixup", "baseline": "erm"}
    exp = {"paper": "p", "claims": [
        {**claim, "id": "fixed", "match": {"dataset.options.shuffle_seed": 0}},
        {**claim, "id": "per_seed", "match": {"dataset.name": "airfoil"}, "seed_linked": ["dataset.options.shuffle_seed"]},
    ]}
    t = agg.claims_table(runs, exp, agg.load_reported(tmp_path / "none.csv"), "cpu").set_index("claim")
    assert json.dumps([r["config"] for r in runs], sort_keys=True) == before  # configs untouched
    assert t.loc["fixed", "method_values"].split() == ["1.0", "2.0", "3.0"]
    # seeds 0, 1, 2 on splits 0, 1, 2: one setting, three seeds per arm, the split-0 runs of seeds 1-2 left out
    assert sorted(float(x) for x in t.loc["per_seed", "method_values"].split()) == [1.0, 11.0, 21.0]
    assert sorted(float(x) for x in t.loc["per_seed", "baseline_values"].split()) == [2.0, 12.0, 22.0]
    assert t.loc["per_seed", "delta"] == pytest.approx(-1.0)
    assert t.loc["per_seed", "setting"] != t.loc["fixed", "setting"]


def test_per_seed_split_runs_are_one_setting_in_the_tables(tmp_path):
    """The per-seed-split arm (seed k on split k) is one setting with its seeds, beside the fixed-split one."""
    paths = []
    for m in ("c_mixup", "erm"):
        paths += [_split_run(tmp_path, m, s, 0, 1.0 + s) for s in (0, 1, 2)]
        paths += [_split_run(tmp_path, m, s, s, 2.0 + s) for s in (1, 2)]
    runs = agg.load_runs(paths)
    linked = [("dataset.options.shuffle_seed",)]
    long = agg.long_table(runs, "p", linked)
    rmse = long[long["metric"] == "rmse"]
    assert sorted(rmse["n_seeds"]) == [3, 3, 3, 3]  # two settings x two methods, no one-seed settings per split
    assert sorted(set(rmse["setting_label"])) == ["shuffle_seed 0", "shuffle_seed = seed"]
    per_seed = rmse[rmse["setting_label"] == "shuffle_seed = seed"]
    assert set(per_seed["seeds"]) == {"0 1 2"}
    assert "shuffle_seed = seed" in agg.wide_markdown(long)


def test_claim_settings_are_told_apart_by_the_keys_that_differ_and_calibration_regimes_by_ce_ece():
    from common.aggregate.stats import regime, setting_labels

    def run(train_size, epochs, extra=None):
        cfg = {"seed": 0, "method": {"name": "erm"}, "dataset": {"name": "cifar10", "train_size": train_size, "root": "/x"},
               "train": {"epochs": epochs, **(extra or {})}}
        r = {"config": cfg, "dataset": "cifar10", "model": "resnet20"}
        r["setting"] = agg.runs.setting_id(cfg)
        return r

    # a key only the newer runs record is not a difference; the root and the seed never are
    a, b = run(1000, 100), run(5000, 20, {"persistent_workers": True})
    got = setting_labels({a["setting"]: [a], b["setting"]: [b]})
    assert got == {a["setting"]: "train_size 1000, epochs 100", b["setting"]: "train_size 5000, epochs 20"}
    assert setting_labels({a["setting"]: [a]}) == {a["setting"]: ""}
    assert regime(35.07) == "data-limited, CE ECE 35%"
    assert regime(5.72) == "CE ECE 6%"
    assert regime(None) == "no CE run"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "metrics.json").write_text('{"task": "classification", "test": {"top1": 5'),
     r"metrics\.json: cannot read the run's metrics \(Expecting"),
    (lambda d: (d / "metrics.json").write_bytes(b"\xff\xfe\x00"), r"metrics\.json: cannot read the run's metrics"),
    (lambda d: (d / "epochs.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "test_'),
     r"epochs\.jsonl, line 2: not a JSON row"),
])
def test_a_truncated_run_file_fails_the_aggregation_naming_the_file(tmp_path, capsys, damage, message):
    paths = [_run(tmp_path, m, s, {"top1": 50.0 + s}) for m in ("erm", "mixup") for s in (0, 1)]
    damage(paths[1].parent)
    out = tmp_path / "out"
    rc = agg.main(["table", "--paper", "mixup", "--scale", "quick", "--out-csv", str(out / "t.csv"),
                   "--out-md", str(out / "t.md"), "--out-claims", str(out / "c.csv"), *map(str, paths)])
    err = capsys.readouterr().err
    assert rc == 1 and str(paths[1].parent) in err
    import re

    assert re.search(message, err), err
    assert not out.exists()  # nothing half-written


def test_rows_resting_on_the_same_runs_are_named(tmp_path):
    """Two claims on the same arms, and a fixed-split and a per-seed-split claim sharing the seed-0 run."""
    from common.aggregate.claims import shared_runs

    paths = []
    for m, base in (("c_mixup", 1.0), ("erm", 2.0)):
        paths += [_split_run(tmp_path, m, s, 0, base + 0.1 * s) for s in (0, 1, 2)]
        paths += [_split_run(tmp_path, m, s, s, base + (0.2 if m == "erm" else 0.35) * s) for s in (1, 2)]
    claim = {"text": "t", "metric": "rmse", "method": "c_mixup", "baseline": "erm"}
    exp = {"paper": "p", "claims": [
        {**claim, "id": "fixed", "match": {"dataset.options.shuffle_seed": 0}},
        {**claim, "id": "fixed_mae", "metric": "rmse", "match": {"dataset.options.shuffle_seed": 0}},
        {**claim, "id": "per_seed", "seed_linked": ["dataset.options.shuffle_seed"]}]}
    ct = agg.claims_table(agg.load_runs(paths), exp, agg.pd.DataFrame(columns=agg.REPORTED_COLUMNS + ["verified"]), "cpu")
    shared = dict(shared_runs(ct))
    assert shared["`erm` on airfoil/mlp (one fixed split), 3 runs"] == ["fixed", "fixed_mae"]
    partial = [rows for what, rows in shared.items() if "1 run(s) in both" in what and what.startswith("`erm`")]
    assert partial == [["fixed", "fixed_mae", "per_seed"]]
    assert "Rows resting on the same runs" in agg.claims_markdown(ct)


def test_runs_shared_across_papers_are_one_group_whether_or_not_a_paper_names_the_regime():
    from common.aggregate.claims import shared_runs

    row = {"method": "mixup+dm", "baseline": "mixup", "dataset": "cifar10", "model": "resnet20", "outcome": "underpowered",
           "method_runs": "dm-s0 dm-s1", "baseline_runs": "mixup-s0 mixup-s1"}
    ct = agg.pd.DataFrame([{**row, "paper": "dm", "claim": "dm_improves_mixup", "regime_name": None},
                           {**row, "paper": "cutmix", "claim": "cutmix_beats_mixup", "method": "cutmix",
                            "method_runs": "cutmix-s0 cutmix-s1", "regime_name": "data-limited, CE ECE 35%"}])
    assert dict(shared_runs(ct, with_paper=True)) == {
        "`mixup` on cifar10/resnet20 (data-limited, CE ECE 35%), 2 runs": ["cutmix/cutmix_beats_mixup",
                                                                           "dm/dm_improves_mixup"]}
