"""MixPro — Zhao, Huang, Hu, Zhang, Liu, "MixPro: Data Augmentation with MaskMix and Progressive
Attention Labeling for Vision Transformer", ICLR 2023 (arXiv 2304.12043, OpenReview dRjWsd3gwsm).
Official code: ``fistyee/MixPro`` (read at ``53a229e``).

**MaskMix**: ``n = ceil(lam G^2)`` random cells of a ``G x G`` grid (cell side a multiple of the
ViT patch) keep the own image, the rest show ``x_perm(i)``; label ``lam_area = n / G^2``.
**PAL** (MaskMix batches only): ``lam_i = alpha_i lam_attn_i + (1 - alpha_i) lam_area`` with
``lam_attn`` the own image's share of the last block's class attention and
``alpha_i = cos(softmax(z_i), y~_i)``. Other batches get the DeiT Mixup/CutMix switch
(:mod:`common.deit_mix`). Registered: ``maskmix`` (area labels, the released configs) and
``mixpro`` (MaskMix + PAL). Equations, options and sources: README.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.attention import ClassTokenAttention, attention_share, fallback_warning
from common.deit_mix import DeiTMixer, DeiTMixParams, LambdaStats
from common.losses import mixed_cross_entropy, smooth_one_hot
from common.methods import (ConfigError, Method, MixInfo, StepOutput, check_bool, check_choice, check_range,
                            register_method)
from common.mixing import mask_mix, pair_indices, sample_lambda, upsample_mask

PROGRESSIVE_RULES = ("cosine", "schedule", "mean")


# --------------------------------------------------------------------------- MaskMix geometry
def cells_per_side(size: int, cell: int, allow_partial: bool = False) -> int:
    """``G = S / m``; with ``allow_partial`` the official ``ceil(S / m)`` (last cells cropped)."""
    if size % cell and not allow_partial:
        raise ConfigError(f"maskmix: cell_size={cell} does not divide the image size {size}; choose a divisor "
                          f"or set allow_partial_cells: true")
    return -(-size // cell)


def quantise_ratio(lam: torch.Tensor | float, cells: int) -> torch.Tensor:
    """``n = ceil(lam G^2)`` whole cells of the own image (clamped to [0, G^2])."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    return torch.ceil(lam * cells).clamp(0, cells).long()


def random_cell_masks(n_keep: torch.Tensor, batch: int, g: int, generator: torch.Generator) -> torch.Tensor:
    """(B, g, g) float masks, 1 = own image; sample ``i`` keeps ``n_keep[i]`` cells chosen uniformly
    without replacement (independent layout per sample, as ``np.random.permutation`` per sample)."""
    ranks = torch.rand(batch, g * g, generator=generator).argsort(dim=1).argsort(dim=1)  # random rank per cell
    keep = ranks < n_keep.reshape(-1, 1)
    return keep.float().view(batch, g, g)


def expand_cells(cell_mask: torch.Tensor, repeat: int, size: int) -> torch.Tensor:
    """Repeat each cell ``repeat x repeat`` times and crop to ``size x size``."""
    return upsample_mask(cell_mask, repeat)[..., :size, :size]


@dataclass
class MaskMixParams(DeiTMixParams):
    cell_size: int = 8  # m in pixels; a multiple of the ViT patch (official 56 with patch 14 at 224)
    alpha: float = 1.0  # MASKMIX_ALPHA: ratio lam ~ Beta(alpha, alpha)
    maskmix_prob: float = 0.5  # MASKMIX_PROB: P(MaskMix); else the DeiT Mixup/CutMix switch
    per_sample_ratio: bool = False  # official: one ratio per batch
    allow_partial_cells: bool = False  # S % m != 0: official ceil-and-crop grid, lam_area from the visible mask

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.cell_size, bool) or not isinstance(self.cell_size, int):
            raise ValueError(f"cell_size must be an integer number of pixels, got {self.cell_size!r}")
        check_range("method", "cell_size", self.cell_size, 1)
        check_range("method", "alpha", self.alpha, 0.0, None, lo_open=True)
        check_range("method", "maskmix_prob", self.maskmix_prob, 0.0, 1.0)
        for key in ("per_sample_ratio", "allow_partial_cells"):
            check_bool("method", key, getattr(self, key))


@register_method("maskmix")
class MaskMix(Method):
    """MaskMix with area labels (50 % of batches), DeiT Mixup/CutMix otherwise."""

    Params = MaskMixParams
    tasks = ("classification",)
    pairs_within_batch = True

    @classmethod
    def check_run_config(cls, cfg, info, where):
        """The cell rules of ``__init__``, checked when the grid is planned."""
        p, patch, size = info["params"], info.get("patch_size") or 1, info.get("image_size")
        if p.cell_size % patch:
            raise ConfigError(f"{where}: key 'method.cell_size'={p.cell_size} is not a multiple of the ViT patch "
                              f"size {patch} (model.patch_size); allowed: {patch}, {2 * patch}, ...")
        if size is not None:
            try:
                cells_per_side(size, p.cell_size, p.allow_partial_cells)
            except ConfigError as e:
                raise ConfigError(f"{where}: key 'method.cell_size': {e}") from None

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.mixer = DeiTMixer(params)
        self.stats = LambdaStats()
        shape = tuple(ctx.input_shape)
        if len(shape) != 3:
            raise ConfigError(f"method {self.name!r} needs image inputs (C, H, W); got input shape {shape}")
        _, h, w = shape
        self.size = h
        if h != w:
            raise ConfigError(f"method {self.name!r}: square images only, got {h}x{w}")
        self.patch = int(ctx.model_info.get("patch_size") or 1)
        m = params.cell_size
        if m % self.patch:
            raise ConfigError(f"method {self.name!r}: cell_size={m} is not a multiple of the ViT patch size "
                              f"{self.patch} (model.patch_size); allowed: {self.patch}, {2 * self.patch}, ...")
        self.grid = cells_per_side(h, m, params.allow_partial_cells)  # G

    def draw_maskmix(self, x: torch.Tensor, g: torch.Generator):
        """One MaskMix draw: ``(perm, cell masks (B,G,G) with 1 = own, lam_area (B,))``."""
        b = x.shape[0]
        perm = pair_indices(b, g, "permute")
        cells = self.grid * self.grid
        lam = sample_lambda(self.p.alpha, g, b if self.p.per_sample_ratio else None)
        n_keep = quantise_ratio(lam, cells).expand(b)  # n = ceil(lam G^2), shared by the batch unless per-sample
        cmask = random_cell_masks(n_keep, b, self.grid, g)
        return perm, cmask, n_keep.float() / cells

    def step(self, model, batch, state):
        g = state.generator
        if float(torch.rand((), generator=g)) >= self.p.maskmix_prob:  # DeiT Mixup / CutMix half
            d = self.mixer.draw(batch.x, g)
            self.stats.count(d.kind)
            logits = model(self.mixer.apply(batch.x, d))
            y_a, y_b = batch.y, batch.y[d.index.to(batch.y.device)]
            return StepOutput(self.mixed_loss(logits, y_a, y_b, d.lam), logits, MixInfo(y_a, y_b, d.lam, d.index))
        self.stats.count("maskmix")
        perm, cmask, lam_area = self.draw_maskmix(batch.x, g)
        own = expand_cells(cmask, self.p.cell_size, self.size)  # M: (B, S, S), 1 = own image
        x_mix, lam_visible = mask_mix(batch.x, perm, (1.0 - own).unsqueeze(1))  # mask_mix wants 1 = partner
        if self.p.allow_partial_cells:
            lam_area = lam_visible.cpu()  # area-consistent label when cells are cropped
        y_a, y_b = batch.y, batch.y[perm.to(batch.y.device)]
        return self.maskmix_loss(model, x_mix, y_a, y_b, perm, cmask, lam_area, state)

    def maskmix_loss(self, model, x_mix, y_a, y_b, perm, cmask, lam_area, state):
        """Area label ``y~ = lam_area s(y_i) + (1 - lam_area) s(y_perm(i))`` (smoothed soft CE)."""
        logits = model(x_mix)
        lam = lam_area.to(logits.device)
        self.stats.add(lam_area=lam_area)
        return StepOutput(self.mixed_loss(logits, y_a, y_b, lam), logits, MixInfo(y_a, y_b, lam, perm))

    def epoch_end(self, state):
        return self.stats.summary()


# --------------------------------------------------------------------------- PAL
def progressive_factor(probs: torch.Tensor, area_target: torch.Tensor) -> torch.Tensor:
    """``alpha_i = cos(softmax(z_i), y~_i)`` (official rule); in [0, 1] for non-negative vectors."""
    return F.cosine_similarity(probs.float(), area_target.float(), dim=1, eps=1e-12).clamp(0.0, 1.0)


def pal_lambda(alpha: torch.Tensor, lam_attn: torch.Tensor, lam_area: torch.Tensor) -> torch.Tensor:
    """``lam = alpha lam_attn + (1 - alpha) lam_area`` (weight of the own label y_i)."""
    return alpha * lam_attn + (1.0 - alpha) * lam_area


@dataclass
class MixProParams(MaskMixParams):
    progressive: str = "cosine"  # "cosine" (official) | "schedule" | "mean"
    detach_alpha: bool = True  # as OpenMixup; false = official (gradient through lam)
    pal_smoothing: bool = False  # official PAL branch: unsmoothed hard-label CE

    def __post_init__(self):
        super().__post_init__()
        check_choice("method", "progressive", self.progressive, PROGRESSIVE_RULES)
        for key in ("detach_alpha", "pal_smoothing"):
            check_bool("method", key, getattr(self, key))


@register_method("mixpro")
class MixPro(MaskMix):
    """MaskMix + Progressive Attention Labeling."""

    Params = MixProParams

    def setup(self, model):
        self.attn = ClassTokenAttention(model)
        if not self.attn.available:
            fallback_warning(self.name, self.attn.reason)

    def maskmix_loss(self, model, x_mix, y_a, y_b, perm, cmask, lam_area, state):
        if not hasattr(self, "attn"):
            raise RuntimeError("mixpro: setup(model) was not called")
        with self.attn.capture():
            logits = model(x_mix)
        a = self.attn.take()
        dev = logits.device
        lam_area = lam_area.to(dev)
        if a is None:
            lam_attn = lam_area.clone()
        else:
            q = self.p.cell_size // self.patch  # tokens per cell side
            token_mask = expand_cells(cmask, q, self.size // self.patch).flatten(1)  # T: 1 = own image
            if token_mask.shape[1] != a.shape[1]:
                raise RuntimeError(f"mixpro: {a.shape[1]} patch tokens, token mask has {token_mask.shape[1]}")
            lam_attn = attention_share(a, token_mask).to(dev)
        eps = self.ctx.label_smoothing
        if self.p.progressive == "cosine":
            k = logits.shape[1]
            area_target = (lam_area.view(-1, 1) * smooth_one_hot(y_a, k, eps)
                           + (1 - lam_area.view(-1, 1)) * smooth_one_hot(y_b, k, eps))  # y~ (smoothed)
            alpha = progressive_factor(logits.float().softmax(1), area_target)
            if self.p.detach_alpha:
                alpha = alpha.detach()
        elif self.p.progressive == "schedule":
            epochs = max(1, state.total_steps // max(1, state.steps_per_epoch))
            alpha = torch.full_like(lam_area, (state.epoch / epochs) ** 2)
        else:
            alpha = torch.full_like(lam_area, 0.5)
        lam = pal_lambda(alpha, lam_attn, lam_area)
        smoothing = eps if self.p.pal_smoothing else 0.0
        loss = mixed_cross_entropy(logits, y_a, y_b, lam, smoothing)
        self.stats.add(lam_attn=lam_attn, lam_area=lam_area, lam=lam, alpha=alpha)
        return StepOutput(loss, logits, MixInfo(y_a, y_b, lam.detach(), perm))
