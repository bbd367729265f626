"""mixup — Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization",
ICLR 2018 (arXiv 1710.09412). Official code: facebookresearch/mixup-cifar10.

Per batch (official code):

    lam ~ Beta(alpha, alpha)            one draw per batch (alpha > 0; for no mixing use `erm` or prob 0)
    perm = randperm(N)                  partners within the batch, fixed points allowed
    x~ = lam * x + (1 - lam) * x[perm]
    L  = lam * CE(f(x~), y) + (1 - lam) * CE(f(x~), y[perm])

``manifold_mixup`` (Verma et al., ICML 2019) mixes the hidden state at one layer instead, for
models exposing ``forward_mix(x_a, x_b, lam, layer)`` (the MLP; C-Mixup's baseline "ManiMix").
"""
from __future__ import annotations

from dataclasses import dataclass

from common.methods import Method, MixInfo, StepOutput, check_choice, check_range, register_method
from common.mixing import mix_inputs, pair_indices, sample_lambda


@dataclass
class MixupParams:
    alpha: float = 1.0  # Beta(alpha, alpha), alpha > 0 (the official code's alpha <= 0 'off' switch is `erm`)
    prob: float = 1.0  # per-batch probability of mixing (official: always)
    pairing: str = "permute"  # "permute" (official) or "flip" (timm)

    def __post_init__(self):
        check_range("method", "alpha", self.alpha, 0.0, None, lo_open=True)
        check_range("method", "prob", self.prob, 0.0, 1.0)
        check_choice("method", "pairing", self.pairing, ("permute", "flip"))


@register_method("mixup")
class Mixup(Method):
    Params = MixupParams
    pairs_within_batch = True

    def step(self, model, batch, state):
        g = state.generator
        apply = self.p.alpha > 0 and (self.p.prob >= 1.0 or float(torch_rand(g)) < self.p.prob)
        if not apply:
            out = model(batch.x)
            return StepOutput(self.plain_loss(out, batch.y), out, MixInfo(batch.y, batch.y, 1.0), {"lam": 1.0})
        lam = sample_lambda(self.p.alpha, g)
        perm = pair_indices(batch.x.shape[0], g, self.p.pairing)
        x_mix = mix_inputs(batch.x, perm, lam)
        out = model(x_mix)
        y_a, y_b = batch.y, batch.y[perm.to(batch.y.device)]
        return StepOutput(self.mixed_loss(out, y_a, y_b, lam), out, MixInfo(y_a, y_b, lam, perm), {"lam": lam})


@dataclass
class ManifoldParams:
    alpha: float = 1.0
    layer: int = 1  # mix the hidden state after block `layer` (0 = inputs)

    def __post_init__(self):
        check_range("method", "alpha", self.alpha, 0.0, None, lo_open=True)
        check_range("method", "layer", self.layer, 0)


@register_method("manifold_mixup")
class ManifoldMixup(Method):
    Params = ManifoldParams
    pairs_within_batch = True

    def setup(self, model):
        if not hasattr(model, "forward_mix"):
            raise TypeError(f"manifold_mixup needs a model with forward_mix(); {type(model).__name__} has none")

    def step(self, model, batch, state):
        g = state.generator
        lam = sample_lambda(self.p.alpha, g)
        perm = pair_indices(batch.x.shape[0], g, "permute").to(batch.x.device)
        out = model.forward_mix(batch.x, batch.x[perm], lam, self.p.layer)
        y_a, y_b = batch.y, batch.y[perm]
        return StepOutput(self.mixed_loss(out, y_a, y_b, lam), out, MixInfo(y_a, y_b, lam, perm), {"lam": lam})


def torch_rand(g):
    import torch

    return torch.rand((), generator=g)
