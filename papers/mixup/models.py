"""PreAct ResNet-18 for 32x32 inputs: the network of mixup's CIFAR-10 experiments.

He et al., *Identity Mappings in Deep Residual Networks* (ECCV 2016): each block is
BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut taken after the first BN-ReLU (a 1x1 conv when
the shape changes). Layout as in facebookresearch/mixup-cifar10 (``ResNet18`` = pre-activation
blocks ``[2, 2, 2, 2]``): a 3x3 conv-BN-ReLU stem, four stages of widths 64/128/256/512 (stride 2
from the second), no BN-ReLU after the last block, 4x4 average pooling, linear classifier;
PyTorch's default initialisation.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.models import register_model


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = x if self.short is None else self.short(pre)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple, blocks=(2, 2, 2, 2), width: int = 64):
        super().__init__()
        cin = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, c = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            for j in range(n):
                layers.append(PreActBlock(c, cout, 2 if (i > 0 and j == 0) else 1))
                c = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c

    def forward_features(self, x):
        return self.layers(self.stem(x))

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1))


@register_model("preact_resnet18")
def preact_resnet18(num_classes, input_shape, width: int = 64):
    """PreAct ResNet-18 (11.2 M parameters at width 64 on CIFAR-10)."""
    return PreActResNet(num_classes, input_shape, (2, 2, 2, 2), width)
