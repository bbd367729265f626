"""ResizeMix (papers/resizemix): exact paste and label invariants, property tests over image sizes
and scale rates, parameter validation, composition with DM, and tiny end-to-end runs."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import plan
from common.losses import cross_entropy
from common.methods import METHODS, Batch, ConfigError, RunContext, TrainState, build_method
from papers.resizemix.method import patch_size, resize_batch, resizemix_batch, sample_position


def _ctx():
    return RunContext("classification", 5, (3, 12, 12), torch.device("cpu"), None, None)


def _state(seed=0):
    return TrainState(0, 0, 1, 1, torch.Generator().manual_seed(seed), _ctx())


class Tiny(torch.nn.Module):
    def __init__(self, c=3, k=5):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, k)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def _constant_images(n, c, h, w):
    """Image i is constant i + 1 (so resizing cannot change its values, and every image differs)."""
    return (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, c, h, w).contiguous()


# --------------------------------------------------------------------------- worked examples
@pytest.mark.parametrize("h,w,tau,size", [(32, 32, 0.5, (16, 16)), (32, 32, 0.8, (25, 25)), (8, 8, 0.1, (0, 0)),
                                          (8, 8, 0.125, (1, 1)), (32, 24, 0.3, (9, 7))])
def test_patch_size_is_floor_of_tau_times_side(h, w, tau, size):
    assert patch_size(h, w, tau) == size


@pytest.mark.parametrize("tau,lam", [(0.5, 0.75), (0.8, 1 - 625 / 1024), (0.25, 1 - 64 / 1024)])
def test_worked_example_lam_on_32x32(tau, lam):
    x = torch.randn(4, 3, 32, 32)
    _, _, got, got_tau, box = resizemix_batch(x, torch.Generator().manual_seed(0), tau, tau)
    assert got_tau == tau and got == lam  # exact: 1 - floor(32 tau)^2 / 1024
    assert (box.r1 - box.r0, box.c1 - box.c0) == patch_size(32, 32, tau)


# --------------------------------------------------------------------------- the paste
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("placement", ["inside", "clip"])
def test_pasted_pixels_equal_the_resized_partner_and_the_rest_is_untouched(mode, placement):
    for seed in range(20):
        x = torch.randn(6, 3, 13, 11)
        g = torch.Generator().manual_seed(seed)
        xm, perm, lam, tau, box = resizemix_batch(x, g, 0.1, 0.9, mode=mode, placement=placement)
        ph, pw = patch_size(13, 11, tau)
        if ph == 0 or pw == 0:
            assert torch.equal(xm, x) and lam == 1.0
            continue
        # independent recomputation of P = R(x[perm], tau) with F.interpolate
        kw = {"align_corners": False} if mode == "bilinear" else {}
        patch = F.interpolate(x[perm], size=(ph, pw), mode=mode, **kw)
        # where the patch landed: replay the same draws (tau, perm, position)
        g2 = torch.Generator().manual_seed(seed)
        torch.rand((), dtype=torch.float64, generator=g2), torch.randperm(6, generator=g2)
        box2, src = sample_position(13, 11, ph, pw, g2, placement)
        assert box2 == box
        region = xm[:, :, box.r0:box.r1, box.c0:box.c1]
        assert torch.equal(region, patch[:, :, src.r0:src.r1, src.c0:src.c1])
        if placement == "inside":
            assert torch.equal(region, patch)  # the whole resized partner, no clipping
        outside = torch.ones(13, 11, dtype=torch.bool)
        outside[box.r0:box.r1, box.c0:box.c1] = False
        assert torch.equal(xm[:, :, outside], x[:, :, outside])


def test_input_is_not_modified_and_draws_are_reproducible():
    x = torch.randn(5, 3, 16, 16)
    x0 = x.clone()
    a = resizemix_batch(x, torch.Generator().manual_seed(7))
    b = resizemix_batch(x, torch.Generator().manual_seed(7))
    assert torch.equal(x, x0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2:] == b[2:]


@pytest.mark.parametrize("placement", ["inside", "clip"])
def test_lam_equals_the_real_pasted_fraction_exactly(placement):
    n, h, w = 8, 10, 14
    x = _constant_images(n, 2, h, w)
    for seed in range(30):
        xm, perm, lam, tau, box = resizemix_batch(x, torch.Generator().manual_seed(seed), 0.05, 1.0,
                                                  placement=placement, pairing="flip")  # flip: no fixed points
        changed = (xm != x).any(1)  # (N, H, W): pixels that now show the partner
        for i in range(n):
            assert 1.0 - int(changed[i].sum()) / float(h * w) == lam
            # they show partner perm[i] (bilinear weights sum to 1 only up to float rounding)
            assert torch.allclose(xm[i][:, changed[i]], torch.tensor(perm[i].item() + 1.0), atol=1e-5)


def test_tau_to_zero_gives_the_unmixed_batch():
    x = torch.randn(4, 3, 32, 32)
    xm, _, lam, tau, box = resizemix_batch(x, torch.Generator().manual_seed(0), 0.0, 1e-3)
    assert tau < 1 / 32 and lam == 1.0 and box.area == 0 and torch.equal(xm, x)
    # through the method: loss is the plain CE of the clean batch
    m = build_method({"name": "resizemix", "alpha_low": 0.0, "alpha_high": 1e-3}, _ctx())
    model, y = Tiny(), torch.tensor([0, 1, 2, 3])
    out = m.step(model, Batch(x, y, torch.arange(4)), _state())
    assert out.mix.lam == 1.0 and out.logs["mixed"] == 0.0
    assert torch.equal(out.logits, model(x))
    assert math.isclose(out.loss.item(), cross_entropy(model(x), y).item(), rel_tol=1e-6)


# --------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), lo=st.floats(0.0, 1.0), hi=st.floats(0.0, 1.0),
       placement=st.sampled_from(["inside", "clip"]), seed=st.integers(0, 2**31 - 1))
def test_properties_over_sizes_and_tau(h, w, lo, hi, placement, seed):
    lo, hi = min(lo, hi), max(lo, hi)
    x = torch.randn(3, 1, h, w)
    xm, perm, lam, tau, box = resizemix_batch(x, torch.Generator().manual_seed(seed), lo, hi, placement=placement)
    assert lo <= tau <= hi
    assert 0.0 <= lam <= 1.0
    assert 0 <= box.r0 <= box.r1 <= h and 0 <= box.c0 <= box.c1 <= w  # inside the image
    ph, pw = patch_size(h, w, tau)
    assert lam == 1.0 - box.area / float(h * w)
    if placement == "inside":
        assert box.area == ph * pw  # never clipped
        assert lam == 1.0 - math.floor(tau * h) * math.floor(tau * w) / float(h * w)
    else:
        assert box.area <= ph * pw
    assert xm.shape == x.shape


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), ph=st.integers(1, 30), pw=st.integers(1, 30),
       seed=st.integers(0, 10_000))
def test_inside_placement_covers_every_legal_corner(h, w, ph, pw, seed):
    ph, pw = min(ph, h), min(pw, w)
    box, src = sample_position(h, w, ph, pw, torch.Generator().manual_seed(seed), "inside")
    assert 0 <= box.r0 <= h - ph and 0 <= box.c0 <= w - pw and src.area == box.area == ph * pw


def test_inside_corner_is_uniform():
    # 6x6 image, 4x4 patch: 3 x 3 corners, each ~1/9
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3, 3)
    for _ in range(2700):
        b, _ = sample_position(6, 6, 4, 4, g, "inside")
        counts[b.r0, b.c0] += 1
    assert counts.min() > 200 and counts.max() < 400


def test_resize_is_identity_at_full_size():
    x = torch.randn(2, 3, 9, 7)
    assert torch.allclose(resize_batch(x, 9, 7, "bilinear"), x) and torch.equal(resize_batch(x, 9, 7, "nearest"), x)


# --------------------------------------------------------------------------- the method step
def test_step_loss_is_the_area_weighted_two_term_loss():
    m = build_method({"name": "resizemix", "alpha_low": 0.5, "alpha_high": 0.5}, _ctx())
    model = Tiny()
    x, y = torch.randn(6, 3, 12, 12), torch.tensor([0, 1, 2, 3, 4, 0])
    out = m.step(model, Batch(x, y, torch.arange(6)), _state(3))
    xm, perm, lam, _, _ = resizemix_batch(x, torch.Generator().manual_seed(3), 0.5, 0.5)
    assert lam == 0.75 and out.mix.lam == lam and torch.equal(out.mix.index, perm)
    assert torch.equal(out.mix.y_a, y) and torch.equal(out.mix.y_b, y[perm])
    logits = model(xm)
    expect = lam * cross_entropy(logits, y) + (1 - lam) * cross_entropy(logits, y[perm])
    assert torch.allclose(out.logits, logits)
    assert math.isclose(out.loss.item(), expect.item(), rel_tol=1e-6)
    assert out.logs["tau"] == 0.5 and out.logs["mixed"] == 1.0


def test_prob_zero_never_mixes_and_prob_half_mixes_about_half():
    x, y = torch.randn(4, 3, 12, 12), torch.tensor([0, 1, 2, 3])
    m0 = build_method({"name": "resizemix", "prob": 0.0}, _ctx())
    assert m0.step(Tiny(), Batch(x, y, torch.arange(4)), _state()).mix.lam == 1.0
    m = build_method({"name": "resizemix", "prob": 0.5, "alpha_low": 0.5, "alpha_high": 0.5}, _ctx())
    st_, lin = _state(1), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 5))
    mixed = sum(m.step(lin, Batch(x, y, torch.arange(4)), st_).logs["mixed"] for _ in range(100))
    assert 30 < mixed < 70


def test_non_image_batch_is_rejected():
    m = build_method({"name": "resizemix"}, _ctx())
    with pytest.raises(ConfigError, match="image batches"):
        m.step(torch.nn.Linear(4, 5), Batch(torch.randn(3, 4), torch.zeros(3, dtype=torch.long),
                                            torch.arange(3)), _state())


@pytest.mark.parametrize("bad,key", [
    ({"alpha_low": -0.1}, "alpha_low"), ({"alpha_high": 1.5}, "alpha_high"),
    ({"alpha_low": 0.6, "alpha_high": 0.4}, "alpha_low=0.6 must be <= alpha_high=0.4"),
    ({"prob": 2.0}, "prob"), ({"mode": "bicubic"}, "mode"), ({"placement": "center"}, "placement"),
    ({"pairing": "roll"}, "pairing"), ({"tau_high": 0.5}, "tau_high"), ({"alpha_high": "0.8"}, "alpha_high"),
])
def test_bad_params_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        build_method({"name": "resizemix", **bad}, _ctx())


def test_composes_with_the_dm_loss_term():
    if "dm" not in METHODS:
        pytest.skip("the DM loss term (papers/decoupled_mixup) is not available")
    x, y = torch.randn(6, 3, 12, 12), torch.tensor([0, 1, 2, 3, 4, 0])
    base = build_method({"name": "resizemix", "alpha_low": 0.5, "alpha_high": 0.5}, _ctx())
    comp = build_method({"name": "resizemix+dm", "alpha_low": 0.5, "alpha_high": 0.5, "dm": {"eta": 0.1}}, _ctx())
    torch.manual_seed(0)
    model = Tiny()
    a = base.step(model, Batch(x, y, torch.arange(6)), _state(5))
    b = comp.step(model, Batch(x, y, torch.arange(6)), _state(5))
    assert comp.name == "resizemix+dm" and b.mix.lam == a.mix.lam == 0.75
    assert torch.equal(a.logits, b.logits) and b.loss.item() > a.loss.item()  # DR >= 0 is added


# --------------------------------------------------------------------------- grid and end to end
def test_grid_shares_the_baseline_runs():
    quick, by_q = plan("quick", ".", None)
    mine = set(by_q["resizemix"])
    assert len(mine) == 9 and sum(r.startswith("resizemix-") for r in mine) == 3
    if "mixup" in by_q:  # same quick setting: the erm runs are the mixup paper's
        assert {r for r in mine if r.startswith("erm-")} <= set(by_q["mixup"])
    if "cutmix" in by_q and by_q["cutmix"]:
        assert {r for r in mine if r.startswith("cutmix-")} <= set(by_q["cutmix"]), \
            "the quick cutmix runs must resolve to the CutMix paper's (copy its quick settings)"
    cpu, by_c = plan("cpu", ".", ["resizemix", "cutmix"])
    if by_c.get("cutmix"):
        mine_c = {r for r in by_c["resizemix"] if not r.startswith("resizemix-")}
        assert mine_c <= set(by_c["cutmix"]), "erm/cutmix cpu runs must be the CutMix grid's"
