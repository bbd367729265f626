"""Decoupled Mixup (Liu et al., NeurIPS 2023): the DM(CE) loss term ``dm`` and a CIFAR-style
ResNeXt-50 for its paper-scale recipes (``tiny_imagenet`` comes from papers/rankmixup,
``cifar100`` from papers/cutmix)."""
from . import method, models  # noqa: F401  (registers "dm" and "resnext50_cifar")
