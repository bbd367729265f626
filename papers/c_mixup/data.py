"""Regression datasets (the C-Mixup track): tabular UCI/StatLib sets and LSTNet time series.

Every loader reads the canonical file from the data root (``dataset.root``, ``$MIXREPRO_DATA`` or
``./data``) in the layout ``<root>/airfoil/airfoil_self_noise.dat`` and so
on, fetches it from its canonical URL only when downloads are allowed (``dataset.download`` or
``$MIXREPRO_DOWNLOAD=1``), and otherwise fails with a message naming the exact expected path.
Splits and scaling follow the official C-Mixup code (github.com/huaxiuyao/C-Mixup, commit
``0b88fb3``); where that code leaves a choice open
(NO2, whose split lives in the authors' unavailable ``.npy`` files) the choice is stated in the
loader's docstring.

All splits come with their own validation set (model selection = best validation MSE), inputs
and labels are float32, labels are (N, d) with d = ``DatasetSplits.num_classes`` (the label
dimension). Options are passed as ``dataset.options`` in the run config. Every cell must be a
finite number (``?`` marks a missing value where the official loaders impute one): anything else
is a :class:`DataError` naming the file, line and column, raised while loading, before training.
``DatasetSplits.sources`` names the files read.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.data import (ArrayData, DataError, DatasetSplits, data_root, download_allowed, missing_error,
                         package_source, register_dataset, root_source)
from common.errors import ConfigError
from common.fileio import atomic_write_bytes


# --------------------------------------------------------------------------- files and downloads
@dataclass(frozen=True)
class Source:
    """Where a dataset file lives under the data root and where it comes from."""

    paths: tuple  # accepted relative paths under the root, first = the one a download writes
    url: str  # canonical download URL
    page: str  # human-readable origin named in error messages
    sha256: str | None = None  # checked after download when known


SOURCES: dict[str, Source] = {
    "airfoil": Source(
        ("airfoil/airfoil_self_noise.dat",),
        "https://archive.ics.uci.edu/ml/machine-learning-databases/00291/airfoil_self_noise.dat",
        "UCI Airfoil Self-Noise, https://archive.ics.uci.edu/dataset/291/airfoil+self+noise",
        None,  # UCI publishes no checksum
    ),
    "no2": Source(
        ("no2/547_no2.tsv.gz",),
        # PMLB replaced the file by a Git-LFS pointer later; this commit holds the real file
        "https://raw.githubusercontent.com/EpistasisLab/pmlb/253138e2aa4098734fb9154ec3570fbcad5f4197/"
        "datasets/547_no2/547_no2.tsv.gz",
        "StatLib NO2 (http://lib.stat.cmu.edu/datasets/NO2.dat) as PMLB 547_no2",
        "e116f24d2cabc7388a0714f1d0bf3a85f7613e3fc2b88642c47154fece000c73",
    ),
    "exchange_rate": Source(
        ("exchange_rate/exchange_rate.txt.gz", "exchange_rate/exchange_rate.txt"),
        "https://raw.githubusercontent.com/laiguokun/multivariate-time-series-data/"
        "7f402f185cc2435b5e66aed13a3b560ed142e023/exchange_rate/exchange_rate.txt.gz",
        "LSTNet data, https://github.com/laiguokun/multivariate-time-series-data",
        "6a4fbb561dcdee43f071a83badbeec9223a335552278348656738b556f1c2e9d",
    ),
    "electricity": Source(
        ("electricity/electricity.txt.gz", "electricity/electricity.txt"),
        "https://raw.githubusercontent.com/laiguokun/multivariate-time-series-data/"
        "7f402f185cc2435b5e66aed13a3b560ed142e023/electricity/electricity.txt.gz",
        "LSTNet data, https://github.com/laiguokun/multivariate-time-series-data",
        None,
    ),
    "communities": Source(
        ("communities_crime/communities.data",),
        "https://archive.ics.uci.edu/ml/machine-learning-databases/communities/communities.data",
        "UCI Communities and Crime, https://archive.ics.uci.edu/dataset/183/communities+and+crime",
        None,
    ),
    "skillcraft": Source(
        ("skillcraft/SkillCraft1_Dataset.csv",),
        "https://archive.ics.uci.edu/ml/machine-learning-databases/00272/SkillCraft1_Dataset.csv",
        "UCI SkillCraft1, https://archive.ics.uci.edu/dataset/272/skillcraft1+master+table+dataset",
        None,
    ),
}


def download_file(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` atomically (a partial download never lands at ``dest``);
    with ``sha256`` the bytes are checked first and a mismatch raises :class:`DataError`."""
    dest = Path(dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"download of {url} failed ({e}); put the file at {dest} by hand") from None
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise DataError(f"download of {url} has sha256 {got}, expected {sha256}; not saved to {dest}")
    atomic_write_bytes(dest, data)
    return dest


def locate(name: str, root=None, download=None) -> Path:
    """The dataset file under the data root; downloaded when missing and allowed."""
    src = SOURCES[name]
    base = data_root(root)
    for rel in src.paths:
        p = base / rel
        if p.exists():
            return p
    if not download_allowed(download):
        raise missing_error(name, [str(base / rel) for rel in src.paths], src.page)
    return download_file(src.url, base / src.paths[0], src.sha256)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is a corrupt or truncated gzip file: {e}") from None
    return raw.decode("utf-8", errors="strict")


def _finite(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _first_problem(text: str, delimiter: str | None, skiprows: int) -> str | None:
    """``"line L, column C: 'x' is not a finite number"`` (1-based) for the first such cell of
    ``text``, or ``"line L: N columns, the lines before have M"``; None if every row is fine."""
    width = None
    for line, row in enumerate(text.splitlines()[skiprows:], start=skiprows + 1):
        if not row.strip():
            continue
        cells = row.split(delimiter)
        for column, cell in enumerate(cells, start=1):
            if not _finite(cell):
                return f"line {line}, column {column}: {cell.strip()!r} is not a finite number"
        if width is not None and len(cells) != width:
            return f"line {line}: {len(cells)} columns, the lines before have {width}"
        width = len(cells)
    return None


def _loadtxt(path: Path, skiprows: int = 0, delimiter: str | None = None) -> np.ndarray:
    """The numbers of a delimited text file (whitespace-separated by default) as float64 (rows, cols);
    a cell that is not a finite number (``nan``, ``inf``, text, empty) or a row of another width is
    a DataError naming the file, line and column."""
    text = _read_text(path)
    try:
        data = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, skiprows=skiprows, delimiter=delimiter)
    except ValueError as e:
        problem = _first_problem(text, delimiter, skiprows)
        raise DataError(f"{path}, {problem}" if problem else f"{path} is malformed: {e}") from None
    if not np.isfinite(data).all():
        raise DataError(f"{path}, {_first_problem(text, delimiter, skiprows)}")
    return data


# --------------------------------------------------------------------------- helpers
def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _splits(name, x, y, tr, va, te, meta=None, sources=()) -> DatasetSplits:
    y = y.reshape(len(y), -1)
    return DatasetSplits(
        name, "regression",
        ArrayData(_t(x[tr]), _t(y[tr])), ArrayData(_t(x[te]), _t(y[te])), ArrayData(_t(x[va]), _t(y[va])),
        num_classes=int(y.shape[1]), meta=dict(meta or {}), sources=list(sources),
    )


def _sources(root, *paths: Path) -> list[dict]:
    """``DatasetSplits.sources`` of files under the data root ``root``."""
    base = data_root(root)
    return [root_source(base, p) for p in paths]


def minmax(x: np.ndarray, fit_rows=None) -> np.ndarray:
    """``(x - min) / (max - min)`` per column, min/max over ``fit_rows`` (default: all rows, as
    the official loaders do). Constant columns map to 0 instead of NaN."""
    ref = x if fit_rows is None else x[fit_rows]
    lo, hi = ref.min(0), ref.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo) / span


def _check_scale(where: str, scale: str) -> None:
    if scale not in ("all", "train"):
        raise ConfigError(f"{where}: dataset.options.scale must be 'all' (official: min/max over every row) "
                          f"or 'train' (min/max over training rows only), got {scale!r}")


def _random_split(n: int, n_train: int, n_val: int, seed: int):
    """The official row split: ``np.random.permutation`` after ``np.random.seed(seed)``
    (``RandomState(seed)`` draws the identical permutation), then consecutive blocks."""
    perm = np.random.RandomState(seed).permutation(n)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def _fraction_sizes(n: int, train: float, val: float, where: str):
    if not (0 < train < 1 and 0 < val < 1 and train + val < 1):
        raise ConfigError(f"{where}: need 0 < train_frac, val_frac and train_frac + val_frac < 1, got {train}, {val}")
    return int(n * train), int(n * val)


# --------------------------------------------------------------------------- diabetes (quick)
@register_dataset("diabetes", task="regression", has_val=True)
def load_diabetes(root=None, download=None, shuffle_seed: int = 0, train_frac: float = 0.6,
                  val_frac: float = 0.2) -> DatasetSplits:
    """scikit-learn's bundled diabetes data (442 x 10, target = disease progression, 25-346): no
    files, the ``quick`` regression default. Inputs min-max scaled over all rows (as the C-Mixup
    tabular loaders do), target raw; rows split 60/20/20 after a ``shuffle_seed`` permutation."""
    import sklearn
    from sklearn.datasets import load_diabetes as sk

    d = sk(scaled=False)
    x, y = d.data.astype(np.float64), d.target.astype(np.float64)
    n_tr, n_va = _fraction_sizes(len(y), train_frac, val_frac, "diabetes")
    tr, va, te = _random_split(len(y), n_tr, n_va, shuffle_seed)
    files = Path(sklearn.__file__).parent / "datasets" / "data"
    sources = [package_source("sklearn", files / f) for f in ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz")]
    return _splits("diabetes", minmax(x), y, tr, va, te, {"shuffle_seed": shuffle_seed}, sources)


# --------------------------------------------------------------------------- Airfoil
@register_dataset("airfoil", task="regression", has_val=True, required_files=[SOURCES["airfoil"].paths],
                  downloadable=True,
                  split_sizes={"train": 1003, "val": 300, "test": 200})
def load_airfoil(root=None, download=None, shuffle_seed: int = 0, scale: str = "all") -> DatasetSplits:
    """UCI Airfoil Self-Noise, ``<root>/airfoil/airfoil_self_noise.dat`` (1503 x 6, tab-separated).

    Official C-Mixup preprocessing (``src/data/airfoil.py``): rows permuted with the seed, first
    1003 = train, next 300 = val, last 200 = test; the 5 inputs min-max scaled with min/max over
    ALL 1503 rows (``scale='all'``; a leak of val/test ranges, kept for fidelity; ``'train'``
    fits on training rows only); target = sound pressure in dB, unscaled.
    ``shuffle_seed=k`` gives exactly the split the official script makes for ``--seed k``."""
    _check_scale("airfoil", scale)
    path = locate("airfoil", root, download)
    data = _loadtxt(path)
    if data.shape != (1503, 6):
        raise DataError(f"{path}: expected 1503 rows x 6 columns, got {data.shape[0]} x {data.shape[1]}")
    tr, va, te = _random_split(1503, 1003, 300, shuffle_seed)
    x = minmax(data[:, :5], None if scale == "all" else tr)
    return _splits("airfoil", x, data[:, 5:], tr, va, te, {"source": str(path), "shuffle_seed": shuffle_seed},
                   _sources(root, path))


# --------------------------------------------------------------------------- NO2
NO2_NPY = ("x_train", "x_valid", "x_test", "y_train", "y_valid", "y_test")


@register_dataset("no2", task="regression", has_val=True, required_files=[SOURCES["no2"].paths + ("no2/x_train.npy",)],
                  downloadable=True)
def load_no2(root=None, download=None, shuffle_seed: int = 0, source: str = "auto", train_frac: float = 0.7,
             val_frac: float = 0.1, scale: str = "all") -> DatasetSplits:
    """NO2 (StatLib; 500 rows, 7 inputs, target = log NO2 concentration).

    * ``source='npy'`` (or ``'auto'`` when present): the authors' pre-split files
      ``<root>/no2/{x,y}_{train,valid,test}.npy`` (from their Google Drive), used as they are.
    * ``source='pmlb'`` (``'auto'`` otherwise): ``<root>/no2/547_no2.tsv.gz`` (PMLB copy; the
      response is the last column ``target``). The authors' split and scaling are not known
      (not in the official code), so we CHOOSE: rows permuted with ``shuffle_seed``, 70/10/20 split (the
      ``id_train_val_split`` the official config lists for NO2; 350/50/100 rows), inputs
      min-max scaled over all rows as the official Airfoil/Crime/SkillCraft loaders do, target
      unscaled. Results on this split are not directly comparable with the paper's."""
    _check_scale("no2", scale)
    if source not in ("auto", "npy", "pmlb"):
        raise ConfigError(f"no2: dataset.options.source must be 'auto', 'npy' or 'pmlb', got {source!r}")
    base = data_root(root) / "no2"
    npy = {k: base / f"{k}.npy" for k in NO2_NPY}
    if source == "npy" or (source == "auto" and all(p.exists() for p in npy.values())):
        missing = [str(p) for p in npy.values() if not p.exists()]
        if missing:
            raise missing_error("no2", missing, "the C-Mixup authors' Google Drive folder (README of huaxiuyao/C-Mixup)")
        a = {k: np.load(p, allow_pickle=False).astype(np.float64) for k, p in npy.items()}
        x = np.concatenate([a["x_train"], a["x_valid"], a["x_test"]])
        y = np.concatenate([a[k].reshape(len(a[k]), -1) for k in ("y_train", "y_valid", "y_test")])
        n1, n2 = len(a["x_train"]), len(a["x_train"]) + len(a["x_valid"])
        idx = np.arange(len(x))
        return _splits("no2", x, y, idx[:n1], idx[n1:n2], idx[n2:], {"source": str(base), "split": "authors' npy"},
                       _sources(root, *npy.values()))
    path = locate("no2", root, download)
    text = _read_text(path)
    header = text.split("\n", 1)[0].strip().split("\t")
    if len(header) != 8 or header[-1] != "target":
        raise DataError(f"{path}: expected a PMLB header with 8 tab-separated columns ending in 'target', got {header}")
    data = _loadtxt(path, skiprows=1, delimiter="\t")
    n_tr, n_va = _fraction_sizes(len(data), train_frac, val_frac, "no2")
    tr, va, te = _random_split(len(data), n_tr, n_va, shuffle_seed)
    x = minmax(data[:, :7], None if scale == "all" else tr)
    return _splits("no2", x, data[:, 7:], tr, va, te, {"source": str(path), "shuffle_seed": shuffle_seed,
                                                       "columns": header}, _sources(root, path))


# --------------------------------------------------------------------------- time series (LSTNet)
def time_series_windows(series: np.ndarray, targets, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """LSTNet windows: for target row ``t`` the input is rows ``[t-h+1-P, t-h+1)`` (the last P
    steps, the last one h steps before the target) and the label is row ``t``."""
    targets = np.asarray(list(targets), dtype=np.int64)
    starts = targets - horizon + 1 - window
    if len(targets) and (starts.min() < 0 or targets.max() >= len(series)):
        raise DataError(f"time-series windows out of range (window={window}, horizon={horizon}, rows={len(series)})")
    view = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)  # (n-P+1, m, P)
    x = np.ascontiguousarray(view[starts].transpose(0, 2, 1), dtype=np.float32)  # (N, P, m)
    return x, series[targets].astype(np.float32)


def load_time_series(name: str, root=None, download=None, window: int = 168, horizon: int = 12,
                     train_frac: float = 0.6, val_frac: float = 0.2, normalize: int = 2) -> DatasetSplits:
    """LSTNet's ``Data_utility`` as C-Mixup uses it (``src/data/time_series.py``): every series
    divided by its max |value| over the whole file (``normalize=2``; 1 = global max, 0 = raw);
    chronological split at ``int(0.6 n)`` and ``int(0.8 n)``; training targets start at row
    ``P + h - 1``; validation/test windows may reach back into the previous split."""
    if window < 1 or horizon < 1:
        raise ConfigError(f"{name}: dataset.options.window and horizon must be >= 1, got {window}, {horizon}")
    if normalize not in (0, 1, 2):
        raise ConfigError(f"{name}: dataset.options.normalize must be 0, 1 or 2, got {normalize}")
    _fraction_sizes(1000, train_frac, val_frac, name)  # range check only
    path = locate(name, root, download)
    raw = _loadtxt(path, delimiter=",")
    n, m = raw.shape
    if normalize == 2:
        scale = np.abs(raw).max(0)
    elif normalize == 1:
        scale = np.full(m, raw.max())
    else:
        scale = np.ones(m)
    scale = np.where(scale > 0, scale, 1.0)
    dat = raw / scale
    train_end, val_end = int(train_frac * n), int((train_frac + val_frac) * n)
    if train_end <= window + horizon - 1:
        raise DataError(f"{path}: {n} rows are too few for window={window}, horizon={horizon}")
    parts = [time_series_windows(dat, r, window, horizon)
             for r in (range(window + horizon - 1, train_end), range(train_end, val_end), range(val_end, n))]
    (xtr, ytr), (xva, yva), (xte, yte) = parts
    return DatasetSplits(
        name, "regression", ArrayData(torch.from_numpy(xtr), torch.from_numpy(ytr)),
        ArrayData(torch.from_numpy(xte), torch.from_numpy(yte)), ArrayData(torch.from_numpy(xva), torch.from_numpy(yva)),
        num_classes=m, meta={"source": str(path), "scale": scale.tolist(), "window": window, "horizon": horizon},
        sources=_sources(root, path),
    )


@register_dataset("exchange_rate", task="regression", has_val=True, required_files=[SOURCES["exchange_rate"].paths],
                  downloadable=True)
def load_exchange_rate(root=None, download=None, window: int = 168, horizon: int = 12, train_frac: float = 0.6,
                       val_frac: float = 0.2, normalize: int = 2) -> DatasetSplits:
    """Exchange-Rate (LSTNet; 7588 days x 8 currencies), ``<root>/exchange_rate/exchange_rate.txt.gz``
    (or the unzipped ``.txt``). Window 168, horizon 12 (C-Mixup config)."""
    return load_time_series("exchange_rate", root, download, window, horizon, train_frac, val_frac, normalize)


@register_dataset("electricity", task="regression", has_val=True, required_files=[SOURCES["electricity"].paths],
                  downloadable=True)
def load_electricity(root=None, download=None, window: int = 168, horizon: int = 24, train_frac: float = 0.6,
                     val_frac: float = 0.2, normalize: int = 2) -> DatasetSplits:
    """Electricity (LSTNet; 26304 hours x 321 clients), ``<root>/electricity/electricity.txt.gz``.
    Window 168, horizon 24. Materialising every window takes about 5.7 GB (float32)."""
    return load_time_series("electricity", root, download, window, horizon, train_frac, val_frac, normalize)


# --------------------------------------------------------------------------- OOD tabular (domains)
def _read_csv_with_missing(path: Path, skip_header: bool, drop_col: int | None = None) -> np.ndarray:
    """Comma-separated numbers where ``?`` (quoted or not) is missing; missing -> column mean
    over all rows (the official loaders' imputation). Column ``drop_col`` (0-based) is skipped
    unread; any other cell that is neither ``?`` nor a finite number is a DataError naming the
    line and column."""
    lines = [(i, ln) for i, ln in enumerate(_read_text(path).splitlines(), start=1) if ln.strip()]
    if skip_header:
        lines = lines[1:]
    rows = []
    for line, ln in lines:
        row = []
        for column, f in enumerate((f.strip().strip('"').strip("'") for f in ln.split(",")), start=1):
            if column - 1 == drop_col:
                continue
            if f != "?" and not _finite(f):
                raise DataError(f"{path}, line {line}, column {column}: {f!r} is not a finite number or '?' (missing)")
            row.append(np.nan if f == "?" else float(f))
        rows.append(row)
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(f"{path}: rows have differing numbers of fields {sorted(widths)}")
    data = np.asarray(rows, dtype=np.float64)
    col_mean = np.nanmean(data, axis=0)
    return np.where(np.isnan(data), col_mean[None, :], data)


def domain_split(domains: np.ndarray, train_frac: float = 0.7, val_frac: float = 0.1):
    """C-Mixup's out-of-distribution split (``src/data/communities_and_crime.py``,
    ``skillcraft.py``): domains in ascending id order, cumulative row counts ``c``; ``i1`` = first
    domain with ``c >= int(train_frac N)``, ``i2`` = first later domain with
    ``c >= c[i1] + int(val_frac N)``; train = domains before ``i1``, val = ``i1 .. i2-1``,
    test = ``i2`` onwards. No domain is shared between splits."""
    ids = np.unique(domains)
    counts = np.array([(domains == d).sum() for d in ids])
    cum = np.cumsum(counts)
    n = len(domains)
    i1 = int(np.argmax(cum >= int(n * train_frac)))
    later = np.flatnonzero((np.arange(len(ids)) >= i1) & (cum >= cum[i1] + int(n * val_frac)))
    if len(later) == 0:
        raise DataError("domain split: too few domains for a separate test split")
    i2 = int(later[0])
    pick = lambda sel: np.flatnonzero(np.isin(domains, sel))  # noqa: E731
    return pick(ids[:i1]), pick(ids[i1:i2]), pick(ids[i2:])


def _ood_or_id(name, x, y, domains, split, shuffle_seed, train_frac, val_frac, scale, meta, sources):
    _check_scale(name, scale)
    if split == "ood":
        tr, va, te = domain_split(domains, train_frac, val_frac)
    elif split == "id":
        n_tr, n_va = _fraction_sizes(len(y), train_frac, val_frac, name)
        tr, va, te = _random_split(len(y), n_tr, n_va, shuffle_seed)
    else:
        raise ConfigError(f"{name}: dataset.options.split must be 'ood' (domain split, as in the paper) or 'id'")
    x = minmax(x, None if scale == "all" else tr)
    meta = dict(meta, split=split, test_domains=domains[te].astype(int).tolist())
    return _splits(name, x, y, tr, va, te, meta, sources)


@register_dataset("communities", task="regression", has_val=True, required_files=[SOURCES["communities"].paths],
                  downloadable=True)
def load_communities(root=None, download=None, split: str = "ood", shuffle_seed: int = 0, train_frac: float = 0.7,
                     val_frac: float = 0.1, scale: str = "all") -> DatasetSplits:
    """UCI Communities and Crime, ``<root>/communities_crime/communities.data`` (1994 x 128).
    Official: drop ``communityname``, ``?`` -> column mean, the 122 predictive attributes min-max
    scaled over all rows, target ``ViolentCrimesPerPop``; domain = ``state`` (OOD split)."""
    path = locate("communities", root, download)
    data = _read_csv_with_missing(path, skip_header=False, drop_col=3)
    if data.shape[1] != 127:
        raise DataError(f"{path}: expected 128 columns (127 after dropping communityname), got {data.shape[1] + 1}")
    return _ood_or_id("communities", data[:, 4:-1], data[:, -1:], data[:, 0].astype(int), split, shuffle_seed,
                      train_frac, val_frac, scale, {"source": str(path), "domain": "state"}, _sources(root, path))


@register_dataset("skillcraft", task="regression", has_val=True, required_files=[SOURCES["skillcraft"].paths],
                  downloadable=True)
def load_skillcraft(root=None, download=None, split: str = "ood", shuffle_seed: int = 0, train_frac: float = 0.7,
                    val_frac: float = 0.1, scale: str = "all") -> DatasetSplits:
    """UCI SkillCraft1, ``<root>/skillcraft/SkillCraft1_Dataset.csv`` (3395 x 20, header).
    Official: ``?`` -> column mean, target ``ActionLatency`` (column 13), inputs = the 17 columns
    ``Age``..``GapBetweenPACs`` and ``ActionsInPAC``..``ComplexAbilitiesUsed`` min-max scaled over
    all rows; domain = ``LeagueIndex`` (OOD split). Quoted (UCI) and bare ``?`` both accepted."""
    path = locate("skillcraft", root, download)
    data = _read_csv_with_missing(path, skip_header=True)
    if data.shape[1] != 20:
        raise DataError(f"{path}: expected 20 columns, got {data.shape[1]}")
    x = np.concatenate([data[:, 2:13], data[:, 14:]], axis=1)
    return _ood_or_id("skillcraft", x, data[:, 13:14], data[:, 1].astype(int), split, shuffle_seed,
                      train_frac, val_frac, scale, {"source": str(path), "domain": "LeagueIndex"}, _sources(root, path))
