"""MixPro (papers/mixpro): MaskMix geometry, PAL, hand-computed worked examples as exact
equalities, invariants (hypothesis) and param validation."""
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from common.attention import attention_share, materialised_class_attention
from common.config import expand_grid, load_experiments
from common.losses import mixed_cross_entropy, mixed_targets, smooth_one_hot, soft_cross_entropy
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from common.models import build_model
from papers.mixpro.method import (cells_per_side, expand_cells, pal_lambda, progressive_factor, quantise_ratio,
                                  random_cell_masks)

ROOT = Path(__file__).resolve().parents[1]
VIT = {"name": "vit", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0}
SHAPE = (3, 16, 16)


def _vit(spec=None, shape=SHAPE, k=10, seed=0):
    torch.manual_seed(seed)
    return build_model(dict(spec or VIT), k, shape)


def _ctx(model, shape=SHAPE, k=10, smoothing=0.0):
    info = {}
    pe = getattr(model, "patch_embed", None)
    if pe is not None:
        info = {"patch_size": pe.patch_size[0], "num_prefix_tokens": model.num_prefix_tokens}
    return RunContext("classification", k, shape, torch.device("cpu"), None, None, smoothing, info)


def _state(ctx, seed=0, epoch=0, epochs=1):
    return TrainState(epoch, epoch, 1, epochs, torch.Generator().manual_seed(seed), ctx)


def _method(spec, model, ctx):
    m = build_method(spec, ctx)
    m.setup(model)
    return m


def _batch(n=8, shape=SHAPE, k=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, *shape, generator=g), torch.randint(0, k, (n,), generator=g), torch.arange(n))


# --------------------------------------------------------------------------- MaskMix geometry
@settings(max_examples=80, deadline=None)
@given(st.sampled_from([1, 2, 4, 7, 8, 14, 16]), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_cells_align_with_patch_boundaries_for_every_allowed_cell_size(patch, mult, g, seed):
    cell = patch * mult  # every allowed cell size: a whole multiple of the patch
    size = cell * g
    gen = torch.Generator().manual_seed(seed)
    n_keep = torch.randint(0, g * g + 1, (3,), generator=gen)
    cmask = random_cell_masks(n_keep, 3, g, gen)
    pix = expand_cells(cmask, cell, size)  # (3, S, S)
    tok = expand_cells(cmask, cell // patch, size // patch)  # (3, S/p, S/p)
    patches = pix.view(3, size // patch, patch, size // patch, patch)
    # every p x p patch is constant -> each token comes from exactly one image
    assert torch.equal(patches.amax(dim=(2, 4)), patches.amin(dim=(2, 4)))
    # the token mask is the pixel mask pooled per patch
    assert torch.equal(patches[:, :, 0, :, 0], tok)
    # and the count per sample is the requested number of cells
    assert torch.equal(cmask.flatten(1).sum(1).long(), n_keep)
    assert torch.equal(tok.flatten(1).mean(1), n_keep.float() / (g * g))


def test_example_quantised_ratio_224_patch14_cell56():
    g = cells_per_side(224, 56)
    assert g == 4
    n = quantise_ratio(0.30, g * g)
    assert int(n) == 5
    lam_area = int(n) / 16
    assert lam_area == 0.3125
    cmask = random_cell_masks(n.expand(1), 1, g, torch.Generator().manual_seed(0))
    tok = expand_cells(cmask, 56 // 14, 224 // 14)
    pix = expand_cells(cmask, 56, 224)
    assert tok.sum() == 80 and tok.numel() == 256 and tok.mean() == 0.3125
    assert pix.mean() == 0.3125


def test_example_ratio_range_and_expectation():
    cells = 16
    lam = torch.linspace(1e-6, 1 - 1e-6, 160001, dtype=torch.float64)
    n = quantise_ratio(lam, cells)
    assert int(n.min()) == 1 and int(n.max()) == 16
    # with lam ~ U(0,1) (Beta(1,1)): P(n = k) = 1/16 for every k, E[lam_area] = 8.5/16 = 0.53125
    assert (n.double() / cells).mean().item() == pytest.approx(0.53125, abs=1e-4)
    assert (n == 16).double().mean().item() == pytest.approx(1 / 16, abs=1e-4)


def test_same_count_different_layout_within_a_batch():
    model = _vit()
    m = _method({"name": "maskmix", "cell_size": 4, "maskmix_prob": 1.0}, model, _ctx(model))
    perm, cmask, lam_area = m.draw_maskmix(torch.zeros(8, *SHAPE), torch.Generator().manual_seed(3))
    counts = cmask.flatten(1).sum(1)
    assert torch.all(counts == counts[0])
    assert torch.all(lam_area == counts[0] / 16)
    assert len({tuple(c.flatten().tolist()) for c in cmask}) > 1


def test_per_sample_ratio_option_draws_one_count_per_sample():
    model = _vit()
    m = _method({"name": "maskmix", "cell_size": 4, "per_sample_ratio": True}, model, _ctx(model))
    _, cmask, lam_area = m.draw_maskmix(torch.zeros(32, *SHAPE), torch.Generator().manual_seed(0))
    assert len(set(lam_area.tolist())) > 1
    assert torch.equal(cmask.flatten(1).mean(1), lam_area)


def test_non_divisible_cell_is_rejected_and_partial_cells_use_the_visible_area():
    with pytest.raises(ConfigError, match="cell_size=64"):
        cells_per_side(224, 64)
    g = cells_per_side(224, 64, allow_partial=True)
    assert g == 4
    cmask = torch.zeros(1, 4, 4)
    cmask[0, 3, :] = 1
    cmask[0, :, 3] = 1  # last row + last column = 7/16 of the cells
    assert cmask.mean() == 7 / 16
    visible = expand_cells(cmask, 64, 224)
    assert visible.mean().item() == pytest.approx(13312 / 50176, abs=1e-7)
    assert round(visible.mean().item(), 4) == 0.2653


def test_maskmix_mixes_pixels_by_the_mask_and_labels_by_area():
    model = _vit()
    model.eval()
    ctx = _ctx(model, smoothing=0.1)
    m = _method({"name": "maskmix", "cell_size": 8, "maskmix_prob": 1.0}, model, ctx)
    b = _batch()
    out = m.step(model, b, _state(ctx, 5))
    g = torch.Generator().manual_seed(5)
    assert float(torch.rand((), generator=g)) < 1.0
    perm, cmask, lam_area = m.draw_maskmix(b.x, g)
    own = expand_cells(cmask, 8, 16).unsqueeze(1)
    x_mix = own * b.x + (1 - own) * b.x[perm]
    assert torch.equal(out.mix.index, perm)
    assert torch.equal(out.mix.y_b, b.y[perm])  # orientation: label of the image in the 0-cells
    assert torch.allclose(out.mix.lam, lam_area)
    target = mixed_targets(b.y, b.y[perm], lam_area, 10, 0.1)
    assert torch.allclose(target.sum(1), torch.ones(8))
    assert out.loss.item() == pytest.approx(soft_cross_entropy(model(x_mix), target).item(), rel=1e-5)


def test_maskmix_prob_zero_equals_deit_mix():
    model = _vit()
    model.eval()
    ctx = _ctx(model, smoothing=0.1)
    mm = _method({"name": "mixpro", "cell_size": 4, "maskmix_prob": 0.0}, model, ctx)
    dm = _method({"name": "deit_mix"}, model, ctx)
    for seed in range(4):
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        g1_state = TrainState(0, 0, 1, 1, g1, ctx)
        a = mm.step(model, _batch(), g1_state)
        torch.rand((), generator=g2)  # the MaskMix decision draw
        b = dm.step(model, _batch(), TrainState(0, 0, 1, 1, g2, ctx))
        assert a.loss.item() == b.loss.item()
    assert "alpha" not in mm.epoch_end(None)  # no PAL on Mixup/CutMix batches


# --------------------------------------------------------------------------- PAL: worked examples
def _area_target(lam_area, k, eps=0.1):
    la = torch.tensor([lam_area])
    return la.view(-1, 1) * smooth_one_hot(torch.tensor([0]), k, eps) + (1 - la.view(-1, 1)) * smooth_one_hot(
        torch.tensor([1]), k, eps)


@pytest.mark.parametrize("k,want", [(10, 0.4560), (100, 0.1468), (1000, 0.0465)])
def test_example_alpha_for_a_uniform_prediction(k, want):
    alpha = progressive_factor(torch.full((1, k), 1.0 / k), _area_target(0.3125, k))
    assert round(alpha.item(), 4) == want


def test_example_loss_identity():
    k = 10
    ya, yb = torch.tensor([0]), torch.tensor([1])
    la, lt = torch.tensor([0.3125]), torch.tensor([0.45])
    # prediction confident on b: logits (0, 4, 0, ...) -> p_a = 0.016, p_b = 0.858
    z = torch.zeros(1, k)
    z[0, 1] = 4.0
    alpha = progressive_factor(z.softmax(1), _area_target(0.3125, k))
    lam = pal_lambda(alpha, lt, la)
    loss = mixed_cross_entropy(z, ya, yb, lam, 0.0)
    dense = soft_cross_entropy(z, mixed_targets(ya, yb, lam, k, 0.0))
    assert (round(alpha.item(), 4), round(lam.item(), 4), round(loss.item(), 4)) == (0.9150, 0.4383, 1.9059)
    assert dense.item() == pytest.approx(loss.item(), abs=1e-6)
    # prediction equal to the area target -> alpha = 1, lam = lam_attn
    t = _area_target(0.3125, k)
    alpha = progressive_factor(t, t)
    lam = pal_lambda(alpha, lt, la)
    loss = mixed_cross_entropy(t.log(), ya, yb, lam, 0.0)
    assert (round(alpha.item(), 4), round(lam.item(), 4), round(loss.item(), 4)) == (1.0, 0.45, 0.8103)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 50), st.integers(0, 2**31 - 1), st.floats(0.0, 0.4))
def test_alpha_bounds_convexity_and_unit_sum(k, seed, eps):
    g = torch.Generator().manual_seed(seed)
    b = 6
    probs = torch.randn(b, k, generator=g).mul(3).softmax(1)
    ya, yb = torch.randint(0, k, (b,), generator=g), torch.randint(0, k, (b,), generator=g)
    lam_area = torch.randint(1, 17, (b,), generator=g).float() / 16
    lam_attn = torch.rand(b, generator=g)
    area_t = mixed_targets(ya, yb, lam_area, k, eps)
    alpha = progressive_factor(probs, area_t)
    assert ((alpha >= 0) & (alpha <= 1)).all()
    lam = pal_lambda(alpha, lam_attn, lam_area)
    lo, hi = torch.minimum(lam_attn, lam_area), torch.maximum(lam_attn, lam_area)
    assert ((lam >= lo - 1e-6) & (lam <= hi + 1e-6)).all()
    assert torch.allclose(pal_lambda(torch.zeros(b), lam_attn, lam_area), lam_area)
    assert torch.allclose(pal_lambda(torch.ones(b), lam_attn, lam_area), lam_attn)
    for t in (area_t, mixed_targets(ya, yb, lam, k, 0.0)):
        assert (t >= 0).all() and torch.allclose(t.sum(1), torch.ones(b), atol=1e-6)


# --------------------------------------------------------------------------- the mixpro step
def _zero_last_qk(model):
    qkv, d = model.blocks[-1].attn.qkv, model.blocks[-1].attn.attn_dim
    with torch.no_grad():
        qkv.weight[: 2 * d].zero_()
        qkv.bias[: 2 * d].zero_()


def test_uniform_model_attention_gives_back_the_area_lambda():
    model = _vit()
    _zero_last_qk(model)
    ctx = _ctx(model, smoothing=0.1)
    m = _method({"name": "mixpro", "cell_size": 8, "maskmix_prob": 1.0}, model, ctx)
    for seed in range(4):
        out = m.step(model, _batch(), _state(ctx, seed))
        assert torch.all((out.mix.lam >= 0) & (out.mix.lam <= 1))
    s = m.epoch_end(None)
    assert s["lam_attn"] == pytest.approx(s["lam_area"], abs=1e-6)
    assert s["lam"] == pytest.approx(s["lam_area"], abs=1e-6)
    assert 0 <= s["alpha"] <= 1


def test_pal_step_recomputed_from_scratch():
    model = _vit()
    model.eval()
    ctx = _ctx(model, smoothing=0.1)
    m = _method({"name": "mixpro", "cell_size": 8, "maskmix_prob": 1.0}, model, ctx)
    b = _batch()
    out = m.step(model, b, _state(ctx, 7))
    g = torch.Generator().manual_seed(7)
    torch.rand((), generator=g)
    perm, cmask, lam_area = m.draw_maskmix(b.x, g)
    own = expand_cells(cmask, 8, 16).unsqueeze(1)
    x_mix = own * b.x + (1 - own) * b.x[perm]
    a = materialised_class_attention(model, x_mix)[:, :, 1:].mean(1)
    tok = expand_cells(cmask, 2, 4).flatten(1)  # T: 1 = own image
    lam_attn = attention_share(a, tok)
    logits = model(x_mix)
    alpha = progressive_factor(logits.softmax(1), mixed_targets(b.y, b.y[perm], lam_area, 10, 0.1))
    lam = alpha * lam_attn + (1 - alpha) * lam_area
    assert torch.allclose(out.mix.lam, lam, atol=1e-6)
    want = mixed_cross_entropy(logits, b.y, b.y[perm], lam, 0.0)  # unsmoothed hard-label CE (official)
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_alpha_gradient_flag():
    model = _vit()
    ctx = _ctx(model)
    for detach, has_grad in ((True, False), (False, True)):
        m = _method({"name": "mixpro", "cell_size": 4, "maskmix_prob": 1.0, "detach_alpha": detach}, model, ctx)
        lam_seen = {}
        orig = m.stats.add

        def spy(**cols):
            lam_seen.update(cols)
            orig(**cols)

        m.stats.add = spy
        m.step(model, _batch(), _state(ctx))
        assert lam_seen["lam"].requires_grad is has_grad
        assert not lam_seen["lam_attn"].requires_grad  # the attention itself is always detached


def test_progressive_rules():
    model = _vit()
    ctx = _ctx(model)
    sched = _method({"name": "mixpro", "cell_size": 4, "maskmix_prob": 1.0, "progressive": "schedule"}, model, ctx)
    sched.step(model, _batch(), _state(ctx, 0, epoch=5, epochs=10))
    assert sched.epoch_end(None)["alpha"] == pytest.approx(0.25)
    mean = _method({"name": "mixpro", "cell_size": 4, "maskmix_prob": 1.0, "progressive": "mean"}, model, ctx)
    mean.step(model, _batch(), _state(ctx))
    assert mean.epoch_end(None)["alpha"] == 0.5


def test_gap_model_falls_back_with_warning():
    gap = _vit(dict(VIT, class_token=False))
    ctx = _ctx(gap)
    with pytest.warns(RuntimeWarning, match="falling back"):
        m = _method({"name": "mixpro", "cell_size": 4, "maskmix_prob": 1.0}, gap, ctx)
    m.step(gap, _batch(), _state(ctx))
    s = m.epoch_end(None)
    assert s["lam"] == pytest.approx(s["lam_area"], abs=1e-12)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("cell", [2, 6, 10])
def test_cell_size_not_a_multiple_of_the_patch_names_the_key(cell):
    model = _vit()
    with pytest.raises(ConfigError, match=r"cell_size=%d is not a multiple of the ViT patch size 4" % cell):
        build_method({"name": "mixpro", "cell_size": cell}, _ctx(model))


def test_cell_size_not_dividing_the_image_is_an_error():
    model = _vit()
    with pytest.raises(ConfigError, match="cell_size=12"):
        build_method({"name": "maskmix", "cell_size": 12}, _ctx(model))


@pytest.mark.parametrize("bad,key", [({"cell_size": 0}, "cell_size"), ({"cell_size": 4.0}, "cell_size"),
                                     ({"alpha": 0.0}, "alpha"), ({"maskmix_prob": 1.2}, "maskmix_prob"),
                                     ({"progressive": "linear"}, "progressive"), ({"detach_alpha": "yes"}, "detach_alpha"),
                                     ({"cellsize": 8}, "cellsize")])
def test_bad_params_name_the_key(bad, key):
    model = _vit()
    with pytest.raises(ConfigError, match=key):
        build_method({"name": "mixpro", **bad}, _ctx(model))


def test_quick_and_cpu_grids_share_the_baseline_with_transmix():
    from common.config import run_id

    mp = load_experiments(ROOT / "papers" / "mixpro" / "experiments.yaml")
    tm = load_experiments(ROOT / "papers" / "transmix" / "experiments.yaml")
    for scale in ("quick", "cpu"):
        ids_mp = {run_id(c) for c in expand_grid(mp, scale, "mixpro")}
        ids_tm = {run_id(c) for c in expand_grid(tm, scale, "transmix")}
        assert {i for i in ids_tm if i.startswith("deit_mix")} <= ids_mp
    cpu = expand_grid(mp, "cpu", "mixpro")
    assert {c["method"]["name"] for c in cpu} == {"deit_mix", "transmix", "maskmix", "mixpro"}
    assert len({c["seed"] for c in cpu}) >= 3
