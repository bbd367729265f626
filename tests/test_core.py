"""Registries, method building and the data layer: registry errors, data-layer errors, loaders.
The mixing primitives and losses are tested in ``test_mixing.py``."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings

from common.methods import ConfigError, RunContext, build_method
from common.registry import Registry, RegistryError

FAST = settings(max_examples=60, deadline=None)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- registries
def test_registry_clash_names_both_definitions():
    reg: Registry = Registry("widget")

    @reg.register("w")
    def first():
        pass

    def second():
        pass

    with pytest.raises(RegistryError) as e:
        reg.register("w")(second)
    msg = str(e.value)
    assert "'w'" in msg and f"{__name__}.test_registry_clash_names_both_definitions.<locals>.first" in msg
    assert "<locals>.second" in msg


def test_reregistering_the_same_object_is_allowed():
    reg: Registry = Registry("widget")

    def f():
        pass

    reg.register("f")(f)
    reg.register("f")(f)  # e.g. a module imported twice
    assert reg.get("f") is f


def test_unknown_name_lists_known_names_with_did_you_mean():
    from common.data import DATASETS
    from common.methods import METHODS
    from common.models import MODELS

    with pytest.raises(RegistryError) as e:
        METHODS.get("mixpu")
    assert "Did you mean 'mixup'" in str(e.value) and "Known methods:" in str(e.value) and "erm" in str(e.value)
    with pytest.raises(RegistryError, match="Did you mean 'resnet20'.*Known models:.*resnet8"):
        MODELS.get("resnet21")
    with pytest.raises(RegistryError, match="Known datasets:.*digits"):
        DATASETS.get("imagenet-1k-foo")


def _ctx(task="classification"):
    return RunContext(task, 10, (1, 8, 8), torch.device("cpu"), None, None)


def test_build_method_unknown_param_did_you_mean():
    with pytest.raises(ConfigError) as e:
        build_method({"name": "mixup", "alpah": 0.2}, _ctx())
    assert "'alpah'" in str(e.value) and "Did you mean 'alpha'" in str(e.value) and "Allowed keys:" in str(e.value)
    with pytest.raises(ConfigError, match="missing key 'name'"):
        build_method({"alpha": 1.0}, _ctx())
    with pytest.raises(RegistryError, match="Did you mean 'mixup'"):
        build_method("mixupp", _ctx())
    m = build_method("mixup", _ctx())
    assert m.p.alpha == 1.0 and m.name == "mixup"


def test_erm_and_mixup_steps_run():
    from common.methods import Batch, TrainState

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    b = Batch(torch.randn(6, 1, 8, 8, generator=gen()), torch.arange(6), torch.arange(6))
    for spec in ("erm", {"name": "mixup", "alpha": 0.4}):
        m = build_method(spec, _ctx())
        out = m.step(model, b, TrainState(0, 0, 1, 1, gen(1), _ctx()))
        assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.logits.shape == (6, 10)


def test_model_info_is_the_vit_geometry_and_the_benchmarks_use_it():
    from benchmarks import harness
    from common.models import build_model, model_info

    vit = build_model({"name": "vit", "patch_size": 4, "embed_dim": 12, "depth": 1, "num_heads": 2}, 10, (3, 16, 16))
    assert model_info(vit) == {"patch_size": 4, "num_prefix_tokens": 1}
    assert model_info(build_model({"name": "resnet8", "width": 4}, 10, (3, 8, 8))) == {}
    assert harness.model_info is model_info


# --------------------------------------------------------------------------- data layer
def test_digits_loads_with_a_fixed_balanced_split():
    from common.image_datasets import load_digits

    s = load_digits()
    assert s.train.x.shape == (1297, 1, 8, 8) and s.test.x.shape == (500, 1, 8, 8)
    assert s.train.x.dtype == torch.uint8 and s.train.x.max() == 255
    assert torch.bincount(s.test.y, minlength=10).tolist() == [50] * 10
    assert s.is_image and s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert torch.equal(load_digits().test.x, s.test.x)  # fixed


def test_digits_are_scikit_learns_digits_without_importing_it(monkeypatch):
    import sys

    from sklearn.datasets import load_digits as sk_digits

    from common.image_datasets import load_digits, sklearn_digits

    ref = sk_digits()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # any import of it would fail
    assert len(load_digits().train) == 1297
    images, target = sklearn_digits()
    assert images.dtype == ref.images.dtype and np.array_equal(images, ref.images)
    assert target.dtype == ref.target.dtype and np.array_equal(target, ref.target)


def test_prepare_splits_val_and_train_size_are_balanced_and_fixed():
    from common.data import prepare_splits

    s = prepare_splits({"name": "digits", "val_size": 200, "train_size": 500, "split_seed": 0})
    assert len(s.val) == 200 and len(s.train) == 500 and len(s.test) == 500
    assert torch.bincount(s.val.y, minlength=10).tolist() == [20] * 10
    assert torch.bincount(s.train.y, minlength=10).tolist() == [50] * 10
    again = prepare_splits({"name": "digits", "val_size": 200, "train_size": 500, "split_seed": 0})
    assert torch.equal(again.train.x, s.train.x) and torch.equal(again.val.y, s.val.y)
    other = prepare_splits({"name": "digits", "val_size": 200, "train_size": 500, "split_seed": 1})
    assert not torch.equal(other.train.x, s.train.x)


def test_cifar10_missing_offline_names_expected_path_and_files(tmp_path, monkeypatch):
    from common.data import DataError
    from common.image_datasets import load_cifar10

    monkeypatch.setenv("MIXREPRO_DATA", str(tmp_path))
    monkeypatch.delenv("MIXREPRO_DOWNLOAD", raising=False)
    with pytest.raises(DataError) as e:
        load_cifar10()
    msg = str(e.value)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in msg
    assert "data_batch_1..5" in msg and "test_batch" in msg and ".zip" in msg and "train/<class>" in msg


def test_batch_transform_shapes_crop_and_flip():
    from common.data import BatchTransform

    g = gen(0)
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=g)
    tf = BatchTransform((0.0,) * 3, (1 / 255,) * 3, pad=2, flip=True)  # normalisation = identity on 0..255
    out = tf(x, gen(1), True)
    assert out.shape == x.shape and out.dtype == torch.float32
    xp = F.pad(x, (2, 2, 2, 2)).float()
    for i in range(16):  # each output is some 8x8 window of the padded input, maybe mirrored
        windows = [xp[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert not torch.equal(out, x.float())  # something moved
    assert torch.equal(tf(x, gen(1), True), out)  # same generator state -> same augmentation
    assert torch.equal(tf(x, gen(1), False), x.float())  # evaluation: no augmentation


def test_batch_transform_without_augmentation_is_just_normalisation():
    from common.data import BatchTransform

    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8, generator=gen())
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    out = BatchTransform(mean, std, pad=0, flip=False)(x, gen(), True)
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(out, ref, atol=1e-5)


def test_loader_epochs_are_reproducible_and_cover_the_data():
    from common.data import ArrayData, Loader

    d = ArrayData(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1), torch.arange(50))
    a, b = Loader(d, 16, shuffle=True, seed=3), Loader(d, 16, shuffle=True, seed=3)
    ea = [bt.index for bt in a.epoch(2)]
    assert [t.tolist() for t in ea] == [bt.index.tolist() for bt in b.epoch(2)]
    assert sorted(torch.cat(ea).tolist()) == list(range(50)) and len(ea) == 4
    assert [t.tolist() for t in ea] != [bt.index.tolist() for bt in a.epoch(3)]
    assert len(Loader(d, 16, drop_last=True)) == 3


def _shared_root() -> Path | None:
    """``$MIXREPRO_DATA`` if it holds cifar10/, else ``../shared/data`` next to the repository."""
    for cand in (os.environ.get("MIXREPRO_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if cand and (Path(cand) / "cifar10").is_dir():
            return Path(cand)
    return None


@pytest.mark.slow
@pytest.mark.shared_data
def test_cifar10_from_the_shared_zip(monkeypatch):
    """The offline JPEG copy (first load decodes 60k JPEGs into a persistent cache, ~1-2 min;
    later loads read the cache)."""
    shared = _shared_root()
    if shared is None:
        pytest.skip("no data root with cifar10/ ($MIXREPRO_DATA or ../shared/data)")
    from common.data import prepare_splits
    from common.image_datasets import load_cifar10

    monkeypatch.setenv("MIXREPRO_DATA", str(shared))
    monkeypatch.setenv("MIXREPRO_CACHE", os.environ.get("MIXREPRO_CACHE") or "/tmp/mixrepro-cache-tests")
    monkeypatch.delenv("MIXREPRO_DOWNLOAD", raising=False)
    t0 = time.time()
    s = load_cifar10()
    assert s.train.x.shape == (50_000, 3, 32, 32) and s.test.x.shape == (10_000, 3, 32, 32)
    assert s.train.x.dtype == torch.uint8
    assert torch.bincount(s.train.y, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(s.test.y, minlength=10).tolist() == [1000] * 10
    m = s.train.x.float().mean((0, 2, 3)) / 255
    assert torch.allclose(m, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.01)  # JPEG q75 barely moves the mean
    t1 = time.time()
    sub = prepare_splits({"name": "cifar10", "train_size": 2000, "val_size": 1000, "split_seed": 0})
    assert len(sub.train) == 2000 and len(sub.val) == 1000
    assert torch.bincount(sub.train.y, minlength=10).tolist() == [200] * 10
    assert time.time() - t1 < max(60.0, 2 * (t1 - t0))  # second load comes from the cache
    assert np.isfinite(m.numpy()).all()


def test_deterministic_algorithms_flag_without_inductor():
    import torch

    from common.train import deterministic_algorithms

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        deterministic_algorithms()
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
