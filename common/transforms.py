"""Per-sample train/eval transforms for file-based image datasets, from ``dataset.transform``.

The pipeline is timm's ``create_transform`` (RandomResizedCrop with scale/ratio/interpolation,
flips, ColorJitter, AutoAugment/RandAugment strings, random erasing; eval: resize by ``crop_pct``
and centre crop) plus two transforms timm has no equivalent for:

* PCA lighting (``lighting``): AlexNet's colour augmentation (Krizhevsky et al. 2012, Sec. 4.1),
  used by the CutMix ImageNet recipe; it acts on the 0-1 tensor, after ToTensor and before
  Normalize, as in the CutMix code.
* reflect pad-and-crop (``reflect_pad``, ``random_crop_only``): torchvision's ``RandomCrop`` with
  reflect padding in place of RandomResizedCrop (OpenMixup's CIFAR pipelines).

``dataset.transform`` keys (every key optional; defaults in :data:`TRANSFORM_DEFAULTS`):
input_size, scale, ratio, hflip, vflip, color_jitter, auto_augment, interpolation, re_prob,
re_mode, re_count, lighting, crop_pct, eval_interpolation, reflect_pad, random_crop_only.
"""
from __future__ import annotations

import torch

from .errors import ConfigError
from .registry import did_you_mean

TRANSFORM_DEFAULTS: dict = {
    "input_size": None,  # None: the dataset's image size
    "scale": [0.08, 1.0],  # RandomResizedCrop area fraction
    "ratio": [3 / 4, 4 / 3],  # RandomResizedCrop aspect ratio
    "hflip": 0.5,
    "vflip": 0.0,
    "color_jitter": None,  # number or [brightness, contrast, saturation(, hue)]; ignored by timm with auto_augment
    "auto_augment": None,  # e.g. "rand-m9-mstd0.5-inc1"
    "interpolation": "bilinear",  # train crop interpolation: bilinear | bicubic | random
    "re_prob": 0.0,  # random erasing probability
    "re_mode": "const",
    "re_count": 1,
    "lighting": 0.0,  # PCA lighting std (0 = off)
    "crop_pct": None,  # eval: resize to input_size / crop_pct, centre crop (None: timm's 0.875; 1 with random_crop_only/reflect_pad)
    "eval_interpolation": "bilinear",
    "reflect_pad": 0,  # > 0: reflect-pad by this many pixels, then RandomCrop(input_size)
    "random_crop_only": False,  # RandomCrop(input_size) instead of RandomResizedCrop
}

# AlexNet's PCA of ImageNet RGB pixel values (0-1 scale): eigenvalues and eigenvectors (columns).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))


class Lighting(torch.nn.Module):
    """PCA lighting noise on a (3, H, W) float tensor: ``x + V (alpha * lambda)`` with
    ``alpha ~ N(0, std^2)`` per image (one draw from torch's global generator)."""

    def __init__(self, std: float, eigval=PCA_EIGVAL, eigvec=PCA_EIGVEC):
        super().__init__()
        self.std = float(std)
        self.eigval = torch.tensor(eigval)
        self.eigvec = torch.tensor(eigvec)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return img
        alpha = torch.randn(3) * self.std
        rgb = self.eigvec @ (alpha * self.eigval)
        return img + rgb.view(3, 1, 1).to(img.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(std={self.std})"


def resolve_transform(spec: dict | None, image_size: int) -> dict:
    """``spec`` over :data:`TRANSFORM_DEFAULTS`; unknown keys are a ConfigError naming the key."""
    spec = dict(spec or {})
    for k in spec:
        if k not in TRANSFORM_DEFAULTS:
            raise ConfigError(f"dataset.transform: unknown key {k!r}.{did_you_mean(k, list(TRANSFORM_DEFAULTS))} "
                              f"Allowed keys: {', '.join(TRANSFORM_DEFAULTS)}")
    out = {**TRANSFORM_DEFAULTS, **spec}
    if out["input_size"] is None:
        out["input_size"] = int(image_size)
    return out


def _color_jitter(v):
    if v is None:
        return None
    return tuple(float(c) for c in v) if isinstance(v, (list, tuple)) else float(v)


def build_transform(spec: dict | None, image_size: int, mean, std, train: bool):
    """The ``torchvision.transforms.Compose`` for one sample (PIL image in, normalised tensor out)."""
    from timm.data import create_transform
    from torchvision import transforms as T

    c = resolve_transform(spec, image_size)
    size = int(c["input_size"])
    if not train:
        crop_pct = c["crop_pct"]
        if crop_pct is None and (c["reflect_pad"] or c["random_crop_only"]):
            crop_pct = 1.0  # a random-crop (CIFAR) pipeline evaluates the whole image
        return create_transform(size, is_training=False, crop_pct=crop_pct,
                                interpolation=c["eval_interpolation"], mean=tuple(mean), std=tuple(std))
    primary, secondary, final = create_transform(
        size, is_training=True, scale=tuple(c["scale"]), ratio=tuple(c["ratio"]), hflip=c["hflip"],
        vflip=c["vflip"], color_jitter=_color_jitter(c["color_jitter"]), auto_augment=c["auto_augment"],
        interpolation=c["interpolation"], mean=tuple(mean), std=tuple(std), re_prob=c["re_prob"],
        re_mode=c["re_mode"], re_count=int(c["re_count"]), separate=True)
    first = list(primary.transforms)
    if c["reflect_pad"] or c["random_crop_only"]:  # plain (reflect-padded) random crop, then timm's flips
        pad = int(c["reflect_pad"])
        first = [T.RandomCrop(size, padding=pad or None, padding_mode="reflect", pad_if_needed=True)] + first[1:]
    if color_off(c):  # timm adds ColorJitter(0.4) when given None only with auto_augment unset: keep it off
        second = [t for t in secondary.transforms if type(t).__name__ != "ColorJitter"]
    else:
        second = list(secondary.transforms)
    last = list(final.transforms)
    if c["lighting"]:
        at = next(i for i, t in enumerate(last) if "ToTensor" in type(t).__name__) + 1
        last.insert(at, Lighting(c["lighting"]))
    for t in second:
        _zero_bit_posterize(t)
    return T.Compose(first + second + last)


def _posterize(img, bits_to_keep, **_):
    """timm's posterize op, also for 0 bits kept (an all-black image). timm's RandAugment asks for 0
    bits at magnitude 10 ('PosterizeIncreasing', reached with m9 and mstd 0.5), which Pillow >= 13
    rejects ("bits must be between or equal to 1 and 8") while older Pillow returned black."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _zero_bit_posterize(t) -> None:
    """Point the posterize ops of a timm RandAugment/AutoAugment at :func:`_posterize`."""
    from timm.data import auto_augment as aa

    ops = getattr(t, "ops", None) or [o for sub in getattr(t, "policy", []) for o in sub]
    for op in ops:
        if getattr(op, "aug_fn", None) is aa.posterize:
            op.aug_fn = _posterize


def color_off(c: dict) -> bool:
    return c["color_jitter"] is None or c["color_jitter"] == 0


def describe(tf) -> list[tuple[str, dict]]:
    """(class name, key parameters) of each step of a Compose: what tests and recipe checks compare."""
    out = []
    for t in getattr(tf, "transforms", [tf]):
        name = type(t).__name__
        p = {}
        for attr in ("size", "scale", "ratio", "p", "probability", "interpolation", "padding", "padding_mode", "std", "mode",
                     "max_count", "brightness", "contrast", "saturation", "hue", "mean"):
            if hasattr(t, attr):
                v = getattr(t, attr)
                if isinstance(v, torch.Tensor):
                    v = [round(float(a), 4) for a in v.reshape(-1)]
                elif isinstance(v, (list, tuple)) and any(isinstance(a, float) for a in v):
                    v = tuple(round(float(a), 4) if isinstance(a, float) else a for a in v)
                elif hasattr(v, "value"):  # InterpolationMode
                    v = v.value
                elif not isinstance(v, (int, float, str, tuple, list, type(None))):
                    v = str(v)
                p[attr] = v
        if name == "RandAugment":
            p = {"n": t.num_layers, "ops": [o.name for o in t.ops], "m": t.ops[0].magnitude if t.ops else None}
        out.append((name, p))
    return out
