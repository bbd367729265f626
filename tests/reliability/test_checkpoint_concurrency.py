"""Checkpoint rotation under concurrent writers: several processes and threads save into one
checkpoint directory many times (a bounded loop) while readers load ``last.pt``; no writer raises,
every read finds a complete, loadable ``last.pt`` and no temporary file is left."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import torch

from rel_helpers import env, stray_temp_files

SAVES = 40
PAYLOAD = 300_000  # floats: serialising takes long enough that an unlocked rotation shows its window

WRITER = textwrap.dedent(f"""
    import sys, torch
    from common.checkpoint import save_checkpoint
    d, who = sys.argv[1], int(sys.argv[2])
    w = torch.full(({PAYLOAD},), float(who))
    for i in range({SAVES}):
        save_checkpoint(__import__("pathlib").Path(d), {{"writer": who, "i": i, "w": w}})
    print("done", flush=True)
""")


def _check(state) -> None:
    assert state["w"].shape == (PAYLOAD,) and bool((state["w"] == state["writer"]).all())


def test_concurrent_savers_never_fail_and_last_is_always_readable(tmp_path):
    from common.checkpoint import save_checkpoint

    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, {"writer": 0, "i": -1, "w": torch.zeros(PAYLOAD)})
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(ckpt), str(k)], env=env(), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    errors: list[BaseException] = []
    writers_done = threading.Event()

    def thread_writer(who: int) -> None:
        try:
            w = torch.full((PAYLOAD,), float(who))
            for i in range(SAVES):
                save_checkpoint(ckpt, {"writer": who, "i": i, "w": w})
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    reads = []

    def reader() -> None:
        try:
            while not writers_done.is_set() or len(reads) < 5:
                state = torch.load(ckpt / "last.pt", weights_only=True)  # no lock: must always be there
                _check(state)
                reads.append(state["writer"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=thread_writer, args=(k,)) for k in (3, 4, 5)]
    rd = threading.Thread(target=reader)
    rd.start()
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=300)
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        writers_done.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
    rd.join(timeout=60)
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0 and so.strip() == "done", se
    assert errors == [], errors
    assert len(reads) >= 5
    for name in ("last.pt", "prev.pt"):
        _check(torch.load(ckpt / name, weights_only=True))
    assert stray_temp_files(tmp_path) == []
    assert sorted(p.name for p in ckpt.iterdir()) == [".lock", "last.pt", "prev.pt"]


def test_every_rotation_happens_under_the_directory_lock(tmp_path, monkeypatch):
    """Deterministic counterpart of the test above, which can pass without the lock when no two
    rotations happen to overlap on a 2-core machine: at every rename that puts a file in place as
    ``last.pt``, ``prev.pt`` or ``last.pt.corrupt``, another open file description of
    ``<dir>/.lock`` cannot take the lock, i.e. the saver holds it."""
    import fcntl
    import os
    from pathlib import Path

    import common.checkpoint as ck

    ckpt = tmp_path / "ckpt"
    ck.save_checkpoint(ckpt, {"i": 0})
    real_replace = os.replace
    seen = []

    def held() -> bool:
        fd = os.open(ckpt / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases the lock if this probe took it
        return False

    def replace(src, dst, *a, **k):
        if Path(dst).parent == ckpt and Path(dst).name in ("last.pt", "prev.pt", "last.pt.corrupt"):
            seen.append((Path(dst).name, held()))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(ck.os, "replace", replace)
    for i in range(1, 3):
        ck.save_checkpoint(ckpt, {"i": i})
    (ckpt / "last.pt").write_bytes(b"truncated")  # set aside as last.pt.corrupt by the next save
    ck.save_checkpoint(ckpt, {"i": 3})
    monkeypatch.undo()
    assert {name for name, _ in seen} == {"last.pt", "prev.pt", "last.pt.corrupt"}
    assert all(locked for _, locked in seen), seen
