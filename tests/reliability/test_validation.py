"""Bad input is rejected early and clearly: every error names the key and the file (and the
allowed range or the known names, with a did-you-mean), the trainer exits non-zero and writes
nothing. Covers run configs, ``--set`` overrides, experiments.yaml and reported.csv."""
from __future__ import annotations

import pytest
import yaml

from rel_helpers import run_train, tiny, write_config

from common.config import ConfigError, expand_grid, load_experiments

# (case id, dotted overrides of the tiny config, substrings the message must contain)
BAD_RUN_CONFIGS = [
    ("unknown_top_key", {"trian": {"epochs": 1}}, ["'trian'", "Did you mean 'train'"]),
    ("unknown_nested_key", {"train.epohcs": 2}, ["'train.epohcs'", "Did you mean 'epochs'"]),
    ("unknown_dataset_key", {"dataset.val_szie": 10}, ["'dataset.val_szie'", "'val_size'"]),
    ("wrong_type", {"train.epochs": "ten"}, ["'train.epochs'", "'ten'", "integer"]),
    ("wrong_type_bool", {"train.nesterov": "yes"}, ["'train.nesterov'", "boolean"]),
    ("negative_epochs", {"train.epochs": -1}, ["'train.epochs'", "minimum=1"]),
    ("zero_batch", {"train.batch_size": 0}, ["'train.batch_size'", "minimum=1"]),
    ("negative_lr", {"train.lr": -0.1}, ["'train.lr'", "exclusiveMinimum=0"]),
    ("smoothing_one", {"train.label_smoothing": 1.0}, ["'train.label_smoothing'", "exclusiveMaximum=1"]),
    ("bad_enum", {"train.optimizer": "sgdd"}, ["'train.optimizer'", "sgd", "adamw"]),
    ("negative_seed", {"seed": -3}, ["'seed'", "minimum=0"]),
    ("alpha_zero_manifold", {"method": {"name": "manifold_mixup", "alpha": 0.0}}, ["alpha=0.0", "allowed (0.0, inf"]),
    ("alpha_negative_manifold", {"method": {"name": "manifold_mixup", "alpha": -1}}, ["alpha=-1", "allowed (0.0, inf"]),
    ("alpha_zero_mixup", {"method": {"name": "mixup", "alpha": 0.0}}, ["alpha=0.0", "allowed (0.0, inf"]),
    ("alpha_negative_cutmix", {"method": {"name": "cutmix", "alpha": -0.5}}, ["alpha=-0.5", "allowed (0.0, inf"]),
    ("prob_above_one", {"method": {"name": "mixup", "prob": 1.5}}, ["prob=1.5", "[0.0, 1.0]"]),
    ("prob_negative_cutmix", {"method": {"name": "cutmix", "prob": -0.1}}, ["prob=-0.1", "[0.0, 1.0]"]),
    ("method_param_typo", {"method": {"name": "mixup", "alpah": 1.0}}, ["'alpah'", "Did you mean 'alpha'"]),
    ("alpha_not_number", {"method": {"name": "mixup", "alpha": "big"}}, ["alpha", "must be a number"]),
    ("unknown_method", {"method": "mixupp"}, ["'method.name'", "'mixupp'", "Did you mean 'mixup'", "Known methods:", "erm"]),
    ("unknown_term", {"method": "mixup+dmm"}, ["'method.name'", "'dmm'", "Known methods:"]),
    ("unknown_dataset", {"dataset.name": "digit"}, ["'dataset.name'", "Did you mean 'digits'", "Known datasets:", "cifar10"]),
    ("unknown_model", {"model": "resnet9"}, ["'model.name'", "'resnet9'", "Known models:", "resnet8"]),
    ("unknown_model_kwarg", {"model": {"name": "resnet8", "widht": 8}}, ["'model.widht'", "Did you mean 'width'"]),
    ("unknown_dataset_option", {"dataset": {"name": "random", "val_size": 8, "options": {"n_trian": 8}}},
     ["'dataset.options.n_trian'", "Did you mean 'n_train'"]),
    ("vit_patch_not_dividing", {"model": {"name": "vit", "patch_size": 3}},
     ["'model.patch_size'=3", "image size 8", "1, 2, 4, 8"]),
    ("vit_patch_vs_option_size", {"dataset": {"name": "random", "val_size": 8, "options": {"image_size": 30}},
                                  "model": {"name": "vit", "patch_size": 4}}, ["'model.patch_size'=4", "image size 30"]),
    ("step_without_milestones", {"train.schedule": "step"}, ["train.milestones"]),
    ("warmup_too_long", {"train.warmup_epochs": 5}, ["train.warmup_epochs=5"]),
    ("best_val_without_val", {"dataset.val_size": 0}, ["best_val", "dataset.val_size"]),
]


@pytest.mark.parametrize("over,expect", [c[1:] for c in BAD_RUN_CONFIGS], ids=[c[0] for c in BAD_RUN_CONFIGS])
def test_bad_run_config_is_rejected_naming_key_and_file(tmp_path, capsys, over, expect):
    from common.train import main

    cfg = tiny()
    for k, v in over.items():
        if k in ("method", "model", "dataset") or "." not in k:
            cfg[k] = v  # replace whole blocks (a bare method name is allowed)
        else:
            a, b = k.split(".")
            cfg[a][b] = v
    path = write_config(tmp_path / "bad_run.yaml", cfg)
    out = tmp_path / "runs" / "r"
    rc = main(["--config", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert str(path) in err, err
    for s in expect:
        assert s in err, f"{s!r} missing from: {err}"
    assert not (tmp_path / "runs").exists()  # nothing written, not even the run directory


def test_bad_override_is_rejected_naming_the_override(tmp_path, capsys):
    """The config file is fine: the error blames the --set override, not the file."""
    from common.train import main

    path = write_config(tmp_path / "run.yaml", tiny())
    rc = main(["--config", str(path), "--out", str(tmp_path / "runs" / "r"), "--set", "train.epohcs=2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--set train.epohcs=2:" in err and "'train.epohcs'" in err and "Did you mean 'epochs'" in err
    assert str(path) not in err
    rc = main(["--config", str(path), "--out", str(tmp_path / "runs" / "r"), "--set", "train.epochs"])
    assert rc != 0 and "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_unreadable_config_files_are_rejected(tmp_path, capsys):
    from common.train import main

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: {epochs: [1,\n")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\"seed\": 0,")
    not_map = tmp_path / "list.yaml"
    not_map.write_text("- 1\n- 2\n")
    for p, msg in ((bad_yaml, "not valid YAML"), (bad_json, "not valid JSON"), (not_map, "mapping"),
                   (tmp_path / "missing.yaml", "does not exist")):
        rc = main(["--config", str(p), "--out", str(tmp_path / "runs" / "r")])
        err = capsys.readouterr().err
        assert rc == 2 and str(p) in err and msg in err, err
    assert not (tmp_path / "runs").exists()


def test_cli_subprocess_exits_nonzero_and_writes_nothing(tmp_path):
    """The real command line: a typo'd key fails before any data is loaded or file written."""
    cfg = tiny()
    cfg["trian"] = cfg.pop("train")
    path = write_config(tmp_path / "typo.yaml", cfg)
    r = run_train(path, tmp_path / "runs" / "r", cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert str(path) in r.stderr and "Did you mean 'train'" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.yaml"]


# --------------------------------------------------------------------------- experiments.yaml
GOOD_EXPERIMENTS = {
    "paper": "toy",
    "title": "Toy",
    "scales": {"quick": {"defaults": {"dataset": {"name": "digits"}},
                         "grid": [{"vary": {"method": ["erm", "mixup"], "seed": [0, 1]}}]}},
}


def _experiments(tmp_path, doc, folder="toy"):
    p = tmp_path / "papers" / folder / "experiments.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(doc, sort_keys=False) if isinstance(doc, dict) else doc)
    return p


def test_good_experiments_file_expands(tmp_path):
    p = _experiments(tmp_path, GOOD_EXPERIMENTS)
    assert len(expand_grid(load_experiments(p), "quick", str(p))) == 4


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: d.update(titel="x"), ["unknown key 'titel'", "Did you mean 'title'"]),
    (lambda d: d.update(scale=d.pop("scales")), ["unknown key 'scale'", "Did you mean 'scales'"]),
    (lambda d: d["scales"].update(quik=d["scales"].pop("quick")), ["'scales.quik'", "Did you mean 'quick'"]),
    (lambda d: d["scales"]["quick"]["grid"][0].update(varry=d["scales"]["quick"]["grid"][0].pop("vary")),
     ["'scales.quick.grid.0.varry'", "Did you mean 'vary'"]),
    (lambda d: d.update(paper="cutmixx"), ["'cutmixx'", "folder name 'toy'"]),
    (lambda d: d.update(paper=3), ["'paper'", "string"]),
    (lambda d: d.update(claims=[{"id": "Bad Id", "text": "t", "metric": "top1", "method": "a", "baseline": "b"}]),
     ["claims.0.id", "Bad Id"]),
], ids=["unknown_key", "scale_typo", "unknown_scale", "grid_key_typo", "wrong_paper_name", "wrong_type", "bad_claim_id"])
def test_bad_experiments_file_is_rejected(tmp_path, mutate, expect):
    import copy

    doc = copy.deepcopy(GOOD_EXPERIMENTS)
    mutate(doc)
    p = _experiments(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        load_experiments(p)
    msg = str(e.value)
    assert str(p) in msg, msg
    for s in expect:
        assert s in msg, f"{s!r} missing from: {msg}"


@pytest.mark.parametrize("entry,expect", [
    ({"set": {"train": {"epochs": -1}}}, ["'train.epochs'", "grid[1]"]),
    ({"vary": {"method": ["erm", {"name": "cutmix", "prob": 2}]}}, ["prob=2", "grid[1]"]),
    ({"set": {"model": {"name": "vit", "patch_size": 3}}}, ["'model.patch_size'=3", "grid[1]"]),
    ({"set": {"dataset": {"name": "cifar1O"}}}, ["'cifar1O'", "Did you mean 'cifar10'", "grid[1]"]),
    ({"vary": {"train.lr": [0.1, -1.0]}}, ["'train.lr'", "grid[1]"]),
], ids=["negative_epochs", "prob", "patch", "dataset_typo", "vary_lr"])
def test_bad_grid_entry_is_rejected_before_any_job(tmp_path, entry, expect):
    import copy

    doc = copy.deepcopy(GOOD_EXPERIMENTS)
    doc["scales"]["quick"]["grid"].append(entry)
    p = _experiments(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        expand_grid(load_experiments(p), "quick", str(p))
    msg = str(e.value)
    assert str(p) in msg
    for s in expect:
        assert s in msg, f"{s!r} missing from: {msg}"


def test_grid_vary_must_be_a_nonempty_list(tmp_path):
    import copy

    doc = copy.deepcopy(GOOD_EXPERIMENTS)
    doc["scales"]["quick"]["grid"][0]["vary"]["seed"] = []
    p = _experiments(tmp_path, doc)
    with pytest.raises(ConfigError, match=r"vary\.seed must be a non-empty list"):
        expand_grid(load_experiments(p), "quick", str(p))


def test_unknown_scale_lists_known_scales(tmp_path):
    p = _experiments(tmp_path, GOOD_EXPERIMENTS)
    with pytest.raises(ConfigError, match=r"Did you mean 'quick'.*Known scales: quick, cpu, paper"):
        expand_grid(load_experiments(p), "quik", str(p))


def test_experiments_not_yaml_is_rejected(tmp_path):
    p = _experiments(tmp_path, "paper: toy\nscales: {quick: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_experiments(p)
    assert str(p) in str(e.value)


# --------------------------------------------------------------------------- reported.csv
HEADER = "paper,method,dataset,model,epochs,metric,value,baseline_method,baseline_value,source\n"
GOOD_ROW = "toy,mixup,cifar10,resnet18,200,top1_err,4.2,erm,5.0,Table 1\n"


@pytest.mark.parametrize("body,expect", [
    (HEADER + GOOD_ROW + "toy,mixup,cifar10,resnet18,200,top1_err,4.2,erm,5.0\n", ["line 3", "columns"]),
    (HEADER + GOOD_ROW + GOOD_ROW.replace("4.2", "four"), ["line 3", "'value'", "'four'"]),
    (HEADER + GOOD_ROW.replace("Table 1", ""), ["line 2", "source"]),
    (HEADER.replace("value,", "val,", 1) + GOOD_ROW, ["header"]),
], ids=["missing_column", "not_a_number", "empty_source", "bad_header"])
def test_malformed_reported_csv_names_the_row(tmp_path, body, expect):
    aggregate = pytest.importorskip("common.aggregate")
    if not hasattr(aggregate, "load_reported"):
        pytest.skip("common.aggregate.load_reported not available yet")
    p = tmp_path / "reported.csv"
    p.write_text(body)
    with pytest.raises(ValueError) as e:
        aggregate.load_reported(p)
    msg = str(e.value)
    assert str(p) in msg
    for s in expect:
        assert s in msg, f"{s!r} missing from: {msg}"


def test_good_reported_csv_loads(tmp_path):
    aggregate = pytest.importorskip("common.aggregate")
    if not hasattr(aggregate, "load_reported"):
        pytest.skip("common.aggregate.load_reported not available yet")
    p = tmp_path / "reported.csv"
    p.write_text(HEADER + GOOD_ROW + GOOD_ROW.replace("Table 1", "UNVERIFIED: from memory"))
    df = aggregate.load_reported(p)
    assert list(df["value"]) == [4.2, 4.2] and list(df["verified"]) == [True, False]


def test_every_shipped_config_validates():
    """The repository's own grids pass the same validation at every scale."""
    from rel_helpers import ROOT

    from common.config import plan

    for scale in ("quick", "cpu", "paper"):
        runs, by_paper = plan(scale, ROOT)
        assert all(set(ids) <= set(runs) for ids in by_paper.values())

