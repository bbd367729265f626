"""Shortened runs: a run's config cut to a few epochs and samples and still valid (used by
``python -m common.codehash compare-and-pin`` and by ``snakemake verify``'s calibration). Not imported by
the trainer, so it is outside every run's code digest."""
from __future__ import annotations

from .data import dataset_info


def known_split_sizes(dataset: dict) -> dict:
    """``{split: size}`` of a ``dataset`` block as its registration declares them before loading; {} where
    they depend on the files (e.g. NO2's pre-split arrays)."""
    sizes = dataset_info(dataset["name"]).split_sizes
    return (sizes(dataset.get("options") or {}) if callable(sizes) else sizes) or {}


def capped_sizes(dataset: dict, train: int | None = None, test: int | None = None) -> dict:
    """A copy of a ``dataset`` block using at most ``train`` training and ``test`` test samples, each only
    where the split is known to be larger (a shortened run that is still a valid config)."""
    d, known = dict(dataset), known_split_sizes(dataset)
    for split, cap in (("train", train), ("test", test)):
        if cap is not None and known.get(split) is not None and known[split] > cap:
            d[f"{split}_size"] = min(d.get(f"{split}_size") or cap, cap)
    return d
