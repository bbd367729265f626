"""What a training step receives: one batch of model-ready inputs, targets and their positions.

Its own module so the data layer and the method interface both use it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    x: torch.Tensor  # model-ready input on the training device
    y: torch.Tensor  # int64 class labels, or float regression targets
    index: torch.Tensor  # positions in the training split (CPU, int64)
