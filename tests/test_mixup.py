"""mixup (papers/mixup): hand-computed worked examples, invariants and parameter errors."""
import math

import pytest
import torch

from common.methods import ConfigError, RunContext, TrainState, build_method


def _ctx(task="classification"):
    return RunContext(task, 3, (2,), torch.device("cpu"), None, None)


def _state(ctx, seed=0):
    return TrainState(0, 0, 1, 1, torch.Generator().manual_seed(seed), ctx)


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 3)

    def forward(self, x):
        return self.w(x)


def test_step_matches_the_two_term_loss_and_mixed_input():
    from common.losses import cross_entropy
    from common.methods import Batch

    ctx = _ctx()
    m = build_method({"name": "mixup", "alpha": 1.0}, ctx)
    model = Linear()
    x = torch.randn(8, 2)
    y = torch.randint(0, 3, (8,))
    out = m.step(model, Batch(x, y, torch.arange(8)), _state(ctx, 3))
    lam, perm = out.mix.lam, out.mix.index
    x_mix = lam * x + (1 - lam) * x[perm]
    logits = model(x_mix)
    expect = lam * cross_entropy(logits, y) + (1 - lam) * cross_entropy(logits, y[perm])
    assert torch.allclose(out.logits, logits)
    assert math.isclose(out.loss.item(), expect.item(), rel_tol=1e-6)


def test_prob_zero_disables_mixing_and_alpha_must_be_positive():
    from common.methods import Batch

    ctx = _ctx()
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    out = build_method({"name": "mixup", "prob": 0.0}, ctx).step(Linear(), Batch(x, y, torch.arange(4)), _state(ctx))
    assert out.mix.lam == 1.0
    for alpha in (0.0, -1.0):  # the official code's "alpha <= 0 = off" is rejected: use erm or prob 0
        with pytest.raises(ConfigError, match=r"alpha=.*allowed \(0\.0, inf"):
            build_method({"name": "mixup", "alpha": alpha}, ctx)


def test_flip_pairing_needs_even_batch():
    from common.methods import Batch

    ctx = _ctx()
    m = build_method({"name": "mixup", "pairing": "flip"}, ctx)
    with pytest.raises(ValueError, match="even"):
        m.step(Linear(), Batch(torch.randn(5, 2), torch.zeros(5, dtype=torch.long), torch.arange(5)), _state(ctx))


@pytest.mark.parametrize("bad,key", [({"prob": 1.5}, "prob"), ({"alpah": 1.0}, "alpah"), ({"pairing": "x"}, "pairing")])
def test_bad_params_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        build_method({"name": "mixup", **bad}, _ctx())


def test_unknown_method_lists_known_names():
    with pytest.raises(KeyError, match="Did you mean 'mixup'"):
        build_method({"name": "mixpu"}, _ctx())
