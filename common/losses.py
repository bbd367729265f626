"""Losses shared by the methods.

``mixed_cross_entropy(logits, y_a, y_b, lam)`` is soft-target cross-entropy for the target
``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` computed from two gathers of the log-softmax,
never a dense (N, K) target. Cross-entropy is linear in the target, so this equals
``lam * CE(y_a) + (1 - lam) * CE(y_b)`` (as noted in timm's GitHub issue #46). Label smoothing
smooths each one-hot first and then mixes (timm's order); by linearity the same value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _ce_per_sample(logp: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    nll = -logp.gather(1, y.view(-1, 1).to(logp.device)).squeeze(1)
    if smoothing <= 0:
        return nll
    # LS target: (1 - eps) * onehot + eps / K  ->  (1 - eps) * nll + eps * mean_k(-logp_k)
    return (1.0 - smoothing) * nll - smoothing * logp.mean(dim=1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0, reduction: str = "mean"):
    """Hard-label CE with optional label smoothing ``(1 - eps) * onehot + eps / K``."""
    loss = _ce_per_sample(F.log_softmax(logits.float(), dim=1), y, smoothing)
    return loss.mean() if reduction == "mean" else loss


def mixed_cross_entropy(
    logits: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam,
    smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """``lam * CE_ls(y_a) + (1 - lam) * CE_ls(y_b)``; ``lam`` is a float or a per-sample tensor."""
    logp = F.log_softmax(logits.float(), dim=1)
    ce_a = _ce_per_sample(logp, y_a, smoothing)
    ce_b = _ce_per_sample(logp, y_b, smoothing)
    if isinstance(lam, torch.Tensor):
        lam = lam.to(logp.device, logp.dtype)
    loss = lam * ce_a + (1 - lam) * ce_b
    return loss.mean() if reduction == "mean" else loss


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Dense label-smoothed one-hot (for methods that really need a dense target)."""
    off = smoothing / num_classes
    t = torch.full((y.shape[0], num_classes), off, device=y.device)
    t.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)
    return t


def mixed_targets(y_a, y_b, lam, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Dense mixed target ``lam * LS(onehot(y_a)) + (1 - lam) * LS(onehot(y_b))``."""
    if isinstance(lam, torch.Tensor):
        lam = lam.view(-1, 1).to(y_a.device)
    return lam * smooth_one_hot(y_a, num_classes, smoothing) + (1 - lam) * smooth_one_hot(y_b, num_classes, smoothing)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CE against a dense probability target (rows sum to 1)."""
    loss = -(target * F.log_softmax(logits.float(), dim=1)).sum(1)
    return loss.mean() if reduction == "mean" else loss


def mixed_mse(pred: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam) -> torch.Tensor:
    """Regression: MSE against ``lam * y_a + (1 - lam) * y_b`` (C-Mixup, Yao et al. 2022)."""
    if isinstance(lam, torch.Tensor):
        lam = lam.view(-1, *([1] * (y_a.dim() - 1))).to(y_a.device, y_a.dtype)
    target = lam * y_a + (1 - lam) * y_b
    return F.mse_loss(pred.float().view_as(target), target.float())
