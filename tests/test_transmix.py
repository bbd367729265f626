"""TransMix (papers/transmix) and the shared attention extractor (common/attention.py).

Hand-computed worked examples as exact equalities, invariants (hypothesis), the hook ==
materialised attention, param validation and the grids (end-to-end runs: test_every_method.py)."""
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from common.attention import (ClassTokenAttention, attention_share, class_token_support,
                              head_mean_patch_attention, materialised_class_attention)
from common.config import expand_grid, load_experiments
from common.losses import mixed_targets
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from common.mixing import Box, box_lambda
from common.models import build_model
from papers.transmix.method import box_token_mask, transmix_lambda

ROOT = Path(__file__).resolve().parents[1]
VIT = {"name": "vit", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0}


def _vit(spec=None, shape=(3, 16, 16), k=10, seed=0):
    torch.manual_seed(seed)
    return build_model(dict(spec or VIT), k, shape)


def _ctx(model, shape=(3, 16, 16), k=10, smoothing=0.0):
    info = {}
    pe = getattr(model, "patch_embed", None)
    if pe is not None:
        info = {"patch_size": pe.patch_size[0], "num_prefix_tokens": model.num_prefix_tokens}
    return RunContext("classification", k, shape, torch.device("cpu"), None, None, smoothing, info)


def _state(ctx, seed=0):
    return TrainState(0, 0, 1, 1, torch.Generator().manual_seed(seed), ctx)


def _method(spec, model, ctx):
    m = build_method(spec, ctx)
    m.setup(model)
    return m


def _batch(n=8, shape=(3, 16, 16), k=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, *shape, generator=g), torch.randint(0, k, (n,), generator=g), torch.arange(n))


# --------------------------------------------------------------------------- attention hook
def _hook_and_materialised(model, x):
    """One forward (train mode, drop-path on) with fused attention off in the last block: the qkv
    hook's class rows and the probability matrix at attn_drop's input come from the same pass."""
    ext = ClassTokenAttention(model)
    attn = model.blocks[-1].attn
    grabbed = {}
    h = attn.attn_drop.register_forward_pre_hook(lambda m, a: grabbed.__setitem__("p", a[0].detach()))
    attn.fused_attn = False
    try:
        with ext.capture():
            model(x)
    finally:
        attn.fused_attn = True
        h.remove()
    return ext.take_rows(), grabbed["p"][:, :, 0, :]


@pytest.mark.parametrize("spec", [dict(VIT, drop_path_rate=0.2), dict(VIT, num_heads=1)])
def test_hook_equals_materialised_attention_in_training_mode(spec):
    model = _vit(spec)
    model.train()
    rows, ref = _hook_and_materialised(model, torch.randn(6, 3, 16, 16))
    assert rows.shape == (6, model.blocks[-1].attn.num_heads, 17)
    assert torch.allclose(rows, ref, atol=1e-6, rtol=0)
    a = head_mean_patch_attention(rows, model.num_prefix_tokens)
    assert torch.allclose(a, ref[:, :, 1:].mean(1), atol=1e-6, rtol=0)
    assert a.dtype == torch.float32 and not a.requires_grad


def test_hook_matches_with_qk_norm_register_tokens_and_distillation_token():
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    models = [
        VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3, num_classes=5, qk_norm=True),
        VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3, num_classes=5, reg_tokens=2),
        VisionTransformerDistilled(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3, num_classes=5),
    ]
    for model in models:
        # give the qk norms non-trivial affine parameters so applying them matters
        for p in model.blocks[-1].attn.q_norm.parameters():
            p.data.uniform_(0.5, 1.5)
        model.train()
        rows, ref = _hook_and_materialised(model, torch.randn(4, 3, 16, 16))
        assert torch.allclose(rows, ref, atol=1e-6, rtol=0)
        p = model.num_prefix_tokens
        a = ClassTokenAttention(model)
        assert a.num_prefix_tokens == p
        assert head_mean_patch_attention(rows, p).shape == (4, 16)  # prefix columns dropped (not `1:`)


def test_hook_applies_an_attention_mask():
    model = _vit()
    model.eval()
    t = 17
    mask = torch.ones(t, t, dtype=torch.bool)
    mask[:, 5:9] = False  # hide four patch tokens from every query
    ext = ClassTokenAttention(model)
    attn = model.blocks[-1].attn
    grabbed = {}
    h = attn.attn_drop.register_forward_pre_hook(lambda m, a: grabbed.__setitem__("p", a[0].detach()))
    attn.fused_attn = False
    with ext.capture():
        model(torch.randn(2, 3, 16, 16), attn_mask=mask)
    attn.fused_attn = True
    h.remove()
    rows = ext.take_rows()
    assert torch.allclose(rows, grabbed["p"][:, :, 0], atol=1e-6)
    assert rows[:, :, 5:9].abs().max() == 0


def test_materialised_reference_helper_matches_in_eval_mode():
    model = _vit()
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    ext = ClassTokenAttention(model)
    with ext.capture():
        model(x)
    assert torch.allclose(ext.take_rows(), materialised_class_attention(model, x), atol=1e-6)
    assert model.blocks[-1].attn.fused_attn  # restored


def test_hook_is_idle_unless_armed_and_fused_attention_stays_on():
    model = _vit()
    ext = ClassTokenAttention(model)
    model(torch.randn(2, 3, 16, 16))
    assert ext.take() is None
    assert all(b.attn.fused_attn for b in model.blocks)
    ext.remove()
    with ext.capture():
        model(torch.randn(2, 3, 16, 16))
    assert ext.take() is None


def test_models_without_class_token_are_reported():
    gap = _vit(dict(VIT, class_token=False))
    ok, why = class_token_support(gap)
    assert not ok and "class token" in why
    ok, why = class_token_support(torch.nn.Linear(3, 3))
    assert not ok


def test_gap_model_falls_back_to_area_lambda_with_warning():
    gap = _vit(dict(VIT, class_token=False))
    ctx = _ctx(gap)
    with pytest.warns(RuntimeWarning, match="falling back"):
        m = _method({"name": "transmix", "switch_prob": 1.0}, gap, ctx)
    m.step(gap, _batch(), _state(ctx))
    s = m.epoch_end(None)
    assert s["lam_attn"] == pytest.approx(s["lam_area"], abs=1e-12)
    assert s["lam"] == pytest.approx(s["lam_area"], abs=1e-12)


# --------------------------------------------------------------------------- worked examples
BOX224 = Box(50, 150, 30, 130)  # rows [50,150) x cols [30,130) on 224x224, patch 16


def test_example_224_box_token_rules_exact():
    lam_area = BOX224.area / (224 * 224)
    assert lam_area == 10000 / 50176
    assert 1 - box_lambda(BOX224, 224, 224) == pytest.approx(lam_area, abs=1e-15)
    uni = torch.full((1, 196), 1 / 196)
    m = box_token_mask(BOX224, 224, 224, 16, "topleft")
    assert m.sum() == 42  # token rows 4-9 x cols 2-8
    assert attention_share(uni, m).item() == pytest.approx(42 / 196, abs=1e-7)  # 0.21429
    lam = transmix_lambda(lam_area, attention_share(uni, m), 0.5)
    assert lam.item() == pytest.approx(0.5 * 10000 / 50176 + 0.5 * 42 / 196, abs=1e-7)
    assert round(lam.item(), 5) == 0.20679
    assert box_token_mask(BOX224, 224, 224, 16, "center").sum() == 36  # 0.18367
    area = box_token_mask(BOX224, 224, 224, 16, "area")
    assert attention_share(uni, area).item() == pytest.approx(lam_area, abs=1e-7)  # 0.19930


def test_example_aligned_32_and_extremes():
    box = Box(8, 20, 4, 16)  # aligned: rows [8,20) x cols [4,16) on 32x32, patch 4
    lam_area = box.area / 1024
    assert lam_area == 0.140625
    m = box_token_mask(box, 32, 32, 4)
    assert attention_share(torch.full((1, 64), 1 / 64), m).item() == 0.140625
    outside = (1 - m) / (1 - m).sum()
    inside = m / m.sum()
    assert attention_share(outside[None], m).item() == 0.0
    assert transmix_lambda(lam_area, attention_share(outside[None], m), 0.5).item() == 0.0703125
    assert attention_share(inside[None], m).item() == 1.0
    assert transmix_lambda(lam_area, attention_share(inside[None], m), 0.5).item() == pytest.approx((lam_area + 1) / 2)


def test_example_concentrated_attention():
    m = box_token_mask(BOX224, 224, 224, 16)
    inbox = torch.nonzero(m).flatten()
    a = torch.full((196,), 0.4 / 195, dtype=torch.float64)
    a[inbox[0]] = 0.6
    lam_attn = attention_share(a[None].float(), m)
    assert lam_attn.item() == pytest.approx(0.6 + 0.4 * 41 / 195, abs=1e-6)
    assert round(lam_attn.item(), 4) == 0.6841
    assert round(transmix_lambda(10000 / 50176, lam_attn, 0.5).item(), 4) == 0.4417


def test_example_head_aggregation_is_mean_rows_then_ratio():
    m = torch.zeros(64)
    m[:16] = 1
    rows = torch.zeros(1, 2, 65)
    rows[0, 0, 0], rows[0, 0, 1:17], rows[0, 0, 17:] = 0.90, 0.08 / 16, 0.02 / 48
    rows[0, 1, 0], rows[0, 1, 1:17], rows[0, 1, 17:] = 0.02, 0.098 / 16, 0.882 / 48
    official = attention_share(head_mean_patch_attention(rows, 1), m).item()
    assert official == pytest.approx(0.089 / 0.54, abs=1e-6)
    assert round(official, 4) == 0.1648
    per_head = [attention_share(rows[:, h, 1:], m).item() for h in range(2)]
    assert sum(per_head) / 2 == pytest.approx(0.45, abs=1e-6)


def test_example_degenerate_boxes():
    empty = Box(16, 16, 10, 10)
    assert box_token_mask(empty, 32, 32, 4).sum() == 0
    a = torch.rand(2, 64)
    assert torch.equal(attention_share(a, box_token_mask(empty, 32, 32, 4)), torch.zeros(2))
    tiny = Box(1, 4, 1, 4)  # 3x3 box touching no patch corner
    assert box_token_mask(tiny, 32, 32, 4).sum() == 0
    assert round(tiny.area / 1024, 4) == 0.0088


def test_example_target_row():
    y1, y2 = torch.tensor([3]), torch.tensor([7])
    lam = 0.4417  # partner (y2) weight
    t = mixed_targets(y1, y2, 1 - lam, 10, 0.1)[0]
    want = torch.full((10,), 0.01)
    want[3], want[7] = 0.5125, 0.4075
    assert torch.allclose(t, want, atol=1e-4)
    assert t.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_scale_and_class_token_invariance():
    g = torch.Generator().manual_seed(0)
    rows = torch.rand(4, 3, 65, generator=g)
    m = (torch.rand(64, generator=g) < 0.3).float()
    base = attention_share(head_mean_patch_attention(rows, 1), m)
    scaled = rows * 7.5
    cls = rows.clone()
    cls[:, :, 0] = 100.0
    assert torch.allclose(attention_share(head_mean_patch_attention(scaled, 1), m), base, atol=1e-6)
    assert torch.allclose(attention_share(head_mean_patch_attention(cls, 1), m), base, atol=1e-6)


# --------------------------------------------------------------------------- hypothesis invariants
@st.composite
def boxes(draw):
    patch = draw(st.sampled_from([2, 4, 7, 8, 16]))
    g = draw(st.integers(1, 8))
    size = patch * g
    r0 = draw(st.integers(0, size))
    r1 = draw(st.integers(r0, size))
    c0 = draw(st.integers(0, size))
    c1 = draw(st.integers(c0, size))
    return size, patch, Box(r0, r1, c0, c1)


@settings(max_examples=60, deadline=None)
@given(boxes())
def test_uniform_attention_gives_back_the_area_lambda(b):
    size, patch, box = b
    n = (size // patch) ** 2
    uni = torch.full((3, n), 1.0 / n)
    lam_area = box.area / (size * size)
    # fractional coverage: exactly the pixel area for every box
    assert torch.allclose(attention_share(uni, box_token_mask(box, size, size, patch, "area")),
                          torch.full((3,), lam_area), atol=1e-6)
    # official rule: exactly the pixel area when the box is patch-aligned
    aligned = Box(*(patch * round(v / patch) for v in (box.r0, box.r1, box.c0, box.c1)))
    lam_aligned = aligned.area / (size * size)
    assert torch.allclose(attention_share(uni, box_token_mask(aligned, size, size, patch, "topleft")),
                          torch.full((3,), lam_aligned), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(boxes(), st.floats(0, 1), st.integers(0, 2**31 - 1), st.sampled_from(["topleft", "center", "area"]),
       st.floats(0.0, 0.5))
def test_lambdas_in_unit_interval_and_targets_sum_to_one(b, w, seed, rule, eps):
    size, patch, box = b
    n = (size // patch) ** 2
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(5, n, generator=g) ** 4  # peaky attention
    lam_attn = attention_share(a, box_token_mask(box, size, size, patch, rule))
    lam = transmix_lambda(box.area / size**2, lam_attn, w)
    assert ((0 <= lam_attn) & (lam_attn <= 1)).all() and ((0 <= lam) & (lam <= 1)).all()
    y = torch.randint(0, 10, (5,), generator=g)
    t = mixed_targets(y, y.flip(0), 1 - lam, 10, eps)
    assert (t >= 0).all()
    assert torch.allclose(t.sum(1), torch.ones(5), atol=1e-6)


# --------------------------------------------------------------------------- the method's step
def _zero_last_qk(model):
    """q = k = 0 in the last block -> uniform class attention."""
    qkv = model.blocks[-1].attn.qkv
    d = model.blocks[-1].attn.attn_dim
    with torch.no_grad():
        qkv.weight[: 2 * d].zero_()
        qkv.bias[: 2 * d].zero_()


def test_step_with_uniform_model_attention_gives_area_lambda():
    model = _vit()
    _zero_last_qk(model)
    ctx = _ctx(model)
    m = _method({"name": "transmix", "switch_prob": 1.0, "token_mask": "area"}, model, ctx)
    for seed in range(5):
        m.step(model, _batch(), _state(ctx, seed))
    s = m.epoch_end(None)
    assert s["frac_cutmix"] == 1.0
    assert s["lam_attn"] == pytest.approx(s["lam_area"], abs=1e-6)
    assert s["lam"] == pytest.approx(s["lam_area"], abs=1e-6)


def test_step_loss_is_the_relabelled_soft_target_and_lambda_is_detached():
    from common.losses import soft_cross_entropy

    model = _vit()
    model.eval()  # deterministic forward, so the loss can be recomputed
    ctx = _ctx(model, smoothing=0.1)
    m = _method({"name": "transmix", "switch_prob": 1.0}, model, ctx)
    b = _batch()
    out = m.step(model, b, _state(ctx, 3))
    lam_keep = out.mix.lam
    assert isinstance(lam_keep, torch.Tensor) and not lam_keep.requires_grad
    # recompute lam from scratch: same draws, same forward
    d = m.mixer.draw(b.x, torch.Generator().manual_seed(3))
    assert d.kind == "cutmix"
    x_mix = m.mixer.apply(b.x, d)
    a = materialised_class_attention(model, x_mix)[:, :, 1:].mean(1)
    lam_attn = attention_share(a, box_token_mask(d.box, 16, 16, 4))
    lam = 0.5 * d.box.area / 256 + 0.5 * lam_attn
    assert torch.allclose(lam_keep, 1 - lam, atol=1e-6)
    target = mixed_targets(b.y, b.y.flip(0), 1 - lam, 10, 0.1)
    assert out.loss.item() == pytest.approx(soft_cross_entropy(model(x_mix), target).item(), rel=1e-5)


def test_orientation_attention_on_the_box_raises_the_partner_weight():
    model = _vit()
    model.eval()
    ctx = _ctx(model)
    m = _method({"name": "transmix", "switch_prob": 1.0}, model, ctx)
    b = _batch()
    d = m.mixer.draw(b.x, torch.Generator().manual_seed(4))
    tm = box_token_mask(d.box, 16, 16, 4)
    assert 0 < tm.sum() < 16
    # attention entirely on the partner's (box) tokens -> lam_attn = 1 -> partner weight > CutMix's
    m.attn.take = lambda: tm.expand(8, 16) / tm.sum()
    out = m.step(model, b, _state(ctx, 4))
    cutmix_partner = d.box.area / 256
    assert torch.all(1 - out.mix.lam > cutmix_partner)
    assert torch.allclose(1 - out.mix.lam, torch.full((8,), 0.5 * cutmix_partner + 0.5))
    assert torch.equal(out.mix.y_b, b.y.flip(0))


def test_mixup_batches_keep_their_area_label_switch_zero_equals_deit_mix():
    model = _vit()
    model.eval()
    ctx = _ctx(model, smoothing=0.1)
    tm = _method({"name": "transmix", "switch_prob": 0.0}, model, ctx)
    dm = _method({"name": "deit_mix", "switch_prob": 0.0}, model, ctx)
    for seed in range(3):
        a = tm.step(model, _batch(), _state(ctx, seed))
        b = dm.step(model, _batch(), _state(ctx, seed))
        assert a.loss.item() == b.loss.item()
        assert a.mix.lam == b.mix.lam
    assert tm.epoch_end(None) == {"frac_mixup": 1.0}


def test_deit_mix_draw_frequencies_and_area_lambda():
    model = _vit()
    ctx = _ctx(model)
    dm = _method({"name": "deit_mix"}, model, ctx)
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 3, 16, 16)
    kinds = [dm.mixer.draw(x, g) for _ in range(2000)]
    frac_cut = sum(d.kind == "cutmix" for d in kinds) / 2000
    assert abs(frac_cut - 0.5) < 0.05
    for d in kinds[:200]:
        if d.kind == "cutmix":
            assert d.lam == 1 - d.box.area / 256
        else:
            assert 0 <= d.lam <= 1 and d.box is None
    none = _method({"name": "deit_mix", "prob": 0.0}, model, ctx).mixer.draw(x, g)
    assert none.kind == "none" and none.lam == 1.0


def test_odd_batch_pairs_the_middle_sample_with_itself():
    model = _vit()
    ctx = _ctx(model)
    m = _method({"name": "transmix", "switch_prob": 1.0}, model, ctx)
    out = m.step(model, _batch(n=5), _state(ctx))
    assert out.mix.index.tolist() == [4, 3, 2, 1, 0]
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("bad,key", [({"area_weight": 1.5}, "area_weight"), ({"switch_prob": -0.1}, "switch_prob"),
                                     ({"token_mask": "middle"}, "token_mask"), ({"mixup_alpha": -1}, "mixup_alpha"),
                                     ({"prob": 2}, "prob"), ({"are_weight": 0.5}, "are_weight")])
def test_bad_params_name_the_key(bad, key):
    model = _vit()
    with pytest.raises(ConfigError, match=key):
        build_method({"name": "transmix", **bad}, _ctx(model))


# --------------------------------------------------------------------------- end to end
def test_plot_lambdas(tmp_path):
    import json

    from papers.transmix.plots import plot_lambdas

    for i, name in enumerate(["transmix", "deit_mix"]):
        d = tmp_path / f"r{i}"
        d.mkdir()
        rows = [{"epoch": e + 1, "train_lam_area": 0.3, **({"train_lam_attn": 0.3 + 0.01 * e} if i == 0 else {})}
                for e in range(4)]
        (d / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "metrics.json").write_text(json.dumps({"provenance": {"config": {"method": {"name": name}, "seed": 0}}}))
    out = plot_lambdas([tmp_path / "r0", tmp_path / "r1"], tmp_path / "lam.png")
    assert out.exists() and out.stat().st_size > 1000


# --------------------------------------------------------------------------- experiment configs
def _paper_runs(paper):
    exp = load_experiments(ROOT / "papers" / paper / "experiments.yaml")
    return exp, expand_grid(exp, "paper", paper)


def test_quick_and_cpu_grids_expand():
    exp = load_experiments(ROOT / "papers" / "transmix" / "experiments.yaml")
    quick = expand_grid(exp, "quick", "transmix")
    cpu = expand_grid(exp, "cpu", "transmix")
    assert {c["method"]["name"] for c in cpu} >= {"deit_mix", "transmix"}
    assert len({c["seed"] for c in cpu}) >= 3
    assert all(c["dataset"]["name"] == "digits" for c in quick)
    assert all(c["model"]["patch_size"] == 4 for c in cpu)
