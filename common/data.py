"""Data layer core: the dataset registry, split containers, the data root and the project cache, the
files a run reads, the plan-time file check, split carving and the in-memory loader.

Datasets register themselves with :func:`register_dataset`: the built-in ones in
:mod:`common.image_datasets` (digits, CIFAR, MNIST, ImageNet, Tiny-ImageNet, random), the regression
sets in ``papers/c_mixup/data.py``. ``DATASETS`` imports them at its first lookup (see
:mod:`common.registry`), so this module imports none of them.

Images are decoded once into a uint8 cache (``<cache>/<name>-<key>.npz``, written atomically, read
with ``allow_pickle=False``) and kept in memory; a loader slices whole batches from that tensor and
augments them on the training device with tensor ops (pad-and-crop, flip, normalise) instead of
per-sample PIL work. Tabular and time-series splits are float32 arrays and skip augmentation.

Data root: ``dataset.root`` in the run config, else ``$MIXREPRO_DATA``, else ``./data``. It is only
read: a download (only when a file is missing and ``dataset.download`` or ``$MIXREPRO_DOWNLOAD=1``
allows it) adds the canonical file; otherwise the error names the exact files expected.
Cache: ``$MIXREPRO_CACHE``, else the project's own ``data/cache`` in this checkout
(``<repo>/data/cache``, gitignored), never the data root, so a shared dataset folder is never written.

``DatasetSplits.sources`` lists the files a loader read (also when the arrays come from the cache):
per file its name relative to the data root (``<package>/<path>`` for a file shipped with an
installed package), size and sha256; per folder read file by file (ImageNet's 1.3M images) its file
count, total size and the sha256 of its sorted ``name<TAB>size`` listing (``listing_sha256``), not
every file's digest. A file's sha256 is computed once and kept under ``<cache>/sha256/``, keyed by
(path, size, mtime_ns).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .batch import Batch
from .errors import ConfigError, DataError
from .fileio import atomic_write_bytes
from .registry import Registry

DATASETS: Registry = Registry("dataset", modules=("common.image_datasets",))
PROJECT_CACHE = Path(__file__).resolve().parents[1] / "data" / "cache"


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
    #: the files read (:func:`file_source`, :func:`folder_source`); [] for generated data
    sources: list = field(default_factory=list)

    @property
    def is_image(self) -> bool:
        return self.train.x.dtype == torch.uint8 and self.train.x.dim() == 4

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train.x.shape[1:])


@dataclass(frozen=True)
class Files:
    """The files one copy of a dataset needs under the data root, for the plan-time check."""

    #: an entry is a path or a tuple of alternatives in the order the loader tries them; a trailing
    #: "/" means a directory, "*" globs (exactly one match)
    required: tuple = ()
    downloadable: bool = False  # fetched from the canonical URL when missing and downloads are allowed
    #: further problems of present files, cheap to find (``check(root) -> [message naming the path]``)
    check: Callable[[Path], list] | None = None
    #: the loader of a copy other than the default (the default copy's is the registered function);
    #: it takes the same ``dataset.options``
    loader: Callable[..., "DatasetSplits"] | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before loading it (declared by :func:`register_dataset`)."""

    name: str
    task: str = "classification"  # or "regression"
    has_val: bool = False  # ships its own validation split (dataset.val_size is not needed)
    image_size: int | None = None  # static image side (e.g. to check a ViT patch size before any job)
    files: Files = Files()  # the default copy (dataset.copy: null)
    #: {"train": n, "test": n} before dataset.val_size/train_size are carved, or a function of
    #: dataset.options giving it; None when only loading tells
    split_sizes: dict | Callable[[dict], dict] | None = None
    copies: dict = field(default_factory=dict)  # other copies by dataset.copy value: {name: Files with a loader}

    def files_of(self, copy: str | None) -> Files:
        """The :class:`Files` of ``dataset.copy`` (None: the default copy); an unknown copy is a ConfigError."""
        if copy is None:
            return self.files
        if copy not in self.copies:
            choices = ", ".join(repr(c) for c in self.copies) or "none"
            raise ConfigError(f"key 'dataset.copy'={copy!r}: dataset {self.name!r} has no such copy "
                              f"(null = its default copy; others: {choices})")
        return self.copies[copy]


DATASET_INFO: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, task: str = "classification", has_val: bool = False, image_size: int | None = None,
                     required_files=None, downloadable: bool = False, check=None, split_sizes=None, copies=None):
    """Decorator registering a loader ``f(root=None, download=None, **options) -> DatasetSplits``
    under ``name``, with what is known about the dataset before loading (:class:`DatasetInfo`):
    ``required_files``, ``downloadable`` and ``check`` describe its default copy; ``copies``
    (``{name: Files(..., loader=g)}``) the others, chosen by ``dataset.copy``, each read by its own loader."""
    if task not in ("classification", "regression"):
        raise ValueError(f"register_dataset({name!r}): task must be 'classification' or 'regression', got {task!r}")
    info = DatasetInfo(name, task, has_val, image_size, Files(tuple(required_files or ()), downloadable, check),
                       split_sizes, dict(copies or {}))

    def deco(fn):
        DATASETS.register(name)(fn)
        DATASET_INFO[name] = info
        return fn

    return deco


def dataset_info(name: str) -> DatasetInfo:
    """The registered :class:`DatasetInfo` (an unknown name raises RegistryError listing the known ones)."""
    DATASETS.get(name)
    return DATASET_INFO[name]


# --------------------------------------------------------------------------- plan-time check
def missing_files(dataset_cfg: dict) -> list[str]:
    """What keeps ``dataset_cfg`` (a run config's ``dataset`` block) from loading, found without
    reading the data: absent files (as paths, "a or b" where either would do; not reported when the
    copy may be downloaded: ``dataset.download`` or ``MIXREPRO_DOWNLOAD=1``), archives that are not
    valid zips (``zipfile.is_zipfile`` reads only the end of the file), a glob matching several
    files, a data root that is a file, and the dataset's own layout check (ImageNet's class
    folders). Each message names the path; [] when nothing is wrong or no files are needed."""
    files = dataset_info(dataset_cfg["name"]).files_of(dataset_cfg.get("copy"))
    try:
        root = data_root(dataset_cfg.get("root"))
    except DataError as e:
        return [str(e)]
    may_download = files.downloadable and download_allowed(dataset_cfg.get("download"))
    problems = []
    for entry in files.required:
        alternatives = (entry,) if isinstance(entry, str) else tuple(entry)
        found = next((m for m in (_matches(root, a) for a in alternatives) if m), [])
        if not found and not may_download:
            problems.append(" or ".join(str(root / a) + ("/" if a.endswith("/") else "") for a in alternatives))
        problems += _found_problems(found)
    if not problems and files.check is not None:
        problems += files.check(root)
    return problems


def _matches(root: Path, pattern: str) -> list[Path]:
    want_dir = pattern.endswith("/")
    paths = sorted(root.glob(pattern.rstrip("/"))) if "*" in pattern else [root / pattern.rstrip("/")]
    return [p for p in paths if (p.is_dir() if want_dir else p.is_file())]


def _found_problems(found: list[Path]) -> list[str]:
    if len(found) > 1:
        return [f"{' and '.join(map(str, found))}: more than one match, keep the one copy to read"]
    return [f"{p}: not a valid zip archive (truncated or corrupt)"
            for p in found if p.suffix == ".zip" and not zipfile.is_zipfile(p)]


# --------------------------------------------------------------------------- paths
def data_root(cfg_root: str | None = None) -> Path:
    """``dataset.root``, else ``$MIXREPRO_DATA``, else ``./data``; a file there is a DataError."""
    root = Path(cfg_root or os.environ.get("MIXREPRO_DATA") or "data").expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"data root {root} is a file, not a directory: point dataset.root or $MIXREPRO_DATA "
                        f"at the folder that holds the datasets")
    return root


def cache_dir() -> Path:
    """``$MIXREPRO_CACHE``, else :data:`PROJECT_CACHE` (``<repo>/data/cache``); never a data root."""
    env = os.environ.get("MIXREPRO_CACHE")
    return Path(env).expanduser() if env else PROJECT_CACHE


def download_allowed(flag: bool | None) -> bool:
    return bool(flag) or os.environ.get("MIXREPRO_DOWNLOAD", "") == "1"


def missing_error(name: str, expected: list[str], source: str, hint: str | None = None) -> DataError:
    lines = "\n  ".join(expected)
    return DataError(
        f"dataset {name!r} not found. Expected one of:\n  {lines}\n"
        + (hint or f"Get it from {source}, or set dataset.download: true (or MIXREPRO_DOWNLOAD=1) to fetch it, "
                   f"or point dataset.root / $MIXREPRO_DATA at a folder that has it.")
    )


# --------------------------------------------------------------------------- caches
def load_npz_cache(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # corrupt cache: rebuild it
        path.unlink(missing_ok=True)
        return None


def save_npz_cache(path: Path, **arrays) -> None:
    import io as _io

    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def cached_arrays(prefix: str, sources: list, decode: Callable[[], dict]) -> dict:
    """The arrays ``decode()`` builds from ``sources``, through the npz cache
    ``<cache>/<prefix>-<key>.npz`` keyed by the sources' digests (a changed file is a new key)."""
    key = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{prefix}-{key}.npz"
    arrays = load_npz_cache(path)
    if arrays is None:
        arrays = decode()
        save_npz_cache(path, **arrays)
    return arrays


# --------------------------------------------------------------------------- sources
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_sha256(path: Path) -> str:
    """``file_sha256(path)``, computed once per (path, size, mtime_ns) and kept under ``<cache>/sha256/``."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
    entry = cache_dir() / "sha256" / hashlib.sha256(stamp.encode()).hexdigest()[:32]
    try:
        digest = entry.read_text().strip()
    except OSError:
        digest = ""
    if re.fullmatch(r"[0-9a-f]{64}", digest):
        return digest
    digest = file_sha256(path)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):  # not changed while hashed
        atomic_write_bytes(entry, digest.encode(), "sha256 cache entry")
    return digest


def file_source(path: Path, name: str) -> dict:
    """``{"name", "size", "sha256"}`` of one file read under the name ``name``."""
    return {"name": name, "size": Path(path).stat().st_size, "sha256": cached_sha256(path)}


def root_source(root: Path, path: Path) -> dict:
    """:func:`file_source` of ``path`` named relative to the data root ``root``."""
    return file_source(path, Path(path).relative_to(root).as_posix())


def package_source(package: str, path: Path) -> dict:
    """:func:`file_source` of a file shipped with an installed package, named ``<package>/<path in it>``."""
    import importlib.util

    base = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    return file_source(path, f"{package}/{Path(path).relative_to(base).as_posix()}")


def folder_source(name: str, listing: Iterable[tuple[str, int]]) -> dict:
    """A folder read file by file: ``{"name", "files", "size", "listing_sha256"}`` from its
    ``(relative name, size)`` listing (sorted here)."""
    rows = sorted(listing)
    text = "".join(f"{n}\t{s}\n" for n, s in rows)
    return {"name": name, "files": len(rows), "size": sum(s for _, s in rows),
            "listing_sha256": hashlib.sha256(text.encode()).hexdigest()}


def scan_folder(folder: Path) -> list[tuple[str, int]]:
    """``(name relative to folder, size)`` of every file under ``folder``."""
    out = []
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = Path(dirpath, n)
            out.append((p.relative_to(folder).as_posix(), p.stat().st_size))
    return out


def check_labels(name: str, y: torch.Tensor, num_classes: int, split: str) -> None:
    if y.numel() == 0:
        raise DataError(f"dataset {name!r}: {split} split is empty")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"dataset {name!r}: {split} labels span [{lo}, {hi}], expected [0, {num_classes - 1}]")


# --------------------------------------------------------------------------- preparation
def prepare_splits(spec: dict, train_cfg: dict | None = None) -> DatasetSplits:
    """Load ``spec['name']`` (its ``copy``) and carve ``train_size`` / ``val_size`` from the training split
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
    load = dataset_info(name).files_of(spec.pop("copy", None)).loader or DATASETS.get(name)
    try:
        splits: DatasetSplits = load(root=spec.get("root"), download=spec.get("download"), **options)
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

