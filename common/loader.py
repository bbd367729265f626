"""The GPU-speed loader of file-based image splits (``imagenet``, ``tiny_imagenet``, defined in
:mod:`common.image_datasets`) and of in-memory images with a per-sample transform.

A split is a list of image files (torchvision ``ImageFolder`` convention: classes are the sorted
folder names) read by a ``torch.utils.data.DataLoader`` with worker processes, pinned memory (on
CUDA), persistent workers and prefetching (``dataset.loader``, runtime only). Two transform modes:

* ``dataset.transform`` null: each image is decoded to uint8 at the evaluation geometry (resize the
  shorter side, centre crop) and the batch gets the core's batched tensor augmentation
  (``train.augment`` pad/flip), as for the in-memory datasets;
* ``dataset.transform`` a mapping: the per-sample timm pipeline of :mod:`common.transforms`.

Augmentation randomness is seeded per sample from ``(seed, epoch, index, repeat)`` inside
``__getitem__`` (torch, ``random`` and numpy), so batches are identical for any number of workers
and after a resume. Samplers: seeded shuffling; under DDP ``DistributedSampler``; with
``train.repeated_aug > 1`` timm's ``RepeatAugSampler`` (DeiT's repeated augmentation).
"""
from __future__ import annotations

import os
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .batch import Batch
from .data import DatasetSplits, _mix_seed
from .errors import DataError


# --------------------------------------------------------------------------- reading files
_ZIPS: dict = {}


def read_bytes(source: Path, name: str) -> bytes:
    """Bytes of ``name``: a path under the folder ``source`` or a member of the zip ``source``
    (one open handle per process, so DataLoader workers never share a file position)."""
    if source.suffix == ".zip":
        key = (str(source), os.getpid())
        zf = _ZIPS.get(key)
        if zf is None:
            zf = _ZIPS[key] = zipfile.ZipFile(source)
        return zf.read(name)
    return (source / name).read_bytes()


def open_rgb(source: Path, name: str):
    from io import BytesIO

    from PIL import Image

    try:
        with Image.open(BytesIO(read_bytes(source, name))) as im:
            return im.convert("RGB")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot decode image {name!r} in {source}: {e}") from None


class DecodeCenter:
    """PIL image -> uint8 (3, size, size): resize the shorter side to ``resize`` (bilinear), centre
    crop ``size`` (the papers' evaluation geometry). ``resize=None`` demands images of exactly
    ``size`` x ``size`` (Tiny-ImageNet) and names the file otherwise."""

    def __init__(self, size: int, resize: int | None):
        self.size, self.resize = int(size), resize

    def __call__(self, im, name: str = "") -> torch.Tensor:
        from PIL import Image

        size = self.size
        if self.resize is None:
            if im.size != (size, size):
                raise DataError(f"image {name!r} has size {im.size}, expected ({size}, {size})")
        else:
            w, h = im.size
            s = self.resize / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy())


class _FileImages:
    """Read-only stand-in for a uint8 (N, 3, S, S) tensor whose rows are image files, decoded
    when indexed (``shape``, ``dtype``, ``dim()``, ``len()``, indexing with ints / index tensors)."""

    dtype = torch.uint8

    def __init__(self, data: "FileData"):
        self.data = data

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.data.names), 3, self.data.size, self.data.size))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.data.names)

    def __getitem__(self, idx) -> torch.Tensor:
        d = self.data
        if isinstance(idx, int):
            return d.decode(d.names[idx])
        ids = np.asarray(torch.as_tensor(idx, dtype=torch.long).cpu()).reshape(-1)
        if len(ids) == 0:
            return torch.empty((0, 3, d.size, d.size), dtype=torch.uint8)
        return torch.stack([d.decode(d.names[i]) for i in ids])


@dataclass
class FileData:
    """One split as image files: ``names`` under ``source`` (a folder or a zip), labels ``y``.
    ``x`` decodes at the evaluation geometry; ``subset`` stays lazy."""

    source: Path
    names: list
    y: torch.Tensor
    size: int
    resize: int | None
    domain: torch.Tensor | None = None
    file_based = True

    @property
    def x(self) -> _FileImages:
        return _FileImages(self)

    def __len__(self) -> int:
        return len(self.names)

    def decode(self, name: str) -> torch.Tensor:
        return DecodeCenter(self.size, self.resize)(open_rgb(self.source, name), name)

    def image(self, index: int):
        """Sample ``index`` as an RGB PIL image."""
        return open_rgb(self.source, self.names[index])

    def subset(self, idx) -> "FileData":
        idx = np.asarray(torch.as_tensor(idx, dtype=torch.long).cpu()).reshape(-1)
        return FileData(self.source, [self.names[i] for i in idx], self.y[torch.as_tensor(idx)], self.size,
                        self.resize, None if self.domain is None else self.domain[torch.as_tensor(idx)])


class TensorImages:
    """An in-memory uint8 (N, C, H, W) split seen as images, for the per-sample ``dataset.transform``
    pipeline on cifar10/cifar100/mnist-like datasets (their default stays the batched tensor path)."""

    file_based = False

    def __init__(self, data):
        self.x, self.y, self.domain = data.x, data.y, getattr(data, "domain", None)
        self.size = int(data.x.shape[-1])
        self.names = range(len(data.y))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def image(self, index: int):
        from PIL import Image

        a = self.x[index].numpy()
        return Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))  # "L" or "RGB"


# --------------------------------------------------------------------------- per-sample dataset
class _SeededRNG:
    """Seed torch, ``random`` and numpy for one sample; in the main process (0 workers) the
    previous global states are restored afterwards, so the training loop's own draws
    (dropout, drop-path) do not depend on the number of workers."""

    def __init__(self, seed: int):
        self.seed = seed
        self.restore = torch.utils.data.get_worker_info() is None

    def __enter__(self):
        if self.restore:
            self.saved = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        np.random.seed(self.seed % (2**32))

    def __exit__(self, *exc):
        if self.restore:
            torch.set_rng_state(self.saved[0])
            random.setstate(self.saved[1])
            np.random.set_state(self.saved[2])


class ImageFileDataset(torch.utils.data.Dataset):
    """Items are ``(index, epoch, repeat)``; returns ``(image tensor, index)``. The transform's
    randomness is seeded from ``(seed, epoch, index, repeat)``."""

    def __init__(self, data: FileData, transform, seed: int):
        self.data, self.transform, self.seed = data, transform, int(seed)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item):
        index, epoch, repeat = item
        with _SeededRNG(_mix_seed(self.seed, epoch, index, repeat, 0x1A6E)):
            im = self.data.image(index)
            x = self.transform(im, self.data.names[index]) if isinstance(self.transform, DecodeCenter) \
                else self.transform(im)
        return x, index


class SeededSampler(torch.utils.data.Sampler):
    """Single-process order for epoch ``e``: a permutation drawn from ``(seed, e)`` (or 0..N-1)."""

    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, 0xDA7A))
        return iter(torch.randperm(self.n, generator=g).tolist())


def make_sampler(n: int, seed: int, shuffle: bool, world: int = 1, rank: int = 0, repeats: int = 1):
    """The train sampler a recipe asks for: timm's ``RepeatAugSampler`` when ``repeats > 1``,
    ``DistributedSampler`` under DDP (``world > 1``), else :class:`SeededSampler`. ``world`` and
    ``rank`` are passed explicitly (no process group needed)."""
    if repeats > 1:
        from timm.data.distributed_sampler import RepeatAugSampler

        s = RepeatAugSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, num_repeats=repeats)
        s.seed = seed  # RepeatAugSampler seeds its permutation by epoch only; keyed by the run's seed too
        return s
    if world > 1:
        from torch.utils.data import DistributedSampler

        return DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
    return SeededSampler(n, seed, shuffle)


def _repeat_aug_indices(sampler, epoch: int) -> list[int]:
    """``RepeatAugSampler``'s indices for ``epoch`` with its permutation keyed by (seed, epoch)."""
    sampler.set_epoch(_mix_seed(getattr(sampler, "seed", 0), epoch) % (2**31))
    return list(iter(sampler))


class _Batches:
    """A batch sampler whose batches are set per epoch (the DataLoader iterates it anew each epoch,
    also with persistent workers)."""

    def __init__(self):
        self.batches: list = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _worker_init(_):
    torch.set_num_threads(1)


class FileLoader:
    """Batches of a :class:`FileData` split through a ``DataLoader``: ``epoch(e)`` yields
    :class:`Batch` objects like the in-memory ``Loader`` (same interface for the trainer)."""

    def __init__(self, data: FileData, batch_size: int, sample_tf, batch_tf=None, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, device="cpu", train: bool = False, rank: int = 0,
                 world: int = 1, repeats: int = 1, workers: int = 0, pin_memory: bool = True,
                 persistent_workers: bool = True, prefetch_factor: int = 2, channels_last: bool = False):
        self.data, self.seed, self.device, self.train = data, int(seed), torch.device(device), train
        self.batch_tf, self.drop_last, self.channels_last = batch_tf, drop_last, channels_last
        self.rank, self.world, self.repeats = rank, world, max(1, int(repeats))
        # train.batch_size is the global batch (the sampler shards the data); an evaluation batch is
        # split between the ranks batch by batch (common.evaluate gathers the outputs)
        self.batch_size = max(1, int(batch_size) // max(1, world)) if train else int(batch_size)
        self.sampler = make_sampler(len(data), self.seed, shuffle, world, rank, self.repeats) if train else \
            SeededSampler(len(data), self.seed, False)
        self._batches = _Batches()
        kw = {}
        if workers > 0:
            kw = {"persistent_workers": bool(persistent_workers), "prefetch_factor": int(prefetch_factor),
                  "worker_init_fn": _worker_init}
        self.loader = torch.utils.data.DataLoader(
            ImageFileDataset(data, sample_tf, self.seed), batch_sampler=self._batches, num_workers=int(workers),
            pin_memory=bool(pin_memory) and self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed), **kw)  # its own base seed: global RNG untouched

    def _indices(self, e: int) -> list[int]:
        if self.repeats > 1:
            return _repeat_aug_indices(self.sampler, e)
        self.sampler.set_epoch(e)
        return list(iter(self.sampler))

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self, e: int) -> list[list[tuple[int, int, int]]]:
        """Epoch ``e``'s batches as ``(index, epoch, repeat)`` items; ``repeat`` numbers the copies
        of an index under repeated augmentation (each copy gets its own augmentation)."""
        idx = self._indices(e)
        out, nb = [], len(self)
        for b in range(nb):
            chunk = idx[b * self.batch_size:(b + 1) * self.batch_size]
            if not self.train:  # evaluation: this rank's share of the batch
                chunk = chunk[self.rank::self.world]
            items = []
            for j, i in enumerate(chunk):
                pos = (b * self.batch_size + j) * self.world + self.rank  # position in the global order
                items.append((int(i), int(e), pos % self.repeats if self.repeats > 1 else 0))
            if items:  # (a last evaluation batch smaller than the world size leaves some ranks none)
                out.append(items)
        return out

    def epoch(self, e: int, rank: int = 0, world: int = 1, start: int = 0):
        """Epoch ``e``'s batches from batch ``start`` on (a resumed epoch skips the batches already
        trained without reading them: per-sample draws are keyed by the sample, and the batched
        augmentation's draws of the skipped batches are replayed on blank images). ``rank``/``world``
        are fixed at construction (the sampler shards); accepted for the interface shared with the
        in-memory loader."""
        batches = self.batches(e)
        g = torch.Generator().manual_seed(_mix_seed(self.seed, e, 0xB47C))  # batched augmentation draws
        if self.batch_tf is not None:
            for items in batches[:start]:
                self.batch_tf(torch.zeros((len(items), 3, self.data.size, self.data.size), dtype=torch.uint8), g,
                              self.train)
        self._batches.batches = batches[start:]
        for x, idx in self.loader:
            if self.batch_tf is not None:
                x = self.batch_tf(x, g, self.train)
            else:
                x = x.to(self.device, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            yield Batch(x, self.data.y[idx].to(self.device, non_blocking=True), idx)


def loader_options(cfg: dict) -> dict:
    """``dataset.loader`` with its defaults (workers: the CPUs this process has at run time,
    :func:`common.launch.cpus_per_rank`: the job's CPUs over its processes on the node)."""
    from .launch import cpus_per_rank

    lo = dict(cfg["dataset"].get("loader") or {})
    workers = lo.get("workers")
    if workers is None:
        workers = cpus_per_rank()
    return {"workers": int(workers), "pin_memory": lo.get("pin_memory", True),
            "persistent_workers": lo.get("persistent_workers", True), "prefetch_factor": lo.get("prefetch_factor", 2)}


def build_file_loaders(splits: DatasetSplits, cfg: dict, make_batch_transform, device, rank: int, world: int,
                       channels_last: bool):
    """(train, test, val) loaders of a file-based dataset, or of an in-memory image dataset with a
    ``dataset.transform``. ``dataset.transform`` null: uint8 decode + the batched ``train.augment``
    transform; a mapping: the per-sample timm pipeline."""
    from .transforms import build_transform

    t, spec = cfg["train"], cfg["dataset"].get("transform")
    lo = loader_options(cfg)
    common = {"seed": int(cfg["seed"]), "device": device, "channels_last": channels_last, **lo}

    def tfs(data, train: bool):
        if spec is None:
            return DecodeCenter(data.size, data.resize), make_batch_transform(train)
        return build_transform(spec, data.size, splits.mean, splits.std, train), None

    def one(data, train):
        if not getattr(data, "file_based", False):
            data = TensorImages(data)
        sample_tf, batch_tf = tfs(data, train)
        if train:
            return FileLoader(data, t["batch_size"], sample_tf, batch_tf, shuffle=t.get("shuffle", True),
                              drop_last=t["drop_last"], train=True, rank=rank, world=world,
                              repeats=int(t.get("repeated_aug") or 1), **common)
        eval_kw = {**common, "persistent_workers": False}
        return FileLoader(data, cfg["eval"]["batch_size"], sample_tf, batch_tf, rank=rank, world=world, **eval_kw)

    return one(splits.train, True), one(splits.test, False), (one(splits.val, False) if splits.val is not None else None)
