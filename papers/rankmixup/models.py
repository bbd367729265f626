"""The RankMixup paper's networks (official
``calibrate/net/resnet_mixup.py`` builders ``resnet50_cifar`` / ``resnet50_tiny`` and the
ResNet-101 variants): bottleneck ResNets (He et al., CVPR 2016) with a CIFAR-style stem -- a 3x3
convolution with stride 1 and no max-pool -- and stages of [3, 4, 6, 3] (ResNet-50) or
[3, 4, 23, 3] (ResNet-101) bottlenecks of widths 64, 128, 256, 512 (expansion 4).

Heads: CIFAR (32x32) averages the final 4x4 map to 1x1 and has a linear layer on 2048 features;
Tiny-ImageNet (64x64) averages to 2x2 and has a linear layer on 2048 * 4 features.
Initialisation (``model.init``, default ``torch_default``): the official CIFAR builders keep
PyTorch's layer init; the Tiny-ImageNet builders draw every convolution from He et al.'s normal with
fan-out (``kaiming_fan_out``), which the paper grid sets.
Written from the architecture description, not copied.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.models import ResNetInit, apply_init, register_model, shortcut


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.short = shortcut(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.short is None else self.short(x)))


class BottleneckResNet(nn.Module):
    def __init__(self, num_classes, input_shape, blocks=(3, 4, 6, 3), pool: int = 1, base_width: int = 64,
                 init: ResNetInit = "torch_default"):
        super().__init__()
        cin = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(cin, base_width, 3, 1, 1, bias=False), nn.BatchNorm2d(base_width),
                                  nn.ReLU(inplace=True))
        layers, c = [], base_width
        for i, n in enumerate(blocks):
            w = base_width * (2**i)
            for j in range(n):
                layers.append(Bottleneck(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = pool
        self.num_features = c * pool * pool
        self.fc = nn.Linear(self.num_features, num_classes)
        apply_init(self, init)

    def forward_features(self, x):
        return self.layers(self.stem(x))

    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.forward_features(x), self.pool)
        return self.fc(torch.flatten(f, 1))


def _bottleneck_resnet(name: str, blocks: tuple, pool: int):
    """A registered builder ``name(num_classes, input_shape, base_width=64, init="torch_default")``;
    ``pool`` = final average-pool output side (1 for CIFAR, 2 for Tiny-ImageNet, as the official builders)."""

    def build(num_classes, input_shape, base_width: int = 64, init: ResNetInit = "torch_default"):
        return BottleneckResNet(num_classes, input_shape, blocks, pool=pool, base_width=base_width, init=init)

    build.__name__ = build.__qualname__ = name
    return register_model(name)(build)


resnet50_cifar = _bottleneck_resnet("resnet50_cifar", (3, 4, 6, 3), pool=1)
resnet101_cifar = _bottleneck_resnet("resnet101_cifar", (3, 4, 23, 3), pool=1)
resnet50_tiny = _bottleneck_resnet("resnet50_tiny", (3, 4, 6, 3), pool=2)
resnet101_tiny = _bottleneck_resnet("resnet101_tiny", (3, 4, 23, 3), pool=2)
