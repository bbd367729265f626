"""TransMix — Chen, Sun, He, Torr, Yuille, Bai, "TransMix: Attend to Mix for Vision Transformers",
CVPR 2022 (arXiv 2111.09833). Official code: ``Beckschen/TransMix`` (read at ``0e4d31e``).

DeiT mixing (:mod:`common.deit_mix`); CutMix batches are relabelled by the last block's
class-token attention, with ``A`` the partner whose pixels fill the box:

    lam_area = |box| / (H W)                                   partner's pixel share
    lam_attn = sum_n a[n] m[n] / sum_n a[n]                    attention share, m = box token mask
    lam      = w lam_area + (1 - w) lam_attn                   w = area_weight (0.5 = paper Sec. 4.1)
    target_i = (1 - lam_i) s(y_i) + lam_i s(y_{B-1-i})          s = label smoothing

Also registered: ``deit_mix`` (the same mixing with area labels; TransMix's and MixPro's
baseline). Options and their sources: README, "How it works in the code".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.attention import ClassTokenAttention, attention_share, fallback_warning
from common.deit_mix import DeiTMixer, DeiTMixParams, LambdaStats
from common.methods import (ConfigError, Method, MixInfo, StepOutput, check_bool, check_choice, check_range,
                            register_method)
from common.mixing import Box

TOKEN_MASK_RULES = ("topleft", "center", "area")


# --------------------------------------------------------------------------- DeiT baseline
@register_method("deit_mix")
class DeiTMix(Method):
    """The DeiT recipe's Mixup/CutMix switch with area labels (TransMix's and MixPro's baseline)."""

    Params = DeiTMixParams
    tasks = ("classification",)
    pairs_within_batch = True

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.mixer = DeiTMixer(params)
        self.stats = LambdaStats()

    def step(self, model, batch, state):
        d = self.mixer.draw(batch.x, state.generator)
        self.stats.count(d.kind)
        logits = model(self.mixer.apply(batch.x, d))
        y_a, y_b = batch.y, batch.y[d.index.to(batch.y.device)]
        if d.kind == "cutmix":
            area = d.box.area / float(batch.x.shape[-2] * batch.x.shape[-1])  # partner's pixel share
            self.stats.add(lam_area=torch.full((batch.x.shape[0],), area))
        return StepOutput(self.mixed_loss(logits, y_a, y_b, d.lam), logits, MixInfo(y_a, y_b, d.lam, d.index))

    def epoch_end(self, state):
        return self.stats.summary()


# --------------------------------------------------------------------------- TransMix
def box_token_mask(box: Box, h: int, w: int, patch: int, rule: str = "topleft") -> torch.Tensor:
    """Box -> flattened (gh*gw,) token mask at patch resolution; 1 = partner.

    * ``topleft``: official — ``nn.Upsample(size=g, mode='nearest')`` of the pixel mask samples
      pixel ``(r p, c p)``: token ``(r, c)`` is in iff ``r0 <= r p < r1`` and ``c0 <= c p < c1``;
    * ``center``: ``nearest-exact``, samples the patch centre ``(r p + p//2, c p + p//2)``;
    * ``area``: the fraction of the patch's pixels inside the box (values in [0, 1]).
    """
    if h % patch or w % patch:
        raise ConfigError(f"image {h}x{w} is not divisible by the patch size {patch}")
    gh, gw = h // patch, w // patch
    if rule == "area":
        def cover(lo, hi, g):
            s = torch.arange(g) * patch
            return ((torch.clamp(torch.tensor(hi) - s, 0, patch) - torch.clamp(torch.tensor(lo) - s, 0, patch))
                    .clamp_min(0).double() / patch)
        return (cover(box.r0, box.r1, gh)[:, None] * cover(box.c0, box.c1, gw)[None, :]).flatten().float()
    off = 0 if rule == "topleft" else patch // 2
    if rule not in ("topleft", "center"):
        raise ConfigError(f"token_mask must be one of {TOKEN_MASK_RULES}, got {rule!r}")
    rows = torch.arange(gh) * patch + off
    cols = torch.arange(gw) * patch + off
    rin = (rows >= box.r0) & (rows < box.r1)
    cin = (cols >= box.c0) & (cols < box.c1)
    return (rin[:, None] & cin[None, :]).flatten().float()


def transmix_lambda(lam_area: float | torch.Tensor, lam_attn: torch.Tensor, area_weight: float) -> torch.Tensor:
    """``lam = w lam_area + (1 - w) lam_attn`` (partner's share)."""
    return area_weight * lam_area + (1.0 - area_weight) * lam_attn


@dataclass
class TransMixParams(DeiTMixParams):
    area_weight: float = 0.5  # w: 0.5 = paper Sec. 4.1 + official code; 0 = Figure-1 pure attention
    token_mask: str = "topleft"  # "topleft" (official) | "center" | "area"

    def __post_init__(self):
        super().__post_init__()
        check_range("method", "area_weight", self.area_weight, 0.0, 1.0)
        check_choice("method", "token_mask", self.token_mask, TOKEN_MASK_RULES)


@register_method("transmix")
class TransMix(DeiTMix):
    """DeiT mixing; CutMix batches relabelled by the last block's class attention."""

    Params = TransMixParams

    def setup(self, model):
        self.attn = ClassTokenAttention(model)
        self.patch = int(self.ctx.model_info.get("patch_size") or 0)
        if self.attn.available and not self.patch:
            self.attn.available, self.attn.reason = False, "the model reports no patch_size"
        if not self.attn.available:
            fallback_warning(self.name, self.attn.reason)

    def step(self, model, batch, state):
        if not hasattr(self, "attn"):
            raise RuntimeError("transmix: setup(model) was not called")
        d = self.mixer.draw(batch.x, state.generator)
        self.stats.count(d.kind)
        x_mix = self.mixer.apply(batch.x, d)
        y_a, y_b = batch.y, batch.y[d.index.to(batch.y.device)]
        if d.kind != "cutmix":  # Mixup batches (and unmixed ones) keep their ordinary target
            logits = model(x_mix)
            return StepOutput(self.mixed_loss(logits, y_a, y_b, d.lam), logits, MixInfo(y_a, y_b, d.lam, d.index))
        with self.attn.capture():
            logits = model(x_mix)
        a = self.attn.take()  # (B, N) head-mean class attention over patch tokens, detached fp32
        n, h, w = batch.x.shape[0], batch.x.shape[-2], batch.x.shape[-1]
        lam_area = d.box.area / float(h * w)  # partner's pixel share
        if a is None:  # no class token: lam_attn := lam_area
            lam_attn = torch.full((n,), lam_area)
        else:
            m = box_token_mask(d.box, h, w, self.patch, self.p.token_mask)
            if m.numel() != a.shape[1]:
                raise RuntimeError(f"transmix: {a.shape[1]} patch tokens but a {h}x{w} image with patch "
                                   f"{self.patch} has {m.numel()}")
            lam_attn = attention_share(a, m).cpu()
        lam = transmix_lambda(lam_area, lam_attn, self.p.area_weight)  # partner's weight, per sample
        lam_keep = (1.0 - lam).to(logits.device)
        self.stats.add(lam_attn=lam_attn, lam_area=torch.full((n,), lam_area), lam=lam)
        return StepOutput(self.mixed_loss(logits, y_a, y_b, lam_keep), logits, MixInfo(y_a, y_b, lam_keep, d.index))
