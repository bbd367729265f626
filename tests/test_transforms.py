"""Per-sample transforms from ``dataset.transform`` (common/transforms.py): the pipelines the
papers' recipes name, the position of our PCA lighting inside timm's pipeline, its exact values,
and clear errors for unknown keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from common.methods import ConfigError
from common.transforms import PCA_EIGVAL, PCA_EIGVEC, Lighting, build_transform, describe

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def names(tf):
    return [n for n, _ in describe(tf)]


def params(tf, name):
    return next(p for n, p in describe(tf) if n == name)


def test_cutmix_imagenet_pipeline_lighting_between_totensor_and_normalize():
    """CutMix's ImageNet recipe: RandomResizedCrop-224, flip, ColorJitter(0.4, 0.4, 0.4), then ToTensor,
    PCA Lighting(0.1), Normalize."""
    tf = build_transform({"color_jitter": [0.4, 0.4, 0.4], "lighting": 0.1}, 224, MEAN, STD, train=True)
    assert names(tf) == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ColorJitter",
                         "MaybeToTensor", "Lighting", "Normalize"]
    rrc = params(tf, "RandomResizedCropAndInterpolation")
    assert rrc["size"] == (224, 224) and rrc["scale"] == (0.08, 1.0) and rrc["interpolation"] == "bilinear"
    assert params(tf, "ColorJitter")["brightness"] == (0.6, 1.4) and params(tf, "ColorJitter")["hue"] is None
    assert params(tf, "Lighting") == {"std": 0.1}


def test_deit_pipeline():
    """DeiT/TransMix/MixPro: bicubic RandomResizedCrop, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25
    (timm drops ColorJitter when an auto-augment policy is given)."""
    tf = build_transform({"interpolation": "bicubic", "auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25,
                          "color_jitter": 0.4}, 224, MEAN, STD, train=True)
    assert names(tf) == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment",
                         "MaybeToTensor", "Normalize", "RandomErasing"]
    assert params(tf, "RandomResizedCropAndInterpolation")["interpolation"] == "bicubic"
    ra = params(tf, "RandAugment")
    assert ra["n"] == 2 and ra["m"] == 9 and "PosterizeIncreasing" in ra["ops"]  # inc1: increasing ops
    re = params(tf, "RandomErasing")
    assert re["probability"] == 0.25 and re["mode"] == "const" and re["max_count"] == 1


def test_reflect_pad_crop_replaces_random_resized_crop():
    tf = build_transform({"reflect_pad": 4}, 32, MEAN, STD, train=True)
    assert names(tf) == ["RandomCrop", "RandomHorizontalFlip", "MaybeToTensor", "Normalize"]
    assert params(tf, "RandomCrop") == {"size": (32, 32), "padding": 4, "padding_mode": "reflect"}
    torch.manual_seed(0)
    import random

    random.seed(0)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    out = tf(img)
    assert out.shape == (3, 32, 32)


def test_eval_transform_resizes_by_crop_pct_and_centre_crops():
    tf = build_transform({"crop_pct": 0.875, "eval_interpolation": "bicubic"}, 224, MEAN, STD, train=False)
    assert names(tf) == ["Resize", "CenterCrop", "MaybeToTensor", "Normalize"]
    assert params(tf, "Resize")["size"] == 256 and params(tf, "Resize")["interpolation"] == "bicubic"
    assert params(tf, "CenterCrop")["size"] == (224, 224)


def test_lighting_adds_the_pca_colour_shift():
    x = torch.rand(3, 5, 4)
    torch.manual_seed(7)
    alpha = torch.randn(3) * 0.1
    shift = torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))
    torch.manual_seed(7)
    y = Lighting(0.1)(x)
    assert torch.allclose(y - x, shift.view(3, 1, 1).expand_as(x), atol=1e-7)
    assert torch.equal(Lighting(0.0)(x), x)


def test_lighting_acts_before_normalize():
    """The whole pipeline equals ToTensor -> x + shift -> (x - mean) / std with the same draws."""
    tf = build_transform({"lighting": 0.5, "scale": [1.0, 1.0], "ratio": [1.0, 1.0], "hflip": 0.0}, 8, MEAN, STD,
                         train=True)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    import random

    random.seed(3)
    torch.manual_seed(3)
    out = tf(img)
    random.seed(3)
    torch.manual_seed(3)
    tf.transforms[0](img)  # the crop's draws (python random), then lighting's torch draw
    alpha = torch.randn(3) * 0.5
    base = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
    lit = base + (torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))).view(3, 1, 1)
    want = (lit - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(out, want, atol=1e-5)


def test_unknown_key_names_it():
    with pytest.raises(ConfigError, match=r"dataset.transform: unknown key 'lightning'.*lighting"):
        build_transform({"lightning": 0.1}, 224, MEAN, STD, train=True)


def test_randaugment_posterize_keeping_zero_bits_gives_black():
    """m9 with mstd 0.5 reaches magnitude 10, where timm's PosterizeIncreasing keeps 0 bits."""
    tf = build_transform({"auto_augment": "rand-m9-mstd0.5-inc1"}, 16, MEAN, STD, train=True)
    ra = next(t for t in tf.transforms if type(t).__name__ == "RandAugment")
    op = next(o for o in ra.ops if o.name == "PosterizeIncreasing")
    img = Image.fromarray(np.full((16, 16, 3), 200, np.uint8))
    assert np.asarray(op.aug_fn(img, 0)).max() == 0
    assert np.asarray(op.aug_fn(img, 2)).max() == 192 and op.aug_fn(img, 8) is img
