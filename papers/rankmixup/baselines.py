"""Calibration baselines of the RankMixup comparison (those available in the official repository).
Cross-entropy is ``erm`` and vanilla mixup is ``mixup``
(papers/mixup); the two loss-based baselines get their own method names so that tables, which
group rows by method name, show them as separate rows:

* ``label_smoothing`` -- Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016:
  CE against ``(1 - eps) onehot(y) + eps / K``. Same loss as ``erm`` with
  ``train.label_smoothing: eps`` (:func:`common.losses.cross_entropy`). The RankMixup repository's
  LS baseline uses ``eps = 0.2`` (``configs/loss/ls.yaml``); our default is the common 0.1.
* ``focal`` -- Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, as used for
  calibration by Mukhoti et al., NeurIPS 2020:  ``FL = -(1 - p_y)^gamma log p_y``, batch mean.
  ``gamma = 3`` is the RankMixup repository's ``focal.yaml`` (and Mukhoti et al.'s FL-3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from common.losses import cross_entropy
from common.methods import Method, MixInfo, StepOutput, check_range, register_method


@dataclass
class LabelSmoothingParams:
    smoothing: float = 0.1  # eps; RankMixup's baseline config uses 0.2

    def __post_init__(self):
        check_range("method", "smoothing", self.smoothing, 0.0, 1.0, hi_open=True)


class _CleanBatchLoss(Method):
    """A loss on the clean batch (no mixing); subclasses define ``loss(out, y)``."""

    tasks = ("classification",)
    owns_label_smoothing = True

    def step(self, model, batch, state):
        out = model(batch.x)
        return StepOutput(self.loss(out, batch.y), out, MixInfo(batch.y, batch.y, 1.0, None))


@register_method("label_smoothing")
class LabelSmoothing(_CleanBatchLoss):
    """CE with label smoothing on the clean batch (no mixing)."""

    Params = LabelSmoothingParams

    def loss(self, out, y):
        return cross_entropy(out, y, self.p.smoothing)


def focal_loss(logits, y, gamma: float):
    """``mean_i -(1 - p_iy)^gamma log p_iy`` (gamma = 0 is cross-entropy)."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, y.view(-1, 1)).squeeze(1)
    return (-(1.0 - logp.exp()).pow(gamma) * logp).mean()


@dataclass
class FocalParams:
    gamma: float = 3.0  # focusing parameter; 3 as in RankMixup's focal.yaml (Mukhoti et al. FL-3)

    def __post_init__(self):
        check_range("method", "gamma", self.gamma, 0.0)


@register_method("focal")
class Focal(_CleanBatchLoss):
    """Focal loss on the clean batch (no mixing)."""

    Params = FocalParams

    def loss(self, out, y):
        return focal_loss(out, y, self.p.gamma)
