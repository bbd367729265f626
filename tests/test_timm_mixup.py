"""timm_mixup (papers/mixup/timm_reference.py): the batch is exactly timm.data.Mixup's for the
seed drawn from the run's generator; determinism; soft targets; both branches; timm's box
rounding versus the official one."""
import math
import random

import numpy as np
import pytest
import torch
from timm.data import Mixup
from timm.data.mixup import rand_bbox

from common.config import resolve
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from common.mixing import box_from_center
from common.train import train
from papers.mixup.timm_reference import numpy_seed, timm_mix

K = 5
SPEC = {"name": "timm_mixup", "mixup_alpha": 1.0, "cutmix_alpha": 1.0, "switch_prob": 0.5}


def _ctx(smoothing=0.0):
    return RunContext("classification", K, (3, 8, 8), torch.device("cpu"), None, None, label_smoothing=smoothing)


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, K, (n,), generator=g), torch.arange(n))


class Seen(torch.nn.Module):
    """Linear model remembering the last input it saw."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 8 * 8, K)
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return self.fc(x.flatten(1))


def _steps(seed, n_steps, spec=SPEC):
    """Run n_steps of the method on fixed batches; returns (inputs seen, losses, logs)."""
    method, model = build_method(spec, _ctx()), Seen()
    state = TrainState(0, 0, 1, 1, torch.Generator().manual_seed(seed), _ctx())
    seen, losses, logs = [], [], []
    for i in range(n_steps):
        out = method.step(model, _batch(seed=i), state)
        seen.append(model.seen)
        losses.append(out.loss.item())
        logs.append(out.logs)
    return seen, losses, logs


def test_same_batch_as_timms_own_call_with_that_numpy_seed():
    method, model = build_method(SPEC, _ctx()), Seen()
    g = torch.Generator().manual_seed(3)
    ref_g = g.clone_state()
    for i in range(12):
        b = _batch(seed=i)
        out = method.step(model, b, TrainState(0, i, 1, 1, g, _ctx()))
        np.random.seed(numpy_seed(ref_g))
        ref = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.0, num_classes=K)
        x_ref, t_ref = ref(b.x.clone(), b.y)
        assert torch.equal(model.seen, x_ref)
        expected = torch.sum(-t_ref * torch.log_softmax(model.fc(x_ref.flatten(1)), -1), -1).mean()
        assert math.isclose(out.loss.item(), expected.item(), rel_tol=1e-6)


def test_deterministic_for_a_fixed_seed_and_different_across_seeds():
    a, la, ga = _steps(0, 10)
    b, lb, gb = _steps(0, 10)
    c, _, _ = _steps(1, 10)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and la == lb and ga == gb
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_global_rngs_are_left_as_they_were():
    np.random.seed(123)
    random.seed(7)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()
    _steps(0, 3)
    assert np.array_equal(np.random.get_state()[1], before_np) and random.getstate() == before_py


@pytest.mark.parametrize("seed", range(20))
def test_soft_targets_sum_to_one_and_carry_lambda(seed):
    mixer = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.0, num_classes=K)
    b = _batch(seed=seed)
    x, t = timm_mix(mixer, b.x, b.y, seed)
    assert torch.allclose(t.sum(1), torch.ones(len(t))) and bool((t >= 0).all())
    np.random.seed(seed)
    ref = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, label_smoothing=0.0, num_classes=K)
    x2 = b.x.clone()
    lam = ref._mix_batch(x2)
    assert 0.0 <= lam <= 1.0
    y_b = b.y.flip(0)
    expected = lam * torch.nn.functional.one_hot(b.y, K) + (1 - lam) * torch.nn.functional.one_hot(y_b, K)
    assert torch.allclose(t, expected.float()) and torch.equal(x, x2)


def test_both_branches_occur_with_their_structure():
    seen, _, logs = _steps(0, 40)
    kinds = {lg["cutmix"] for lg in logs}
    assert kinds == {0.0, 1.0}
    for i, (x_mix, lg) in enumerate(zip(seen, logs)):
        x = _batch(seed=i).x
        xf = x.flip(0)
        lam = lg["lam"]
        assert 0.0 <= lam <= 1.0
        if lg["cutmix"]:  # every pixel is the sample's own or its flipped partner's, lam = own share
            own = (x_mix == x).all(1)
            assert bool(((x_mix == x) | (x_mix == xf)).all())
            assert math.isclose(float(own[0].float().mean()), lam, abs_tol=1e-6)
        else:
            assert torch.allclose(x_mix, lam * x + (1 - lam) * xf, atol=1e-6)


def test_timm_box_is_one_pixel_longer_for_odd_cut():
    # 32 x 32, lam 0.7: cut = int(32 * sqrt(0.3)) = 17 (odd)
    h = w = 32
    lam = 0.7
    cut = int(h * math.sqrt(1 - lam))
    assert cut == 17
    for seed in range(30):
        np.random.seed(seed)
        cy, cx = np.random.randint(0, h), np.random.randint(0, w)
        np.random.seed(seed)
        yl, yh, xl, xh = rand_bbox((h, w), lam)
        ours = box_from_center(h, w, lam, int(cy), int(cx))
        assert (yl, xl) == (ours.r0, ours.c0)  # near edge: cy - cut // 2, clipped, in both
        assert yh == min(cy + (cut + 1) // 2, h) and ours.r1 == min(cy + cut // 2, h)
        assert xh == min(cx + (cut + 1) // 2, w) and ours.c1 == min(cx + cut // 2, w)
    # even cut: the same box
    lam_even = 0.75  # cut = 16
    np.random.seed(0)
    cy, cx = np.random.randint(0, h), np.random.randint(0, w)
    np.random.seed(0)
    b = box_from_center(h, w, lam_even, int(cy), int(cx))
    assert tuple(int(v) for v in rand_bbox((h, w), lam_even)) == (b.r0, b.r1, b.c0, b.c1)


def test_bad_inputs_name_the_key():
    with pytest.raises(ConfigError, match="mixup_alpha"):
        build_method({**SPEC, "mixup_alpha": 0.0}, _ctx())
    with pytest.raises(ConfigError, match="switch_prob"):
        build_method({**SPEC, "switch_prob": 1.5}, _ctx())
    method = build_method(SPEC, _ctx())
    state = TrainState(0, 0, 1, 1, torch.Generator().manual_seed(0), _ctx())
    with pytest.raises(ConfigError, match="even batch"):
        method.step(Seen(), _batch(n=7), state)


def test_end_to_end_on_digits_is_deterministic(tmp_path):
    cfg = resolve({"dataset": {"name": "digits", "val_size": 200}, "model": {"name": "resnet8", "width": 8},
                   "method": SPEC, "train": {"epochs": 1, "batch_size": 64, "drop_last": True}})
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert a["last_epoch"]["train_loss"] == b["last_epoch"]["train_loss"] and math.isfinite(a["last_epoch"]["train_loss"])
    assert 0 < a["last_epoch"]["train_lam"] <= 1 and 0 <= a["last_epoch"]["train_cutmix"] <= 1
    assert a["test"]["top1"] == b["test"]["top1"]
