"""CutMix — Yun, Han, Oh, Chun, Choe, Yoo, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", ICCV 2019 (arXiv 1905.04899).
Official code: clovaai/CutMix-PyTorch (``train.py``; lambda correction since commit ``f0c71b1``).

Per training iteration, as in the official ``train.py`` (Eq. 1-2, Algorithm A1):

    r ~ U[0, 1)                             one draw per batch; mix only if r < prob
    lam ~ Beta(alpha, alpha)                one value per batch
    perm = randperm(N)                      partners; fixed points allowed
    box = rand_bbox(H, W, lam)              one box per batch (common.mixing.sample_box)
    x~[:, :, box] = x[perm][:, :, box]
    lam_eff = 1 - area(box) / (H W)         the "corrected" lambda
    L = lam_eff * CE(f(x~), y) + (1 - lam_eff) * CE(f(x~), y[perm])

Options (``pairing: flip``, ``per_sample``, ``correct_lam: false``) for the variants users
compare against: README.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.methods import (ImagePairMethod, MixInfo, StepOutput, check_bool, check_choice, check_range,
                            register_method)
from common.mixing import Box, box_lambda, box_mask, pair_indices, paste_box, sample_box, sample_lambda


@dataclass
class CutMixParams:
    alpha: float = 1.0  # Beta(alpha, alpha), alpha > 0; the paper uses alpha = 1 everywhere (no CutMix: prob 0 or `erm`)
    prob: float = 1.0  # per-batch apply probability `cutmix_prob` (code only: 0.5 CIFAR, 1.0 ImageNet)
    pairing: str = "permute"  # "permute" (official randperm) or "flip" (timm)
    per_sample: bool = False  # timm mode='elem': own decision, lambda and box per sample
    correct_lam: bool = True  # lam_eff = 1 - box area / image area (Algorithm A1)

    def __post_init__(self):
        check_range("method", "alpha", self.alpha, 0.0, None, lo_open=True)
        check_range("method", "prob", self.prob, 0.0, 1.0)
        check_choice("method", "pairing", self.pairing, ("permute", "flip"))
        for key in ("per_sample", "correct_lam"):
            check_bool("method", key, getattr(self, key))


def cutmix_batch(x: torch.Tensor, generator: torch.Generator, alpha: float = 1.0, pairing: str = "permute",
                 correct_lam: bool = True) -> tuple[torch.Tensor, torch.Tensor, float, Box, float]:
    """One official CutMix draw for a whole batch.

    Returns ``(x_mixed, perm, lam_eff, box, lam_requested)``. Draw order on ``generator``:
    lambda, permutation, box centre (rows, then columns). ``x`` is not modified.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    lam = sample_lambda(alpha, generator)  # lam ~ Beta(alpha, alpha)
    perm = pair_indices(n, generator, pairing)  # randperm(N) or flip
    box = sample_box(h, w, lam, generator)  # Eq. 2 with the official rounding and clipping
    x_mixed = paste_box(x, perm, box)  # x~ = M * x_A + (1 - M) * x_B
    lam_eff = box_lambda(box, h, w) if correct_lam else lam  # Algorithm A1
    return x_mixed, perm, lam_eff, box, lam


def cutmix_per_sample(x: torch.Tensor, generator: torch.Generator, alpha: float = 1.0, prob: float = 1.0,
                      pairing: str = "permute", correct_lam: bool = True):
    """timm ``mode='elem'``-style CutMix: each sample ``i`` is mixed with probability ``prob``,
    with its own ``lam_i ~ Beta(alpha, alpha)`` and its own box (official box rule).

    Returns ``(x_mixed, perm, lam_eff (N,) float tensor, boxes, lam_requested (N,))``; unmixed
    samples have an empty box and ``lam = 1``.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    perm = pair_indices(n, generator, pairing)
    apply = torch.rand(n, generator=generator) < prob
    lam_req = sample_lambda(alpha, generator, size=n).double()
    boxes, lam_eff = [], torch.ones(n, dtype=torch.float64)
    for i in range(n):
        if not bool(apply[i]) or alpha <= 0:
            lam_req[i] = 1.0
            boxes.append(Box(0, 0, 0, 0))
            continue
        b = sample_box(h, w, float(lam_req[i]), generator)
        boxes.append(b)
        lam_eff[i] = box_lambda(b, h, w) if correct_lam else float(lam_req[i])
    m = box_mask(boxes, h, w, device=x.device).bool()
    x_mixed = torch.where(m, x[perm.to(x.device)], x)  # exact copy of the partner's pixels inside each box
    return x_mixed, perm, lam_eff.float(), boxes, lam_req.float()


@register_method("cutmix")
class CutMix(ImagePairMethod):
    """CutMix as in the official ``train.py`` (see the module docstring)."""

    Params = CutMixParams

    def step(self, model, batch, state):
        g, p = state.generator, self.p
        x, y = batch.x, batch.y
        self.require_image_batch(x)
        if p.per_sample:
            x_mix, perm, lam, _, lam_req = cutmix_per_sample(x, g, p.alpha, p.prob, p.pairing, p.correct_lam)
            out = model(x_mix)
            y_b = y[perm.to(y.device)]
            lam_dev = lam.to(out.device)
            return StepOutput(self.mixed_loss(out, y, y_b, lam_dev), out, MixInfo(y, y_b, lam_dev, perm),
                              {"lam": float(lam.mean()), "lam_requested": float(lam_req.mean()),
                               "mixed": float((lam_req < 1).float().mean())})
        # step 1: one Bernoulli(prob) decision per batch (`r = np.random.rand(1)` in train.py)
        r = float(torch.rand((), generator=g))
        if not (p.alpha > 0 and r < p.prob):
            out = model(x)
            return StepOutput(self.plain_loss(out, y), out, MixInfo(y, y, 1.0, None),
                              {"lam": 1.0, "lam_requested": 1.0, "mixed": 0.0})
        x_mix, perm, lam_eff, box, lam = cutmix_batch(x, g, p.alpha, p.pairing, p.correct_lam)
        out = model(x_mix)
        y_b = y[perm.to(y.device)]
        loss = self.mixed_loss(out, y, y_b, lam_eff)  # lam_eff * CE(y_a) + (1 - lam_eff) * CE(y_b)
        return StepOutput(loss, out, MixInfo(y, y_b, lam_eff, perm),
                          {"lam": lam_eff, "lam_requested": lam, "mixed": 1.0})
