"""Data layer: dataset registry, uint8 in-memory caches, batched tensor augmentation, loaders.

Images are decoded once into a uint8 cache (``<cache>/<name>.npz``, written atomically) and kept
in memory; a loader slices whole batches from that tensor and augments them on the training
device with tensor ops (pad-and-crop, flip, normalise) instead of per-sample PIL work.
Tabular and time-series splits are float32 arrays and skip augmentation.

Data root: ``dataset.root`` in the run config, else ``$MIXREPRO_DATA``, else ``./data``.
Downloads happen only when a file is missing and ``dataset.download`` (or
``$MIXREPRO_DOWNLOAD=1``) allows it; otherwise the error names the exact files expected.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .batch import Batch
from .errors import ConfigError, DataError  # noqa: F401  (DataError re-exported)
from .fileio import atomic_write_bytes
from .registry import Registry

DATASETS: Registry = Registry("dataset")


# --------------------------------------------------------------------------- containers
@dataclass
class ArrayData:
    """One split held in memory: ``x`` uint8 (N,C,H,W) images or float32 (N, ...) features;
    ``domain`` (optional, (N,) int) names each sample's domain for per-domain test metrics."""

    x: torch.Tensor
    y: torch.Tensor
    domain: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> "ArrayData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ArrayData(self.x[idx], self.y[idx], None if self.domain is None else self.domain[idx])


@dataclass
class DatasetSplits:
    name: str
    task: str  # classification | regression
    train: ArrayData
    test: ArrayData
    val: ArrayData | None = None
    num_classes: int = 0  # classification: number of classes; regression: label dimension
    mean: tuple | None = None  # per-channel normalisation for images (0-1 scale)
    std: tuple | None = None
    augment: dict = field(default_factory=dict)  # default train augmentation for images
    meta: dict = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        return self.train.x.dtype == torch.uint8 and self.train.x.dim() == 4

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.x.shape[1:])


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before loading it (declared by :func:`register_dataset`)."""

    name: str
    task: str = "classification"  # or "regression"
    has_val: bool = False  # ships its own validation split (dataset.val_size is not needed)
    image_size: int | None = None  # static image side (e.g. to check a ViT patch size before any job)
    #: files needed under the data root; an entry is a path or a tuple of alternatives (any one
    #: suffices); a trailing "/" means a directory, "*" globs
    required_files: tuple = ()
    #: {"train": n, "test": n} before dataset.val_size/train_size are carved, or a function of
    #: dataset.options giving it; None when only loading tells
    split_sizes: dict | Callable[[dict], dict] | None = None


DATASET_INFO: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, task: str = "classification", has_val: bool = False, image_size: int | None = None,
                     required_files=None, split_sizes=None):
    """Decorator registering a loader ``f(root=None, download=None, **options) -> DatasetSplits``
    under ``name``, with what is known about the dataset before loading (:class:`DatasetInfo`)."""
    if task not in ("classification", "regression"):
        raise ValueError(f"register_dataset({name!r}): task must be 'classification' or 'regression', got {task!r}")
    info = DatasetInfo(name, task, has_val, image_size, tuple(required_files or ()), split_sizes)

    def deco(fn):
        DATASETS.register(name)(fn)
        DATASET_INFO[name] = info
        return fn

    return deco


def dataset_info(name: str) -> DatasetInfo:
    """The registered :class:`DatasetInfo` (an unknown name raises RegistryError listing the known ones)."""
    DATASETS.get(name)
    return DATASET_INFO[name]


def missing_files(dataset_cfg: dict) -> list[str]:
    """The files ``dataset_cfg`` (a run config's ``dataset`` block) needs under its data root that
    are absent, as paths ("a or b" where either would do); [] when nothing is missing or the
    dataset needs no files. Downloads are not considered: a caller that allows them may ignore this."""
    info = dataset_info(dataset_cfg["name"])
    root = data_root(dataset_cfg.get("root"))
    missing = []
    for entry in info.required_files:
        alternatives = (entry,) if isinstance(entry, str) else tuple(entry)
        if not any(_present(root, a) for a in alternatives):
            missing.append(" or ".join(str(root / a) + ("/" if a.endswith("/") else "") for a in alternatives))
    return missing


def _present(root: Path, pattern: str) -> bool:
    want_dir = pattern.endswith("/")
    paths = list(root.glob(pattern.rstrip("/"))) if "*" in pattern else [root / pattern.rstrip("/")]
    return any(p.is_dir() if want_dir else p.is_file() for p in paths)


# --------------------------------------------------------------------------- paths
def data_root(cfg_root: str | None = None) -> Path:
    return Path(cfg_root or os.environ.get("MIXREPRO_DATA") or "data").expanduser()


def cache_dir(root: Path) -> Path:
    env = os.environ.get("MIXREPRO_CACHE")
    if env:
        return Path(env)
    # the data root may be read-only (e.g. a shared copy of the datasets): fall back to ./data/cache. os.access
    # alone says "writable" to root even for a r-x directory, so the mode bits are checked too.
    try:
        writable = os.access(root, os.W_OK) and bool(root.stat().st_mode & 0o222)
    except OSError:
        writable = False
    return root / "cache" if writable else Path("data") / "cache"


def download_allowed(flag: bool | None) -> bool:
    return bool(flag) or os.environ.get("MIXREPRO_DOWNLOAD", "") == "1"


def missing_error(name: str, expected: list[str], source: str) -> DataError:
    lines = "\n  ".join(expected)
    return DataError(
        f"dataset {name!r} not found. Expected one of:\n  {lines}\n"
        f"Get it from {source}, or set dataset.download: true (or MIXREPRO_DOWNLOAD=1) to fetch it, "
        f"or point dataset.root / $MIXREPRO_DATA at a folder that has it."
    )


def load_npz_cache(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # corrupt cache: rebuild it
        path.unlink(missing_ok=True)
        return None


def save_npz_cache(path: Path, **arrays) -> None:
    import io as _io

    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_labels(name: str, y: torch.Tensor, num_classes: int, split: str) -> None:
    if y.numel() == 0:
        raise DataError(f"dataset {name!r}: {split} split is empty")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"dataset {name!r}: {split} labels span [{lo}, {hi}], expected [0, {num_classes - 1}]")


# --------------------------------------------------------------------------- digits
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float64, target (1797,))`` of ``sklearn.datasets.load_digits``, read from the
    CSV file scikit-learn bundles without importing scikit-learn (its import takes over a second, which
    every quick-scale run would pay); through ``load_digits`` if the file is not where it used to be."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sk_digits

        d = sk_digits()
        return d.images, d.target
    with gzip.open(path, "rt") as f:
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
    )



# --------------------------------------------------------------------------- CIFAR-10
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _cifar_from_pickles(folder: Path):
    import pickle

    def read(files):
        xs, ys = [], []
        for f in files:
            p = folder / f
            if not p.exists():
                raise DataError(f"CIFAR-10 python batches incomplete: {p} is missing")
            try:
                with open(p, "rb") as fh:
                    d = pickle.load(fh, encoding="latin1")
                x, y = np.asarray(d["data"], np.uint8), np.asarray(d["labels"], np.int64)
            except Exception as e:  # truncated / not a CIFAR batch
                raise DataError(f"CIFAR-10 batch {p} is corrupt or truncated ({type(e).__name__}: {e})") from None
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
                raise DataError(f"CIFAR-10 batch {p}: data has shape {x.shape} and labels {y.shape}; "
                                f"expected (N, 3072) and (N,)")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = read([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = read(["test_batch"])
    return xtr, ytr, xte, yte


def _imagefolder_arrays(names: list[str], read: Callable[[str], bytes], split: str, classes: list[str],
                        source: str = "the ImageFolder source"):
    """Decode ``split/<class>/<file>`` entries (sorted by file name = official order)."""
    from io import BytesIO

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


def _cifar_from_zip(path: Path):
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
    return xtr, ytr, xte, yte


def _cifar_from_dir(folder: Path):
    names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    read = lambda n: (folder / n).read_bytes()  # noqa: E731
    xtr, ytr = _imagefolder_arrays(names, read, "train", CIFAR10_CLASSES, f"CIFAR-10 folder {folder}")
    xte, yte = _imagefolder_arrays(names, read, "test", CIFAR10_CLASSES, f"CIFAR-10 folder {folder}")
    return xtr, ytr, xte, yte


@register_dataset("cifar10", image_size=32, split_sizes={"train": 50000, "test": 10000},
                  required_files=[("cifar10/cifar-10-batches-py/", "cifar10/*.zip", "cifar10/train/")])
def load_cifar10(root=None, download=None) -> DatasetSplits:
    """CIFAR-10 from ``<root>/cifar10/``: the official python batches
    (``cifar-10-batches-py/``, as torchvision downloads them), an ImageFolder directory
    (``train/<class>/*``, ``test/<class>/*``) or a ``.zip`` of one (the offline JPEG copy)."""
    base = data_root(root) / "cifar10"
    pickles = base / "cifar-10-batches-py"
    zips = sorted(base.glob("*.zip")) if base.exists() else []
    folder = base if (base / "train").is_dir() and (base / "test").is_dir() else None
    if pickles.exists():
        source = pickles
    elif zips:
        source = zips[0]
    elif folder is not None:
        source = folder
    elif download_allowed(download):
        import torchvision

        torchvision.datasets.CIFAR10(str(base), train=True, download=True)
        source = pickles
    else:
        raise missing_error(
            "cifar10",
            [f"{pickles}/data_batch_1..5 + test_batch (official python version)",
             f"{base}/*.zip with train/<class>/*.jpg and test/<class>/*.jpg",
             f"{base}/train/<class>/ and {base}/test/<class>/ (ImageFolder)"],
            "https://www.cs.toronto.edu/~kriz/cifar.html",
        )
    key = hashlib.sha256(f"{source.resolve()}:{source.stat().st_size}:{source.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    cpath = cache_dir(data_root(root)) / f"cifar10-{key}.npz"
    cached = load_npz_cache(cpath)
    if cached is None:
        if source == pickles:
            arrays = _cifar_from_pickles(pickles)
        elif source.suffix == ".zip":
            arrays = _cifar_from_zip(source)
        else:
            arrays = _cifar_from_dir(source)
        xtr, ytr, xte, yte = arrays
        if len(xtr) == 0 or len(xte) == 0:
            raise DataError(f"CIFAR-10 source {source} has an empty split")
        save_npz_cache(cpath, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    else:
        xtr, ytr, xte, yte = (cached[k] for k in ("xtr", "ytr", "xte", "yte"))
    return _cifar_splits("cifar10", (xtr, ytr, xte, yte), 10, CIFAR10_MEAN, CIFAR10_STD, source)


def _cifar_splits(name: str, arrays, num_classes: int, mean, std, source) -> DatasetSplits:
    """CIFAR-style splits from decoded uint8 arrays ``(xtr, ytr, xte, yte)``, labels checked."""
    xtr, ytr, xte, yte = arrays
    splits = DatasetSplits(
        name, "classification",
        ArrayData(torch.from_numpy(xtr), torch.from_numpy(ytr)),
        ArrayData(torch.from_numpy(xte), torch.from_numpy(yte)),
        num_classes=num_classes, mean=mean, std=std, augment={"pad": 4, "flip": True},
        meta={"source": str(source)},
    )
    check_labels(name, splits.train.y, num_classes, "train")
    check_labels(name, splits.test.y, num_classes, "test")
    return splits



# --------------------------------------------------------------------------- CIFAR-100
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def _read_cifar100_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pickle

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
    """CIFAR-100 (fine labels) from the official python batches ``<root>/cifar100/cifar-100-python/
    {train,test}`` (what ``torchvision.datasets.CIFAR100`` downloads), decoded once into the uint8
    cache like ``cifar10``."""
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
    return _cifar_splits("cifar100", (xtr, ytr, xte, yte), 100, CIFAR100_MEAN, CIFAR100_STD, folder)




# --------------------------------------------------------------------------- MNIST
@register_dataset("mnist", image_size=28, split_sizes={"train": 60000, "test": 10000},
                  required_files=[f"mnist/MNIST/raw/{f}-ubyte" for f in ("train-images-idx3", "train-labels-idx1",
                                                                        "t10k-images-idx3", "t10k-labels-idx1")])
def load_mnist(root=None, download=None) -> DatasetSplits:
    """MNIST in torchvision's raw layout: ``<root>/mnist/MNIST/raw/*-ubyte``."""
    import torchvision

    base = data_root(root) / "mnist"
    raw = base / "MNIST" / "raw"
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all((raw / f).exists() for f in files) and not download_allowed(download):
        raise missing_error("mnist", [str(raw / f) for f in files], "http://yann.lecun.com/exdb/mnist/")
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


# --------------------------------------------------------------------------- preparation
def prepare_splits(spec: dict, train_cfg: dict | None = None) -> DatasetSplits:
    """Load ``spec['name']`` and carve ``train_size`` / ``val_size`` from the training split
    (class-balanced for classification, fixed by ``split_seed`` so every method sees the same
    images). File-based splits take ``dataset.transform.input_size`` as their image size. With the
    run's ``train`` block, a ``drop_last`` batch larger than the training split (0 steps per epoch)
    is rejected."""
    spec = dict(spec)
    transform = spec.get("transform") or {}
    name = spec.pop("name")
    train_size = spec.pop("train_size", None)
    val_size = spec.pop("val_size", 0) or 0
    split_seed = spec.pop("split_seed", 0)
    test_size = spec.pop("test_size", None)
    options = spec.pop("options", None) or {}
    try:
        splits: DatasetSplits = DATASETS.get(name)(root=spec.get("root"), download=spec.get("download"), **options)
    except TypeError as e:
        raise ConfigError(f"dataset {name!r}: bad dataset.options: {e}") from None
    if getattr(splits.train, "file_based", False) and transform.get("input_size"):
        for part in (splits.train, splits.test, splits.val):
            if part is not None:
                part.size = int(transform["input_size"])
    n = len(splits.train)
    g = np.random.default_rng(split_seed)
    if splits.val is None and val_size:
        if val_size >= n:
            raise ConfigError(f"dataset.val_size={val_size} must be smaller than the training split ({n})")
        perm = _balanced_order(splits, g)
        splits.val = splits.train.subset(np.sort(perm[:val_size]))
        splits.train = splits.train.subset(np.sort(perm[val_size:]))
    if train_size:
        if train_size > len(splits.train):
            raise ConfigError(f"dataset.train_size={train_size} exceeds the {len(splits.train)} training samples of {name!r}")
        perm = _balanced_order(splits, g)
        splits.train = splits.train.subset(np.sort(perm[:train_size]))
    # split sizes only loading tells (validate_run_config checks those known from the config):
    # test_size, and with the run's ``train`` block a drop_last batch larger than the training split
    if test_size and test_size > len(splits.test):
        raise ConfigError(f"dataset.test_size={test_size} exceeds the {len(splits.test)} test samples of {name!r}")
    if test_size:
        splits.test = splits.test.subset(np.arange(test_size))
    if train_cfg and train_cfg.get("drop_last") and train_cfg["batch_size"] > len(splits.train):
        raise ConfigError(f"train.batch_size={train_cfg['batch_size']} exceeds the {len(splits.train)} training samples "
                          f"of {name!r} and train.drop_last is true: an epoch would have 0 steps")
    return splits


def _balanced_order(splits: DatasetSplits, g: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix is as class-balanced as possible (round-robin over classes)."""
    y = splits.train.y.numpy()
    if splits.task != "classification":
        return g.permutation(len(y))
    per_class = [g.permutation(np.flatnonzero(y == c)) for c in range(splits.num_classes)]
    order, k = [], 0
    while any(k < len(p) for p in per_class):
        order.extend(int(p[k]) for p in per_class if k < len(p))
        k += 1
    return np.asarray(order, dtype=np.int64)


# --------------------------------------------------------------------------- augmentation + loading
class BatchTransform:
    """uint8 (N,C,H,W) -> normalised float on ``device``: optional random pad-and-crop and
    horizontal flip, done batch-wise with tensor indexing (no per-sample Python)."""

    def __init__(self, mean, std, pad: int = 0, flip: bool = False, device="cpu", channels_last: bool = False):
        self.pad, self.flip, self.device = int(pad), bool(flip), torch.device(device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255.0)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None, train: bool) -> torch.Tensor:
        n, _, h, w = x.shape
        if train and self.pad > 0:
            p = self.pad
            xp = F.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            rows = (oy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
            cols = (ox.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
            x = xp[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
        if train and self.flip:
            f = torch.rand(n, generator=generator) < 0.5
            if f.any():
                x = x.clone()
                x[f] = x[f].flip(-1)
        x = x.to(self.device, non_blocking=True).float()
        x = (x - self.mean) * self.inv_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class Loader:
    """Iterates a split in batches. ``epoch(e)`` draws its order and augmentation from a
    generator seeded by ``(seed, e)``, so epoch ``e`` is identical whether or not the run was
    resumed."""

    def __init__(self, data: ArrayData, batch_size: int, transform=None, shuffle=False, drop_last=False,
                 seed: int = 0, device="cpu", train: bool = False):
        self.data, self.batch_size = data, int(batch_size)
        self.transform, self.shuffle, self.drop_last = transform, shuffle, drop_last
        self.seed, self.device, self.train = seed, torch.device(device), train

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def prepare(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        if self.transform is not None:
            return self.transform(x, generator, self.train)
        return x.to(self.device, non_blocking=True)

    def epoch(self, e: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(_mix_seed(self.seed, e, 0xDA7A))
        n = len(self.data)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        nb = len(self)
        for b in range(nb):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.prepare(self.data.x[idx], g)  # augment the global batch: same draws at any world size
            if world > 1:  # DDP: each rank takes an interleaved shard of the same global batch
                idx, x = idx[rank::world], x[rank::world]
            yield Batch(x, self.data.y[idx].to(self.device, non_blocking=True), idx)


def _mix_seed(*parts: int) -> int:
    h = hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def epoch_generator(seed: int, epoch: int, salt: int) -> torch.Generator:
    """A CPU generator determined by ``(seed, epoch, salt)``."""
    return torch.Generator().manual_seed(_mix_seed(seed, epoch, salt))

from . import loader  # noqa: E402,F401  (registers the file-based datasets)
