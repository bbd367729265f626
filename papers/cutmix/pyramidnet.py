"""PyramidNet for CIFAR — Han, Kim, Kim, "Deep Pyramidal Residual Networks", CVPR 2017
(arXiv 1610.02915); the network behind CutMix's CIFAR headline (PyramidNet-200, widening
factor alpha = 240, bottleneck blocks, 26.8 M parameters; CutMix paper Sec. 4.1.2).

Architecture (PyramidNet paper Sec. 3 and Fig. 6; written from the paper's description):

* stem: 3x3 conv to 16 channels + BN (no ReLU: every residual unit starts with BN);
* three stages at 32x32, 16x16, 8x8 with ``n`` units each, where ``n = (depth - 2) / 9`` for
  bottleneck units and ``(depth - 2) / 6`` for basic units;
* "additive" widening (Eq. 2): the k-th unit (k = 1 .. 3n) has ``D_k = round(16 + k * alpha / (3n))``
  bottleneck channels, output ``4 * D_k`` channels for bottleneck units (``D_k`` for basic);
* residual unit (Fig. 6d): BN - conv - BN - ReLU - conv (- BN - ReLU - conv) - BN, with no ReLU
  after the addition;
* shortcut: identity, 2x2 average pooling when the unit downsamples, and zero-padded extra
  channels (Sec. 3: "zero-padded identity-mapping shortcut");
* head: BN - ReLU - global average pooling - linear.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.methods import ConfigError
from common.models import register_model


class _PyramidUnit(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, bottleneck: bool):
        super().__init__()
        self.expansion = 4 if bottleneck else 1
        cout = planes * self.expansion
        if bottleneck:
            layers = [
                nn.BatchNorm2d(cin), nn.Conv2d(cin, planes, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout),
            ]
        else:
            layers = [
                nn.BatchNorm2d(cin), nn.Conv2d(cin, planes, 3, stride, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            ]
        self.body = nn.Sequential(*layers)
        self.stride, self.cin, self.cout = stride, cin, cout

    def forward(self, x):
        out = self.body(x)
        short = F.avg_pool2d(x, 2, 2, ceil_mode=True) if self.stride != 1 else x
        if self.cout > self.cin:  # zero-padded identity shortcut
            short = F.pad(short, (0, 0, 0, 0, 0, self.cout - self.cin))
        return out + short


class PyramidNet(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple, depth: int = 200, alpha: float = 240,
                 bottleneck: bool = True, base_width: int = 16):
        super().__init__()
        per = 9 if bottleneck else 6
        if depth < per + 2 or (depth - 2) % per:
            raise ConfigError(f"pyramidnet depth must be {per}n+2 for {'bottleneck' if bottleneck else 'basic'} "
                              f"units, got {depth}")
        n = (depth - 2) // per
        self.depth, self.alpha, self.bottleneck = depth, alpha, bottleneck
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], base_width, 3, 1, 1, bias=False), nn.BatchNorm2d(base_width))
        add = alpha / (3 * n)  # Eq. 2: D_k = D_{k-1} + alpha / N
        width, cin = float(base_width), base_width
        units = []
        for stage in range(3):
            for i in range(n):
                width += add
                stride = 2 if (stage > 0 and i == 0) else 1
                unit = _PyramidUnit(cin, int(round(width)), stride, bottleneck)
                units.append(unit)
                cin = unit.cout
        self.units = nn.Sequential(*units)
        self.bn_final = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.num_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        return F.relu(self.bn_final(self.units(self.stem(x))))

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1))


@register_model("pyramidnet")
def pyramidnet(num_classes, input_shape, depth: int = 200, alpha: float = 240, bottleneck: bool = True):
    """``pyramidnet`` with ``depth=200, alpha=240, bottleneck=True`` is CutMix's PyramidNet-200
    (26.8 M parameters for 100 classes)."""
    return PyramidNet(num_classes, tuple(input_shape), depth, alpha, bool(bottleneck))
