"""TransMix — Chen, Sun, He, Torr, Yuille, Bai, "TransMix: Attend to Mix for Vision Transformers",
CVPR 2022 (arXiv 2111.09833). Official code: ``Beckschen/TransMix`` (read at ``0e4d31e``), built on
timm 0.5.4's ``Mixup``. Spec: ``shared/specs/transmix.md``.

TransMix keeps the DeiT image mixing (timm ``Mixup`` in ``batch`` mode: one decision, one lambda and
one box per batch, partner ``j = B-1-i``) and changes only the *label* of CutMix batches. With
``A`` the partner image whose pixels fill the box (spec sections 1.3-1.7):

    lam_area = |box| / (H W)                                   partner's pixel share (1.3)
    m[n]     = 1 if patch n's top-left pixel lies in the box    box -> token mask (1.5)
    a        = mean_h softmax(q_cls K^T / sqrt(d))[h, P:]       last block, class row (1.4)
    lam_attn = sum_n a[n] m[n] / sum_n a[n]                    attention share (1.6)
    lam      = w lam_area + (1 - w) lam_attn                   (1.7), w = area_weight
    target_i = (1 - lam_i) s(y_i) + lam_i s(y_{B-1-i})          s = label smoothing

``area_weight = 0.5`` (default) is the rule of the paper's experiments (Section 4.1, quoted by
the authors in issue #7) and of the released code (``lam = (lam0 + lam1) / 2``).
``area_weight = 0`` is the pure-attention definition of the paper's Figure 1 (``lam = lam_attn``);
run it as a labelled ablation (spec section 4, decision 1). Mixup batches keep their ordinary
target (the code never relabels them).

Also registered here: ``deit_mix``, the DeiT mixing recipe without attention labels (timm
``Mixup``: mixup alpha 0.8 / cutmix alpha 1.0 / switch probability 0.5 / apply probability 1 /
label smoothing from ``train.label_smoothing``) — TransMix's and MixPro's baseline.

Options (each documented in the README):

* ``token_mask``: ``topleft`` (official ``nn.Upsample(mode='nearest')`` on the pixel mask: a
  token is "partner" iff its patch's top-left pixel is in the box), ``center`` (patch centre,
  ``nearest-exact``) or ``area`` (fraction of the patch covered; uniform attention then returns
  ``lam_area`` exactly) — spec section 4, decision 5;
* ``switch_prob``: the DeiT-S config meant 0.8 but ran 0.5 (spec section 4, decision 3); DeiT-B
  config 0.8;
* models without a class token: ``lam_attn := lam_area`` with a warning (so ``transmix`` trains
  exactly like ``deit_mix`` with CutMix labels averaged with themselves).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.attention import ClassTokenAttention, attention_share, fallback_warning
from common.methods import ConfigError, Method, MixInfo, StepOutput, check_choice, check_range, register_method
from common.mixing import Box, box_lambda, mix_inputs, paste_box, sample_box, sample_lambda

TOKEN_MASK_RULES = ("topleft", "center", "area")


# --------------------------------------------------------------------------- DeiT / timm batch mixing
def flip_index(n: int) -> torch.Tensor:
    """timm's batch-mode partner ``j = n-1-i`` (``x.flip(0)``). timm asserts an even batch; with an
    odd last batch the middle sample is paired with itself (it stays unmixed)."""
    return torch.arange(n - 1, -1, -1)


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
        if not isinstance(self.correct_lam, bool):
            raise ValueError(f"correct_lam must be true or false, got {self.correct_lam!r}")


class DeiTMixer:
    """timm ``Mixup(mode='batch')`` as DeiT uses it (spec section 1.2), drawing from our generator.

    Draw order per batch: ``u_apply``; if both alphas > 0, ``u_switch``; lambda; for CutMix the box
    centre (rows, then columns)."""

    def __init__(self, p: DeiTMixParams):
        self.p = p

    def draw(self, x: torch.Tensor, g: torch.Generator) -> MixDraw:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        idx = flip_index(n)
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
        box = sample_box(h, w, lam, g)  # timm rand_bbox == the official CutMix box rule
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
    """Box -> flattened (gh*gw,) token mask at patch resolution (spec section 1.5); 1 = partner.

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
    """Eq. of spec 1.7: ``lam = w lam_area + (1 - w) lam_attn`` (partner's share)."""
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
