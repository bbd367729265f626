"""LSTNet-style forecaster for the C-Mixup time-series tasks (Exchange-Rate, Electricity).

Lai, Chang, Yang, Liu, "Modeling Long- and Short-Term Temporal Patterns with Deep Neural
Networks", SIGIR 2018; as configured in C-Mixup's ``Learner_TimeSeries``. Written from that description:

    input  X in R^{P x m}  (the last P steps of all m series)
    C  = dropout(ReLU(conv(X)))          conv: hid_cnn filters of size (kernel x m) -> (B, hid_cnn, P-kernel+1)
    r  = dropout(GRU(C) last state)      hid_rnn units
    s  = dropout(skip-GRU(C) last states) over the last pt*skip steps, pt = (P - kernel) // skip,
                                          one sequence per phase -> skip * hid_skip features
    out = Linear([r, s]) + highway(X)    highway: Linear(hw, 1) shared by the m series on the
                                          last hw steps (the autoregressive part)

``forward_mix(x_a, x_b, lam, layer)``: ``layer=0`` mixes the inputs; ``layer=1`` is C-Mixup's
"manifold" point — each input goes through conv + ReLU + dropout separately (two dropout draws),
the feature maps are mixed ``lam C_a + (1 - lam) C_b`` and continue through the GRUs, while the
highway branch receives the input-level mixture ``lam x_a + (1 - lam) x_b``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common.methods import ConfigError
from common.models import register_model


class LSTNet(nn.Module):
    def __init__(self, num_classes, input_shape, hid_cnn: int = 50, hid_rnn: int = 50, hid_skip: int = 5,
                 kernel: int = 6, skip: int = 24, highway: int = 24, dropout: float = 0.2, output: str | None = None):
        super().__init__()
        if len(input_shape) != 2:
            raise ConfigError(f"lstnet: input must be (window, series), got shape {tuple(input_shape)}")
        self.P, self.m = int(input_shape[0]), int(input_shape[1])
        if num_classes != self.m:
            raise ConfigError(f"lstnet predicts all {self.m} series; label dimension is {num_classes}")
        if not 1 <= kernel <= self.P:
            raise ConfigError(f"lstnet: kernel={kernel} must lie in [1, window={self.P}]")
        if output not in (None, "none", "sigmoid", "tanh"):
            raise ConfigError(f"lstnet: output must be null, 'sigmoid' or 'tanh', got {output!r}")
        self.kernel, self.skip, self.hw = kernel, skip, highway
        self.pt = (self.P - kernel) // skip if skip > 0 else 0
        self.conv = nn.Conv2d(1, hid_cnn, kernel_size=(kernel, self.m))
        self.gru = nn.GRU(hid_cnn, hid_rnn)
        self.drop = nn.Dropout(dropout)
        feat = hid_rnn
        if skip > 0 and self.pt > 0:
            self.gru_skip = nn.GRU(hid_cnn, hid_skip)
            feat += skip * hid_skip
        else:
            self.gru_skip = None
        self.fc = nn.Linear(feat, self.m)
        self.highway = nn.Linear(highway, 1) if highway > 0 else None
        self.out_fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(output or "none")

    # C = dropout(ReLU(conv(X))): (B, P, m) -> (B, hid_cnn, T)
    def features(self, x):
        c = torch.relu(self.conv(x.view(-1, 1, self.P, self.m)))
        return self.drop(c).squeeze(3)

    def head(self, c, x_highway):
        b = c.shape[0]
        _, h = self.gru(c.permute(2, 0, 1).contiguous())  # sequence over time steps
        r = self.drop(h.squeeze(0))
        if self.gru_skip is not None:
            k, pt = self.skip, self.pt
            s = c[:, :, -pt * k:].reshape(b, c.shape[1], pt, k)  # (B, C, pt, skip)
            s = s.permute(2, 0, 3, 1).reshape(pt, b * k, c.shape[1])  # one sequence per (sample, phase)
            _, hs = self.gru_skip(s)
            r = torch.cat([r, self.drop(hs.reshape(b, k * hs.shape[-1]))], dim=1)
        out = self.fc(r)
        if self.highway is not None:
            z = x_highway[:, -self.hw:, :].permute(0, 2, 1).reshape(b * self.m, self.hw)
            out = out + self.highway(z).view(b, self.m)
        return self.out_fn(out) if self.out_fn is not None else out

    def forward(self, x):
        return self.head(self.features(x), x)

    def forward_mix(self, x_a, x_b, lam, layer: int = 0):
        if x_b is None:
            return self.forward(x_a)
        x_mix = lam * x_a + (1 - lam) * x_b
        if layer == 0:
            return self.forward(x_mix)
        if layer == 1:  # mix after conv + ReLU + dropout; the highway sees the input mixture
            c = lam * self.features(x_a) + (1 - lam) * self.features(x_b)
            return self.head(c, x_mix)
        raise ConfigError(f"lstnet: mix layer {layer} outside 0 (inputs) .. 1 (after the convolution)")


@register_model("lstnet")
def lstnet(num_classes, input_shape, hid_cnn: int = 50, hid_rnn: int = 50, hid_skip: int = 5, kernel: int = 6,
           skip: int = 24, highway: int = 24, dropout: float = 0.2, output: str | None = None):
    return LSTNet(num_classes, input_shape, hid_cnn, hid_rnn, hid_skip, kernel, skip, highway, dropout, output)
