"""``timm_mixup``: timm's own ``timm.data.Mixup`` (Wightman, pytorch-image-models,
``timm/data/mixup.py``) run as a method, batch mode, with ``timm.loss.SoftTargetCrossEntropy``.

Why it exists: an independent reference from the ecosystem next to our ``mixup`` and ``cutmix``
rows. Nothing of the mixing is ours: timm draws the branch, lambda and box; this class only wires
it into the trainer. Each batch is mixed (``prob`` 1) by mixup (Beta(mixup_alpha, mixup_alpha))
or, with probability ``switch_prob``, by CutMix (Beta(cutmix_alpha, cutmix_alpha), lambda
corrected to the pasted area when ``correct_lam``). Partners are the flipped batch (i <-> N-1-i),
so batches must have an even size.

Known difference to the official CutMix box (clovaai ``rand_bbox``) and to ours
(``common.mixing.box_from_center``): with ``cut = int(side * sqrt(1 - lam))`` and centre ``c``,
timm 1.0.31's ``rand_bbox`` spans ``[c - cut // 2, c + (cut + 1) // 2)`` before clipping, the
official code ``[c - cut // 2, c + cut // 2)``. For odd ``cut`` timm's box is one pixel longer
on that side (the far edge is rounded up), i.e. exactly ``cut`` instead of ``cut - 1``.

Randomness: timm draws from numpy's global RNG. Every step seeds numpy's and Python's global
RNGs with one 32-bit value drawn from ``state.generator`` (the run's seeded generator, replayed
on resume), so runs are deterministic and resumable; the previous global RNG states are restored
after the call.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from common.methods import ConfigError, Method, MixInfo, StepOutput, check_range, register_method

if TYPE_CHECKING:
    from timm.data import Mixup as TimmMixup


@dataclass
class TimmMixupParams:
    mixup_alpha: float = 1.0  # timm mixup_alpha (> 0)
    cutmix_alpha: float = 1.0  # timm cutmix_alpha (> 0)
    switch_prob: float = 0.5  # per batch: CutMix with this probability, mixup otherwise
    prob: float = 1.0  # per batch: mix at all with this probability
    correct_lam: bool = True  # timm's default: lambda = 1 - clipped box area / image area

    def __post_init__(self):
        check_range("method", "mixup_alpha", self.mixup_alpha, 0.0, None, lo_open=True)
        check_range("method", "cutmix_alpha", self.cutmix_alpha, 0.0, None, lo_open=True)
        check_range("method", "switch_prob", self.switch_prob, 0.0, 1.0)
        check_range("method", "prob", self.prob, 0.0, 1.0)
        if not isinstance(self.correct_lam, bool):
            raise ValueError(f"correct_lam must be true or false, got {self.correct_lam!r}")


@functools.cache
def recording_mixup() -> type:
    """timm's Mixup, unchanged, remembering the branch and lambda of its last batch-mode call. Built on
    first use: importing timm (and the torchvision it loads) costs seconds, which every process that
    registers the methods would otherwise pay."""
    from timm.data import Mixup

    class RecordingMixup(Mixup):
        last_use_cutmix = False
        last_lam = 1.0

        def _params_per_batch(self):
            lam, use_cutmix = super()._params_per_batch()
            self.last_use_cutmix = bool(use_cutmix)
            return lam, use_cutmix

        def _mix_batch(self, x):
            self.last_use_cutmix = False
            self.last_lam = float(super()._mix_batch(x))  # area-corrected for CutMix when correct_lam
            return self.last_lam

    return RecordingMixup


def numpy_seed(generator: torch.Generator) -> int:
    """The per-step seed for numpy/Python: one 32-bit draw from the run's generator."""
    return int(torch.randint(2**32, (), generator=generator, dtype=torch.int64))


def timm_mix(mixer: TimmMixup, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``mixer(x.clone(), y)`` with numpy's and Python's global RNGs seeded with ``seed``; the
    previous global states are restored afterwards. Returns ``(x_mixed, soft_targets)``."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        np.random.seed(seed)
        random.seed(seed)
        return mixer(x.clone(), y)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@register_method("timm_mixup")
class TimmMixupMethod(Method):
    """timm's batch-mode Mixup/CutMix switch and soft-target cross-entropy (module docstring)."""

    Params = TimmMixupParams
    tasks = ("classification",)
    pairs_within_batch = True  # timm mixes each sample with its mirror in the batch (x.flip(0))

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        p = self.p
        # label smoothing enters through timm's mixer, as in timm's train.py; timm's default is 0.1,
        # here it is the run's train.label_smoothing (0 in the shared CIFAR-10 setting)
        from timm.loss import SoftTargetCrossEntropy

        self.mixer = recording_mixup()(
            mixup_alpha=p.mixup_alpha, cutmix_alpha=p.cutmix_alpha, prob=p.prob, switch_prob=p.switch_prob,
            mode="batch", correct_lam=p.correct_lam, label_smoothing=ctx.label_smoothing,
            num_classes=ctx.num_classes)
        self.criterion = SoftTargetCrossEntropy()

    def step(self, model, batch, state):
        x, y = batch.x, batch.y
        self.require_image_batch(x)
        if x.shape[0] % 2:
            raise ConfigError(f"timm_mixup pairs sample i with N-1-i and needs an even batch; got {x.shape[0]} "
                              "(set train.batch_size even and train.drop_last: true, or a training size "
                              "whose last batch is even)")
        x_mix, target = timm_mix(self.mixer, x, y, numpy_seed(state.generator))
        out = model(x_mix)
        loss = self.criterion(out.float(), target)
        lam, flip = self.mixer.last_lam, torch.arange(x.shape[0] - 1, -1, -1)
        return StepOutput(loss, out, MixInfo(y, y.flip(0), lam, flip),
                          {"lam": lam, "cutmix": float(self.mixer.last_use_cutmix)})
