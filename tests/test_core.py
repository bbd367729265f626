"""The shared primitives and the data layer: spec worked examples as exact equalities,
invariants (hypothesis), registry errors and data-layer errors.

Spec: ../shared/specs/mixup.md (section 1: one Beta draw per batch, partners by randperm,
loss = lam * CE(y_a) + (1 - lam) * CE(y_b)), cutmix.md (box rule, area-corrected lambda).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from common.losses import cross_entropy, mixed_cross_entropy, mixed_targets, soft_cross_entropy
from common.methods import ConfigError, RunContext, build_method
from common.mixing import (
    Box, box_from_center, box_lambda, box_mask, mask_mix, mix_inputs, pair_indices, paste_box, sample_box,
    sample_lambda, upsample_mask,
)
from common.registry import Registry, RegistryError

FAST = settings(max_examples=60, deadline=None)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- lambda
def test_lambda_moments_alpha_1():
    lam = sample_lambda(1.0, gen(0), size=100_000).double()
    assert abs(lam.mean().item() - 0.5) < 0.005
    assert abs(lam.var().item() - 1 / 12) < 0.003  # Beta(1,1) = U(0,1)
    assert lam.min() >= 0 and lam.max() <= 1


@pytest.mark.parametrize("alpha", [0.2, 0.4, 2.0])
def test_lambda_moments_and_symmetry(alpha):
    lam = sample_lambda(alpha, gen(1), size=100_000).double()
    var = 1.0 / (4 * (2 * alpha + 1))  # Var Beta(a, a)
    assert abs(lam.mean().item() - 0.5) < 0.005
    assert abs(lam.var().item() - var) < 0.005
    # symmetric: lam and 1 - lam have the same distribution (compare quantiles)
    q = torch.tensor([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95], dtype=torch.float64)
    assert torch.allclose(torch.quantile(lam, q), torch.quantile(1 - lam, q), atol=0.01)


def test_lambda_alpha_nonpositive_is_no_mixing_and_scalar_is_float():
    assert sample_lambda(0.0, gen()) == 1.0 and sample_lambda(-1.0, gen()) == 1.0
    assert torch.equal(sample_lambda(0.0, gen(), size=4), torch.ones(4))
    v = sample_lambda(1.0, gen())
    assert isinstance(v, float) and 0.0 <= v <= 1.0


def test_lambda_is_reproducible_from_the_generator():
    assert sample_lambda(0.5, gen(7)) == sample_lambda(0.5, gen(7))
    assert torch.equal(sample_lambda(0.5, gen(7), size=10), sample_lambda(0.5, gen(7), size=10))
    assert sample_lambda(0.5, gen(7)) != sample_lambda(0.5, gen(8))


# --------------------------------------------------------------------------- mixing
def test_mix_inputs_worked_example():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    out = mix_inputs(x, torch.tensor([1, 0]), 0.25)
    assert out[0].tolist() == [2.5, 5.0]  # 0.25*[1,2] + 0.75*[3,6]
    assert out[1].tolist() == [1.5, 3.0]  # 0.25*[3,6] + 0.75*[1,2]


def test_lam_one_is_a_no_op():
    x = torch.randn(6, 3, 4, 4, generator=gen())
    perm = pair_indices(6, gen(1))
    assert torch.equal(mix_inputs(x, perm, 1.0), x)
    assert torch.equal(mix_inputs(x, perm, torch.ones(6)), x)
    out, lam = mask_mix(x, perm, torch.zeros(4, 4))
    assert torch.equal(out, x) and torch.equal(lam, torch.ones(6))
    logits, y = torch.randn(6, 5, generator=gen(2)), torch.randint(0, 5, (6,), generator=gen(3))
    assert torch.equal(mixed_cross_entropy(logits, y, y[perm], 1.0), cross_entropy(logits, y))


def test_per_sample_lambda_mixes_each_row():
    x = torch.tensor([[0.0], [10.0], [20.0]])
    out = mix_inputs(x, torch.tensor([1, 2, 0]), torch.tensor([1.0, 0.5, 0.0]))
    assert out.squeeze(1).tolist() == [0.0, 15.0, 0.0]


# --------------------------------------------------------------------------- pairing
@FAST
@given(n=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_permute_pairing_is_a_permutation(n, seed):
    p = pair_indices(n, gen(seed), "permute")
    assert sorted(p.tolist()) == list(range(n))


@FAST
@given(half=st.integers(1, 32))
def test_flip_pairing_pairs_i_with_n_minus_1_minus_i(half):
    n = 2 * half
    p = pair_indices(n, gen(), "flip")
    assert p.tolist() == list(range(n - 1, -1, -1))
    assert all(p[p[i]] == i and p[i] != i for i in range(n))  # an involution without fixed points


def test_flip_needs_even_batch_and_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="even"):
        pair_indices(5, gen(), "flip")
    with pytest.raises(ValueError, match="permute.*flip"):
        pair_indices(4, gen(), "shuffle")


# --------------------------------------------------------------------------- boxes
@FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), lam=st.floats(0.0, 1.0), data=st.data())
def test_box_lambda_is_exactly_one_minus_area_fraction(h, w, lam, data):
    cy, cx = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    b = box_from_center(h, w, lam, cy, cx)
    assert 0 <= b.r0 <= b.r1 <= h and 0 <= b.c0 <= b.c1 <= w
    assert box_lambda(b, h, w) == 1.0 - b.area / (h * w)
    assert b.area <= (1 - lam) * h * w + 1e-9  # clipping and even rounding only shrink the box
    m = box_mask([b], h, w)
    assert m.sum().item() == b.area


def test_box_worked_examples():
    # 32x32, lam=0.75: cut = int(32*sqrt(0.25)) = 16, centred at (16,16) -> rows/cols [8, 24)
    b = box_from_center(32, 32, 0.75, 16, 16)
    assert b == Box(8, 24, 8, 24) and box_lambda(b, 32, 32) == 0.75
    # clipped at the corner: centre (0,0) keeps a quarter of the box
    b = box_from_center(32, 32, 0.75, 0, 0)
    assert b == Box(0, 8, 0, 8) and box_lambda(b, 32, 32) == 1 - 64 / 1024
    assert box_from_center(8, 8, 1.0, 3, 3).area == 0  # lam = 1: empty box


@FAST
@given(seed=st.integers(0, 2**31 - 1), lam=st.floats(0.0, 1.0))
def test_paste_box_changes_exactly_the_box(seed, lam):
    g = gen(seed)
    x = torch.randn(4, 2, 9, 7, generator=g)
    perm = pair_indices(4, g)
    b = sample_box(9, 7, lam, g)
    out = paste_box(x, perm, b)
    inside = box_mask([b] * 4, 9, 7).bool().expand_as(x)
    assert torch.equal(out[inside], x[perm][inside])
    assert torch.equal(out[~inside], x[~inside])
    assert not torch.equal(x, out) or b.area == 0 or torch.equal(x, x[perm])


# --------------------------------------------------------------------------- masks
@FAST
@given(seed=st.integers(0, 2**31 - 1), per_sample=st.booleans())
def test_mask_mix_is_exact_for_binary_masks(seed, per_sample):
    g = gen(seed)
    x = torch.randn(5, 3, 6, 6, generator=g)
    perm = pair_indices(5, g)
    m = (torch.rand((5, 1, 6, 6) if per_sample else (6, 6), generator=g) < 0.4).float()
    out, lam = mask_mix(x, perm, m)
    mb = m.bool().view(-1 if per_sample else 1, 1, 6, 6).expand_as(x)
    assert torch.equal(out, torch.where(mb, x[perm], x))  # bit-exact, no interpolation error
    expect = 1 - m.view(5 if per_sample else 1, -1).mean(1)
    assert torch.allclose(lam, expect.expand(5)) and lam.shape == (5,)


def test_upsample_mask_repeats_cells():
    m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    u = upsample_mask(m, 3)
    assert u.shape == (6, 6) and u[:3, :3].eq(1).all() and u[:3, 3:].eq(0).all() and u.mean() == m.mean()


# --------------------------------------------------------------------------- losses
def test_mixed_ce_worked_example():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    v = mixed_cross_entropy(logits, torch.tensor([0]), torch.tensor([1]), 0.7).item()
    lse = math.log(math.exp(2) + math.exp(1) + 1)
    assert v == pytest.approx(0.7 * (lse - 2) + 0.3 * (lse - 1), abs=1e-6)
    assert round(v, 6) == 0.707606


@FAST
@given(seed=st.integers(0, 2**31 - 1), lam=st.floats(0.0, 1.0), eps=st.sampled_from([0.0, 0.1, 0.3]),
       per_sample=st.booleans())
def test_mixed_ce_is_linear_in_the_target(seed, lam, eps, per_sample):
    g = gen(seed)
    n, k = 8, 7
    logits = torch.randn(n, k, generator=g, dtype=torch.float64).float() * 3
    y_a, y_b = torch.randint(0, k, (n,), generator=g), torch.randint(0, k, (n,), generator=g)
    lam_v = torch.rand(n, generator=g) if per_sample else lam
    got = mixed_cross_entropy(logits, y_a, y_b, lam_v, eps, reduction="none")
    ce_a = F.cross_entropy(logits, y_a, reduction="none", label_smoothing=eps)
    ce_b = F.cross_entropy(logits, y_b, reduction="none", label_smoothing=eps)
    assert torch.allclose(got, lam_v * ce_a + (1 - lam_v) * ce_b, atol=1e-5)
    dense = soft_cross_entropy(logits, mixed_targets(y_a, y_b, lam_v, k, eps), reduction="none")
    assert torch.allclose(got, dense, atol=1e-5)


def test_label_smoothing_matches_torch():
    g = gen(3)
    logits, y = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g)
    for eps in (0.0, 0.1, 0.5):
        assert torch.allclose(cross_entropy(logits, y, eps), F.cross_entropy(logits, y, label_smoothing=eps), atol=1e-6)
    t = mixed_targets(y, y, 1.0, 10, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(16)) and torch.allclose(t.max(1).values, torch.full((16,), 0.91))


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


# --------------------------------------------------------------------------- data layer
def test_digits_loads_with_a_fixed_balanced_split():
    from common.data import load_digits

    s = load_digits()
    assert s.train.x.shape == (1297, 1, 8, 8) and s.test.x.shape == (500, 1, 8, 8)
    assert s.train.x.dtype == torch.uint8 and s.train.x.max() == 255
    assert torch.bincount(s.test.y, minlength=10).tolist() == [50] * 10
    assert s.is_image and s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert torch.equal(load_digits().test.x, s.test.x)  # fixed


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
    from common.data import DataError, load_cifar10

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
    from common.data import load_cifar10, prepare_splits

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
