"""Missing or bad data: an absent dataset offline, a truncated or corrupt archive, wrong shapes or
label ranges give a clear error naming the path (and the files expected), and never leave a
half-built cache behind. A corrupt cache is rebuilt. A CIFAR python batch cannot run code; a data
root is never written; the run id names the CIFAR-10 copy read; the plan-time check finds broken
archives and ImageNet's unsorted val/; a non-numeric regression cell names file, line and column."""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rel_helpers import tiny, write_config

from common.data import DataError, prepare_splits
from common.image_datasets import CIFAR10_CLASSES, load_cifar10, load_cifar10_official, load_mnist


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
        (d / f).write_bytes(pickle.dumps(batch, protocol=2))
    return d


def _npz(cache: Path) -> list[Path]:
    """The decoded-array caches (``cache/sha256/`` holds file digests, not arrays)."""
    return sorted(cache.glob("*.npz")) if cache.exists() else []


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
    assert len(_npz(cache)) == 1
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
    assert _npz(cache) == []


def test_corrupt_member_is_named_and_leaves_no_cache(offline):
    root, cache = offline
    _zip(root, bad_member="test/cat/00026.png")
    with pytest.raises(DataError, match="test/cat/00026.png"):
        load_cifar10()
    assert _npz(cache) == []


def test_wrong_image_size_is_named(offline):
    root, cache = offline
    _zip(root, size=28)
    with pytest.raises(DataError, match=r"size \(28, 28\), expected \(32, 32\)"):
        load_cifar10()
    assert _npz(cache) == []


def test_python_batches_load(offline):
    root, _ = offline
    _pickles(root)
    s = load_cifar10_official()
    assert s.train.x.shape == (100, 3, 32, 32) and s.test.x.shape == (20, 3, 32, 32)


@pytest.mark.parametrize("kw,match", [
    ({"ncols": 1000}, r"shape \(20, 1000\).*expected \(N, 3072\)"),
    ({"label_hi": 10}, r"labels span \[0, 10\], expected \[0, 9\]"),
], ids=["wrong_shape", "label_out_of_range"])
def test_malformed_python_batches_are_clear_errors(offline, kw, match):
    root, cache = offline
    _pickles(root, **kw)
    with pytest.raises(DataError, match=match):
        load_cifar10_official()


def test_missing_or_truncated_python_batch_is_named(offline):
    root, cache = offline
    d = _pickles(root)
    (d / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_cifar10_official()
    _pickles(root)
    raw = (d / "test_batch").read_bytes()
    (d / "test_batch").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match=r"test_batch is corrupt or truncated"):
        load_cifar10_official()
    assert _npz(cache) == []


def test_corrupt_cache_is_rebuilt(offline):
    root, cache = offline
    _zip(root)
    first = load_cifar10()
    (npz,) = _npz(cache)
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


# --------------------------------------------------------------------------- CIFAR python batches: format and safety
def _batch(n=20, seed=0, label_key="labels") -> dict:
    """A batch shaped like the official release: uint8 (n, 3072) data, a list of Python ints,
    the batch label and file names."""
    rng = np.random.default_rng(seed)
    return {"batch_label": "training batch 1 of 5", label_key: [int(v) for v in rng.integers(0, 10, n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i:05d}.png" for i in range(n)]}


def _py2_pickle(obj) -> bytes:
    """The bytes Python 2's ``cPickle.dump(obj, f, 2)`` writes for a CIFAR batch with numpy 1.x
    (the official files): ``str`` as SHORT_BINSTRING/BINSTRING (read back with encoding="latin1"),
    ints as BININT*, an ndarray as ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')``
    plus BUILD with ``(1, shape, numpy.dtype('u1', False, True), False, <raw bytes as str>)``.
    Memo opcodes (PUT/GET) are left out: they only shorten repeated objects."""
    out = [b"\x80\x02"]

    def string(b: bytes):
        out.append(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def integer(v: int):
        out.append(b"K" + bytes([v]) if 0 <= v < 256 else b"M" + struct.pack("<H", v) if 0 <= v < 65536
                   else b"J" + struct.pack("<i", v))

    def write(o):
        if isinstance(o, dict):
            out.append(b"}(")
            for k, v in o.items():
                write(k)
                write(v)
            out.append(b"u")
        elif isinstance(o, list):
            out.append(b"](")
            for v in o:
                write(v)
            out.append(b"e")
        elif isinstance(o, int):
            integer(o)
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif isinstance(o, np.ndarray):
            out.append(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.append(b"\x85")  # (0,)
            string(b"b")
            out.append(b"\x87R(")  # _reconstruct(ndarray, (0,), 'b'), then the state tuple
            integer(1)
            for d in o.shape:
                integer(d)
            out.append(b"\x86" if o.ndim == 2 else b"\x85")
            out.append(b"cnumpy\ndtype\n")
            string(o.dtype.str[1:].encode())
            out.append(b"\x89\x88\x87R(")  # dtype('u1', False, True), then its state
            integer(3)
            string(b"|")
            out.append(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff")
            integer(0)
            out.append(b"tb\x89")
            string(o.tobytes())
            out.append(b"tb")
        else:
            raise TypeError(type(o))

    write(obj)
    return b"".join(out) + b"."


def _write_batches(root: Path, dump) -> list[dict]:
    d = root / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    batches = [_batch(seed=i) for i in range(6)]
    for name, b in zip([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], batches):
        (d / name).write_bytes(dump(b))
    return batches


def _globals(raw: bytes) -> set[str]:
    import pickletools

    return {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}


@pytest.mark.parametrize("style", ["python2", "protocol2"])
def test_official_batch_format_loads_like_torchvision_reads_it(offline, style):
    """Both the Python 2 cPickle bytes of the release and a Python 3 protocol-2 pickle load, equal to
    what an unrestricted ``pickle.load(encoding="latin1")`` (torchvision's reader) gives."""
    root, _ = offline
    dump = _py2_pickle if style == "python2" else (lambda b: pickle.dumps(b, protocol=2))
    batches = _write_batches(root, dump)
    raw = (root / "cifar10" / "cifar-10-batches-py" / "test_batch").read_bytes()
    want_globals = {"numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype"}
    assert _globals(raw) == want_globals if style == "python2" else _globals(raw) >= {"numpy.ndarray", "numpy.dtype"}
    ref = pickle.loads(raw, encoding="latin1")
    assert np.array_equal(ref["data"], batches[5]["data"]) and ref["labels"] == batches[5]["labels"]
    s = load_cifar10_official()
    assert np.array_equal(s.test.x.numpy(), ref["data"].reshape(-1, 3, 32, 32))
    assert s.test.y.tolist() == ref["labels"]
    assert np.array_equal(s.train.x[20:40].numpy(), batches[1]["data"].reshape(-1, 3, 32, 32))


class _Call:
    """Pickles as a call of ``fn(*args)``: what a crafted batch uses to run code when unpickled."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker: Path) -> dict:
    """name -> (pickled call, the refusal the error must give)."""
    import codecs
    import os

    return {"os.system": (_Call(os.system, f"touch {marker}"), "global 'posix.system' is not allowed"),
            "builtins.exec": (_Call(exec, f"open({str(marker)!r}, 'w').close()"),
                              "global '__builtin__.exec' is not allowed"),  # protocol 2 writes Python 2 names
            "numpy.load": (_Call(np.load, str(marker)), "global 'numpy.load' is not allowed"),
            "codecs.encode(rot13)": (_Call(codecs.encode, "abc", "rot13"),
                                     "_codecs.encode(str, 'rot13') is not how pickle writes bytes")}


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "numpy.load", "codecs.encode(rot13)"])
@pytest.mark.parametrize("where", ["data", "labels"])
def test_malicious_cifar10_batch_never_executes(offline, tmp_path, payload, where):
    root, cache = offline
    marker = tmp_path / "pwned"
    d = _pickles(root)
    batch = _batch()
    evil, refusal = _payloads(marker)[payload]
    batch[where] = evil if where == "data" else [evil, *batch["labels"][1:]]
    (d / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as e:
        load_cifar10_official()
    assert str(d / "data_batch_2") in str(e.value) and refusal in str(e.value)
    assert not marker.exists(), "the pickled call ran"
    assert _npz(cache) == []


def test_malicious_cifar100_file_never_executes(offline, tmp_path):
    root, _ = offline
    marker = tmp_path / "pwned"
    folder = root / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "train").write_bytes(pickle.dumps(_batch(label_key="fine_labels"), protocol=2))
    (folder / "test").write_bytes(pickle.dumps({"data": _payloads(marker)["os.system"][0]}, protocol=2))
    with pytest.raises(DataError, match=r"cifar-100-python/test is corrupt or truncated, or not a CIFAR batch.*"
                                        r"global 'posix.system' is not allowed"):
        prepare_splits({"name": "cifar100"})
    assert not marker.exists()


# --------------------------------------------------------------------------- the run id names the CIFAR-10 copy
def _paper_cifar10_configs() -> list[dict]:
    from rel_helpers import ROOT

    from common.config import plan

    runs, _ = plan("paper", ROOT)
    cfgs = [c for c in runs.values() if c["dataset"]["name"] == "cifar10"]
    assert cfgs
    return cfgs


def test_every_paper_scale_cifar10_run_reads_the_official_release():
    from common.config import run_id, set_dotted

    for cfg in _paper_cifar10_configs():
        assert cfg["dataset"]["copy"] == "official", run_id(cfg)
        assert run_id(set_dotted(cfg, "dataset.copy", None)) != run_id(cfg)  # the JPEG copy is another run


@pytest.mark.parametrize("download", [False, True], ids=["offline", "download_allowed"])
def test_paper_scale_cifar10_never_trains_on_the_jpeg_copy(offline, tmp_path, monkeypatch, capsys, download):
    """A data root holding only the JPEG zip: the plan-time check names the missing batches (or, with
    downloads allowed, the run downloads from the canonical URL, unreachable here), the trainer exits
    non-zero before training and the zip is never decoded."""
    import torchvision

    from common.data import missing_files
    from common.train import main

    root, cache = offline
    _zip(root)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    cfg = next(c for c in _paper_cifar10_configs() if c["dataset"]["download"] == download)
    batches = root / "cifar10" / "cifar-10-batches-py"
    assert missing_files(cfg["dataset"]) == ([] if download else [f"{batches}/"])
    out = tmp_path / "runs" / "r"
    # --stop-after-epoch 1: were the zip read, the run would stop after one epoch, not train 200
    cfg_file = write_config(tmp_path / "paper.yaml", cfg)
    rc = main(["--config", str(cfg_file), "--out", str(out), "--stop-after-epoch", "1"])
    err = capsys.readouterr().err
    assert rc == 4 and "Traceback" not in err, err
    assert ("127.0.0.1:9" if download else "cifar-10-batches-py") in err
    assert not out.exists() and _npz(cache) == []


def test_default_copy_reads_only_the_jpeg_copy(offline):
    root, _ = offline
    _pickles(root)
    with pytest.raises(DataError, match=r"(?s)dataset .cifar10. not found.*\*\.zip.*dataset\.copy: official"):
        load_cifar10()
    _zip(root)
    assert len(load_cifar10().train) == 20 and len(load_cifar10_official().train) == 100


def test_unknown_copy_is_a_config_error(offline):
    from common.config import ConfigError, resolve, validate_run_config

    with pytest.raises(ConfigError, match=r"'dataset.copy'='jpeg'.*cifar10.*'official'"):
        prepare_splits({"name": "cifar10", "copy": "jpeg"})
    with pytest.raises(ConfigError, match=r"'dataset.copy'='official'.*'mnist' has no such copy"):
        prepare_splits({"name": "mnist", "copy": "official"})
    with pytest.raises(ConfigError, match=r"unknown key 'dataset.options.copy'"):  # the copy is no loader option
        validate_run_config(resolve(tiny(dataset={"name": "cifar10", "options": {"copy": "official"}})), "t")


# --------------------------------------------------------------------------- the data root is only read
def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_default_cache_is_the_projects_never_the_data_root(offline, tmp_path, monkeypatch):
    from common import data

    root, _ = offline
    monkeypatch.delenv("MIXREPRO_CACHE")
    assert data.cache_dir() == Path(data.__file__).resolve().parents[1] / "data" / "cache"
    project = tmp_path / "project-cache"
    monkeypatch.setattr(data, "PROJECT_CACHE", project)  # keep this checkout's cache out of the test
    _zip(root)
    _pickles(root)
    before = _tree(root)
    load_cifar10()
    load_cifar10_official()
    assert _tree(root) == before
    assert len(_npz(project)) == 2


def test_a_data_root_that_is_a_file_is_named(offline, tmp_path):
    from common.data import missing_files

    f = tmp_path / "not-a-folder"
    f.write_text("x")
    msg = f"data root {f} is a file, not a directory"
    with pytest.raises(DataError, match=msg):
        load_cifar10(root=str(f))
    (only,) = missing_files({"name": "airfoil", "root": str(f)})  # plan time: the same message
    assert only.startswith(msg)


# --------------------------------------------------------------------------- sources
def test_sources_name_size_and_digest_also_from_the_cache(offline, monkeypatch):
    import hashlib

    from common import data

    root, cache = offline
    path = _zip(root)
    want = [{"name": "cifar10/tiny.zip", "size": path.stat().st_size,
             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]
    calls = []
    real = data.file_sha256
    monkeypatch.setattr(data, "file_sha256", lambda p: calls.append(p) or real(p))
    assert load_cifar10().sources == want
    assert load_cifar10().sources == want and len(calls) == 1  # cache hit: same files, hashed once
    path.write_bytes(path.read_bytes())  # same content, new mtime: hashed again
    assert load_cifar10().sources == want and len(calls) == 2


def test_every_kind_of_source_is_recorded(offline):
    """A file shipped with a package, a file under the data root, and a folder read file by file (its
    file count, total size and the digest of its sorted name/size listing, not each file's digest)."""
    import hashlib

    from common.image_datasets import load_digits, load_imagenet
    from papers.c_mixup.data import load_airfoil

    root, _ = offline
    (digits,) = load_digits().sources
    assert digits["name"] == "sklearn/datasets/data/digits.csv.gz" and len(digits["sha256"]) == 64
    airfoil = root / "airfoil" / "airfoil_self_noise.dat"
    airfoil.parent.mkdir()
    airfoil.write_text(AIRFOIL_ROW * 1503, newline="")
    raw = airfoil.read_bytes()
    assert load_airfoil().sources == [{"name": "airfoil/airfoil_self_noise.dat", "size": len(raw),
                                       "sha256": hashlib.sha256(raw).hexdigest()}]
    base = _imagenet(root, val_flat=False)
    listing = "n01/a.JPEG\t1\nn02/a.JPEG\t1\n"
    train = {"name": "imagenet/train", "files": 2, "size": 2,
             "listing_sha256": hashlib.sha256(listing.encode()).hexdigest()}
    assert load_imagenet().sources[0] == train and load_imagenet().sources[1]["name"] == "imagenet/val"
    (base / "train" / "n02" / "a.JPEG").write_bytes(b"xy")  # one size changes: the listing digest follows
    assert load_imagenet().sources[0]["listing_sha256"] != train["listing_sha256"]


# --------------------------------------------------------------------------- plan-time check (missing_files)
@pytest.mark.parametrize("cut", ["half", "tail"])
def test_plan_time_check_names_a_truncated_zip(offline, cut):
    from common.data import missing_files

    root, _ = offline
    path = _zip(root)
    assert missing_files({"name": "cifar10"}) == []
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-10])
    assert missing_files({"name": "cifar10"}) == [f"{path}: not a valid zip archive (truncated or corrupt)"]


def test_plan_time_check_names_a_truncated_tiny_imagenet_zip_even_when_downloads_are_allowed(offline, monkeypatch):
    from common.data import missing_files

    root, _ = offline
    archive = root / "tiny_imagenet" / "tiny-imagenet-200.zip"
    archive.parent.mkdir()
    archive.write_bytes(b"PK\x03\x04 truncated")
    monkeypatch.setenv("MIXREPRO_DOWNLOAD", "1")  # a present file is used as it is, never re-downloaded
    assert missing_files({"name": "tiny_imagenet"}) == [f"{archive}: not a valid zip archive (truncated or corrupt)"]


def test_plan_time_check_names_two_zips(offline):
    from common.data import missing_files

    root, _ = offline
    first = _zip(root)
    second = first.with_name("other.zip")
    second.write_bytes(first.read_bytes())
    assert missing_files({"name": "cifar10"}) == [
        f"{second} and {first}: more than one match, keep the one copy to read"]
    with pytest.raises(DataError, match="more than one zip"):
        load_cifar10()


@pytest.mark.parametrize("name", ["cifar10_official", "cifar100", "mnist", "tiny_imagenet", "airfoil", "no2",
                                  "exchange_rate", "communities", "skillcraft"])
def test_plan_time_check_honours_downloads_like_the_loaders(offline, monkeypatch, name):
    """A downloadable dataset is not missing when ``dataset.download`` or ``MIXREPRO_DOWNLOAD=1`` allows
    the download; the JPEG copy and ImageNet cannot be downloaded and stay missing."""
    from common.data import missing_files

    ds = {"name": "cifar10", "copy": "official"} if name == "cifar10_official" else {"name": name}
    assert missing_files(ds)
    assert missing_files({**ds, "download": True}) == []
    monkeypatch.setenv("MIXREPRO_DOWNLOAD", "1")
    assert missing_files(ds) == []
    assert missing_files({"name": "cifar10"}) and missing_files({"name": "imagenet"})


def _imagenet(root: Path, val_flat: bool) -> Path:
    base = root / "imagenet"
    for c in ("n01", "n02"):
        (base / "train" / c).mkdir(parents=True)
        (base / "train" / c / "a.JPEG").write_bytes(b"x")
        if not val_flat:
            (base / "val" / c).mkdir(parents=True)
            (base / "val" / c / "v.JPEG").write_bytes(b"x")
    if val_flat:
        (base / "val").mkdir()
        for i in range(3):
            (base / "val" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"x")
    return base


def test_plan_time_check_finds_an_unsorted_imagenet_val_folder(offline):
    from common.data import missing_files

    root, _ = offline
    assert missing_files({"name": "imagenet"}) == [f"{root}/imagenet/train/", f"{root}/imagenet/val/"]
    base = _imagenet(root, val_flat=True)
    (problem,) = missing_files({"name": "imagenet"})
    assert problem.startswith(f"{base / 'val'}/ holds 3 image or tar files directly")
    assert "ILSVRC2012_devkit_t12.tar.gz" in problem and "tv.datasets.ImageNet" in problem
    sorted_root = root / "sorted"
    base = _imagenet(sorted_root, val_flat=False)
    assert missing_files({"name": "imagenet", "root": str(sorted_root)}) == []
    (base / "val" / "n03").mkdir()
    (problem,) = missing_files({"name": "imagenet", "root": str(sorted_root)})
    assert "train/ and val/ have different class folders (1 in one only, e.g. n03)" in problem


# --------------------------------------------------------------------------- regression files: every cell a number
AIRFOIL_ROW = "800\t0\t0.3048\t71.3\t0.00266337\t126.201\r\n"


@pytest.mark.parametrize("cell,line,expect", [
    ("nan", 7, "line 7, column 4: 'nan' is not a finite number"),
    ("abc", 1503, "line 1503, column 4: 'abc' is not a finite number"),
    ("inf", 2, "line 2, column 4: 'inf' is not a finite number"),
    ("", 100, "line 100: 5 columns, the lines before have 6"),  # tab-separated: an empty cell is a lost column
])
def test_a_bad_airfoil_cell_names_file_line_and_column(offline, cell, line, expect):
    from papers.c_mixup.data import load_airfoil

    root, _ = offline
    rows = [AIRFOIL_ROW] * 1503
    rows[line - 1] = AIRFOIL_ROW.replace("71.3", cell)
    path = root / "airfoil" / "airfoil_self_noise.dat"
    path.parent.mkdir()
    path.write_text("".join(rows), newline="")
    with pytest.raises(DataError) as e:
        load_airfoil()
    assert str(e.value) == f"{path}, {expect}"


def test_a_bad_cell_in_the_other_regression_files_is_named(offline):
    import gzip

    from papers.c_mixup.data import load_communities, load_exchange_rate, load_no2

    root, _ = offline
    no2 = root / "no2" / "547_no2.tsv.gz"
    no2.parent.mkdir()
    header = "\t".join([f"x{i}" for i in range(7)] + ["target"])
    no2.write_bytes(gzip.compress(("\n".join([header] + ["1\t2\t3\t4\t5\t6\t7\t8"] * 3 + ["1\t2\t3\tNaN\t5\t6\t7\t8"])
                                   + "\n").encode()))
    with pytest.raises(DataError, match=rf"^{no2}, line 5, column 4: 'NaN' is not a finite number$"):
        load_no2()
    ex = root / "exchange_rate" / "exchange_rate.txt"
    ex.parent.mkdir()
    ex.write_text("0.5,0.6\n0.5,n/a\n")
    with pytest.raises(DataError, match=rf"^{ex}, line 2, column 2: 'n/a' is not a finite number$"):
        load_exchange_rate()
    crime = root / "communities_crime" / "communities.data"
    crime.parent.mkdir()
    row = ["8", "?", "?", "Town", *["0.5"] * 123, "0.2"]
    bad = list(row)
    bad[10] = "nan"  # "?" marks a missing value; a literal nan is not one
    crime.write_text("\n".join(",".join(r) for r in (row, row, bad)) + "\n")
    with pytest.raises(DataError, match=rf"^{crime}, line 3, column 11: 'nan' is not a finite number or '\?'"):
        load_communities()
