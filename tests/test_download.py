"""The CIFAR-10 download path, for real, against a local HTTP server (no internet).

We build a miniature archive in the official python-batches layout, serve it on 127.0.0.1, point
torchvision's CIFAR10 class at it (URL and checksums) and let ``load_cifar10_official(download=True)``
(``dataset.copy: official``) fetch, verify, extract and cache it.
"""
import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest
import torchvision

from common.data import DataError
from common.image_datasets import load_cifar10_official


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}


def _make_archive(dst):
    files = {f"data_batch_{i}": _batch(20, i) for i in range(1, 6)}
    files["test_batch"] = _batch(10, 9)
    files["batches.meta"] = {"label_names": ["c%d" % i for i in range(10)]}
    md5 = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, obj in files.items():
            raw = pickle.dumps(obj, protocol=2)
            md5[name] = hashlib.md5(raw).hexdigest()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    (dst / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest(), md5, files


@pytest.fixture
def server(tmp_path):
    serve_dir = tmp_path / "serve"
    serve_dir.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve_dir))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield serve_dir, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_cifar10_downloads_verifies_and_caches(server, tmp_path, monkeypatch):
    serve_dir, url = server
    tgz_md5, md5, files = _make_archive(serve_dir)
    C = torchvision.datasets.CIFAR10
    monkeypatch.setattr(C, "url", f"{url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(C, "tgz_md5", tgz_md5)
    monkeypatch.setattr(C, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(C, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(C, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]})
    monkeypatch.setenv("MIXREPRO_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    splits = load_cifar10_official(root=str(root), download=True)
    assert len(splits.train) == 100 and len(splits.test) == 10
    expect = files["data_batch_1"]["data"][0].reshape(3, 32, 32)
    assert (splits.train.x[0].numpy() == expect).all()
    assert list((tmp_path / "cache").glob("cifar10-*.npz"))
    # second load: served from the local files, no download needed any more
    monkeypatch.setattr(C, "url", "http://127.0.0.1:9/unreachable.tar.gz")
    again = load_cifar10_official(root=str(root), download=False)
    assert (again.train.x == splits.train.x).all()


def test_cifar10_offline_and_missing_names_the_expected_files(tmp_path, monkeypatch):
    monkeypatch.delenv("MIXREPRO_DOWNLOAD", raising=False)
    with pytest.raises(DataError) as e:
        load_cifar10_official(root=str(tmp_path), download=False)
    msg = str(e.value)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in msg and "data_batch_1" in msg
    assert "cs.toronto.edu" in msg and not (tmp_path / "cache").exists()
