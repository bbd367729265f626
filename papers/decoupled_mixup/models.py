"""CIFAR-style ResNeXt-50 (32x4d) for Decoupled Mixup's CIFAR-100 / Tiny-ImageNet recipes.

openmixup's ``ResNeXt_CIFAR`` is the ImageNet ResNeXt-50 32x4d (Xie et al., CVPR 2017) with the
small-image stem used by CIFAR ResNets: a 3x3 stride-1 convolution and no max-pool, so a 32x32
input keeps 32x32 resolution in the first stage (DM paper App. B.2: "CIFAR-style ResNets").
We build timm's unmodified ``resnext50_32x4d`` and swap only the stem.
(The CIFAR ResNet-18 of the same recipes is ``resnet18_cifar`` in common/models.py.)

``model.init``: ``timm`` (default) keeps timm's ResNet init (He-normal fan-out convolutions, the
new stem included, and the last BN of each block at zero); ``torch_default`` / ``kaiming_fan_out``
reset every layer to PyTorch's init first and then apply the scheme (common.models.apply_init).
"""
from __future__ import annotations

from typing import Literal

import torch.nn as nn

from common.models import apply_init, register_model, reset_to_torch_default


@register_model("resnext50_cifar")
def resnext50_cifar(num_classes, input_shape, drop_path_rate: float = 0.0,
                    init: Literal["timm", "torch_default", "kaiming_fan_out"] = "timm"):
    import timm

    m = timm.create_model("resnext50_32x4d", pretrained=False, num_classes=num_classes, in_chans=input_shape[0],
                          drop_path_rate=drop_path_rate)
    m.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)  # 3x3 stride-1 stem
    m.maxpool = nn.Identity()  # no max-pool
    if init == "timm":
        nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
        return m
    return apply_init(reset_to_torch_default(m), init)
