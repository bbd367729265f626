"""Missing or bad data: an absent dataset offline, a truncated or corrupt archive, wrong shapes or
label ranges give a clear error naming the path (and the files expected), and never leave a
half-built cache behind. A corrupt cache is rebuilt."""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rel_helpers import tiny, write_config

from common.data import CIFAR10_CLASSES, DataError, load_cifar10, load_mnist, prepare_splits


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty data root and a private cache; downloads not allowed."""
    root, cache = tmp_path / "data", tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("MIXREPRO_DATA", str(root))
    monkeypatch.setenv("MIXREPRO_CACHE", str(cache))
    monkeypatch.delenv("MIXREPRO_DOWNLOAD", raising=False)
    return root, cache


def _png(arr) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _zip(root: Path, per_class=2, size=32, bad_member: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    path = root / "cifar10" / "tiny.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        i = 0
        for split in ("train", "test"):
            for c in CIFAR10_CLASSES:
                for _ in range(per_class):
                    name = f"{split}/{c}/{i:05d}.png"
                    data = b"not an image" if name == bad_member else _png(
                        rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
                    z.writestr(name, data)
                    i += 1
    return path


def _pickles(root: Path, n=20, ncols=3072, label_hi=9) -> Path:
    d = root / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, ncols), dtype=np.uint8),
                 "labels": [int(v) for v in np.arange(n) % (label_hi + 1)]}
        (d / f).write_bytes(pickle.dumps(batch))
    return d


def test_missing_cifar10_offline_names_path_and_files(offline):
    root, cache = offline
    with pytest.raises(DataError) as e:
        load_cifar10()
    msg = str(e.value)
    base = root / "cifar10"
    for s in (str(base / "cifar-10-batches-py"), "data_batch_1..5", "test_batch", f"{base}/*.zip",
              "https://www.cs.toronto.edu/~kriz/cifar.html", "download"):
        assert s in msg, f"{s!r} missing from: {msg}"
    assert not cache.exists()


def test_missing_dataset_through_the_cli_exits_nonzero(offline, tmp_path, capsys):
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny(dataset={"name": "cifar10", "val_size": 10}))
    rc = main(["--config", str(cfg), "--out", str(tmp_path / "runs" / "r")])
    err = capsys.readouterr().err
    assert rc != 0 and "cifar-10-batches-py" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "r" / "metrics.json").exists()


def test_missing_mnist_names_the_four_files(offline):
    root, _ = offline
    with pytest.raises(DataError) as e:
        load_mnist()
    raw = root / "mnist" / "MNIST" / "raw"
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert str(raw / f) in str(e.value)


def test_truncated_mnist_is_a_clear_error(offline):
    root, _ = offline
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = 5
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 28 * 28 // 2))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + bytes(n))
    with pytest.raises(DataError, match="unreadable or truncated") as e:
        load_mnist()
    assert str(raw) in str(e.value)


def test_tiny_zip_loads_and_is_cached(offline):
    root, cache = offline
    _zip(root)
    s = load_cifar10()
    assert s.train.x.shape == (20, 3, 32, 32) and s.test.x.shape == (20, 3, 32, 32)
    assert sorted(s.train.y.tolist()) == sorted(list(range(10)) * 2)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]
    again = load_cifar10()  # from the cache
    assert (again.train.x == s.train.x).all() and (again.test.y == s.test.y).all()


@pytest.mark.parametrize("keep", ["half", "header"])
def test_truncated_zip_is_a_clear_error_and_leaves_no_cache(offline, keep):
    """Cut at half the archive, or only a local-file header left (``PK\x03\x04`` + junk)."""
    root, cache = offline
    path = _zip(root)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if keep == "half" else b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="corrupt or truncated") as e:
        load_cifar10()
    assert str(path) in str(e.value)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_member_is_named_and_leaves_no_cache(offline):
    root, cache = offline
    _zip(root, bad_member="test/cat/00026.png")
    with pytest.raises(DataError, match="test/cat/00026.png"):
        load_cifar10()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_wrong_image_size_is_named(offline):
    root, cache = offline
    _zip(root, size=28)
    with pytest.raises(DataError, match=r"size \(28, 28\), expected \(32, 32\)"):
        load_cifar10()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_python_batches_load(offline):
    root, _ = offline
    _pickles(root)
    s = load_cifar10()
    assert s.train.x.shape == (100, 3, 32, 32) and s.test.x.shape == (20, 3, 32, 32)


@pytest.mark.parametrize("kw,match", [
    ({"ncols": 1000}, r"shape \(20, 1000\).*expected \(N, 3072\)"),
    ({"label_hi": 10}, r"labels span \[0, 10\], expected \[0, 9\]"),
], ids=["wrong_shape", "label_out_of_range"])
def test_malformed_python_batches_are_clear_errors(offline, kw, match):
    root, cache = offline
    _pickles(root, **kw)
    with pytest.raises(DataError, match=match):
        load_cifar10()


def test_missing_or_truncated_python_batch_is_named(offline):
    root, cache = offline
    d = _pickles(root)
    (d / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_cifar10()
    _pickles(root)
    raw = (d / "test_batch").read_bytes()
    (d / "test_batch").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match=r"test_batch is corrupt or truncated"):
        load_cifar10()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_cache_is_rebuilt(offline):
    root, cache = offline
    _zip(root)
    first = load_cifar10()
    (npz,) = cache.iterdir()
    npz.write_bytes(npz.read_bytes()[:100])
    again = load_cifar10()
    assert (again.train.x == first.train.x).all()
    assert np.load(npz)["xtr"].shape == (20, 3, 32, 32)


def test_split_sizes_out_of_range_are_config_errors(offline):
    from common.config import ConfigError

    with pytest.raises(ConfigError, match="dataset.val_size=5000"):
        prepare_splits({"name": "digits", "val_size": 5000})
    with pytest.raises(ConfigError, match="dataset.train_size=2000 exceeds"):
        prepare_splits({"name": "digits", "train_size": 2000})
