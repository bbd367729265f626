"""Decoupled Mixup (papers/decoupled_mixup): hand-computed worked examples as exact equalities,
the invariants, gradient checks, the official-code options and composition with mixers."""
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import expand_grid, load_experiments
from common.losses import mixed_cross_entropy
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from papers.decoupled_mixup.method import (DMParams, decoupled_regularizer, dm_loss, dm_weights,
                                           neg_log_decoupled_softmax)

ROOT = Path(__file__).resolve().parents[1]
Z = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)  # spec worked single-row example
A, B = torch.tensor([0]), torch.tensor([1])


def r6(t):
    return round(float(t), 6)


def _mce64(z, ya, yb, lam):
    logp = z.log_softmax(1)
    return (-(lam * logp.gather(1, ya.view(-1, 1)) + (1 - lam) * logp.gather(1, yb.view(-1, 1)))).mean()


# --------------------------------------------------------------------------- spec worked examples
def test_worked_example_terms():
    assert [r6(v) for v in Z.softmax(1)[0]] == [0.643914, 0.236883, 0.087144, 0.032059]
    assert r6(_mce64(Z, A, B, 0.7)) == 0.740190
    assert r6(neg_log_decoupled_softmax(Z, A, B)) == 0.169846  # -log phi_a (class 1 dropped)
    assert r6(neg_log_decoupled_softmax(Z, B, A)) == 0.407606  # -log phi_b (class 0 dropped)


@pytest.mark.parametrize("params,expect", [
    (DMParams(eta=0.1), 0.797935),  # paper form, eta 0.1: w = (0.1, 0.1)
    (DMParams(eta=0.1, lam_scale="pow", lam_idx=1.0), 0.764307),  # code 'both', pow idx 1: w = (0.07, 0.03)
    (DMParams(eta=1.0), 1.317642),  # paper form, eta 1
    (DMParams(eta=1.0, lam_scale="pow"), 0.981364),  # w = (0.7, 0.3)
])
def test_worked_example_losses(params, expect):
    dr, _ = decoupled_regularizer(Z, A, B, 0.7, params)
    assert r6(_mce64(Z, A, B, 0.7) + dr) == expect
    assert round(dm_loss(Z, A, B, 0.7, params).item(), 5) == round(expect, 5)  # MCE via common.losses (float32)


def test_worked_example_gradients():
    for params, expect in ((DMParams(eta=0.1), [-0.071706, -0.096593, 0.123037, 0.045263]),
                           (DMParams(eta=0.0), [-0.056086, -0.063117, 0.087144, 0.032059])):
        z = Z.clone().requires_grad_(True)
        (_mce64(z, A, B, 0.7) + decoupled_regularizer(z, A, B, 0.7, params)[0]).backward()
        assert [r6(v) for v in z.grad[0]] == expect


def test_ordering_quirk_worked_example():
    """Same logits, a = 1, b = 0, lam = 0.7, eta_weight = [0.07, 0.03]: openmixup gives the
    swapped-weights value 1.164307; the intended weighting gives 1.173817."""
    ya, yb = torch.tensor([1]), torch.tensor([0])
    code = DMParams(eta=0.1, lam_scale="pow", official_order=True)
    intended = DMParams(eta=0.1, lam_scale="pow")
    mce = _mce64(Z, ya, yb, 0.7)
    assert r6(mce + decoupled_regularizer(Z, ya, yb, 0.7, code)[0]) == 1.164307
    assert r6(mce + decoupled_regularizer(Z, ya, yb, 0.7, intended)[0]) == 1.173817
    # y_a < y_b in the first mixed row: faithful order = intended
    assert decoupled_regularizer(Z, A, B, 0.7, code)[0].item() == decoupled_regularizer(Z, A, B, 0.7, intended)[0].item()


def test_ordering_quirk_swaps_for_the_whole_batch():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    ya, yb = torch.tensor([3, 0, 1, 2, 4, 0]), torch.tensor([1, 2, 4, 0, 3, 1])  # first row: y_a > y_b
    p_code = DMParams(eta=0.1, lam_scale="pow", official_order=True)
    code = decoupled_regularizer(z, ya, yb, 0.7, p_code, reduction="none")[0]
    na, nb = neg_log_decoupled_softmax(z, ya, yb), neg_log_decoupled_softmax(z, yb, ya)
    assert torch.allclose(code, 0.03 * na + 0.07 * nb)  # every row swapped, not only the first
    ya2, yb2 = ya.clone(), yb.clone()
    ya2[0], yb2[0] = 1, 3  # now the first mixed row has y_a < y_b: nothing is swapped
    code2 = decoupled_regularizer(z, ya2, yb2, 0.7, p_code, reduction="none")[0]
    assert torch.allclose(code2[1:], (0.07 * na + 0.03 * nb)[1:])


# --------------------------------------------------------------------------- invariants
def test_eta_zero_is_plain_mixup_ce():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 10, generator=g)
    ya, yb = torch.randint(0, 10, (8,), generator=g), torch.randint(0, 10, (8,), generator=g)
    for lam in (0.3, torch.rand(8, generator=g)):
        assert dm_loss(z, ya, yb, lam, DMParams(eta=0.0)).item() == mixed_cross_entropy(z, ya, yb, lam).item()


def test_eta_zero_composite_equals_plain_mixup_step():
    ctx = RunContext("classification", 5, (1, 4, 4), torch.device("cpu"), None, None)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    b = Batch(torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 4, 0]), torch.arange(6))
    for base in ({"name": "mixup", "alpha": 1.0}, {"name": "cutmix", "alpha": 1.0}):
        plain = build_method(base, ctx).step(model, b, TrainState(0, 0, 1, 1, torch.Generator().manual_seed(7), ctx))
        spec = {**base, "name": base["name"] + "+dm", "dm": {"eta": 0.0}}
        comp = build_method(spec, ctx).step(model, b, TrainState(0, 0, 1, 1, torch.Generator().manual_seed(7), ctx))
        assert comp.loss.item() == plain.loss.item()
        spec["dm"] = {"eta": 0.1}
        with_dm = build_method(spec, ctx).step(model, b, TrainState(0, 0, 1, 1, torch.Generator().manual_seed(7), ctx))
        dr, _ = decoupled_regularizer(with_dm.logits, with_dm.mix.y_a, with_dm.mix.y_b, with_dm.mix.lam)
        assert math.isclose(with_dm.loss.item(), plain.loss.item() + dr.item(), rel_tol=1e-6)
        assert "dm_dr" in with_dm.logs


@pytest.mark.parametrize("lam", [0.0, 1e-12, 1e-4, 1e-3, 0.5, 1 - 1e-4, 1 - 1e-12, 1.0])
def test_finite_at_extreme_lambda_and_logits(lam):
    z = torch.tensor([[80.0, -80.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [-50.0, 50.0, 1.0, -1.0]],
                     dtype=torch.float64, requires_grad=True)
    ya, yb = torch.tensor([0, 1, 2]), torch.tensor([1, 3, 0])
    loss = _mce64(z, ya, yb, lam) + decoupled_regularizer(z, ya, yb, lam, DMParams(eta=1.0))[0]
    loss.backward()
    assert math.isfinite(loss.item()) and bool(torch.isfinite(z.grad).all())


def test_lambda_near_zero_or_one_gets_no_dr_like_the_official_code():
    z = torch.randn(4, 6, dtype=torch.float64)
    ya, yb = torch.tensor([0, 1, 2, 3]), torch.tensor([5, 4, 3, 2])
    for lam in (0.0, 1e-3, 1 - 1e-3, 1.0):
        assert decoupled_regularizer(z, ya, yb, lam)[0].item() == 0.0
    assert decoupled_regularizer(z, ya, yb, 2e-3)[0].item() > 0
    assert decoupled_regularizer(z, ya, yb, 1e-3, DMParams(eps=0.0))[0].item() > 0


def test_same_class_rows_contribute_plain_ce():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    ya, yb = torch.tensor([0, 1, 2, 3, 4, 2]), torch.tensor([1, 1, 3, 3, 0, 4])  # rows 1, 3: same class
    per_row = decoupled_regularizer(z, ya, yb, 0.7, reduction="none")[0]
    assert per_row[1].item() == 0.0 and per_row[3].item() == 0.0
    mixed = torch.tensor([0, 2, 4, 5])
    na, nb = neg_log_decoupled_softmax(z, ya, yb), neg_log_decoupled_softmax(z, yb, ya)
    total = decoupled_regularizer(z, ya, yb, 0.7)[0]
    assert math.isclose(total.item(), (0.1 * (na + nb))[mixed].sum().item() / 6, rel_tol=1e-12)  # / full N
    zz = z.clone().requires_grad_(True)
    decoupled_regularizer(zz, ya, yb, 0.7)[0].backward()
    assert bool(torch.isfinite(zz.grad).all()) and zz.grad[1].abs().max().item() == 0.0


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ya, yb = torch.tensor([0, 1, 2, 3, 6]), torch.tensor([4, 5, 6, 3, 1])  # row 3 same class
    for params in (DMParams(eta=0.1), DMParams(eta=0.3, mode="less", lam_scale="pow", lam_idx=0.5)):
        for lam in (0.3, torch.tensor([0.2, 0.5, 0.9, 0.4, 0.6], dtype=torch.float64)):
            assert torch.autograd.gradcheck(lambda t: decoupled_regularizer(t, ya, yb, lam, params)[0], (z,))
            assert torch.autograd.gradcheck(lambda t: _mce64(t, ya, yb, lam) + decoupled_regularizer(t, ya, yb, lam, params)[0], (z,))


def test_gradient_matches_the_closed_form():
    """Spec invariant 5 / paper Eq. 8: grad = p - t + w_a (phi^(-b) - e_a) + w_b (phi^(-a) - e_b)."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(1, 6, generator=g, dtype=torch.float64, requires_grad=True)
    a, b, lam, w_a, w_b = 2, 4, 0.35, 0.1, 0.1
    (_mce64(z, torch.tensor([a]), torch.tensor([b]), lam)
     + decoupled_regularizer(z, torch.tensor([a]), torch.tensor([b]), lam)[0]).backward()
    zz = z.detach()[0]
    p = zz.softmax(0)
    t = torch.zeros(6, dtype=torch.float64)
    t[a], t[b] = lam, 1 - lam

    def phi_without(j):
        e = zz.exp().clone()
        e[j] = 0
        return e / e.sum()

    ea, eb = torch.eye(6, dtype=torch.float64)[a], torch.eye(6, dtype=torch.float64)[b]
    expect = p - t + w_a * (phi_without(b) - ea) + w_b * (phi_without(a) - eb)
    assert torch.allclose(z.grad[0], expect, atol=1e-12)
    # the partner logit does not compete: d(-log phi_{a,b})/dz_b = 0
    z2 = zz.clone().view(1, 6).requires_grad_(True)
    neg_log_decoupled_softmax(z2, torch.tensor([a]), torch.tensor([b])).sum().backward()
    assert z2.grad[0, b].item() == 0.0


@settings(max_examples=80, deadline=None)
@given(k=st.integers(2, 12), n=st.integers(1, 6), seed=st.integers(0, 10**6), lam=st.floats(0.0, 1.0),
       shift=st.floats(-50, 50), scale=st.floats(0.1, 20))
def test_properties(k, n, seed, lam, shift, scale):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, k, generator=g, dtype=torch.float64)
    ya, yb = torch.randint(0, k, (n,), generator=g), torch.randint(0, k, (n,), generator=g)
    na, nb = neg_log_decoupled_softmax(z, ya, yb), neg_log_decoupled_softmax(z, yb, ya)
    diff = ya != yb
    assert bool((na[diff] >= -1e-12).all() and (nb[diff] >= -1e-12).all())  # DR >= 0
    # paper identity: -log phi_{a,b} = -log p_a + log(1 - p_b)
    p = z.softmax(1)
    pa, pb = p.gather(1, ya.view(-1, 1)).squeeze(1), p.gather(1, yb.view(-1, 1)).squeeze(1)
    ok = diff & (pb < 1 - 1e-9) & (pa > 1e-200)
    # the reference loses ~eps / (1 - p_b) absolutely in log1p(-p_b) (and in p_a when p_a is tiny)
    tol = 1e-9 + 1e-7 * na.abs() + 8 * torch.finfo(z.dtype).eps / (1 - pb).clamp_min(1e-300)
    assert bool(((na - (-pa.log() + (-pb).log1p())).abs() <= tol)[ok].all())
    # invariant to adding a constant to every logit of a row
    dr, _ = decoupled_regularizer(z, ya, yb, 0.6)
    dr_shift, _ = decoupled_regularizer(z + shift, ya, yb, 0.6)
    assert math.isclose(dr.item(), dr_shift.item(), rel_tol=1e-9, abs_tol=1e-9)
    # paper form: DR does not depend on lambda (inside the mixed range)
    lam_in = min(max(lam, 0.01), 0.99)
    assert decoupled_regularizer(z, ya, yb, lam_in)[0].item() == decoupled_regularizer(z, ya, yb, 0.3)[0].item()
    if k == 2:  # each decoupled softmax has a single class
        assert torch.allclose(na[diff], torch.zeros_like(na[diff]), atol=1e-12)


# --------------------------------------------------------------------------- options
def test_weight_modes():
    lam = torch.tensor([0.2, 0.7], dtype=torch.float64)
    # rows lam = 0.2 and 0.7; returned as [w_a(row 0), w_a(row 1), w_b(row 0), w_b(row 1)]
    w = lambda **kw: torch.cat(dm_weights(lam, DMParams(**kw))).tolist()  # noqa: E731
    assert w(eta=0.1) == [0.1, 0.1, 0.1, 0.1]
    assert w(eta=0.1, lam_scale="pow") == pytest.approx([0.02, 0.07, 0.08, 0.03])
    assert w(eta=0.1, mode="less", lam_scale="pow") == pytest.approx([0.02, 0.0, 0.0, 0.03])  # minority only
    assert w(eta=0.1, mode="more", lam_scale="pow") == pytest.approx([0.0, 0.07, 0.08, 0.0])  # majority only
    assert w(eta=0.1, mode="less") == pytest.approx([0.1, 0.0, 0.0, 0.1])
    assert w(eta=0.1, lam_scale="pow", lam_idx=0.5) == pytest.approx([0.1 * 0.2**0.5, 0.1 * 0.7**0.5,
                                                                     0.1 * 0.8**0.5, 0.1 * 0.3**0.5])
    assert w(eta=0.1, lam_scale="pow", lam_thr=0.5) == pytest.approx([0.04, 0.1, 0.1, 0.06])  # saturates at 1


def test_skip_lam_half():
    z = torch.randn(3, 5, dtype=torch.float64)
    ya, yb = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 0])
    assert decoupled_regularizer(z, ya, yb, 0.5)[0].item() > 0  # paper form: DR does not care about lam = 0.5
    assert decoupled_regularizer(z, ya, yb, 0.5, DMParams(skip_lam_half=True))[0].item() == 0.0
    assert decoupled_regularizer(z, ya, yb, 0.5000001, DMParams(skip_lam_half=True))[0].item() > 0


def test_label_smoothing_enters_mce_only():
    z = Z.float()
    ls = dm_loss(z, A, B, 0.7, DMParams(eta=0.1), smoothing=0.1).item()
    assert math.isclose(ls - mixed_cross_entropy(z, A, B, 0.7, 0.1).item(),
                        decoupled_regularizer(z, A, B, 0.7)[0].item(), rel_tol=1e-5)


@pytest.mark.parametrize("key,value", [("eta", -0.1), ("mode", "all"), ("lam_scale", "log"), ("lam_thr", 0.0),
                                       ("thr", 1.5), ("eps", 0.5), ("official_order", "yes"), ("temperature", 1.0)])
def test_param_validation_names_the_key(key, value):
    ctx = RunContext("classification", 3, (1, 4, 4), torch.device("cpu"), None, None)
    with pytest.raises(ConfigError, match=key):
        build_method({"name": "mixup+dm", "dm": {key: value}}, ctx)


def test_dm_alone_or_on_regression_is_rejected():
    ctx = RunContext("classification", 3, (1, 4, 4), torch.device("cpu"), None, None)
    with pytest.raises(ConfigError, match="loss term"):
        build_method({"name": "dm"}, ctx)
    rctx = RunContext("regression", 1, (3,), torch.device("cpu"), None, None)
    with pytest.raises(ConfigError):
        build_method({"name": "mixup+dm"}, rctx)


def test_per_sample_cutmix_lambdas_compose():
    ctx = RunContext("classification", 4, (1, 8, 8), torch.device("cpu"), None, None)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    b = Batch(torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), torch.arange(8))
    out = build_method({"name": "cutmix+dm", "per_sample": True, "dm": {"eta": 0.1}}, ctx).step(
        model, b, TrainState(0, 0, 1, 1, torch.Generator().manual_seed(1), ctx))
    assert isinstance(out.mix.lam, torch.Tensor) and math.isfinite(out.loss.item())


# --------------------------------------------------------------------------- configs and end to end
def test_cpu_grid_pairs_each_dm_arm_with_its_baseline():
    exp = load_experiments(ROOT / "papers" / "decoupled_mixup" / "experiments.yaml")
    runs = expand_grid(exp, "cpu", "dm")
    by = {}
    for c in runs:
        m = dict(c["method"])
        name = m.pop("name")
        m.pop("dm", None)
        by.setdefault(name, []).append((m, c["seed"], {k: v for k, v in c.items() if k != "method"}))
    for base in ("mixup", "cutmix"):
        assert [(m, s, rest) for m, s, rest in by[base]] == [(m, s, rest) for m, s, rest in by[base + "+dm"]]
    assert all(c["method"].get("dm") == {"eta": 0.1} for c in runs if "+dm" in c["method"]["name"])
