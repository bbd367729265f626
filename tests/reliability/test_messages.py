"""Messages, not tracebacks: a full disk, a file-size limit or an ``--out`` under a regular file give
``error: cannot write <what> <path>: <reason>`` and exit code 4, keep the previous good checkpoint
and leave no partial file; a NaN stop leaves no empty run directory. Conversely, the CLI's
catch-all turns only known user-facing errors into messages: a bug keeps its traceback.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from rel_helpers import env, limit_file_size, stray_temp_files, tiny, train_cmd, write_config

ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def _fsync_fails_for(monkeypatch, name_part: str, err: int = errno.ENOSPC) -> None:
    """Make ``fsync`` of the temporary file of one target (e.g. ``.last.pt.``) fail like a full disk."""
    import common.fileio as io

    real = io.os.fsync

    def fsync(fd):
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)


def test_disk_full_writing_a_checkpoint(tmp_path, monkeypatch, capsys):
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny())
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    argv = ["--config", str(cfg), "--out", str(out), "--ckpt-dir", str(ckpt)]
    assert main([*argv, "--stop-after-epoch", "1"]) == 0
    good = (ckpt / "last.pt").read_bytes()
    _fsync_fails_for(monkeypatch, ".last.pt.")
    capsys.readouterr()
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot write checkpoint {ckpt / 'last.pt'}: {ENOSPC}", err
    assert (ckpt / "last.pt").read_bytes() == good
    assert not (out / "metrics.json").exists()
    assert stray_temp_files(tmp_path) == []


def test_disk_full_writing_metrics(tmp_path, monkeypatch, capsys):
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny(**{"train.epochs": 1}))
    out = tmp_path / "runs" / "r"
    _fsync_fails_for(monkeypatch, ".metrics.json.")
    assert main(["--config", str(cfg), "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot write metrics {out / 'metrics.json'}: {ENOSPC}", err
    assert not (out / "metrics.json").exists()
    assert stray_temp_files(tmp_path) == []


@pytest.mark.slow
def test_file_size_limit_writing_a_checkpoint_subprocess(tmp_path):
    """A real ``RLIMIT_FSIZE`` (as set by a cluster scheduler or ``ulimit -f``) in the trainer process."""
    cfg = write_config(tmp_path / "run.yaml", tiny())
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    e = env(MIXREPRO_CACHE=tmp_path / "cache")
    cmd = train_cmd(cfg, out, "--ckpt-dir", str(ckpt))
    r = subprocess.run([*cmd, "--stop-after-epoch", "1"], cwd=tmp_path, env=e, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr
    good = (ckpt / "last.pt").read_bytes()
    assert len(good) > 20_000  # the limit below lets epochs.jsonl through, not the checkpoint
    r = subprocess.run(cmd, cwd=tmp_path, env=e, capture_output=True, text=True, timeout=240,
                       preexec_fn=limit_file_size(len(good) // 2))
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip() == f"error: cannot write checkpoint {ckpt / 'last.pt'}: {os.strerror(errno.EFBIG)}"
    assert "Traceback" not in r.stderr
    assert (ckpt / "last.pt").read_bytes() == good
    assert not (out / "metrics.json").exists()
    assert stray_temp_files(tmp_path) == []


@pytest.mark.parametrize("which", ["--out", "--ckpt-dir"])
def test_output_under_a_regular_file_is_named(tmp_path, capsys, which):
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny())
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a directory\n")
    bad = blocker / "runs" / "r"
    argv = ["--config", str(cfg), "--out", str(bad if which == "--out" else tmp_path / "runs" / "r")]
    if which == "--ckpt-dir":
        argv += ["--ckpt-dir", str(bad)]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and str(bad) in err and f"{blocker} exists and is not a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing trained, nothing written


def test_nan_stop_leaves_no_empty_run_directory(tmp_path):
    cfg = write_config(tmp_path / "run.yaml", tiny(method={"name": "nan_at_step_test", "at_step": 0}))
    out = tmp_path / "results" / "runs" / "r"
    r = subprocess.run(train_cmd(cfg, out, plugins=True), cwd=tmp_path, env=env(), capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 3 and "non-finite loss" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "results").exists()  # neither the run dir nor the parents it created


def test_nan_stop_never_deletes_a_directory_holding_other_files(tmp_path):
    cfg = write_config(tmp_path / "run.yaml", tiny(method={"name": "nan_at_step_test", "at_step": 0}))
    out = tmp_path / "runs" / "r"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine\n")
    r = subprocess.run(train_cmd(cfg, out, plugins=True), cwd=tmp_path, env=env(), capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 3, r.stderr
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_non_utf8_json_config_names_file_and_offset(tmp_path, capsys):
    from common.train import main

    p = tmp_path / "run.json"
    data = b'{"seed": 0, "model": "caf\xe9"}'
    p.write_bytes(data)
    assert main(["--config", str(p), "--out", str(tmp_path / "runs" / "r")]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "not UTF-8" in err and f"offset {data.index(0xE9)}" in err, err
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- the catch-all
def _main_raising(monkeypatch, tmp_path, exc: BaseException):
    import common.train as tr

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(tr, "train", boom)
    cfg = write_config(tmp_path / "run.yaml", tiny())
    return lambda: tr.main(["--config", str(cfg), "--out", str(tmp_path / "runs" / "r")])


@pytest.mark.parametrize("exc", [KeyError("scaler"), FileNotFoundError(2, "No such file", "x.pt"),
                                 __import__("json").JSONDecodeError("Expecting value", "{", 1),
                                 RuntimeError("size mismatch"), TypeError("bug"), AttributeError("bug")])
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys, exc):
    run = _main_raising(monkeypatch, tmp_path, exc)
    with pytest.raises(type(exc)):
        run()
    assert "error:" not in capsys.readouterr().err


def _user_errors():
    from common.data import DataError
    from common.fileio import WriteError
    from common.methods import ConfigError
    from common.registry import RegistryError
    from common.train import NonFiniteLoss

    return [(ConfigError("key 'x' bad"), 2), (RegistryError("unknown method 'mixpu'"), 2),
            (NonFiniteLoss("non-finite loss nan at epoch 1, step 0"), 3), (DataError("missing file data/x.zip"), 4),
            (WriteError("metrics", Path("out/metrics.json"), OSError(errno.ENOSPC, ENOSPC)), 4)]


@pytest.mark.parametrize("i", range(5))
def test_user_facing_errors_become_one_line_messages(tmp_path, monkeypatch, capsys, i):
    exc, code = _user_errors()[i]
    run = _main_raising(monkeypatch, tmp_path, exc)
    assert run() == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(exc).split(":")[-1].strip() in err and len(err.splitlines()) == 1
