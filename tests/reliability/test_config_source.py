"""One source for run configs and dataset metadata: the defaults come from the JSON Schema, a
config is validated once, every paper's every scale is checked at plan time, and the files a
planned dataset needs can be listed before any job runs."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from rel_helpers import ROOT, tiny

from common import config
from common.config import ConfigError, resolve, validate_all, validate_run_config


# --------------------------------------------------------------------------- scale names
def test_scale_names_have_one_home():
    """common.config.SCALES is read from the experiments schema's one list of scale names; every other
    place that needs them (the aggregation, the workflow's config schema) agrees, and so does the one
    home of the committed scales."""
    from common.aggregate import cli, validate

    schema_text = (ROOT / "common/schemas/experiments.schema.json").read_text()
    assert config.SCALES == ("quick", "cpu", "paper")
    assert schema_text.count('"quick"') == 1  # the $defs list; grids and claims refer to it
    assert tuple(validate.SCALES) == config.SCALES
    assert tuple(cli.COMMITTED_SCALES) == config.COMMITTED_SCALES and set(config.COMMITTED_SCALES) <= set(config.SCALES)
    workflow = json.loads((ROOT / "workflow/schemas/config.schema.json").read_text())
    assert tuple(workflow["properties"]["scale"]["enum"]) == config.SCALES


@pytest.mark.parametrize("doc,expect", [
    ({"scales": {"quik": {"grid": []}}}, ["unknown key 'scales.quik'", "Did you mean 'quick'", "cpu, paper, quick"]),
    ({"scales": {"quick": {"grid": []}}, "claims": [{"id": "c", "text": "t", "metric": "top1", "method": "mixup",
                                                      "baseline": "erm", "scales": ["cpuu"]}]},
     ["'claims.0.scales.0'", "'cpuu' is not one of"]),
])
def test_an_unknown_scale_name_is_named(tmp_path, doc, expect):
    from common.config import load_experiments

    p = tmp_path / "papers" / "toy" / "experiments.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(yaml.safe_dump({"paper": "toy", **doc}))
    with pytest.raises(ConfigError) as e:
        load_experiments(p)
    for s in expect:
        assert s in str(e.value), str(e.value)


# --------------------------------------------------------------------------- defaults from the schema
def _props(node, prefix=""):
    for k, sub in node.get("properties", {}).items():
        yield prefix + k, sub
        if "default" not in sub:
            yield from _props(sub, prefix + k + ".")


def test_defaults_are_the_schemas_defaults():
    schema = json.loads((ROOT / "common/schemas/run.schema.json").read_text())
    assert config.DEFAULTS == config.schema_defaults(schema)
    no_default = {k for k, sub in _props(schema) if "default" not in sub and "properties" not in sub}
    # keys that are absent unless set (free-form or optional), everything else has a default
    assert no_default == {"dataset.options", "train.betas", "resources.slurm_partition", "resources.gpu_mem_gb",
                          "resources.procs", "model.cls_token_std"}
    assert config.DEFAULTS["model"] == {"name": "resnet8"} and config.DEFAULTS["method"] == {"name": "erm"}


def test_defaults_are_valid():
    validate_run_config(resolve(), "defaults")


def test_every_neutral_default_is_the_schema_default():
    for dotted, neutral in config.NEUTRAL_DEFAULTS.items():
        node = config.DEFAULTS
        for part in dotted.split("."):
            node = node[part]
        assert node == neutral and type(node) is type(neutral), dotted


# --------------------------------------------------------------------------- validated once
def test_an_equal_config_is_validated_once(monkeypatch):
    cfg = resolve(tiny(**{"train.epochs": 7}))
    validate_run_config(cfg, "first")
    calls = []
    monkeypatch.setattr(config, "validate", lambda *a, **k: calls.append(a))
    validate_run_config(json.loads(json.dumps(cfg)), "second")  # an equal copy
    assert calls == []
    changed = dict(cfg, seed=cfg["seed"] + 1)
    validate_run_config(changed, "third")
    assert len(calls) == 1


def test_train_validates_an_unvalidated_dict(tmp_path):
    from common.train import train

    cfg = resolve(tiny(**{"train.lr": -1.0}))
    with pytest.raises(ConfigError, match="'train.lr'"):
        train(cfg, tmp_path / "runs" / "r", tmp_path / "ck", progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_config_validated_by_main_is_not_validated_again_by_train(tmp_path, monkeypatch):
    """main() validates; train() gets the equal config and skips the schema pass."""
    from common import train as train_mod

    calls = []
    real = config.validate

    def counting(obj, schema_name, where):
        if schema_name == "run.schema.json":
            calls.append(where)
        return real(obj, schema_name, where)

    monkeypatch.setattr(config, "validate", counting)
    monkeypatch.setattr(train_mod, "train", lambda cfg, *a, **k: train_mod.validate_run_config(cfg))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny(**{"train.epochs": 9, "seed": 5})))
    assert train_mod.main(["--config", str(path), "--out", str(tmp_path / "runs" / "r")]) == 0
    assert len(calls) == 1, calls


# --------------------------------------------------------------------------- method specs
@pytest.mark.parametrize("spec,expect", [
    ("dm", "is a loss term"), ("mixup+cutmix", "is a method, not a loss term"),
])
def test_build_method_and_validation_share_one_spec_parser(spec, expect):
    import torch

    from common.methods import RunContext, build_method

    ctx = RunContext("classification", 10, (1, 8, 8), torch.device("cpu"), None, None)
    with pytest.raises(ConfigError, match=expect):
        build_method({"name": spec}, ctx)
    with pytest.raises(ConfigError, match=expect):
        validate_run_config(resolve(tiny(method={"name": spec})), "t")


def test_method_task_is_checked_against_the_dataset():
    cfg = resolve(tiny(method={"name": "cutmix"}, model={"name": "mlp"},
                       **{"dataset.name": "diabetes", "dataset.val_size": 0}))
    with pytest.raises(ConfigError, match="method 'cutmix' does not support the regression dataset 'diabetes'"):
        validate_run_config(cfg, "t")


# --------------------------------------------------------------------------- dataset metadata
def test_dataset_metadata_is_declared_at_registration():
    from common.data import DATASETS, dataset_info

    for name in DATASETS.names():
        factory = DATASETS.get(name)
        assert not hasattr(factory, "image_size"), f"{name}: image_size belongs in register_dataset(...)"
        info = dataset_info(name)
        assert info.task in ("classification", "regression")
    assert dataset_info("cifar10").image_size == 32 and dataset_info("digits").image_size == 8
    assert dataset_info("airfoil").has_val and dataset_info("airfoil").task == "regression"
    assert not dataset_info("cifar10").has_val


def test_no_import_cycle_between_config_and_the_data_modules():
    """common/data.py and the dataset modules never import common.config."""
    for f in [ROOT / "common/data.py", *ROOT.glob("common/*data*.py"), *ROOT.glob("papers/*/data*.py")]:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                assert mod not in (".config", "common.config"), f"{f} imports {mod}"


FILE_BASED = {"cifar10", "cifar100", "mnist", "imagenet", "tiny_imagenet", "airfoil", "no2", "exchange_rate",
              "electricity", "communities", "skillcraft"}


def test_missing_files_on_an_empty_root_lists_every_file_based_dataset(tmp_path):
    from common.data import DATASETS, missing_files

    for name in DATASETS.names():
        missing = missing_files({"name": name, "root": str(tmp_path)})
        if name in FILE_BASED:
            assert missing and all(str(tmp_path) in m for m in missing), name
        else:
            assert missing == [], name
    assert FILE_BASED <= set(DATASETS.names())


def test_missing_files_on_the_shared_data_root():
    from common.data import missing_files

    shared = Path("/work/shared/data")
    if not shared.is_dir():
        pytest.skip("no shared data root here")
    for name in ("cifar10", "mnist", "airfoil", "no2", "exchange_rate", "communities", "skillcraft", "digits"):
        assert missing_files({"name": name, "root": str(shared)}) == [], name
    assert missing_files({"name": "imagenet", "root": str(shared)}) == [f"{shared}/imagenet/train/",
                                                                         f"{shared}/imagenet/val/"]


@pytest.mark.parametrize("layout", ["zip", "folder", "pickles"])
def test_missing_files_accepts_each_form_of_each_cifar10_copy(tmp_path, layout):
    """The default copy (JPEG-q75) is a zip or its extracted folder; ``copy: official`` the batches."""
    import zipfile

    from common.data import missing_files

    base = tmp_path / "cifar10"
    jpeg, official = {"name": "cifar10", "root": str(tmp_path)}, {"name": "cifar10", "root": str(tmp_path),
                                                                 "copy": "official"}
    assert missing_files(jpeg) == [f"{base}/*.zip or {base}/train/"]
    assert missing_files(official) == [f"{base}/cifar-10-batches-py/"]
    base.mkdir()
    if layout == "zip":
        zipfile.ZipFile(base / "c.zip", "w").close()
    elif layout == "folder":
        (base / "train").mkdir()
    else:
        (base / "cifar-10-batches-py").mkdir()
    assert (missing_files(official) == []) == (layout == "pickles")
    assert (missing_files(jpeg) == []) == (layout != "pickles")


def test_missing_files_uses_the_env_data_root(tmp_path, monkeypatch):
    from common.data import missing_files

    monkeypatch.setenv("MIXREPRO_DATA", str(tmp_path))
    (tmp_path / "airfoil").mkdir()
    assert missing_files({"name": "airfoil"}) == [f"{tmp_path}/airfoil/airfoil_self_noise.dat"]
    (tmp_path / "airfoil" / "airfoil_self_noise.dat").write_text("1\t2\n")
    assert missing_files({"name": "airfoil"}) == []


# --------------------------------------------------------------------------- every scale at plan time
def _paper(root: Path, name: str, cpu_entry: dict) -> Path:
    p = root / "papers" / name / "experiments.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"paper": name, "scales": {"quick": {"grid": [{"vary": {"method": ["erm"]}}]},
                                     "cpu": {"grid": [cpu_entry]}}}
    p.write_text(yaml.safe_dump(doc))
    return p


def test_validate_all_catches_a_typo_in_a_scale_not_being_run(tmp_path):
    from common.config import plan

    _paper(tmp_path, "good", {"vary": {"method": ["mixup"]}})
    p = _paper(tmp_path, "toy", {"set": {"train": {"lr": -0.1}}})
    runs, _ = plan("quick", tmp_path)  # the quick scale alone is fine
    assert len(runs) == 1
    with pytest.raises(ConfigError) as e:
        validate_all(tmp_path)
    msg = str(e.value)
    assert str(p) in msg and "scales.cpu.grid[0]" in msg and "'train.lr'" in msg


def test_validate_all_passes_on_the_repository():
    validate_all(ROOT)


def test_copy_data_is_a_deep_copy_of_config_data():
    data = {"a": [1, {"b": [2.5, None, True]}], "c": {"d": "x"}, "e": (1, [2]), "f": {3}}
    out = config.copy_data(data)
    assert out == data
    out["a"][1]["b"].append(0)
    out["c"]["d"] = "y"
    out["e"][1].append(3)
    out["f"].add(4)
    assert data == {"a": [1, {"b": [2.5, None, True]}], "c": {"d": "x"}, "e": (1, [2]), "f": {3}}
