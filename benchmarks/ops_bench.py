"""Section 4: our batch mixing ops against timm's ``Mixup`` (batch mode) and torchvision's
``transforms.v2.MixUp`` / ``CutMix`` on the same normalised float batch.

One call = everything a training step asks of the mixer for one batch:

* ours (:mod:`common.mixing`): ``lam ~ Beta`` (``sample_lambda``), partners (``pair_indices``),
  mixed images (``mix_inputs`` / ``sample_box`` + ``paste_box``), the corrected lambda and the
  partner labels ``y[perm]`` — the loss then uses ``(y_a, y_b, lam)``, no dense target;
* timm ``Mixup(mode='batch', label_smoothing=0)``: mixes ``x`` in place (partner = ``x.flip(0)``)
  and builds the dense (N, K) mixed target;
* torchvision v2: partner = ``x.roll(1, 0)``, a new mixed tensor and the dense mixed target.

Ours is timed with the official pairing (``randperm``), with timm's ``flip`` pairing, and in place
(``mix_inputs(..., inplace=True)`` / ``paste_box(..., inplace=True)``: timm's contract, the input
batch is overwritten; the methods keep the copying default, see the README section).
Target: ours at least as fast as timm's batch mode (time ratio <= 1).
"""
from __future__ import annotations

import torch

from common.mixing import box_lambda, mix_inputs, pair_indices, paste_box, sample_box, sample_lambda

from . import harness as H
from .timing import interleave, make_row, ratio_summary


def _ours_mixup(x, y, g, pairing, inplace=False):
    lam = sample_lambda(1.0, g)
    perm = pair_indices(x.shape[0], g, pairing)
    return mix_inputs(x, perm, lam, inplace=inplace), y, y[perm], lam


def _ours_cutmix(x, y, g, pairing, inplace=False):
    h, w = x.shape[-2], x.shape[-1]
    lam = sample_lambda(1.0, g)
    perm = pair_indices(x.shape[0], g, pairing)
    box = sample_box(h, w, lam, g)
    return paste_box(x, perm, box, inplace=inplace), y, y[perm], box_lambda(box, h, w)


def run(quick: bool, threads: int) -> list[dict]:
    from timm.data import Mixup
    from torchvision.transforms import v2

    bs = 128
    data = H.random_images(bs)
    x = H.image_batch(data, bs).x
    y = data.y[:bs].clone()
    xt = x.clone()  # timm mixes in place: its own buffer (values stay a convex combination)
    xo = x.clone()  # the same for our in-place variants
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    timm_mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, mode="batch", label_smoothing=0.0, num_classes=10)
    timm_cutmix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, mode="batch", label_smoothing=0.0, num_classes=10)
    tv_mixup = v2.MixUp(alpha=1.0, num_classes=10)
    tv_cutmix = v2.CutMix(alpha=1.0, num_classes=10)
    fns = {
        "ours mixup": lambda: _ours_mixup(x, y, g, "permute"),
        "ours mixup (flip)": lambda: _ours_mixup(x, y, g, "flip"),
        "ours mixup (in-place)": lambda: _ours_mixup(xo, y, g, "permute", True),
        "timm mixup": lambda: timm_mixup(xt, y),
        "torchvision mixup": lambda: tv_mixup(x, y),
        "ours cutmix": lambda: _ours_cutmix(x, y, g, "permute"),
        "ours cutmix (flip)": lambda: _ours_cutmix(x, y, g, "flip"),
        "ours cutmix (in-place)": lambda: _ours_cutmix(xo, y, g, "permute", True),
        "timm cutmix": lambda: timm_cutmix(xt, y),
        "torchvision cutmix": lambda: tv_cutmix(x, y),
        "ours: lambda draw": lambda: sample_lambda(1.0, g),  # components of our calls
        "ours: partner draw": lambda: pair_indices(bs, g, "permute"),
    }
    t = interleave(fns, 3 if quick else 21, 5 if quick else 40, warmup=3)
    rows = []
    note = f"batch {bs}x3x32x32 float32, 10 classes, label smoothing 0"
    for op in ("mixup", "cutmix"):
        for ours in (f"ours {op}", f"ours {op} (flip)", f"ours {op} (in-place)"):
            rows.append(make_row("mixing_ops", "ours_vs_timm", "-", ours, f"timm {op}",
                                 ratio_summary(t, ours, f"timm {op}"), unit="call", images=bs,
                                 target="ours <= timm batch mode", target_ratio_max=1.0, note=note))
        rows.append(make_row("mixing_ops", "ours_vs_torchvision", "-", f"ours {op}", f"torchvision {op}",
                             ratio_summary(t, f"ours {op}", f"torchvision {op}"), unit="call", images=bs, note=note))
        rows.append(make_row("mixing_ops", "torchvision_vs_timm", "-", f"torchvision {op}", f"timm {op}",
                             ratio_summary(t, f"torchvision {op}", f"timm {op}"), unit="call", images=bs, note=note))
    for comp in ("ours: lambda draw", "ours: partner draw"):
        rows.append(make_row("mixing_ops", "component", "-", comp, "timm mixup", ratio_summary(t, comp, "timm mixup"),
                             unit="call", note="part of each of our calls: seeded torch.Generator draws (timm uses "
                                               "NumPy's global RNG), the price of exactly resumable runs"))
    return rows
