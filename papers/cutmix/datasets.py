"""Datasets for CutMix's paper-scale recipes: ``cifar100`` and ``imagenet``.

* ``cifar100`` — the official python batches ``<root>/cifar100/cifar-100-python/{train,test}``
  (what ``torchvision.datasets.CIFAR100`` downloads), decoded once into the uint8 cache like
  ``cifar10``. Fine labels (100 classes). Downloaded only when ``dataset.download`` (or
  ``MIXREPRO_DOWNLOAD=1``) allows it; otherwise the error names the files expected.
* ``imagenet`` — ILSVRC-2012 in torchvision's ImageFolder layout ``<root>/imagenet/train/<wnid>/*``
  and ``<root>/imagenet/val/<wnid>/*`` (the validation set is the test split, as in the papers).
  1.28 M images do not fit the in-memory uint8 cache, so images are decoded lazily, one batch at
  a time (thread pool), each resized to ``resize`` on the shorter side and centre-cropped to
  ``image_size`` (the papers' evaluation transform). The core's batch augmentation then adds the
  random horizontal flip; RandomResizedCrop, colour jitter and PCA lighting of the official
  ImageNet recipe are not implemented (see papers/cutmix/README.md, known differences).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.data import (ArrayData, DataError, DatasetSplits, cache_dir, check_labels, data_root, download_allowed,
                         load_npz_cache, missing_error, register_dataset, save_npz_cache)

# --------------------------------------------------------------------------- CIFAR-100
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def _read_cifar100_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="latin1")
        x = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d["fine_labels"], np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as e:
        raise DataError(f"CIFAR-100 file {path} is unreadable or truncated: {e}") from None
    if len(x) != len(y):
        raise DataError(f"CIFAR-100 file {path}: {len(x)} images but {len(y)} labels")
    return x, y


@register_dataset("cifar100", image_size=32, split_sizes={"train": 50000, "test": 10000},
                  required_files=["cifar100/cifar-100-python/train", "cifar100/cifar-100-python/test"])
def load_cifar100(root=None, download=None) -> DatasetSplits:
    """CIFAR-100 (fine labels) from ``<root>/cifar100/cifar-100-python/``."""
    base = data_root(root) / "cifar100"
    folder = base / "cifar-100-python"
    files = [folder / "train", folder / "test"]
    if not all(f.exists() for f in files):
        if download_allowed(download):
            import torchvision

            torchvision.datasets.CIFAR100(str(base), train=True, download=True)
        else:
            raise missing_error("cifar100", [f"{f} (official python version)" for f in files],
                                "https://www.cs.toronto.edu/~kriz/cifar.html (cifar-100-python.tar.gz)")
    stamp = ":".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    cpath = cache_dir(data_root(root)) / f"cifar100-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}.npz"
    cached = load_npz_cache(cpath)
    if cached is None:
        xtr, ytr = _read_cifar100_batch(files[0])
        xte, yte = _read_cifar100_batch(files[1])
        save_npz_cache(cpath, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    else:
        xtr, ytr, xte, yte = (cached[k] for k in ("xtr", "ytr", "xte", "yte"))
    splits = DatasetSplits(
        "cifar100", "classification",
        ArrayData(torch.from_numpy(xtr), torch.from_numpy(ytr)),
        ArrayData(torch.from_numpy(xte), torch.from_numpy(yte)),
        num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD, augment={"pad": 4, "flip": True},
        meta={"source": str(folder)},
    )
    check_labels("cifar100", splits.train.y, 100, "train")
    check_labels("cifar100", splits.test.y, 100, "test")
    return splits


# --------------------------------------------------------------------------- ImageNet (lazy)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = {".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}


def decode_center(path: Path, resize: int, size: int) -> np.ndarray:
    """Decode an image to RGB, resize the shorter side to ``resize`` (bilinear) and centre-crop
    ``size`` x ``size``: torchvision's ``Resize(resize) -> CenterCrop(size)``. Returns (3, size, size) uint8."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = resize / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None


class LazyImages:
    """A read-only stand-in for a uint8 (N, 3, S, S) tensor whose rows are image files, decoded
    when indexed. Supports what the core's loaders use: ``shape``, ``dtype``, ``dim()``,
    ``len()`` and indexing with an index tensor / array / int."""

    dtype = torch.uint8

    def __init__(self, files: list[Path], size: int, resize: int, workers: int | None = None):
        self.files, self.size, self.resize = list(files), int(size), int(resize)
        self.workers = workers or min(16, os.cpu_count() or 1)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), 3, self.size, self.size))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.files)

    def take(self, idx) -> "LazyImages":
        idx = np.asarray(torch.as_tensor(idx, dtype=torch.long).cpu())
        return LazyImages([self.files[i] for i in idx], self.size, self.resize, self.workers)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, int):
            return torch.from_numpy(decode_center(self.files[idx], self.resize, self.size))
        ids = np.asarray(torch.as_tensor(idx, dtype=torch.long).cpu()).reshape(-1)
        out = np.empty((len(ids), 3, self.size, self.size), np.uint8)

        def one(k):
            out[k] = decode_center(self.files[ids[k]], self.resize, self.size)

        if self.workers > 1 and len(ids) > 1:
            with ThreadPoolExecutor(self.workers) as ex:
                list(ex.map(one, range(len(ids))))
        else:
            for k in range(len(ids)):
                one(k)
        return torch.from_numpy(out)


@dataclass
class LazyArrayData(ArrayData):
    """``ArrayData`` over :class:`LazyImages`; ``subset`` stays lazy."""

    def subset(self, idx) -> "LazyArrayData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return LazyArrayData(self.x.take(idx), self.y[idx])


def _image_folder(split_dir: Path, classes: list[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """``split_dir/<class>/<file>``: files sorted by class then name, labels = class index in the
    sorted class list (torchvision ``ImageFolder`` convention)."""
    if classes is None:
        classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    files, labels = [], []
    for c, name in enumerate(classes):
        d = split_dir / name
        if not d.is_dir():
            raise DataError(f"ImageNet: class folder {d} is missing (train and val must have the same classes)")
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_EXTS:
                files.append(f)
                labels.append(c)
    if not files:
        raise DataError(f"ImageNet: no images under {split_dir}/<class>/")
    return files, np.asarray(labels, np.int64), classes


@register_dataset("imagenet", split_sizes={"train": 1281167, "test": 50000},
                  required_files=["imagenet/train/", "imagenet/val/"])
def load_imagenet(root=None, download=None, image_size: int = 224, resize: int = 256,
                  workers: int | None = None) -> DatasetSplits:
    """ImageNet-1k in ImageFolder layout ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``, decoded
    lazily (never downloaded: the licence requires a manual download)."""
    base = data_root(root) / "imagenet"
    tr_dir, va_dir = base / "train", base / "val"
    if not (tr_dir.is_dir() and va_dir.is_dir()):
        raise DataError(
            f"dataset 'imagenet' not found. Expected the ImageFolder layout:\n  {tr_dir}/<wnid>/*.JPEG\n"
            f"  {va_dir}/<wnid>/*.JPEG (validation images sorted into class folders)\n"
            "ImageNet cannot be downloaded automatically: get ILSVRC-2012 from https://image-net.org/ "
            "and point dataset.root / $MIXREPRO_DATA at the folder that contains imagenet/."
        )
    if image_size < 1 or resize < image_size:
        raise DataError(f"imagenet: need 1 <= image_size <= resize, got image_size={image_size}, resize={resize}")
    ftr, ytr, classes = _image_folder(tr_dir)
    fva, yva, _ = _image_folder(va_dir, classes)
    k = len(classes)
    splits = DatasetSplits(
        "imagenet", "classification",
        LazyArrayData(LazyImages(ftr, image_size, resize, workers), torch.from_numpy(ytr)),
        LazyArrayData(LazyImages(fva, image_size, resize, workers), torch.from_numpy(yva)),
        num_classes=k, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment={"pad": 0, "flip": True},
        meta={"source": str(base), "classes": k},
    )
    return splits
