"""Model registry: timm models by name, CIFAR-sized ResNets, small ViTs (timm) and an MLP.

``build_model({"name": ..., **kwargs}, num_classes, input_shape)``. Any ``timm:<model>`` name is
passed to ``timm.create_model`` with the kwargs (no pretrained weights are fetched), except
``cls_token_std``, which this module applies after building.
``model_info(model)``: the ViT geometry a method may read (the one lookup the trainer and the
benchmarks share).

Two initialisation options, each with a neutral default equal to the model's behaviour before the
option existed (so earlier run ids and results stay the same):

* ``model.init`` (the CIFAR ResNets here and in the paper packages): :data:`ResNetInit`, applied by
  :func:`apply_init`. ``torch_default`` is what PyTorch's layer constructors draw (the weights a
  model has when no init code runs); ``kaiming_fan_out`` re-draws every convolution from He et al.'s
  normal with fan-out and ReLU gain (BN and linear layers keep PyTorch's init).
* ``model.cls_token_std`` (ViTs with a class token: ``vit`` and ``timm:`` models): re-draw the class
  token from a normal with this std truncated at +-2, as timm 0.3-0.5 initialised it (std 0.02);
  ``null`` keeps the builder's init (timm 1.0: std 1e-6).
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .registry import Registry

MODELS: Registry = Registry("model")

#: ``model.init`` values of the ResNets; a factory's type annotation names the ones it accepts
#: (``common.config`` checks a config's value against it before any job starts)
ResNetInit = Literal["torch_default", "kaiming_fan_out"]


def register_model(name: str):
    return MODELS.register(name)


def build_model(spec: dict, num_classes: int, input_shape: tuple) -> nn.Module:
    spec = dict(spec if isinstance(spec, dict) else {"name": spec})
    name = spec.pop("name")
    if name.startswith("timm:"):
        import timm

        tname = name[5:]
        if tname not in timm.list_models():
            from .registry import did_you_mean

            raise ConfigError(f"unknown timm model {tname!r}.{did_you_mean(tname, timm.list_models())}")
        spec.setdefault("num_classes", num_classes)
        if len(input_shape) == 3:
            spec.setdefault("in_chans", input_shape[0])
        spec["pretrained"] = False
        cls_token_std = spec.pop("cls_token_std", None)
        return set_cls_token_std(timm.create_model(tname, **spec), cls_token_std)
    factory = MODELS.get(name)
    try:
        return factory(num_classes=num_classes, input_shape=tuple(input_shape), **spec)
    except TypeError as e:
        raise ConfigError(f"model {name!r}: {e}") from None


def model_info(model: nn.Module) -> dict:
    """What a method may need to know about the model (``RunContext.model_info``): ``patch_size`` and
    ``num_prefix_tokens`` of a ViT (on the model or its ``patch_embed``; a tuple gives its first
    entry); {} for a model without them."""
    info = {}
    for k in ("patch_size", "num_prefix_tokens"):
        v = getattr(model, k, None) or getattr(getattr(model, "patch_embed", None), k, None)
        if v is not None:
            info[k] = v if not isinstance(v, tuple) else v[0]
    return info


# --------------------------------------------------------------------------- initialisation
def apply_init(model: nn.Module, init: str) -> nn.Module:
    """Initialise ``model``, whose layers hold PyTorch's constructor init, by the scheme ``init``
    (see the module docstring); returns the model."""
    if init == "kaiming_fan_out":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif init != "torch_default":
        raise ConfigError(f"model.init={init!r} is unknown; choose one of {', '.join(map(repr, get_args(ResNetInit)))}")
    return model


def reset_to_torch_default(model: nn.Module) -> nn.Module:
    """Every layer back to PyTorch's constructor init (undoes a library's own init code)."""
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


def set_cls_token_std(model: nn.Module, std: float | None) -> nn.Module:
    """Re-draw ``model.cls_token`` from N(0, std^2) truncated at +-2 (timm's ``trunc_normal_``, the
    init of timm 0.3-0.5); ``None`` leaves the model as built."""
    if std is None:
        return model
    token = getattr(model, "cls_token", None)
    if not isinstance(token, torch.Tensor):
        raise ConfigError(f"model.cls_token_std={std}: the model {type(model).__name__} has no class token")
    from timm.layers import trunc_normal_

    with torch.no_grad():
        trunc_normal_(token, std=float(std))
    return model


# --------------------------------------------------------------------------- CIFAR ResNets
def shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    """Residual projection shortcut (He et al. 2016, option B): 1x1 conv + BN when the shape
    changes, ``None`` (identity) otherwise."""
    if stride != 1 or cin != cout:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return None


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = shortcut(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.short is None else self.short(x)))


class CifarResNet(nn.Module):
    """ResNet for small images (He et al. 2016, Sec. 4.2): 3x3 stem, no max-pool, stages of
    basic blocks. ``blocks=(3,3,3), width=16`` is ResNet-20; ``(2,2,2,2), 64`` is the CIFAR
    ResNet-18."""

    def __init__(self, num_classes, input_shape, blocks=(3, 3, 3), width=16, init: ResNetInit = "kaiming_fan_out"):
        super().__init__()
        cin = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, c = [], width
        for i, n in enumerate(blocks):
            cout = width * (2**i)
            for j in range(n):
                layers.append(BasicBlock(c, cout, 2 if (j == 0 and i > 0) else 1))
                c = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c
        apply_init(self, init)

    def forward_features(self, x):
        return self.layers(self.stem(x))

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1))


def _depth_to_blocks(depth: int) -> tuple:
    if (depth - 2) % 6:
        raise ConfigError(f"cifar_resnet depth must be 6n+2 (8, 14, 20, 32, 56, 110), got {depth}")
    n = (depth - 2) // 6
    return (n, n, n)


@register_model("cifar_resnet")
def cifar_resnet(num_classes, input_shape, depth: int = 20, width: int = 16, init: ResNetInit = "kaiming_fan_out"):
    return CifarResNet(num_classes, input_shape, _depth_to_blocks(depth), width, init)


@register_model("resnet20")
def resnet20(num_classes, input_shape, width: int = 16, init: ResNetInit = "kaiming_fan_out"):
    return CifarResNet(num_classes, input_shape, (3, 3, 3), width, init)


@register_model("resnet8")
def resnet8(num_classes, input_shape, width: int = 16, init: ResNetInit = "kaiming_fan_out"):
    return CifarResNet(num_classes, input_shape, (1, 1, 1), width, init)


@register_model("resnet18_cifar")
def resnet18_cifar(num_classes, input_shape, width: int = 64, init: ResNetInit = "kaiming_fan_out"):
    return CifarResNet(num_classes, input_shape, (2, 2, 2, 2), width, init)


# --------------------------------------------------------------------------- ViT (timm)
@register_model("vit")
def vit(num_classes, input_shape, patch_size: int = 4, embed_dim: int = 96, depth: int = 4, num_heads: int = 3,
        mlp_ratio: float = 2.0, class_token: bool = True, global_pool: str = "token", drop_path_rate: float = 0.0,
        cls_token_std: float | None = None):
    """A small timm ``VisionTransformer`` sized to the input (unmodified timm code)."""
    from timm.models.vision_transformer import VisionTransformer

    c, h, w = input_shape
    if h != w:
        raise ConfigError(f"vit: square images only, got {h}x{w}")
    if h % patch_size:
        raise ConfigError(f"model.patch_size={patch_size} does not divide the image size {h}")
    model = VisionTransformer(img_size=h, patch_size=patch_size, in_chans=c, num_classes=num_classes,
                              embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                              class_token=class_token, global_pool=global_pool if class_token else "avg",
                              drop_path_rate=drop_path_rate)
    return set_cls_token_std(model, cls_token_std)


# --------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    """Tabular MLP (C-Mixup's ``Learner``: Linear-128, LeakyReLU(0.1), Linear-128, LeakyReLU,
    Linear-out). ``forward_mix(x_a, x_b, lam, layer)`` mixes the inputs (``layer=0``) or the
    hidden state after block ``layer`` (manifold mixup)."""

    def __init__(self, num_classes, input_shape, hidden=(128, 128), negative_slope: float = 0.1):
        super().__init__()
        dims = [int(torch.tensor(input_shape).prod())] + list(hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.LeakyReLU(negative_slope)) for a, b in zip(dims[:-1], dims[1:])
        )
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.forward_mix(x, None, 1.0, 0)

    def forward_mix(self, x_a, x_b, lam, layer: int = 0):
        if layer < 0 or layer > len(self.blocks):
            raise ConfigError(f"mix layer {layer} outside 0..{len(self.blocks)}")
        if isinstance(lam, torch.Tensor):
            lam = lam.view(-1, 1).to(x_a.device, torch.float32)
        h_a = x_a.flatten(1).float()
        h_b = x_b.flatten(1).float() if x_b is not None else None
        for i, blk in enumerate(self.blocks):
            if h_b is not None and i == layer:
                h_a, h_b = lam * h_a + (1 - lam) * h_b, None
            h_a = blk(h_a)
            if h_b is not None:
                h_b = blk(h_b)
        if h_b is not None:
            h_a = lam * h_a + (1 - lam) * h_b
        return self.head(h_a)


@register_model("mlp")
def mlp(num_classes, input_shape, hidden=(128, 128), negative_slope: float = 0.1):
    return MLP(num_classes, input_shape, tuple(hidden), negative_slope)
