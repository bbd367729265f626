"""Class-token attention of the last transformer block, captured during the training forward pass.

Shared by TransMix (Chen et al., CVPR 2022; official code ``Beckschen/TransMix``) and MixPro
(Zhao et al., ICLR 2023; official code ``fistyee/MixPro``). Both label a mixed image by how much
of the class token's attention in the *last* block falls on each source image. The official codes
ship a patched copy of timm's ``vision_transformer.py`` whose last ``Attention`` returns its
probability matrix. Here the model stays an unmodified timm ``VisionTransformer`` (fused
``scaled_dot_product_attention`` stays on in every block) and only the row that is needed is
recomputed:

* a forward hook on ``model.blocks[-1].attn.qkv`` receives the ``(B, T, 3·h·d)`` projection
  (``T = P + N`` tokens, ``P = model.num_prefix_tokens`` prefix tokens, ``N`` patch tokens);
* it applies the block's ``q_norm`` / ``k_norm`` (Identity for ViT/DeiT) and computes only the
  class query's row ``A_cls = softmax(q_cls · K^T · d^-1/2 [+ mask])`` -> ``(B, h, T)``;
  this is the probability row *after* the softmax and *before* attention dropout, exactly the
  tensor the official code copies;
* :meth:`ClassTokenAttention.take` drops the ``P`` prefix columns and averages over heads:
  ``a = mean_h A_cls[:, h, P:]`` -> ``(B, N)``, detached, float32.

Cost: ``O(B·T·h·d)`` for the row (about ``1/T`` of one attention layer), no extra forward pass.
The hook only computes while armed (``with extractor.capture(): logits = model(x)``), so
evaluation passes and batches that do not need attention pay nothing.

Models without a class token feeding the classifier (GAP-headed ViTs, Swin, PVT-v2, CNNs) have
no class-token attention. :class:`ClassTokenAttention` then reports ``available = False`` with
the reason; the methods fall back to ``lam_attn := lam_area`` with a warning (the official
MixPro code effectively does this for Swin).
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn as nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def class_token_support(model: nn.Module) -> tuple[bool, str]:
    """``(True, "")`` if ``model`` is a timm ViT whose classifier reads the class token and whose
    last block has a standard timm ``Attention`` (``qkv``, ``num_heads``, ``head_dim``, ``scale``);
    otherwise ``(False, reason)``."""
    m = unwrap(model)
    blocks = getattr(m, "blocks", None)
    if blocks is None or len(blocks) == 0:
        return False, f"{type(m).__name__} has no transformer blocks (model.blocks)"
    attn = getattr(blocks[-1], "attn", None)
    missing = [k for k in ("qkv", "num_heads", "head_dim", "scale") if not hasattr(attn, k)]
    if attn is None or missing:
        return False, f"the last block of {type(m).__name__} has no timm-style attention (missing {missing or 'attn'})"
    if not isinstance(attn.qkv, nn.Linear):
        return False, "the last block's attention has no fused qkv projection (nn.Linear)"
    if getattr(m, "cls_token", None) is None:
        return False, f"{type(m).__name__} has no class token (cls_token is None)"
    if getattr(m, "global_pool", "token") != "token" or getattr(m, "attn_pool", None) is not None:
        return False, (f"the classifier of {type(m).__name__} does not read the class token "
                       f"(global_pool={getattr(m, 'global_pool', None)!r})")
    return True, ""


class ClassTokenAttention:
    """Head-mean class-token attention of the last block, from the same forward pass.

    Usage::

        ext = ClassTokenAttention(model)            # installs the hooks once
        with ext.capture():
            logits = model(x_mixed)                 # the ordinary training forward
        a = ext.take()                              # (B, N) float32, rows sum to <= 1

    ``ext.available`` is False (and ``ext.reason`` says why) for models without a class token;
    ``take()`` then returns None.
    """

    def __init__(self, model: nn.Module):
        m = unwrap(model)
        self.available, self.reason = class_token_support(m)
        self.num_prefix_tokens = int(getattr(m, "num_prefix_tokens", 1) or 0)
        self._armed = False
        self._rows: torch.Tensor | None = None
        self._mask = None  # (attn_mask, is_causal) of the current call of the last attention
        self._handles: list = []
        if self.available:
            attn = m.blocks[-1].attn
            self._attn = attn
            self._handles.append(attn.register_forward_pre_hook(self._on_attention_call, with_kwargs=True))
            self._handles.append(attn.qkv.register_forward_hook(self._on_qkv))

    # ------------------------------------------------------------------ hooks
    def _on_attention_call(self, module, args, kwargs):
        attn_mask = kwargs.get("attn_mask", args[1] if len(args) > 1 else None)
        is_causal = bool(kwargs.get("is_causal", args[2] if len(args) > 2 else False))
        self._mask = (attn_mask, is_causal)

    def _on_qkv(self, module, inputs, output):
        if not self._armed:
            return
        attn = self._attn
        with torch.no_grad(), torch.autocast(output.device.type, enabled=False):
            b, t, _ = output.shape
            h, d = attn.num_heads, attn.head_dim
            qkv = output.detach().float().reshape(b, t, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, B, h, T, d)
            q_cls = attn.q_norm(qkv[0][:, :, :1])  # class query only: (B, h, 1, d)
            k = attn.k_norm(qkv[1])  # (B, h, T, d)
            scores = (q_cls * attn.scale) @ k.transpose(-2, -1)  # (B, h, 1, T)
            attn_mask, is_causal = self._mask or (None, False)
            if is_causal or attn_mask is not None:
                from timm.layers.attention import resolve_self_attn_mask

                bias = resolve_self_attn_mask(t, scores, attn_mask, is_causal)
                bias = bias.to(scores.dtype).expand(*scores.shape[:-2], t, t) if bias.dim() >= 2 else bias
                scores = scores + bias[..., :1, :]
            self._rows = scores.softmax(dim=-1).squeeze(-2)  # (B, h, T): post-softmax, pre-dropout

    # ------------------------------------------------------------------ API
    @contextlib.contextmanager
    def capture(self):
        """Arm the hook for the forward passes inside the block."""
        self._armed, self._rows = True, None
        try:
            yield self
        finally:
            self._armed = False
            self._mask = None

    def take_rows(self) -> torch.Tensor | None:
        """The raw class rows ``(B, heads, P + N)`` of the last captured forward (then cleared)."""
        rows, self._rows = self._rows, None
        return rows

    def take(self) -> torch.Tensor | None:
        """``a = mean_h A_cls[:, h, P:]``: (B, N) float32, detached; None if nothing was captured."""
        rows = self.take_rows()
        return None if rows is None else head_mean_patch_attention(rows, self.num_prefix_tokens)

    def remove(self) -> None:
        for hd in self._handles:
            hd.remove()
        self._handles = []


def head_mean_patch_attention(rows: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """``(B, heads, P + N)`` class rows -> ``(B, N)``: drop the prefix columns, mean over heads
    (the official aggregation: average the rows first, then take ratios)."""
    return rows[:, :, num_prefix_tokens:].mean(dim=1).detach().float()


def attention_share(a: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """``lam_attn = sum_n a[n] m[n] / sum_n a[n]`` per sample (TransMix Sec. 3).

    ``a``: (B, N) non-negative attention over patch tokens; ``token_mask``: (N,) or (B, N) in
    [0, 1] (1 = the region whose share is wanted). Normalising over patch tokens makes the ratio
    independent of the class token's attention to itself. A row with no mass at all (underflow)
    falls back to the mask's token area (the uniform-attention value)."""
    a = a.float()
    m = token_mask.to(a.device, torch.float32)
    if m.dim() == 1:
        m = m.unsqueeze(0).expand_as(a)
    total = a.sum(dim=1)
    share = (a * m).sum(dim=1) / total.clamp_min(torch.finfo(torch.float32).tiny)
    return torch.where(total > 0, share, m.mean(dim=1)).clamp(0.0, 1.0)


def fallback_warning(method: str, reason: str) -> None:
    """The one warning a method gives when it falls back to ``lam_attn := lam_area``."""
    warnings.warn(f"{method}: no class-token attention available ({reason}); falling back to "
                  f"lam_attn := lam_area (attention labels off, area labels only)", RuntimeWarning, stacklevel=3)


def materialised_class_attention(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference used by the tests and the benchmark: switch fused attention
    off in the last block, run ``model(x)``, and read the full probability matrix at the input of
    ``attn_drop`` (post-softmax, pre-dropout). Returns the class rows ``(B, heads, P + N)``."""
    m = unwrap(model)
    attn = m.blocks[-1].attn
    grabbed = {}

    def pre(module, args):
        grabbed["p"] = args[0].detach().float()

    old = attn.fused_attn
    attn.fused_attn = False
    hd = attn.attn_drop.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            model(x)
    finally:
        hd.remove()
        attn.fused_attn = old
    return grabbed["p"][:, :, 0, :]
