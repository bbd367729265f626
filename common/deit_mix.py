"""The DeiT Mixup/CutMix recipe: timm's ``Mixup(mode='batch')`` as DeiT (Touvron et al. 2021) uses it,
drawing from our generator. One decision, one lambda and (for CutMix) one box per batch; the
partner of sample ``i`` is ``B-1-i``. Shared by the methods built on that recipe (``deit_mix`` and
``transmix`` in papers/transmix, ``maskmix`` and ``mixpro`` in papers/mixpro).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .methods import check_bool, check_range
from .mixing import Box, box_lambda, mix_inputs, pair_indices, paste_box, sample_box, sample_lambda


@dataclass
class MixDraw:
    """One DeiT-recipe decision for a batch. ``lam`` = share of the anchor image kept."""

    kind: str  # "none", "mixup" or "cutmix"
    lam: float
    index: torch.Tensor
    box: Box | None = None


@dataclass
class DeiTMixParams:
    mixup_alpha: float = 0.8  # Beta(0.8, 0.8) for Mixup batches (DeiT)
    cutmix_alpha: float = 1.0  # Beta(1, 1) for CutMix batches
    switch_prob: float = 0.5  # P(CutMix | mixed) when both are on (timm `mixup_switch_prob`)
    prob: float = 1.0  # P(batch is mixed at all) (timm `mixup_prob`)
    correct_lam: bool = True  # CutMix label from the clipped box area (timm default)

    def __post_init__(self):
        check_range("method", "mixup_alpha", self.mixup_alpha, 0.0)
        check_range("method", "cutmix_alpha", self.cutmix_alpha, 0.0)
        check_range("method", "switch_prob", self.switch_prob, 0.0, 1.0)
        check_range("method", "prob", self.prob, 0.0, 1.0)
        check_bool("method", "correct_lam", self.correct_lam)


class DeiTMixer:
    """timm ``Mixup(mode='batch')`` as DeiT uses it.

    Draw order per batch: ``u_apply``; if both alphas > 0, ``u_switch``; lambda; for CutMix the box
    centre (rows, then columns). Partners ``j = B-1-i`` (timm's ``x.flip(0)``); timm asserts an even
    batch, here an odd last batch pairs its middle sample with itself (it stays unmixed)."""

    def __init__(self, p: DeiTMixParams):
        self.p = p

    def draw(self, x: torch.Tensor, g: torch.Generator) -> MixDraw:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        idx = pair_indices(n, g, "flip", allow_odd=True)  # draws nothing from g
        p = self.p
        u_apply = float(torch.rand((), generator=g))
        if u_apply >= p.prob or (p.mixup_alpha <= 0 and p.cutmix_alpha <= 0):
            return MixDraw("none", 1.0, idx)
        if p.mixup_alpha > 0 and p.cutmix_alpha > 0:
            use_cutmix = float(torch.rand((), generator=g)) < p.switch_prob
        else:
            use_cutmix = p.cutmix_alpha > 0
        if not use_cutmix:
            return MixDraw("mixup", sample_lambda(p.mixup_alpha, g), idx)
        lam = sample_lambda(p.cutmix_alpha, g)
        # The official CutMix box (far edge c + cut // 2). timm 1.0.31's rand_bbox differs: its far
        # edge is c + (cut + 1) // 2, so an odd side length is one pixel longer than here.
        box = sample_box(h, w, lam, g)
        return MixDraw("cutmix", box_lambda(box, h, w) if p.correct_lam else lam, idx, box)

    @staticmethod
    def apply(x: torch.Tensor, d: MixDraw) -> torch.Tensor:
        if d.kind == "mixup":
            return mix_inputs(x, d.index, d.lam)  # x~ = lam x + (1 - lam) x.flip(0)
        if d.kind == "cutmix":
            return paste_box(x, d.index, d.box)  # box region <- partner pixels
        return x


class LambdaStats:
    """Per-epoch sums of per-sample lambdas: means, mean difference, Pearson correlation."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.n = 0
        self.s: dict[str, float] = {}
        self.batches: dict[str, int] = {}

    def count(self, key: str) -> None:
        self.batches[key] = self.batches.get(key, 0) + 1

    def add(self, **cols: torch.Tensor) -> None:
        cols = {k: v.detach().double().flatten().cpu() for k, v in cols.items()}
        n = next(iter(cols.values())).numel()
        self.n += n
        for k, v in cols.items():
            self.s[k] = self.s.get(k, 0.0) + float(v.sum())
            self.s[k + "^2"] = self.s.get(k + "^2", 0.0) + float((v * v).sum())
        if "lam_attn" in cols and "lam_area" in cols:
            self.s["xy"] = self.s.get("xy", 0.0) + float((cols["lam_attn"] * cols["lam_area"]).sum())

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        total = sum(self.batches.values())
        for k, v in self.batches.items():
            out[f"frac_{k}"] = v / max(1, total)
        if self.n:
            for k in [k for k in self.s if not k.endswith("^2") and k != "xy"]:
                out[k] = self.s[k] / self.n
            if "lam_attn" in out and "lam_area" in out:
                out["lam_attn_minus_area"] = out["lam_attn"] - out["lam_area"]
                cov = self.s["xy"] / self.n - out["lam_attn"] * out["lam_area"]
                va = self.s["lam_attn^2"] / self.n - out["lam_attn"] ** 2
                vb = self.s["lam_area^2"] / self.n - out["lam_area"] ** 2
                if va > 1e-12 and vb > 1e-12:
                    out["lam_corr"] = cov / math.sqrt(va * vb)
        self.reset()
        return out
