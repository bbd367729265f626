"""Inputs that used to be accepted silently are clear errors before any training: non-finite
method parameters, floats where integers belong, duplicate YAML keys, non-UTF-8 files, bad
``--set`` overrides (blamed on the override), a pairing method with batch size 1, split sizes the
data cannot give, a CIFAR-10 ImageFolder with a class folder missing, and MaskMix/MixPro cells that
do not fit the patch or image. Also: ``1e6`` in YAML is a float."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from rel_helpers import ROOT, env, tiny, write_config

from common.config import (ConfigError, apply_overrides, load_experiments, load_yaml, parse_yaml, resolve,
                           validate_run_config)
from common.methods import METHODS, Method, check_bool, check_choice, check_range


def _main(tmp_path, cfg_or_text, *args) -> tuple[int, str, Path]:
    """Run the trainer CLI in-process on a config file; returns (exit code, stderr, config path)."""
    path = tmp_path / "run.yaml"
    if isinstance(cfg_or_text, (str, bytes)):
        path.write_bytes(cfg_or_text if isinstance(cfg_or_text, bytes) else cfg_or_text.encode())
    else:
        write_config(path, cfg_or_text)
    rc, err = _main_argv(tmp_path, "--config", str(path), *args)
    return rc, err, path


def _main_argv(tmp_path, *argv) -> tuple[int, str]:
    """The trainer CLI in-process with ``--out`` under ``tmp_path/runs``; returns (exit code, stderr)."""
    import sys

    from common.train import main

    err = io.StringIO()
    old, sys.stderr = sys.stderr, err
    try:
        rc = main([*argv, "--out", str(tmp_path / "runs" / "r")])
    finally:
        sys.stderr = old
    return rc, err.getvalue()


def _assert_rejected(tmp_path, rc, err, *expect):
    assert rc == 2, err
    for s in expect:
        assert s in err, f"{s!r} missing from: {err}"
    assert not (tmp_path / "runs").exists(), "a run directory was written"


# --------------------------------------------------------------------------- non-finite numbers
@pytest.mark.parametrize("text,key", [
    ("method: {name: mixup, alpha: .nan}", "alpha"),
    ("method: {name: mixup, prob: .nan}", "prob"),
    ("method: {name: cutmix, alpha: .inf}", "alpha"),
    ("method: {name: cutmix, prob: -.inf}", "prob"),
])
def test_non_finite_method_params_are_rejected(tmp_path, text, key):
    cfg = tiny()
    cfg["method"] = yaml.safe_load(text)["method"]
    rc, err, path = _main(tmp_path, cfg)
    _assert_rejected(tmp_path, rc, err, str(path), key, "not a finite number")


@pytest.mark.parametrize("key", ["train.lr", "train.weight_decay", "train.momentum", "train.min_lr"])
def test_non_finite_train_numbers_are_rejected(tmp_path, key):
    rc, err, path = _main(tmp_path, tiny(**{key: float("nan")}))
    _assert_rejected(tmp_path, rc, err, str(path), repr(key), "not a finite number")


@given(value=st.sampled_from([math.nan, math.inf, -math.inf]),
       lo=st.one_of(st.none(), st.floats(-10, 10)), hi=st.one_of(st.none(), st.floats(10, 20)))
def test_check_range_rejects_every_non_finite_value(value, lo, hi):
    with pytest.raises(ConfigError, match="x=.*not a finite number"):
        check_range("where", "x", value, lo, hi)


def test_check_choice_and_check_bool_name_the_key():
    check_choice("m", "pairing", "flip", ("permute", "flip"))
    check_bool("m", "flag", False)
    with pytest.raises(ConfigError, match=r"^m: pairing='flp' is not allowed; choose one of 'permute', 'flip'$"):
        check_choice("m", "pairing", "flp", ("permute", "flip"))
    with pytest.raises(ConfigError, match=r"^m: flag must be true or false, got 'yes'$"):
        check_bool("m", "flag", "yes")
    with pytest.raises(ConfigError, match="flag must be true or false"):
        check_bool("m", "flag", 1)
    with pytest.raises(ConfigError, match="is not allowed"):
        check_choice("m", "k", True, (1, 0))  # a bool is not the number 1


@pytest.mark.parametrize("method,key,value", [
    ({"name": "mixup"}, "pairing", "flp"), ({"name": "cutmix"}, "correct_lam", "yes"),
    ({"name": "transmix"}, "token_mask", "middle"), ({"name": "mixpro"}, "progressive", "linear"),
    ({"name": "rankmixup_mrl"}, "space", "pixels"), ({"name": "resizemix"}, "placement", "left"),
])
def test_paper_params_use_the_shared_checks(method, key, value):
    cfg = resolve(tiny(method={**method, key: value}, **{"model": {"name": "vit", "patch_size": 2}}))
    with pytest.raises(ConfigError) as e:
        validate_run_config(cfg, "the.yaml")
    msg = str(e.value)
    assert "the.yaml" in msg and (f"{key}={value!r} is not allowed" in msg or f"{key} must be true or false" in msg), msg


# --------------------------------------------------------------------------- integers
@pytest.mark.parametrize("key,value,hint", [("train.epochs", 15.0, "write 15"), ("seed", 1.0, "write 1"),
                                            ("train.batch_size", 32.0, "write 32"), ("train.epochs", True, "")])
def test_floats_and_bools_are_not_integers(tmp_path, key, value, hint):
    rc, err, path = _main(tmp_path, tiny(**{key: value}))
    _assert_rejected(tmp_path, rc, err, str(path), repr(key), hint)


def test_yaml_float_seed_cannot_make_a_run_id(tmp_path):
    p = tmp_path / "papers" / "toy" / "experiments.yaml"
    p.parent.mkdir(parents=True)
    p.write_text("paper: toy\nscales:\n  quick:\n    grid:\n      - vary: {seed: [0, 1.0]}\n")
    from common.config import expand_grid

    with pytest.raises(ConfigError, match=r"grid\[0\].*'seed': 1.0 is not an integer"):
        expand_grid(load_experiments(p), "quick", str(p))


# --------------------------------------------------------------------------- YAML
@pytest.mark.parametrize("text,value", [("1e6", 1e6), ("5e-4", 5e-4), ("-1E3", -1e3), ("+2.5e3", 2.5e3),
                                        (".5e1", 5.0), ("1.0e+2", 100.0), ("3", 3), ("0.1", 0.1), ("1e", "1e"),
                                        ("e5", "e5"), ("1_000", 1000)])
def test_yaml_reads_exponent_numbers_as_floats(text, value):
    got = parse_yaml(f"x: {text}", "t")["x"]
    assert got == value and type(got) is type(value)


def test_lr_1e6_style_values_validate(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(tiny()).replace("lr: 0.05", "lr: 5e-2"))
    cfg = load_yaml(p)
    assert cfg["train"]["lr"] == 0.05
    validate_run_config(resolve(cfg), str(p))


@pytest.mark.parametrize("text,line,key", [
    ("seed: 0\ntrain: {epochs: 2}\nseed: 1\n", 3, "'seed'"),
    ("train:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n", 4, "'epochs'"),
    ("method: {name: mixup, alpha: 1, alpha: 2}\n", 1, "'alpha'"),
])
def test_duplicate_yaml_keys_name_file_line_and_key(tmp_path, text, line, key):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    msg = str(e.value)
    assert str(p) in msg and f"line {line}" in msg and f"duplicate key {key}" in msg, msg


def test_libyaml_and_the_pure_python_parser_read_every_yaml_file_alike():
    """StrictLoader parses with libyaml when PyYAML has it; the pure-Python parser with the same rules
    reads every YAML file of the repository (grids, recipes, workflow config) into the same data."""
    from common.config import StrictLoader

    class PurePython(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                     StrictLoader):  # StrictLoader's rules over PyYAML's own Python parser
        def __init__(self, stream):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    assert issubclass(StrictLoader, yaml.CSafeLoader) == yaml.__with_libyaml__
    assert PurePython.compose_node is yaml.composer.Composer.compose_node  # not libyaml's
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        yaml.load("a: 1\na: 2\n", Loader=PurePython)

    files = sorted(ROOT.glob("papers/*/*.yaml")) + sorted(ROOT.glob("config/*.yaml"))
    assert len(files) > 10
    for f in files:
        text = f.read_text()
        assert yaml.load(text, Loader=StrictLoader) == yaml.load(text, Loader=PurePython), f


def test_yaml_merge_keys_may_override():
    assert parse_yaml("a: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", "t")["c"] == {"x": 3, "y": 2}


def test_duplicate_key_in_experiments_yaml_and_through_main(tmp_path):
    p = tmp_path / "papers" / "toy" / "experiments.yaml"
    p.parent.mkdir(parents=True)
    p.write_text("paper: toy\nscales:\n  quick:\n    grid: []\n  quick:\n    grid: []\n")
    with pytest.raises(ConfigError, match=r"experiments.yaml: line 5: duplicate key 'quick'"):
        load_experiments(p)
    text = yaml.safe_dump(tiny()) + "seed: 3\n"
    rc, err, path = _main(tmp_path, text)
    _assert_rejected(tmp_path, rc, err, str(path), "duplicate key 'seed'")


def test_non_utf8_config_names_file_and_byte_offset(tmp_path):
    text = yaml.safe_dump(tiny()).encode()
    bad = text[:40] + b"\xe9" + text[40:]  # latin-1 e-acute
    rc, err, path = _main(tmp_path, bad)
    _assert_rejected(tmp_path, rc, err, str(path), "not UTF-8", "byte offset 40", "0xe9")
    p = tmp_path / "papers" / "toy" / "experiments.yaml"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"paper: toy\ntitle: caf\xe9\nscales: {}\n")
    with pytest.raises(ConfigError, match=r"experiments.yaml: not UTF-8 text: byte 0xe9 at byte offset 21"):
        load_experiments(p)


# --------------------------------------------------------------------------- --set
@pytest.mark.parametrize("override,expect", [
    ("train.lr=abc", ["--set train.lr=abc:", "'train.lr'", "'abc'", "number"]),
    ("train.epochs=15.0", ["--set train.epochs=15.0:", "'train.epochs'", "write 15"]),
    ("method.alpha=.nan", ["--set method.alpha=.nan:", "alpha", "not a finite number"]),
    ("method.alpah=2", ["--set method.alpah=2:", "'alpah'", "Did you mean 'alpha'"]),
    ("trian.epochs=2", ["--set trian.epochs=2:", "'trian'", "Did you mean 'train'"]),
    ("train.lr=[1,", ["--set train.lr=[1,:", "not valid YAML"]),
    ("train..lr=1", ["--set train..lr=1:", "dotted key"]),
    ("train.batch_size=1", ["--set train.batch_size=1:", "batch_size >= 2"]),
])
def test_bad_override_blames_the_override_not_the_file(tmp_path, override, expect):
    rc, err, path = _main(tmp_path, tiny(), "--set", override)
    _assert_rejected(tmp_path, rc, err, *expect)
    assert str(path) not in err


def test_override_values_are_read_like_the_config_file():
    cfg = apply_overrides(tiny(), ["train.lr=1e-3", "train.epochs=2", "method=erm"])
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["epochs"] == 2 and cfg["method"] == {"name": "erm"}


def test_a_bad_file_is_still_blamed_on_the_file(tmp_path):
    cfg = tiny(**{"train.lr": "abc"})
    rc, err, path = _main(tmp_path, cfg, "--set", "train.epochs=2")
    _assert_rejected(tmp_path, rc, err, str(path), "'train.lr'")
    assert "--set" not in err


# --------------------------------------------------------------------------- pairing methods and split sizes
@pytest.mark.parametrize("method", ["mixup", "cutmix", "manifold_mixup", "resizemix", "rankmixup_mrl", "mixup+dm"])
def test_pairing_method_with_batch_size_one_is_rejected(tmp_path, method):
    rc, err, path = _main(tmp_path, tiny(method={"name": method}, **{"train.batch_size": 1}))
    _assert_rejected(tmp_path, rc, err, str(path), "'train.batch_size'=1", "batch_size >= 2")


def _method_on_a_batch(name: str):
    """(method, network in eval mode, context, batch of 16, the same batch with its last sample replaced)
    on the first small network the method accepts (CNN, ViT; an MLP for regression)."""
    import warnings

    import torch

    from benchmarks import harness as H
    from common.methods import METHODS, Batch, build_method

    images = H.random_images(17, seed=1)
    images.x = images.x[:, :, :16, :16].contiguous()
    nets = {"classification": [({"name": "resnet8", "width": 8}, 10, (3, 16, 16), images),
                               ({"name": "vit", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 3},
                                10, (3, 16, 16), images)],
            "regression": [({"name": "mlp", "hidden": [32]}, 1, (5,), H.random_regression(n=64, d=5, seed=1))]}
    for task in METHODS.get(name).tasks:
        for spec, k, shape, data in nets[task]:
            model = H.build(spec, k, shape)
            ctx = H.make_context(task, data, model, k, shape)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    method = build_method({"name": name}, ctx)
                    method.setup(model)
            except (TypeError, Warning, RuntimeError):
                continue
            x = H.image_batch(data, 17).x if task == "classification" else data.x[:17]
            full = Batch(x, data.y[:17].clone(), torch.arange(17))
            keep = torch.tensor(list(range(15)) + [16])
            return (method, model.eval(), ctx, Batch(full.x[:16], full.y[:16], full.index[:16]),
                    Batch(full.x[keep], full.y[keep], full.index[keep]))
    raise AssertionError(f"{name}: no test network accepts it")


def _network_outputs(method, model, ctx, batch, seed: int) -> list:
    """What the network returns (forward and forward_mix) during one step drawn from ``seed``."""
    import torch

    from common.methods import TrainState

    seen = []
    for attr in ("forward", "forward_mix"):
        fn = getattr(model, attr, None)
        if fn is not None:
            def record(*a, _fn=fn, **kw):
                out = _fn(*a, **kw)
                seen.append((out[0] if isinstance(out, tuple) else out).detach().clone())
                return out
            setattr(model, attr, record)
    with torch.no_grad():
        method.step(model, batch, TrainState(0, 0, 10, 100, torch.Generator().manual_seed(seed), ctx))
    for attr in ("forward", "forward_mix"):
        model.__dict__.pop(attr, None)
    return seen


def _mixes_within_the_batch(name: str) -> bool:
    """Replacing the last sample of the batch changes the network's output for another sample (the
    same random draws, BatchNorm in eval mode): the method combines samples of one batch."""
    method, model, ctx, batch, other = _method_on_a_batch(name)
    for seed in range(4):
        for a, b in zip(_network_outputs(method, model, ctx, batch, seed), _network_outputs(method, model, ctx, other, seed)):
            if bool((a != b).flatten(1).any(1)[:-1].any()):
                return True
    return False


@pytest.mark.parametrize("name", [n for n in METHODS.names() if isinstance(METHODS.get(n), type)
                                  and issubclass(METHODS.get(n), Method)])
def test_a_method_declares_pairs_within_batch_exactly_when_it_mixes_samples_of_a_batch(name):
    """Property over the method registry (a new method is covered when it registers): the declaration
    that makes batch_size 1 an error matches what the method does."""
    assert METHODS.get(name).pairs_within_batch is _mixes_within_the_batch(name), name


def test_non_pairing_method_trains_with_batch_size_one():
    validate_run_config(resolve(tiny(method={"name": "erm"}, **{"train.batch_size": 1})), "t")


@pytest.mark.parametrize("over,expect", [
    ({"dataset.test_size": 501}, ["'dataset.test_size'=501", "500 test samples of 'digits'"]),
    ({"dataset.train_size": 1200}, ["'dataset.train_size'=1200", "1097 training samples"]),
    ({"dataset.val_size": 1297}, ["'dataset.val_size'=1297", "smaller than the 1297"]),
    ({"train.batch_size": 1098, "train.drop_last": True}, ["'train.batch_size'=1098", "0 steps"]),
    ({"dataset.train_size": 64, "train.batch_size": 65, "train.drop_last": True}, ["64 training samples", "0 steps"]),
    ({"train.batch_size": 1098}, ["'train.batch_size'=1098", "1097 training samples", "one batch of 1097, not 1098",
                                  "at most 1097"]),
    ({"dataset.train_size": 64, "train.batch_size": 65}, ["'train.batch_size'=65", "64 training samples"]),
    ({"dataset": {"name": "random", "options": {"n_train": 10, "n_test": 4}, "test_size": 5, "val_size": 2}},
     ["'dataset.test_size'=5", "4 test samples of 'random'"]),
])
def test_split_sizes_known_from_the_config_are_checked_at_validation(tmp_path, over, expect):
    cfg = tiny()
    for k, v in over.items():
        if k == "dataset":
            cfg["dataset"] = v
        else:
            a, b = k.split(".")
            cfg[a][b] = v
    rc, err, path = _main(tmp_path, cfg)
    _assert_rejected(tmp_path, rc, err, str(path), *expect)
    with pytest.raises(ConfigError):
        validate_run_config(resolve(cfg), "plan")  # so `snakemake -n` fails on it too


def test_a_batch_equal_to_the_split_is_fine():
    validate_run_config(resolve(tiny(**{"train.batch_size": 1097})), "t")
    validate_run_config(resolve(tiny(**{"train.batch_size": 1097, "train.drop_last": True})), "t")


# --------------------------------------------------------------------------- seeds
def test_a_seed_torch_cannot_take_is_rejected_at_plan_time(tmp_path):
    """``seed: 2**64`` used to pass the plan and crash in torch.manual_seed with a traceback."""
    from common.config import expand_grid

    p = tmp_path / "papers" / "toy" / "experiments.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(yaml.safe_dump({"paper": "toy", "scales": {"quick": {"grid": [{"set": tiny(seed=2 ** 64)}]}}}))
    with pytest.raises(ConfigError) as e:
        expand_grid(load_experiments(p), "quick", str(p))
    assert str(p) in str(e.value) and "key 'seed'" in str(e.value) and "maximum=18446744073709551615" in str(e.value)
    rc, err, path = _main(tmp_path, tiny(seed=2 ** 64))
    _assert_rejected(tmp_path, rc, err, str(path), "key 'seed'", "18446744073709551616")
    validate_run_config(resolve(tiny(**{"dataset.split_seed": 2 ** 70})), "t")  # numpy's default_rng takes any


def test_the_largest_allowed_seed_seeds_every_generator():
    from common.train import seed_everything

    validate_run_config(resolve(tiny(seed=2 ** 64 - 1)), "t")
    seed_everything(2 ** 64 - 1)
    with pytest.raises((ValueError, RuntimeError)):
        seed_everything(2 ** 64)  # the bound is torch's


# --------------------------------------------------------------------------- paper folder names
@pytest.mark.parametrize("name", ["Bad-Name", "cut.mix", "caf\u00e9"])
def test_a_paper_folder_outside_the_allowed_names_is_named(tmp_path, name):
    from common.config import discover_papers

    (tmp_path / "papers" / "fine_1").mkdir(parents=True)
    (tmp_path / "papers" / "fine_1" / "experiments.yaml").write_text("paper: fine_1\nscales: {}\n")
    (tmp_path / "papers" / name).mkdir()
    (tmp_path / "papers" / name / "experiments.yaml").write_text(f"paper: {name}\nscales: {{}}\n")
    with pytest.raises(ConfigError) as e:
        discover_papers(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "papers" / name) in msg and "[a-z0-9_]+" in msg, msg
    (tmp_path / "papers" / name / "experiments.yaml").unlink()  # a folder without a grid is not a paper
    assert list(discover_papers(tmp_path)) == ["fine_1"]


@pytest.mark.slow
def test_a_badly_named_paper_folder_stops_the_workflow_naming_it(tmp_path):
    """Through snakemake: a plan-time error naming the folder, not a MissingInputException."""
    from workflow_helpers import _add_paper, _copy_repo, _smk

    repo = _copy_repo(tmp_path)
    _add_paper(repo, "Bad-Name", "erm", "erm")
    p = _smk(repo, "-n", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and f"{repo / 'papers' / 'Bad-Name'}: paper folder name 'Bad-Name'" in out, out[-2000:]
    assert "[a-z0-9_]+" in out and "MissingInput" not in out


@pytest.mark.parametrize("over,expect", [
    ({"dataset.test_size": 1000}, ["dataset.test_size=1000", "test samples of 'diabetes'"]),
    ({"train.batch_size": 5000, "train.drop_last": True}, ["train.batch_size=5000", "0 steps"]),
])
def test_split_sizes_known_only_after_loading_fail_before_training(tmp_path, over, expect):
    """diabetes declares no split sizes: prepare_splits rejects them, exit 2, no run directory."""
    cfg = tiny(method={"name": "mixup"}, **{"dataset.name": "diabetes", "dataset.val_size": 0,
                                           "model": {"name": "mlp"}, "train.select": "best_val"})
    cfg["model"] = {"name": "mlp"}
    for k, v in over.items():
        a, b = k.split(".")
        cfg[a][b] = v
    validate_run_config(resolve(cfg), "t")  # unknown before loading
    rc, err, path = _main(tmp_path, cfg)
    _assert_rejected(tmp_path, rc, err, str(path), *expect)


# --------------------------------------------------------------------------- ImageFolder classes
def _cifar_zip(root: Path, drop: str | None) -> Path:
    from PIL import Image

    from common.image_datasets import CIFAR10_CLASSES

    path = root / "cifar10" / "nine.zip"
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for split in ("train", "test"):
            for c in CIFAR10_CLASSES:
                if c == drop and split == "train":
                    continue
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                z.writestr(f"{split}/{c}/{c}0.png", buf.getvalue())
    return path


def test_cifar10_zip_with_a_class_folder_missing_fails_loudly(tmp_path, monkeypatch):
    from common.data import DataError
    from common.image_datasets import load_cifar10

    root = tmp_path / "data"
    monkeypatch.setenv("MIXREPRO_CACHE", str(tmp_path / "cache"))
    path = _cifar_zip(root, drop="truck")
    with pytest.raises(DataError) as e:
        load_cifar10(str(root))
    msg = str(e.value)
    for s in (str(path), "expected 10 class folders under 'train/'", "found 9", "missing: truck"):
        assert s in msg, msg
    assert not list((tmp_path / "cache").glob("*.npz")) if (tmp_path / "cache").exists() else True


def test_cifar10_folder_with_a_class_folder_missing_fails_loudly(tmp_path, monkeypatch):
    from common.data import DataError
    from common.image_datasets import load_cifar10

    root = tmp_path / "data"
    monkeypatch.setenv("MIXREPRO_CACHE", str(tmp_path / "cache"))
    zpath = _cifar_zip(root, drop="cat")
    with zipfile.ZipFile(zpath) as z:
        z.extractall(root / "cifar10")
    zpath.unlink()
    with pytest.raises(DataError, match=r"CIFAR-10 folder .*cifar10: expected 10 class folders.*found 9.*missing: cat"):
        load_cifar10(str(root))


def test_cifar10_zip_with_every_class_loads(tmp_path, monkeypatch):
    from common.image_datasets import load_cifar10

    root = tmp_path / "data"
    monkeypatch.setenv("MIXREPRO_CACHE", str(tmp_path / "cache"))
    _cifar_zip(root, drop=None)
    s = load_cifar10(str(root))
    assert len(s.train) == 10 and sorted(s.train.y.tolist()) == list(range(10))


# --------------------------------------------------------------------------- MaskMix / MixPro cells
VIT = {"name": "vit", "patch_size": 2, "embed_dim": 12, "depth": 1, "num_heads": 2}


@pytest.mark.parametrize("method,model,expect", [
    ({"name": "maskmix", "cell_size": 3}, VIT, ["'method.cell_size'=3", "multiple of the ViT patch size 2"]),
    ({"name": "mixpro", "cell_size": 6}, VIT, ["'method.cell_size'", "cell_size=6 does not divide the image size 8"]),
    ({"name": "mixpro", "cell_size": 16}, {**VIT, "name": "vit"}, ["cell_size=16 does not divide the image size 8"]),
    ({"name": "maskmix", "cell_size": 3}, {"name": "resnet8", "width": 8}, ["cell_size=3 does not divide"]),
])
def test_maskmix_cells_are_checked_against_patch_and_image(tmp_path, method, model, expect):
    rc, err, path = _main(tmp_path, tiny(method=method, model=model))
    _assert_rejected(tmp_path, rc, err, str(path), *expect)


@pytest.mark.parametrize("method,model", [
    ({"name": "mixpro", "cell_size": 4}, VIT), ({"name": "maskmix", "cell_size": 2}, VIT),
    ({"name": "mixpro", "cell_size": 6, "allow_partial_cells": True}, VIT),
])
def test_fitting_cells_validate(method, model):
    validate_run_config(resolve(tiny(method=method, model=model)), "t")


def test_timm_patch_size_comes_from_the_config_or_the_model_name():
    base = {"dataset": {"name": "random", "val_size": 2, "options": {"image_size": 224, "n_train": 8, "n_test": 2}},
            "train": {"select": "last", "batch_size": 2}}
    ok = resolve(base, {"model": {"name": "timm:deit_tiny_patch16_224", "patch_size": 14},
                        "method": {"name": "mixpro", "cell_size": 56}})
    validate_run_config(ok, "t")
    bad = resolve(base, {"model": {"name": "timm:deit_tiny_patch16_224"}, "method": {"name": "mixpro", "cell_size": 56}})
    with pytest.raises(ConfigError, match="'method.cell_size'=56 is not a multiple of the ViT patch size 16"):
        validate_run_config(bad, "t")


# --------------------------------------------------------------------------- duplicate keys in every config input
def _json_with_duplicate(where: str) -> tuple[str, str]:
    """TINY as JSON text with one key given twice: at the top level ("seed") or nested ("lr" in "train")."""
    text = json.dumps(tiny())
    if where == "top":
        return text[:-1] + ', "seed": 1}', "'seed'"
    assert '"lr": 0.05' in text
    return text.replace('"lr": 0.05', '"lr": 0.05, "lr": 5.0'), "'lr'"


@pytest.mark.parametrize("where", ["top", "nested"])
def test_duplicate_json_keys_are_rejected_through_config_json(tmp_path, where):
    """``--config-json`` (what the workflow passes) reads JSON like a config file: the second "seed"
    or the nested second "lr" is an error naming the key, not a run at seed 1 or lr 5.0."""
    text, key = _json_with_duplicate(where)
    rc, err = _main_argv(tmp_path, "--config-json", text)
    _assert_rejected(tmp_path, rc, err, "<--config-json>", f"duplicate key {key}")


@pytest.mark.parametrize("where", ["top", "nested"])
def test_duplicate_json_keys_are_rejected_in_a_json_config_file(tmp_path, where):
    text, key = _json_with_duplicate(where)
    path = tmp_path / "run.json"
    path.write_text(text)
    rc, err = _main_argv(tmp_path, "--config", str(path))
    _assert_rejected(tmp_path, rc, err, str(path), f"duplicate key {key}")


@pytest.mark.parametrize("name,text,expect", [
    ("dup.json", '{"scale": "quick", "papers": [], "scale": "cpu"}', "duplicate key 'scale'"),
    ("nested.json", '{"scale": "quick", "x": {"lr": 1, "lr": 2}}', "duplicate key 'lr'"),
    ("dup.yaml", "scale: quick\npapers: []\nscale: cpu\n", "line 3: duplicate key 'scale'"),
    ("json_in.yaml", '{"scale": "quick", "scale": "cpu"}', "duplicate key 'scale'"),  # read as JSON, as Snakemake does
])
def test_workflow_config_files_are_read_strictly(tmp_path, name, text, expect):
    from common.config import check_workflow_config_inputs

    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as e:
        check_workflow_config_inputs([ROOT / "config" / "config.yaml", tmp_path / name])
    assert f"{tmp_path / name}: " in str(e.value) and expect in str(e.value), str(e.value)


def test_workflow_config_inputs_without_duplicates_pass(tmp_path):
    from common.config import check_workflow_config_inputs

    (tmp_path / "c.json").write_text('{"scale": "cpu", "papers": ["cutmix"]}')
    check_workflow_config_inputs([ROOT / "config" / "config.yaml", tmp_path / "c.json"],
                                 ["scale=cpu", "papers=[cutmix]", "data_root=/x=y"])
    with pytest.raises(ConfigError, match=r"--config: key 'scale' is given twice \(scale=cpu and scale=quick\)"):
        check_workflow_config_inputs([], ["scale=cpu", "papers=[]", "scale=quick"])


@pytest.mark.slow
@pytest.mark.parametrize("args,expect", [
    (["--configfile", "{tmp}/dup.json"], "{tmp}/dup.json: duplicate key 'scale'"),
    (["--configfile", "{tmp}/dup.yaml"], "{tmp}/dup.yaml: line 2: duplicate key 'scale'"),
    (["--config", "scale=quick", "scale=cpu"], "--config: key 'scale' is given twice"),
])
def test_duplicate_keys_are_rejected_through_the_workflow(tmp_path, args, expect):
    """Snakemake itself keeps the last of two equal keys of a --configfile (JSON or YAML) or of
    --config; the workflow's config check rejects them before planning, naming file and key."""
    (tmp_path / "dup.json").write_text('{"scale": "quick", "scale": "cpu"}')
    (tmp_path / "dup.yaml").write_text("scale: quick\nscale: cpu\n")
    argv = [a.format(tmp=tmp_path) for a in args]
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", *argv], cwd=ROOT, env=env(), capture_output=True,
                       text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and expect.format(tmp=tmp_path) in out and "Traceback" not in out, out[-3000:]


def test_json_config_files_follow_the_same_rules(tmp_path):
    from common.config import load_config_file

    p = tmp_path / "c.json"
    p.write_text('{"seed": 0, "train": {"lr": 0.1}, "seed": 1}')
    with pytest.raises(ConfigError, match=r"c.json: duplicate key 'seed'"):
        load_config_file(p)
    p.write_bytes(b'{"seed": 0, "x": "\xff"}')
    with pytest.raises(ConfigError, match=r"c.json: not UTF-8 text: byte 0xff at byte offset 18"):
        load_config_file(p)
    p.write_text('{"seed": 0,')
    with pytest.raises(ConfigError, match=r"c.json: not valid JSON"):
        load_config_file(p)
    y = tmp_path / "c.yaml"
    y.write_text("seed: 2\n")
    assert load_config_file(y) == {"seed": 2}
