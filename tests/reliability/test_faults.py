"""Faults: killed runs resume exactly, corrupt checkpoints fall back, writes are atomic, a
non-finite loss stops the run without a result, and concurrent runs share no temporary files.

Trainer runs are real ``python -m common.train`` subprocesses killed with real signals.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rel_helpers import (
    assert_same_run, env, epochs, metrics, popen_train, run_train, signal_when, stray_temp_files, tiny, write_config,
)

from common.config import resolve


# --------------------------------------------------------------------------- resume
@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches_uninterrupted_run(tmp_path, reference):
    cfg = write_config(tmp_path / "run.yaml", tiny())
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    proc = popen_train(cfg, out, "--ckpt-dir", str(ckpt), cwd=tmp_path)
    # epoch 1 is done and checkpointed (atomically); 0.02 s later: into epoch 2 (35 steps + evaluation: ~0.2 s or more)
    stdout, _ = signal_when(ckpt / "last.pt", proc, signal.SIGKILL, delay=0.02)
    assert proc.returncode == -signal.SIGKILL
    assert '"epoch": 1' in stdout and '"epoch": 2' not in stdout, stdout  # killed inside epoch 2
    assert not (out / "metrics.json").exists()
    assert all(p.name.startswith(".") for p in stray_temp_files(tmp_path))  # never a visible half-file

    r = run_train(cfg, out, "--ckpt-dir", str(ckpt), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "last.pt" in r.stdout
    assert_same_run(out, reference)
    assert metrics(out)["provenance"]["resumed_from_epoch"] >= 1


def test_stop_after_epoch_then_rerun_gives_identical_metrics(tmp_path, reference, capsys):
    """``--stop-after-epoch`` through the CLI entry point (in-process: the signal-level path is
    covered by the SIGKILL test above)."""
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny())
    out = tmp_path / "runs" / "r"  # default checkpoint dir: <out>/../../checkpoints/<id>
    assert main(["--config", str(cfg), "--out", str(out), "--stop-after-epoch", "2"]) == 0
    assert "stopping after epoch 2" in capsys.readouterr().out
    assert not out.exists()  # the run directory gets its files when the run has finished
    ckpt = tmp_path / "checkpoints" / "r"
    assert (ckpt / "last.pt").exists() and len(epochs(ckpt)) == 2  # the progress log beside the checkpoint

    assert main(["--config", str(cfg), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "resumed from" in log and "at epoch 2" in log
    assert_same_run(out, reference)
    assert stray_temp_files(tmp_path) == []


def test_corrupt_last_checkpoint_falls_back_to_previous_with_warning(tmp_path, reference, capsys):
    from common.train import train

    cfg, out, ckpt = resolve(tiny()), tmp_path / "runs" / "r", tmp_path / "ckpt"
    assert train(cfg, out, ckpt, stop_after_epoch=2, progress=False) is None
    last = ckpt / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a copy cut short
    capsys.readouterr()
    with pytest.warns(UserWarning, match="unreadable"):
        train(cfg, out, ckpt, progress=False)
    log = capsys.readouterr().out
    assert "WARNING" in log and "prev.pt" in log and "at epoch 1" in log
    assert_same_run(out, reference)


def test_both_checkpoints_corrupt_starts_fresh_and_still_matches(tmp_path, reference, capsys):
    from common.train import train

    cfg, out, ckpt = resolve(tiny()), tmp_path / "runs" / "r", tmp_path / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "last.pt").write_bytes(b"not a checkpoint")
    (ckpt / "prev.pt").write_bytes(b"")
    with pytest.warns(UserWarning, match="unreadable"):
        train(cfg, out, ckpt, progress=False)
    assert "resumed from" not in capsys.readouterr().out
    assert_same_run(out, reference)


def test_checkpoint_of_another_config_is_not_resumed(tmp_path, reference, capsys):
    from common.train import train

    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    train(resolve(tiny(seed=5)), out, ckpt, stop_after_epoch=1, progress=False)
    capsys.readouterr()
    train(resolve(tiny()), out, ckpt, progress=False)
    log = capsys.readouterr().out
    assert "different config" in log and "resumed from" not in log
    assert_same_run(out, reference)


# --------------------------------------------------------------------------- non-finite loss
def test_nan_loss_stops_with_step_and_writes_no_metrics(tmp_path):
    # steps_per_epoch = ceil(1097 / 32) = 35: step 38 is the 4th step of epoch 2
    cfg = write_config(tmp_path / "run.yaml", tiny(method={"name": "nan_at_step_test", "at_step": 38}))
    out = tmp_path / "runs" / "r"
    r = run_train(cfg, out, "--ckpt-dir", str(tmp_path / "ckpt"), cwd=tmp_path, plugins=True)
    assert r.returncode != 0
    assert "non-finite loss" in r.stderr and "step 38" in r.stderr and "epoch 2" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert len(epochs(tmp_path / "ckpt")) == 1  # epoch 1 finished before the blow-up; nothing of epoch 2 is kept


def test_diverging_lr_stops_the_run_in_process(tmp_path):
    from common.train import NonFiniteLoss, train

    out = tmp_path / "runs" / "r"
    with pytest.raises(NonFiniteLoss, match=r"step \d+"):
        train(resolve(tiny(**{"train.lr": 1e30, "train.epochs": 2})), out, tmp_path / "ckpt", progress=False)
    assert not (out / "metrics.json").exists()


# --------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch, fail_at):
    import common.fileio as io

    target = tmp_path / "metrics.json"
    io.atomic_write_json(target, {"old": 1})
    before = target.read_bytes()

    class Boom(OSError):
        pass

    def boom(*a, **k):
        raise Boom("simulated crash mid-write")

    if fail_at == "write":  # half the payload reaches the temp file, then the write dies
        real_fdopen = os.fdopen

        def fdopen(fd, mode="r", *a, **k):
            f = real_fdopen(fd, mode, *a, **k)
            real_write = f.write

            class F:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    f.close()

                def write(self, data):
                    real_write(data[: len(data) // 2])
                    raise Boom("disk full")

                def __getattr__(self, name):
                    return getattr(f, name)

            return F()

        monkeypatch.setattr(io.os, "fdopen", fdopen)
    elif fail_at == "fsync":
        monkeypatch.setattr(io.os, "fsync", boom)
    else:
        monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(io.WriteError, match=r"cannot write file .*metrics\.json: (simulated crash|disk full)") as ei:
        io.atomic_write_json(target, {"new": 2, "pad": "x" * 100_000})
    monkeypatch.undo()
    assert isinstance(ei.value.__cause__, Boom) and str(target) in str(ei.value)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_checkpoint_save_failure_keeps_a_loadable_checkpoint(tmp_path, monkeypatch):
    import torch

    import common.fileio as io
    from common.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path, {"epoch": 0, "w": torch.zeros(3)})
    save_checkpoint(tmp_path, {"epoch": 1, "w": torch.ones(3)})
    monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(io.WriteError, match="cannot write checkpoint .*last.pt: killed"):
        save_checkpoint(tmp_path, {"epoch": 2, "w": torch.full((3,), 2.0)})
    monkeypatch.undo()
    ck, path = load_checkpoint(tmp_path)  # the new file never landed; nothing was rotated
    assert ck is not None and ck["epoch"] == 1 and path.name == "last.pt"
    assert torch.load(tmp_path / "prev.pt", weights_only=True)["epoch"] == 0
    assert stray_temp_files(tmp_path) == []


WRITER = textwrap.dedent("""
    import sys
    from common.fileio import atomic_write_bytes
    target, n = sys.argv[1], int(sys.argv[2])
    i = 0
    while True:  # alternate two large payloads until killed
        b = bytes([65 + i % 2]) * n
        atomic_write_bytes(target, b)
        i += 1
        if i == 1:
            print("first", flush=True)
""")


def test_sigkill_during_writes_never_leaves_a_partial_file(tmp_path):
    target, n = tmp_path / "result.bin", 8_000_000
    target.write_bytes(b"Z" * 10)
    for delay in (0.05, 0.2, 0.45):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(n)], env=env(), cwd=tmp_path,
                             stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "first"
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        data = target.read_bytes()
        assert len(data) == n and data in (b"A" * n, b"B" * n), "a killed write left a partial file"
        # a SIGKILL cannot clean up: a hidden '.result.bin.*.tmp' may remain, never the target itself
        for t in stray_temp_files(tmp_path):
            assert t.name.startswith(".result.bin.") and t.name.endswith(".tmp")


def test_concurrent_writers_to_one_path_share_no_temp_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from common.fileio import atomic_write_bytes

    target = tmp_path / "cache.npz"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda b: atomic_write_bytes(target, b), payloads * 3))
    assert target.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz"]


def test_written_files_follow_the_umask_like_open(tmp_path):
    from common.fileio import atomic_write_text

    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(atomic, "x")
    assert (atomic.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


# --------------------------------------------------------------------------- concurrency
def _fake_cifar10_zip(root: Path, per_class: int = 6) -> Path:
    """A tiny CIFAR-10-layout zip (train/<class>/<i>.png, test/<class>/<i>.png) of random images."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    from common.image_datasets import CIFAR10_CLASSES

    rng = np.random.default_rng(0)
    path = root / "cifar10" / "tiny.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as z:
        i = 0
        for split, n in (("train", per_class), ("test", 2)):
            for c in CIFAR10_CLASSES:
                for _ in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                    z.writestr(f"{split}/{c}/{i:05d}.png", buf.getvalue())
                    i += 1
    return path


@pytest.mark.slow
def test_two_runs_in_parallel_share_no_temp_files_and_agree(tmp_path):
    """Two jobs at once (as ``snakemake -j 2`` runs them): different run dirs, one shared data
    cache that both build at the same moment. Both succeed with identical numbers, the cache is
    one complete file and no temporary file is left anywhere."""
    data, cache, work = tmp_path / "data", tmp_path / "cache", tmp_path / "results"
    _fake_cifar10_zip(data)
    cfg = write_config(tmp_path / "run.yaml", tiny(
        dataset={"name": "cifar10", "val_size": 10}, model={"name": "resnet8", "width": 4},
        **{"train.epochs": 2, "train.batch_size": 16}))
    outs = [work / "runs" / "a", work / "runs" / "b"]
    procs = [popen_train(cfg, o, cwd=tmp_path, MIXREPRO_DATA=data, MIXREPRO_CACHE=cache) for o in outs]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (so, se) in zip(procs, results):
        assert p.returncode == 0, se
    assert metrics(outs[0])["test"] == metrics(outs[1])["test"]
    assert epochs(outs[0]) == epochs(outs[1])
    assert len(list(cache.glob("*.npz"))) == 1  # one complete array cache (cache/sha256/ holds file digests)
    assert stray_temp_files(tmp_path) == []
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["a", "b"]
