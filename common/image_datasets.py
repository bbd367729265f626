"""The built-in image datasets: ``digits`` (scikit-learn's bundled 8x8 digits, the ``quick``
default), ``cifar10``, ``cifar100``, ``mnist``, ``imagenet``, ``tiny_imagenet`` and ``random``.

CIFAR-10 has two copies, chosen by ``dataset.copy``, which is part of the run id, so a run id names
the files it trains on:

* ``null`` (the default, what the ``cpu`` scale uses): the offline JPEG-q75 ImageFolder copy,
  ``<root>/cifar10/<name>.zip`` (``train/<class>/*``, ``test/<class>/*``, the file name's digits
  are the official index) or that zip extracted (``<root>/cifar10/{train,test}/<class>/``); it
  cannot be downloaded;
* ``official`` (every ``paper``-scale CIFAR-10 run): the canonical python release only,
  ``<root>/cifar10/cifar-10-batches-py/``, downloaded from the canonical URL when downloads are
  allowed (:func:`load_cifar10_official`). Each loader reads its copy and never the other.

The python batches of CIFAR-10 and CIFAR-100 are pickles (Python 2 cPickle, protocol 2). They are
read by :class:`BatchUnpickler`, which resolves only the globals such files contain (numpy's array
reconstruction, see :data:`BATCH_GLOBALS`), so a crafted batch cannot run code: any other global is
a :class:`DataError` naming the file. Decoded images go to the uint8 npz cache of
:mod:`common.data`; ImageNet and Tiny-ImageNet stay lists of image files read by
:mod:`common.loader`.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .data import (ArrayData, DatasetSplits, Files, cached_arrays, check_labels, data_root, download_allowed,
                   folder_source, missing_error, package_source, register_dataset, root_source, scan_folder)
from .errors import DataError
from .loader import FileData, read_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = {".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


# --------------------------------------------------------------------------- digits
def digits_csv() -> Path:
    """The CSV file ``sklearn.datasets.load_digits`` reads, found without importing scikit-learn (its
    import takes over a second, which every quick-scale run would pay)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not path.is_file():
        raise DataError(f"scikit-learn's bundled digits file is not at {path}: install scikit-learn "
                        "(pyproject.toml pins the version this reader knows)")
    return path


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float64, target (1797,))`` of ``sklearn.datasets.load_digits``, read
    from :func:`digits_csv`."""
    import gzip

    with gzip.open(digits_csv(), "rt") as f:
        flat = np.loadtxt(f, delimiter=",")
    return flat[:, :-1].reshape(-1, 8, 8), flat[:, -1].astype(int)


@register_dataset("digits", image_size=8, split_sizes={"train": 1297, "test": 500})
def load_digits(root=None, download=None) -> DatasetSplits:
    """scikit-learn's bundled 8x8 digits (1797 images): needs no files; the ``quick`` default.
    Fixed stratified split: 1297 train / 500 test (seed 0), pixel values 0-16 scaled to 0-255."""
    images, target = sklearn_digits()
    x = np.round(images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N,1,8,8)
    y = target.astype(np.int64)
    rng = np.random.default_rng(0)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:50] for c in range(10)])
    mask = np.ones(len(y), bool)
    mask[test_idx] = False
    tr, te = np.flatnonzero(mask), np.sort(test_idx)
    return DatasetSplits(
        "digits", "classification",
        ArrayData(torch.from_numpy(x[tr]), torch.from_numpy(y[tr])),
        ArrayData(torch.from_numpy(x[te]), torch.from_numpy(y[te])),
        num_classes=10, mean=(0.3,), std=(0.38,), augment={"pad": 1, "flip": False},
        sources=[package_source("sklearn", digits_csv())],
    )


# --------------------------------------------------------------------------- CIFAR python batches
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's ndarray reconstructor, whatever module holds it


def _latin1_bytes(text, encoding):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocols 0-2 (latin-1 text), nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not how pickle "
                                     "writes bytes")
    return text.encode("latin1")


#: every global a CIFAR python batch may name: an official batch (Python 2 cPickle, numpy 1.x) names
#: the first, third and fourth; numpy >= 2 writes the second; Python 3 at protocol <= 2 writes
#: ``bytes`` as ``_codecs.encode(text, "latin1")``. dicts, lists, ints and strings need no global.
BATCH_GLOBALS: dict[tuple[str, str], Callable] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR python batch; a global outside :data:`BATCH_GLOBALS` (``os.system``,
    ``builtins.eval``, ...) is an ``UnpicklingError`` before anything is called."""

    def find_class(self, module: str, name: str):
        try:
            return BATCH_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch") from None


def read_batch(path: Path, label_key: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x uint8 (N, 3, 32, 32), y int64 (N,))`` of one python batch (``labels`` for CIFAR-10,
    ``fine_labels`` for CIFAR-100), read with :class:`BatchUnpickler` (``encoding="latin1"``, as
    torchvision reads the Python 2 files). Anything else is a :class:`DataError` naming the file."""
    if not path.is_file():
        raise DataError(f"{what} python batches incomplete: {path} is missing")
    try:
        with open(path, "rb") as fh:
            d = BatchUnpickler(fh, encoding="latin1").load()
    except Exception as e:  # a forbidden global, truncated, not a pickle
        raise DataError(f"{what} batch {path} is corrupt or truncated, or not a CIFAR batch "
                        f"({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{what} batch {path} holds a {type(d).__name__}, expected a dict")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    x, labels = d.get("data"), d.get(label_key)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        desc = f"a {x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{what} batch {path}: 'data' is {desc}; expected (N, 3072) uint8")
    if not isinstance(labels, list) or not all(type(v) is int for v in labels) or len(labels) != len(x):
        raise DataError(f"{what} batch {path}: {label_key!r} must be a list of {len(x)} ints, one per image")
    return x.reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


def _read_batches(files: list[Path], label_key: str, what: str, n_train: int) -> dict:
    """The train arrays from ``files[:n_train]``, the test arrays from the rest."""
    parts = [read_batch(f, label_key, what) for f in files]
    tr, te = parts[:n_train], parts[n_train:]
    return {"xtr": np.concatenate([p[0] for p in tr]), "ytr": np.concatenate([p[1] for p in tr]),
            "xte": np.concatenate([p[0] for p in te]), "yte": np.concatenate([p[1] for p in te])}


def _download_release(dataset_cls, base: Path, files: list[Path]) -> None:
    """Fetch and extract the canonical archive of a torchvision CIFAR class (its URL and md5) into
    ``base`` and check every extracted file's md5; torchvision's own reader (``pickle.load``) is
    never called."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    try:
        download_and_extract_archive(dataset_cls.url, str(base), filename=dataset_cls.filename,
                                     md5=dataset_cls.tgz_md5)
    except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"download of {dataset_cls.url} into {base} failed ({e})") from None
    md5 = dict(dataset_cls.train_list + dataset_cls.test_list)
    for f in files:
        if not check_integrity(str(f), md5.get(f.name)):
            raise DataError(f"{f} does not have the md5 of the canonical release after downloading {dataset_cls.url}")


# --------------------------------------------------------------------------- CIFAR ImageFolder copy
def _imagefolder_arrays(names: list[str], read: Callable[[str], bytes], split: str, classes: list[str],
                        source: str = "the ImageFolder source"):
    """Decode ``split/<class>/<file>`` entries (sorted by file name = official order)."""
    from PIL import Image

    found = {p[-2] for p in (n.strip("/").split("/") for n in names if not n.endswith("/"))
             if len(p) >= 3 and p[-3] == split}
    absent = [c for c in classes if c not in found]
    if absent:
        extra = sorted(found - set(classes))
        raise DataError(f"{source}: expected {len(classes)} class folders under '{split}/', found "
                        f"{len(classes) - len(absent)} of them; missing: {', '.join(absent)}"
                        + (f"; unexpected: {', '.join(extra)}" if extra else ""))
    entries = []
    for n in names:
        parts = n.strip("/").split("/")
        if len(parts) >= 3 and parts[-3] == split and parts[-2] in classes and not n.endswith("/"):
            entries.append((parts[-1], classes.index(parts[-2]), n))
    entries.sort()
    if not entries:
        raise DataError(f"no images under '{split}/<class>/' in the ImageFolder source")
    x = np.empty((len(entries), 3, 32, 32), np.uint8)
    y = np.empty(len(entries), np.int64)
    for i, (_, c, n) in enumerate(entries):
        try:
            img = Image.open(BytesIO(read(n))).convert("RGB")
        except Exception as e:
            raise DataError(f"cannot decode image {n!r}: {e}") from None
        if img.size != (32, 32):
            raise DataError(f"image {n!r} has size {img.size}, expected (32, 32)")
        x[i] = np.asarray(img).transpose(2, 0, 1)
        y[i] = c
    return x, y


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_from_zip(path: Path) -> dict:
    try:
        zf = zipfile.ZipFile(path)
        bad = zf.testzip() if path.stat().st_size < 2_000_000 else None
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"CIFAR-10 archive {path} is corrupt or truncated: {e}") from None
    if bad:
        raise DataError(f"CIFAR-10 archive {path} has a corrupt member {bad!r}")
    with zf:
        names = zf.namelist()
        try:
            xtr, ytr = _imagefolder_arrays(names, zf.read, "train", CIFAR10_CLASSES, f"CIFAR-10 archive {path}")
            xte, yte = _imagefolder_arrays(names, zf.read, "test", CIFAR10_CLASSES, f"CIFAR-10 archive {path}")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataError(f"CIFAR-10 archive {path} is corrupt or truncated: {e}") from None
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}


def _cifar_from_dir(folder: Path) -> dict:
    names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    read = lambda n: (folder / n).read_bytes()  # noqa: E731
    xtr, ytr = _imagefolder_arrays(names, read, "train", CIFAR10_CLASSES, f"CIFAR-10 folder {folder}")
    xte, yte = _imagefolder_arrays(names, read, "test", CIFAR10_CLASSES, f"CIFAR-10 folder {folder}")
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}


# --------------------------------------------------------------------------- CIFAR-10
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def load_cifar10_official(root=None, download=None) -> DatasetSplits:
    """CIFAR-10, ``dataset.copy: official``: the canonical python batches
    ``<root>/cifar10/cifar-10-batches-py/`` (as torchvision downloads them), fetched from the canonical
    URL when absent and allowed."""
    root = data_root(root)
    base = root / "cifar10"
    folder = base / "cifar-10-batches-py"
    files = [folder / f for f in CIFAR10_BATCHES]
    if not folder.is_dir():
        if not download_allowed(download):
            raise missing_error("cifar10", [f"{folder}/data_batch_1..5 + test_batch (the official python version)"],
                                f"{CIFAR_PAGE} (cifar-10-python.tar.gz)")
        import torchvision

        _download_release(torchvision.datasets.CIFAR10, base, files)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"CIFAR-10 python batches incomplete: {missing[0]} is missing")
    return _cifar10(folder, [root_source(root, f) for f in files],
                    lambda: _read_batches(files, "labels", "CIFAR-10", n_train=5))


@register_dataset("cifar10", image_size=32, split_sizes={"train": 50000, "test": 10000},
                  required_files=[("cifar10/*.zip", "cifar10/train/")],
                  copies={"official": Files(("cifar10/cifar-10-batches-py/",), downloadable=True,
                                            loader=load_cifar10_official)})
def load_cifar10(root=None, download=None) -> DatasetSplits:
    """CIFAR-10, the default copy: the offline JPEG-q75 ImageFolder copy, one ``<root>/cifar10/*.zip``
    (``train/<class>/*``, ``test/<class>/*``) or its extracted ``train/``, ``test/`` folders; never
    the python batches (:func:`load_cifar10_official`), never downloaded."""
    root = data_root(root)
    base = root / "cifar10"
    zips = sorted(base.glob("*.zip")) if base.is_dir() else []
    if len(zips) > 1:
        raise DataError(f"CIFAR-10: more than one zip in {base} ({', '.join(z.name for z in zips)}): "
                        "keep the one copy to read")
    if zips:
        return _cifar10(zips[0], [root_source(root, zips[0])], lambda: _cifar_from_zip(zips[0]))
    if (base / "train").is_dir() and (base / "test").is_dir():
        sources = [folder_source(f"cifar10/{s}", scan_folder(base / s)) for s in ("train", "test")]
        return _cifar10(base, sources, lambda: _cifar_from_dir(base))
    raise missing_error(
        "cifar10",
        [f"{base}/*.zip (the offline JPEG-q75 copy: train/<class>/*.jpg and test/<class>/*.jpg)",
         f"{base}/train/<class>/ and {base}/test/<class>/ (that zip extracted, ImageFolder)"],
        CIFAR_PAGE,
        hint="This copy is never downloaded. dataset.copy: official reads the canonical python release "
             f"instead, {base / 'cifar-10-batches-py'}/data_batch_1..5 + test_batch from {CIFAR_PAGE} "
             "(fetched when dataset.download: true or MIXREPRO_DOWNLOAD=1); it is another run id.",
    )


def _cifar10(where: Path, sources: list, decode: Callable[[], dict]) -> DatasetSplits:
    arrays = cached_arrays("cifar10", sources, lambda: _nonempty(decode(), where))
    return _cifar_splits("cifar10", arrays, 10, CIFAR10_MEAN, CIFAR10_STD, where, sources)


def _nonempty(arrays: dict, where: Path) -> dict:
    if len(arrays["xtr"]) == 0 or len(arrays["xte"]) == 0:
        raise DataError(f"CIFAR source {where} has an empty split")
    return arrays


def _cifar_splits(name: str, arrays: dict, num_classes: int, mean, std, where: Path, sources: list) -> DatasetSplits:
    """CIFAR-style splits from decoded uint8 arrays, labels checked."""
    splits = DatasetSplits(
        name, "classification",
        ArrayData(torch.from_numpy(arrays["xtr"]), torch.from_numpy(arrays["ytr"])),
        ArrayData(torch.from_numpy(arrays["xte"]), torch.from_numpy(arrays["yte"])),
        num_classes=num_classes, mean=mean, std=std, augment={"pad": 4, "flip": True},
        meta={"source": str(where)}, sources=sources,
    )
    check_labels(name, splits.train.y, num_classes, "train")
    check_labels(name, splits.test.y, num_classes, "test")
    return splits


# --------------------------------------------------------------------------- CIFAR-100
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@register_dataset("cifar100", image_size=32, split_sizes={"train": 50000, "test": 10000},
                  required_files=["cifar100/cifar-100-python/train", "cifar100/cifar-100-python/test"],
                  downloadable=True)
def load_cifar100(root=None, download=None) -> DatasetSplits:
    """CIFAR-100 (fine labels) from the official python batches ``<root>/cifar100/cifar-100-python/
    {train,test}`` (what ``torchvision.datasets.CIFAR100`` downloads), decoded once into the uint8
    cache like ``cifar10``."""
    root_ = data_root(root)
    base = root_ / "cifar100"
    folder = base / "cifar-100-python"
    files = [folder / "train", folder / "test"]
    if not all(f.exists() for f in files):
        if not download_allowed(download):
            raise missing_error("cifar100", [f"{f} (official python version)" for f in files],
                                f"{CIFAR_PAGE} (cifar-100-python.tar.gz)")
        import torchvision

        _download_release(torchvision.datasets.CIFAR100, base, files)
    sources = [root_source(root_, f) for f in files]
    arrays = cached_arrays("cifar100", sources, lambda: _read_batches(files, "fine_labels", "CIFAR-100", n_train=1))
    return _cifar_splits("cifar100", arrays, 100, CIFAR100_MEAN, CIFAR100_STD, folder, sources)


# --------------------------------------------------------------------------- MNIST
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@register_dataset("mnist", image_size=28, split_sizes={"train": 60000, "test": 10000},
                  required_files=[f"mnist/MNIST/raw/{f}" for f in MNIST_FILES], downloadable=True)
def load_mnist(root=None, download=None) -> DatasetSplits:
    """MNIST in torchvision's raw layout: ``<root>/mnist/MNIST/raw/*-ubyte``."""
    import torchvision

    root_ = data_root(root)
    base = root_ / "mnist"
    raw = base / "MNIST" / "raw"
    if not all((raw / f).exists() for f in MNIST_FILES) and not download_allowed(download):
        raise missing_error("mnist", [str(raw / f) for f in MNIST_FILES], "http://yann.lecun.com/exdb/mnist/")
    try:
        tr = torchvision.datasets.MNIST(str(base), train=True, download=download_allowed(download))
        te = torchvision.datasets.MNIST(str(base), train=False, download=False)
    except (RuntimeError, ValueError, AssertionError) as e:
        raise DataError(f"MNIST files under {raw} are unreadable or truncated: {e}") from None
    splits = DatasetSplits(
        "mnist", "classification",
        ArrayData(tr.data[:, None].contiguous(), tr.targets.long()),
        ArrayData(te.data[:, None].contiguous(), te.targets.long()),
        num_classes=10, mean=(0.1307,), std=(0.3081,), augment={"pad": 2, "flip": False},
        sources=[root_source(root_, raw / f) for f in MNIST_FILES],
    )
    check_labels("mnist", splits.train.y, 10, "train")
    return splits


# --------------------------------------------------------------------------- random (for paper-scale smoke tests)
@register_dataset("random", split_sizes=lambda o: {"train": o.get("n_train", 64), "test": o.get("n_test", 32)})
def load_random(root=None, download=None, num_classes: int = 10, image_size: int = 32, channels: int = 3,
                n_train: int = 64, n_test: int = 32) -> DatasetSplits:
    """Random uint8 images: lets a paper-scale config build its model and run a few steps anywhere."""
    g = torch.Generator().manual_seed(0)
    mk = lambda n: ArrayData(  # noqa: E731
        torch.randint(0, 256, (n, channels, image_size, image_size), dtype=torch.uint8, generator=g),
        torch.randint(0, num_classes, (n,), generator=g),
    )
    return DatasetSplits("random", "classification", mk(n_train), mk(n_test), num_classes=num_classes,
                         mean=(0.5,) * channels, std=(0.25,) * channels, augment={"pad": 0, "flip": True})


# --------------------------------------------------------------------------- ImageNet
IMAGENET_SORT_HINT = (
    "The ILSVRC2012 validation tar extracts flat (50000 images in one folder): to sort it into class "
    "folders put ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz in "
    "<root>/imagenet/ and run python -c \"import torchvision as tv; [tv.datasets.ImageNet('<root>/imagenet', "
    "split=s) for s in ('train', 'val')]\" (it extracts both and moves each val image into its wnid folder "
    "using the devkit's labels).")


def imagenet_layout(root: Path) -> list[str]:
    """Plan-time check of ``<root>/imagenet/{train,val}/``, looking at their top level only (a few
    thousand entries, never the 1.3M files): both hold class folders and no image or tar files, and
    val/ has the same classes as train/."""
    problems, classes = [], {}
    for split in ("train", "val"):
        folder = root / "imagenet" / split
        with os.scandir(folder) as it:
            entries = list(it)
        loose = [e.name for e in entries if e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTS | {".tar"}]
        classes[split] = {e.name for e in entries if e.is_dir()}
        if loose:
            problems.append(f"{folder}/ holds {len(loose)} image or tar files directly (e.g. {min(loose)}), "
                            f"not class folders <wnid>/. {IMAGENET_SORT_HINT}")
    if not problems and classes["train"] != classes["val"]:
        diff = sorted(classes["train"] ^ classes["val"])
        problems.append(f"{root / 'imagenet'}: train/ and val/ have different class folders "
                        f"({len(diff)} in one only, e.g. {diff[0]}). {IMAGENET_SORT_HINT}")
    return problems


def image_folder(split_dir: Path, classes: list[str] | None = None, what: str = "ImageNet"):
    """``split_dir/<class>/<file>``: (relative names sorted by class then file, labels, classes,
    ``(name, size)`` listing); labels are the class index in the sorted class list (``ImageFolder``
    convention)."""
    if classes is None:
        classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    names, labels, listing = [], [], []
    for c, cname in enumerate(classes):
        d = split_dir / cname
        if not d.is_dir():
            raise DataError(f"{what}: class folder {d} is missing (train and val must have the same classes)")
        with os.scandir(d) as it:
            files = sorted((e.name, e.stat().st_size) for e in it if Path(e.name).suffix.lower() in IMAGE_EXTS)
        for fname, size in files:
            names.append(f"{split_dir.name}/{cname}/{fname}")
            labels.append(c)
            listing.append((f"{cname}/{fname}", size))
    if not names:
        raise DataError(f"{what}: no images under {split_dir}/<class>/")
    return names, torch.tensor(labels, dtype=torch.long), classes, listing


@register_dataset("imagenet", split_sizes={"train": 1281167, "test": 50000},
                  required_files=["imagenet/train/", "imagenet/val/"], check=imagenet_layout)
def load_imagenet(root=None, download=None, image_size: int = 224, resize: int = 256) -> DatasetSplits:
    """ImageNet-1k (ILSVRC-2012) in ImageFolder layout ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``
    (the validation set is the test split, as in the papers). Never downloaded: the licence
    requires a manual download. ``image_size``/``resize``: the evaluation geometry of the
    ``dataset.transform: null`` path (Resize-``resize`` -> CenterCrop-``image_size``)."""
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
    ntr, ytr, classes, ltr = image_folder(tr_dir)
    nva, yva, _, lva = image_folder(va_dir, classes)
    k = len(classes)
    return DatasetSplits(
        "imagenet", "classification",
        FileData(base, ntr, ytr, image_size, resize), FileData(base, nva, yva, image_size, resize),
        num_classes=k, mean=IMAGENET_MEAN, std=IMAGENET_STD, augment={"pad": 0, "flip": True},
        meta={"source": str(base), "classes": k},
        sources=[folder_source("imagenet/train", ltr), folder_source("imagenet/val", lva)],
    )


# --------------------------------------------------------------------------- Tiny-ImageNet
def _tiny_entries(names: list[str], read_text):
    """(wnids, train [(member, wnid)], test [(member, wnid)]) from the archive's member names."""
    prefix = next((n[: -len("wnids.txt")] for n in names if n.endswith("wnids.txt")), None)
    if prefix is None:
        raise DataError("Tiny-ImageNet: wnids.txt not found")
    wnids = sorted(w.strip() for w in read_text(prefix + "wnids.txt").splitlines() if w.strip())
    wset = set(wnids)
    train = []
    for n in names:
        rel = n[len(prefix):] if n.startswith(prefix) else None
        if rel and rel.startswith("train/") and rel.lower().endswith(".jpeg"):
            parts = rel.split("/")  # train/<wnid>/images/<file>
            if len(parts) == 4 and parts[1] in wset:
                train.append((n, parts[1]))
    try:
        ann = read_text(prefix + "val/val_annotations.txt")
    except (OSError, KeyError):
        raise DataError(f"Tiny-ImageNet: {prefix}val/val_annotations.txt is missing") from None
    test = []
    for line in ann.splitlines():
        f = line.split("\t")
        if len(f) >= 2 and f[1] in wset:
            test.append((prefix + "val/images/" + f[0], f[1]))
    train.sort()
    test.sort()
    if not train or not test:
        raise DataError("Tiny-ImageNet: no training or validation images found")
    return wnids, train, test


@register_dataset("tiny_imagenet", image_size=64, split_sizes={"train": 100000, "test": 10000},
                  required_files=[("tiny_imagenet/tiny-imagenet-200/", "tiny_imagenet/tiny-imagenet-200.zip")],
                  downloadable=True)
def load_tiny_imagenet(root=None, download=None) -> DatasetSplits:
    """Tiny-ImageNet-200 from ``<root>/tiny_imagenet/tiny-imagenet-200/`` (``wnids.txt``,
    ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` + ``val/val_annotations.txt``) or the
    official ``tiny-imagenet-200.zip`` next to it (downloaded only when ``dataset.download`` or
    ``MIXREPRO_DOWNLOAD=1`` allows it). 100000 train images (a validation split is carved from
    them by ``dataset.val_size``); the official 10000 ``val`` images are the test split. Classes
    are the sorted wnids (ImageFolder order); images are 64x64."""
    root_ = data_root(root)
    base = root_ / "tiny_imagenet"
    folder, archive = base / "tiny-imagenet-200", base / "tiny-imagenet-200.zip"
    if folder.is_dir():
        source = base
        listing = scan_folder(folder)
        names = [f"tiny-imagenet-200/{n}" for n, _ in listing]
        sources = [folder_source("tiny_imagenet/tiny-imagenet-200", listing)]
    else:
        if not archive.exists():
            if not download_allowed(download):
                raise missing_error("tiny_imagenet", [f"{folder}/ (wnids.txt, train/, val/)", str(archive)], TINY_URL)
            from torchvision.datasets.utils import download_url

            download_url(TINY_URL, str(base), "tiny-imagenet-200.zip")
        source = archive
        try:
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"Tiny-ImageNet archive {archive} is corrupt or incomplete: {e}") from None
        sources = [root_source(root_, archive)]
    try:
        wnids, tr, te = _tiny_entries(names, lambda n: read_bytes(source, n).decode())
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"Tiny-ImageNet source {source} is corrupt or incomplete: {e}") from None
    idx = {w: i for i, w in enumerate(wnids)}
    mk = lambda entries: FileData(source, [n for n, _ in entries],  # noqa: E731
                                  torch.tensor([idx[w] for _, w in entries], dtype=torch.long), 64, None)
    return DatasetSplits("tiny_imagenet", "classification", mk(tr), mk(te), num_classes=len(wnids),
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, augment={"pad": 4, "flip": True},
                         meta={"source": str(source)}, sources=sources)
