"""The shared mixing primitives (``common.mixing``, ``common.deit_mix``) and losses
(``common.losses``): worked examples as exact equalities and invariants (hypothesis).

Conventions checked: one ``lam ~ Beta(alpha, alpha)`` per batch, partners by ``randperm`` (or the
flip ``i <-> n-1-i``), loss ``lam * CE(y_a) + (1 - lam) * CE(y_b)``; the official CutMix box rule
``cut = int(d * sqrt(1 - lam))`` with half-width ``cut // 2`` and the area-corrected lambda.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from common.deit_mix import DeiTMixer, DeiTMixParams
from common.losses import cross_entropy, mixed_cross_entropy, mixed_targets, soft_cross_entropy
from common.mixing import (
    Box, box_from_center, box_lambda, box_mask, mask_mix, mix_inputs, pair_indices, paste_box, sample_box,
    sample_lambda, upsample_mask,
)

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


def test_flip_pairing_of_an_odd_batch_on_request_keeps_the_middle_sample():
    assert pair_indices(5, gen(), "flip", allow_odd=True).tolist() == [4, 3, 2, 1, 0]


@pytest.mark.parametrize("n", [7, 8])
def test_deit_mixer_pairs_i_with_n_minus_1_minus_i_and_draws_nothing_for_it(n):
    g1, g2 = gen(3), gen(3)
    d = DeiTMixer(DeiTMixParams()).draw(torch.zeros(n, 3, 8, 8), g1)
    assert d.index.tolist() == list(range(n - 1, -1, -1)) and 0.0 <= d.lam <= 1.0
    torch.rand((), generator=g2)  # u_apply
    torch.rand((), generator=g2)  # u_switch
    assert d.kind in ("mixup", "cutmix")
    if d.kind == "mixup":
        assert d.lam == sample_lambda(0.8, g2)  # the generator was used in the documented order only


def test_mask_mix_refuses_non_image_batches():
    with pytest.raises(ValueError, match="4-D"):
        mask_mix(torch.zeros(4, 8, 8), torch.arange(4), torch.zeros(8, 8))
