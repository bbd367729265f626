"""Tiny-ImageNet for RankMixup's paper-scale setting (spec ``shared/specs/rankmixup.md``
section 2). Not in the offline data folder; loaded from the official archive (downloaded only
when ``dataset.download`` or ``MIXREPRO_DOWNLOAD=1`` allows it). CIFAR-100, the other
paper-scale dataset, is the ``cifar100`` dataset registered by papers/cutmix/datasets.py.

* ``tiny_imagenet``: ``<root>/tiny_imagenet/tiny-imagenet-200/`` (``wnids.txt``,
  ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` + ``val/val_annotations.txt``) or the
  official ``tiny-imagenet-200.zip`` next to it. As in the RankMixup code, the official ``val``
  folder is the TEST split; the validation split is carved from train by ``dataset.val_size``
  (10000 = 50 per class, class-balanced). Classes are the sorted wnids (ImageFolder order).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from common.data import (ArrayData, DataError, DatasetSplits, cache_dir, check_labels, data_root, download_allowed,
                         load_npz_cache, missing_error, register_dataset, save_npz_cache)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


# --------------------------------------------------------------------------- Tiny-ImageNet
def _tiny_entries(names: list[str], read_text) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """(wnids, train [(member, wnid)], test [(member, wnid)]) from the archive's member names."""
    prefix = next((n[: -len("wnids.txt")] for n in names if n.endswith("wnids.txt")), None)
    if prefix is None:
        raise DataError("Tiny-ImageNet: wnids.txt not found")
    wnids = sorted(w.strip() for w in read_text(prefix + "wnids.txt").splitlines() if w.strip())
    train = []
    for n in names:
        rel = n[len(prefix):] if n.startswith(prefix) else None
        if rel and rel.startswith("train/") and rel.lower().endswith(".jpeg"):
            parts = rel.split("/")  # train/<wnid>/images/<file>
            if len(parts) == 4 and parts[1] in wnids:
                train.append((n, parts[1]))
    ann = read_text(prefix + "val/val_annotations.txt")
    test = []
    for line in ann.splitlines():
        f = line.split("\t")
        if len(f) >= 2 and f[1] in wnids:
            test.append((prefix + "val/images/" + f[0], f[1]))
    train.sort()
    test.sort()
    if not train or not test:
        raise DataError("Tiny-ImageNet: no training or validation images found")
    return wnids, train, test


def _decode(entries, wnids, read_bytes, size: int = 64):
    from io import BytesIO

    from PIL import Image

    idx = {w: i for i, w in enumerate(wnids)}
    x = np.empty((len(entries), 3, size, size), np.uint8)
    y = np.empty(len(entries), np.int64)
    for i, (n, w) in enumerate(entries):
        try:
            img = Image.open(BytesIO(read_bytes(n))).convert("RGB")
        except Exception as e:
            raise DataError(f"cannot decode Tiny-ImageNet image {n!r}: {e}") from None
        if img.size != (size, size):
            raise DataError(f"Tiny-ImageNet image {n!r} has size {img.size}, expected ({size}, {size})")
        x[i] = np.asarray(img).transpose(2, 0, 1)
        y[i] = idx[w]
    return x, y


@register_dataset("tiny_imagenet", image_size=64, split_sizes={"train": 100000, "test": 10000},
                  required_files=[("tiny_imagenet/tiny-imagenet-200/", "tiny_imagenet/tiny-imagenet-200.zip")])
def load_tiny_imagenet(root=None, download=None) -> DatasetSplits:
    """Tiny-ImageNet-200: 100000 train images (the validation split is carved from them by
    ``dataset.val_size``) and the official 10000 ``val`` images as the test split."""
    base = data_root(root) / "tiny_imagenet"
    folder, archive = base / "tiny-imagenet-200", base / "tiny-imagenet-200.zip"
    if folder.is_dir():
        source = folder
    elif archive.exists():
        source = archive
    elif download_allowed(download):
        from torchvision.datasets.utils import download_url

        download_url(TINY_URL, str(base), "tiny-imagenet-200.zip")
        source = archive
    else:
        raise missing_error("tiny_imagenet", [f"{folder}/ (wnids.txt, train/, val/)", str(archive)], TINY_URL)
    st = source.stat()
    key = hashlib.sha256(f"{source.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    cpath = cache_dir(data_root(root)) / f"tiny_imagenet-{key}.npz"
    cached = load_npz_cache(cpath)
    if cached is None:
        if source.is_dir():
            names = [p.relative_to(source.parent).as_posix() for p in source.rglob("*") if p.is_file()]
            read_bytes = lambda n: (source.parent / n).read_bytes()  # noqa: E731
            wnids, tr, te = _tiny_entries(names, lambda n: read_bytes(n).decode())
            (xtr, ytr), (xte, yte) = _decode(tr, wnids, read_bytes), _decode(te, wnids, read_bytes)
        else:
            try:
                with zipfile.ZipFile(source) as zf:
                    names = zf.namelist()
                    wnids, tr, te = _tiny_entries(names, lambda n: zf.read(n).decode())
                    (xtr, ytr), (xte, yte) = _decode(tr, wnids, zf.read), _decode(te, wnids, zf.read)
            except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
                raise DataError(f"Tiny-ImageNet archive {source} is corrupt or incomplete: {e}") from None
        save_npz_cache(cpath, xtr=xtr, ytr=ytr, xte=xte, yte=yte, wnids=np.asarray(wnids))
    else:
        xtr, ytr, xte, yte, wnids = (cached[k] for k in ("xtr", "ytr", "xte", "yte", "wnids"))
    k = len(wnids)
    splits = DatasetSplits("tiny_imagenet", "classification", ArrayData(torch.from_numpy(xtr), torch.from_numpy(ytr)),
                           ArrayData(torch.from_numpy(xte), torch.from_numpy(yte)), num_classes=k,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, augment={"pad": 4, "flip": True},
                           meta={"source": str(source)})
    check_labels("tiny_imagenet", splits.train.y, k, "train")
    check_labels("tiny_imagenet", splits.test.y, k, "test")
    return splits
