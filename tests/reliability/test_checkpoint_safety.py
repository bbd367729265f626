"""Checkpoints are data, never code. Every ``torch.load`` in the repository passes
``weights_only=True``; a planted ``last.pt`` that would run code when unpickled is refused before
anything in it runs (through the loader and through ``python -m common.train``), is set aside as
``last.pt.corrupt`` (never kept as ``prev.pt``) and the run starts fresh, saying why.
"""
from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import pytest
import torch

from rel_helpers import ROOT, run_train, tiny, write_config

from common.config import resolve


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious(kind: str, marker: Path) -> bytes:
    """A checkpoint-looking file: a ``torch.save`` zip with the payload inside a state dict, or a bare pickle."""
    if kind == "bare":
        return pickle.dumps(_Payload(marker), protocol=2)
    import io

    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 0, "history": [], "x": _Payload(marker)}, buf)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["torch_save", "bare"])
def test_loader_refuses_a_checkpoint_that_would_run_code(tmp_path, kind, capsys):
    from common.checkpoint import load_checkpoint

    marker, ckpt = tmp_path / "pwned", tmp_path / "ckpt"
    ckpt.mkdir()
    payload = _malicious(kind, marker)
    (ckpt / "last.pt").write_bytes(payload)
    with pytest.warns(UserWarning, match="unreadable"):
        assert load_checkpoint(ckpt, resolve(tiny())) == (None, None)
    assert not marker.exists()
    out = capsys.readouterr().out
    assert "refused, as loading it could run code" in out and "starting fresh" in out, out
    assert (ckpt / "last.pt.corrupt").read_bytes() == payload  # quarantined as it was
    assert not (ckpt / "last.pt").exists() and not (ckpt / "prev.pt").exists()


def test_cli_run_never_executes_a_planted_checkpoint(tmp_path):
    """``python -m common.train`` with a malicious ``last.pt`` in its default checkpoint directory:
    no code runs, the file is set aside, the run trains from scratch and its next checkpoint is its own."""
    marker = tmp_path / "pwned"
    cfg = write_config(tmp_path / "run.yaml", tiny(**{"train.epochs": 2}))
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "checkpoints" / "r"
    ckpt.mkdir(parents=True)
    payload = _malicious("torch_save", marker)
    (ckpt / "last.pt").write_bytes(payload)
    r = run_train(cfg, out, "--stop-after-epoch", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert "refused, as loading it could run code" in r.stdout and "starting fresh" in r.stdout, r.stdout
    assert "resumed from" not in r.stdout
    assert (ckpt / "last.pt.corrupt").read_bytes() == payload
    assert not (ckpt / "prev.pt").exists()  # the payload was never rotated into prev.pt
    assert torch.load(ckpt / "last.pt", weights_only=True)["epoch"] == 0  # the run's own epoch-1 checkpoint


def _torch_load_calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        f = node.func if isinstance(node, ast.Call) else None
        if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) and f.value.id == "torch":
            yield node


def test_every_torch_load_in_the_repository_is_weights_only():
    """A source scan: each ``torch.load(...)`` call passes ``weights_only=True`` literally."""
    files = [p for d in ("common", "papers", "benchmarks", "tests", "workflow") for p in (ROOT / d).rglob("*.py")]
    calls, unsafe = 0, []
    for p in files:
        for node in _torch_load_calls(p):
            calls += 1
            kw = {k.arg: k.value for k in node.keywords}
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                unsafe.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert calls > 5 and unsafe == [], unsafe
