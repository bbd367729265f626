"""ResizeMix — Qin, Fang, Zhang, Liu, Wang, Wang, "ResizeMix: Mixing Data with Preserved Object
Information and True Labels", arXiv 2012.11101 (2020). No released code could be confirmed;
mmpretrain's ``ResizeMix`` and openmixup's ``resizemix`` were read for comparison (not copied).

Shrink the WHOLE partner ("source") image and paste it into the target, so the patch carries the
source's object and the label share equals the pasted area. Per batch (one draw of each):

    tau ~ U(alpha_low, alpha_high)            scale rate, default (0.1, 0.8)
    perm = randperm(N)                        source of anchor i is x[perm[i]]
    P = resize(x[perm], floor(tau H) x floor(tau W)); (r0, c0) uniform with P inside the image
    x~ = x with P pasted at (r0, c0);   a = h w / (H W);   lam = 1 - a (anchor's share)

An empty patch (``tau`` below 1/H or 1/W) pastes nothing: ``lam = 1``. Options (``mode``,
``placement``, ``pairing``, ``prob``) and which details are unconfirmed: README.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.methods import ConfigError, ImagePairMethod, MixInfo, StepOutput, check_choice, check_range, register_method
from common.mixing import Box, pair_indices

MODES = ("bilinear", "nearest")
PLACEMENTS = ("inside", "clip")


@dataclass
class ResizeMixParams:
    alpha_low: float = 0.1  # alpha: lower end of tau ~ U(alpha, beta)                           (check)
    alpha_high: float = 0.8  # beta: upper end of tau ~ U(alpha, beta)                            (check)
    prob: float = 1.0  # per-batch probability of mixing (1.0: every batch)
    mode: str = "bilinear"  # F.interpolate mode for R(., tau): bilinear | nearest
    placement: str = "inside"  # inside: patch fully inside the image; clip: CutMix-style centre + clipping
    pairing: str = "permute"  # permute (randperm) | flip (timm)

    def __post_init__(self):
        w = "method 'resizemix'"
        check_range(w, "alpha_low", self.alpha_low, 0.0, 1.0)
        check_range(w, "alpha_high", self.alpha_high, 0.0, 1.0)
        if self.alpha_low > self.alpha_high:
            raise ConfigError(f"{w}: alpha_low={self.alpha_low!r} must be <= alpha_high={self.alpha_high!r} "
                              "(tau ~ U(alpha_low, alpha_high))")
        check_range(w, "prob", self.prob, 0.0, 1.0)
        for key, allowed in (("mode", MODES), ("placement", PLACEMENTS), ("pairing", ("permute", "flip"))):
            check_choice(w, key, getattr(self, key), allowed)


# --------------------------------------------------------------------------- the operation
def sample_tau(low: float, high: float, generator: torch.Generator) -> float:
    """``tau ~ U(low, high)`` (one draw, float64, from ``generator``)."""
    u = float(torch.rand((), dtype=torch.float64, generator=generator))
    return low + (high - low) * u


def patch_size(h: int, w: int, tau: float) -> tuple[int, int]:
    """``(floor(tau H), floor(tau W))`` — the size of the resized source image ``R(I_s, tau)``."""
    return math.floor(tau * h), math.floor(tau * w)


def resize_batch(x: torch.Tensor, ph: int, pw: int, mode: str = "bilinear") -> torch.Tensor:
    """``R(x, tau)``: the whole images resized to ``(ph, pw)`` with ``F.interpolate``
    (``align_corners=False`` for bilinear, no antialiasing)."""
    if mode == "bilinear":
        return F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(ph, pw), mode=mode)


def sample_position(h: int, w: int, ph: int, pw: int, generator: torch.Generator,
                    placement: str = "inside") -> tuple[Box, Box]:
    """Where the ``(ph, pw)`` patch goes. Returns ``(box, src)``: the image region ``box`` that is
    overwritten and the region ``src`` of the patch that is written there (same size).

    * ``inside``: top-left ``r0 ~ U{0..h-ph}``, ``c0 ~ U{0..w-pw}`` — every placement that keeps the
      whole patch inside the image is equally likely; ``src`` is the whole patch.
    * ``clip``: centre ``cy ~ U{0..h-1}``, ``cx ~ U{0..w-1}`` (CutMix Eq. 2), patch rows
      ``[cy - ph // 2, cy - ph // 2 + ph)``, clipped to the image; ``src`` is the visible part.
    """
    if placement == "inside":
        r0 = int(torch.randint(h - ph + 1, (1,), generator=generator))
        c0 = int(torch.randint(w - pw + 1, (1,), generator=generator))
        return Box(r0, r0 + ph, c0, c0 + pw), Box(0, ph, 0, pw)
    if placement == "clip":
        cy = int(torch.randint(h, (1,), generator=generator))
        cx = int(torch.randint(w, (1,), generator=generator))
        top, left = cy - ph // 2, cx - pw // 2
        r0, r1 = max(top, 0), min(top + ph, h)
        c0, c1 = max(left, 0), min(left + pw, w)
        return Box(r0, r1, c0, c1), Box(r0 - top, r1 - top, c0 - left, c1 - left)
    raise ValueError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")


def resizemix_batch(x: torch.Tensor, generator: torch.Generator, alpha_low: float = 0.1, alpha_high: float = 0.8,
                    mode: str = "bilinear", placement: str = "inside", pairing: str = "permute"):
    """One ResizeMix draw for a whole batch (see the module docstring).

    Draw order on ``generator``: tau, permutation, position (rows, then columns).
    Returns ``(x_mixed, perm, lam, tau, box)`` with ``lam = 1 - area(box) / (H W)`` — the share of
    the anchor ``x`` that is kept. ``x`` is not modified.
    """
    if x.dim() != 4:
        raise ValueError(f"resizemix needs image batches (N, C, H, W); got shape {tuple(x.shape)}")
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    tau = sample_tau(alpha_low, alpha_high, generator)  # tau ~ U(alpha, beta)
    perm = pair_indices(n, generator, pairing)  # source image of each target
    ph, pw = patch_size(h, w, tau)
    if ph == 0 or pw == 0:  # tau -> 0: nothing to paste, the batch is unmixed
        return x.clone(), perm, 1.0, tau, Box(0, 0, 0, 0)
    box, src = sample_position(h, w, ph, pw, generator, placement)
    patch = resize_batch(x[perm.to(x.device)], ph, pw, mode)  # P = R(I_s, tau)
    x_mixed = x.clone()
    x_mixed[:, :, box.r0:box.r1, box.c0:box.c1] = patch[:, :, src.r0:src.r1, src.c0:src.c1]  # Paste(I_t, P)
    lam = 1.0 - box.area / float(h * w)  # label share of the target = 1 - pasted area / image area
    return x_mixed, perm, lam, tau, box


# --------------------------------------------------------------------------- the method
@register_method("resizemix")
class ResizeMix(ImagePairMethod):
    """ResizeMix (see the module docstring)."""

    Params = ResizeMixParams

    def step(self, model, batch, state):
        self.require_image_batch(batch.x)
        g, p = state.generator, self.p
        x, y = batch.x, batch.y
        if p.prob < 1.0 and not float(torch.rand((), generator=g)) < p.prob:
            out = model(x)
            return StepOutput(self.plain_loss(out, y), out, MixInfo(y, y, 1.0, None),
                              {"lam": 1.0, "tau": 0.0, "mixed": 0.0})
        x_mix, perm, lam, tau, box = resizemix_batch(x, g, p.alpha_low, p.alpha_high, p.mode, p.placement,
                                                     p.pairing)
        out = model(x_mix)
        y_b = y[perm.to(y.device)]
        loss = self.mixed_loss(out, y, y_b, lam)  # lam * CE(y_target) + (1 - lam) * CE(y_source)
        return StepOutput(loss, out, MixInfo(y, y_b, lam, perm),
                          {"lam": lam, "tau": tau, "mixed": float(box.area > 0)})
