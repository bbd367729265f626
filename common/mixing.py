"""Batch-level mixing primitives shared by every mixup-family method.

Conventions (as in Zhang et al. 2018 and Yun et al. 2019):
* ``lam`` is the share of the *anchor* sample ``x`` (label ``y_a``) that is kept; the partner
  ``x[index]`` (label ``y_b``) contributes ``1 - lam``.
* Every random draw takes an explicit ``torch.Generator`` (CPU) so runs are reproducible and a
  resumed run replays the same draws. Tensors are then moved to the batch's device.
* Nothing here knows about targets beyond ``(y_a, y_b, lam)``; label smoothing lives in
  :mod:`common.losses` (as torchvision ``transforms.v2`` keeps it out of its mixers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


# --------------------------------------------------------------------------- lambda
def sample_lambda(alpha: float, generator: torch.Generator, size: int | None = None) -> torch.Tensor | float:
    """``lam ~ Beta(alpha, alpha)``; ``alpha <= 0`` switches mixing off (``lam = 1``), as in the
    official mixup code. ``size=None`` returns one Python float per batch, otherwise a tensor."""
    if alpha <= 0:
        return 1.0 if size is None else torch.ones(size)
    n = 1 if size is None else size
    # Beta via two Gammas so the draw uses our generator (torch.distributions has no generator arg).
    a = torch.full((n,), float(alpha), dtype=torch.float64)
    g1 = torch._standard_gamma(a, generator=generator)
    g2 = torch._standard_gamma(a, generator=generator)
    lam = g1 / (g1 + g2)
    lam = torch.nan_to_num(lam, nan=0.5)  # 0/0 only for absurdly small alpha
    return float(lam[0]) if size is None else lam.float()


# --------------------------------------------------------------------------- pairing
def pair_indices(n: int, generator: torch.Generator, mode: str = "permute", allow_odd: bool = False) -> torch.Tensor:
    """Partner index for each of ``n`` samples.

    * ``permute``: ``randperm(n)`` (official mixup/CutMix; fixed points allowed);
    * ``flip``: ``i <-> n-1-i`` (timm's ``Mixup``; draws nothing). Needs even ``n`` so nobody pairs
      with itself, unless ``allow_odd``: then the middle sample of an odd batch is its own partner.
    """
    if mode == "permute":
        return torch.randperm(n, generator=generator)
    if mode == "flip":
        if n % 2 and not allow_odd:
            raise ValueError(f"pairing='flip' needs an even batch size, got {n}")
        return torch.arange(n - 1, -1, -1)
    raise ValueError(f"unknown pairing {mode!r}; choose 'permute' or 'flip'")


def mix_inputs(x: torch.Tensor, index: torch.Tensor, lam, inplace: bool = False) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[index]``; ``lam`` is a float or a per-sample tensor.

    One temporary (the gathered partners, scaled in place) instead of three; the arithmetic and
    hence the result are bit-identical to the expression above. ``inplace=True`` writes into
    ``x`` (as timm's ``Mixup`` does) and allocates only the partner copy."""
    if isinstance(lam, torch.Tensor):
        lam = lam.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    partner = x.index_select(0, index.to(x.device)).mul_(1 - lam)  # (1 - lam) * x[index]
    return (x.mul_(lam) if inplace else x * lam).add_(partner)


# --------------------------------------------------------------------------- boxes
@dataclass(frozen=True)
class Box:
    """Half-open box rows ``[r0, r1)`` x cols ``[c0, c1)``."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def area(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)


def box_from_center(h: int, w: int, lam: float, cy: int, cx: int) -> Box:
    """The official CutMix box rule (clovaai/CutMix-PyTorch ``rand_bbox``): side
    ``cut = int(d * sqrt(1 - lam))`` per dim, half-width ``cut // 2`` around the centre, clipped
    to the image. Odd ``cut`` is thereby rounded down to even."""
    r = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * r), int(w * r)
    r0 = min(max(cy - cut_h // 2, 0), h)
    r1 = min(max(cy + cut_h // 2, 0), h)
    c0 = min(max(cx - cut_w // 2, 0), w)
    c1 = min(max(cx + cut_w // 2, 0), w)
    return Box(r0, r1, c0, c1)


def sample_box(h: int, w: int, lam: float, generator: torch.Generator) -> Box:
    """Box with requested area ``(1 - lam) * h * w`` centred uniformly over the image (Eq. 2 of
    Yun et al. 2019)."""
    cy = int(torch.randint(h, (1,), generator=generator))
    cx = int(torch.randint(w, (1,), generator=generator))
    return box_from_center(h, w, lam, cy, cx)


def box_lambda(box: Box, h: int, w: int) -> float:
    """Area-corrected lambda: ``1 - area(box) / (h * w)`` (CutMix Algorithm A1)."""
    return 1.0 - box.area / float(h * w)


def paste_box(x: torch.Tensor, index: torch.Tensor, box: Box, inplace: bool = False) -> torch.Tensor:
    """Paste ``x[index]``'s pixels inside ``box`` into ``x`` (same box for every sample)."""
    out = x if inplace else x.clone()
    if box.area:  # gather only the box region of the partners (index_select: no full-batch copy)
        region = x[..., box.r0 : box.r1, box.c0 : box.c1]
        out[..., box.r0 : box.r1, box.c0 : box.c1] = region.index_select(0, index.to(x.device))
    return out


def box_mask(boxes: list[Box], h: int, w: int, device=None) -> torch.Tensor:
    """Float mask (N, 1, h, w) that is 1 inside each sample's box (per-sample CutMix)."""
    m = torch.zeros(len(boxes), 1, h, w, device=device)
    for i, b in enumerate(boxes):
        m[i, :, b.r0 : b.r1, b.c0 : b.c1] = 1.0
    return m


# --------------------------------------------------------------------------- masks
def mask_mix(x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix image batches with a spatial mask: ``x * (1 - mask) + x[index] * mask``.

    Convention: ``mask`` is 1 where the *partner* ``x[index]`` shows through, 0 where the anchor
    is kept (MixPro's cell masks, which mark the own image, are passed as ``1 - M``). Images only:
    ``x`` must be 4-D (N, C, H, W); ``mask`` is (H, W), (1, 1, H, W) or (N, 1, H, W) with values
    in [0, 1]. Returns the mixed batch and the per-sample ``lam`` = share of the anchor kept =
    ``1 - mean(mask)``.
    """
    if x.dim() != 4:
        raise ValueError(f"mask_mix needs a 4-D image batch (N, C, H, W), got shape {tuple(x.shape)}")
    m = mask.to(x.device, x.dtype)
    while m.dim() < 4:
        m = m.unsqueeze(0)
    # x*(1-m) + partner*m is bit-exact for binary masks (unlike lerp); one temporary for the
    # partner term, scaled and accumulated in place (same arithmetic)
    out = (x * (1 - m)).add_(x.index_select(0, index.to(x.device)).mul_(m))
    lam = 1.0 - m.flatten(1).mean(1)
    if lam.numel() == 1:
        lam = lam.expand(x.shape[0])
    return out, lam.float()


def upsample_mask(cell_mask: torch.Tensor, cell: int) -> torch.Tensor:
    """Repeat each entry of a (…, gh, gw) grid mask into a ``cell`` x ``cell`` block."""
    return cell_mask.repeat_interleave(cell, dim=-2).repeat_interleave(cell, dim=-1)
