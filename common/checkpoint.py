"""A run's checkpoints: where they live, how they are written and read, and which one may continue a run.

* :func:`default_checkpoint_dir`: the one rule for where a run's checkpoints go;
* :func:`save_checkpoint`: ``last.pt`` written atomically, the one before kept as ``prev.pt``;
* :func:`load_checkpoint`: the newest readable checkpoint, loaded with ``torch.load(weights_only=True)``
  (tensors and plain data only: a file that would need any other object to unpickle is refused
  before anything in it runs, and set aside like a truncated one);
* :func:`mark_finished`: after ``metrics.json``: the run is marked finished and only ``last.pt`` is kept;
  :func:`mark_interrupted`: ``last.pt`` is a stop on a signal, to be resumed (:mod:`common.walltime`);
* :func:`plain_state` / :func:`restore_plain_state`: the per-epoch counters of a method that a
  mid-epoch checkpoint keeps.

The checkpoint directory also holds the run's progress log (``epochs.jsonl``, one row per finished
epoch, written after the checkpoint of that epoch); the run directory gets its outputs only when the
run has finished.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import threading
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import WriteError
from .fileio import atomic_write_json, dir_lock, write_temp

CKPT_KEYS = ("model", "optimizer", "scaler", "history", "epoch", "run_config", "code_digest")
FINISHED = "finished.json"  # in the checkpoint dir: metrics.json was written from its last.pt
INTERRUPTED = "interrupted.json"  # in the checkpoint dir: last.pt is a stop on a signal (common.walltime)
PROGRESS = "epochs.jsonl"  # in the checkpoint dir: the rows of the epochs finished so far
_RUN_DIGESTS: dict[str, str] = {}


def default_checkpoint_dir(out) -> Path:
    """Where a run writing to ``out`` keeps its checkpoints (``--ckpt-dir`` overrides it).

    ``<root>/runs/<id>`` (the workflow's layout) -> ``<root>/checkpoints/<id>`` (``results/*/checkpoints/``
    is gitignored); any other ``--out`` -> ``<parent>/.<name>.checkpoints``, a hidden sibling of the
    run directory, so the checkpoints stay beside the run and the run directory holds only its results."""
    out = Path(os.path.abspath(out))
    if out.parent.name == "runs":
        return out.parent.parent / "checkpoints" / out.name
    return out.parent / f".{out.name}.checkpoints"


def run_code_digest(cfg: dict, refresh: bool = False) -> str:
    """``common.codehash.code_digest(cfg)``, taken once when the run starts (``load_checkpoint``
    refreshes it) so checkpoints and metrics.json record the code the run was started with."""
    from .codehash import code_digest

    key = json.dumps(cfg, sort_keys=True, default=str)
    if refresh or key not in _RUN_DIGESTS:
        _RUN_DIGESTS[key] = code_digest(cfg)
    return _RUN_DIGESTS[key]


def _not_resumable(ckpt, cfg: dict, finished: bool) -> str | None:
    """Why checkpoint ``ckpt`` cannot continue the run ``cfg`` (None: it can)."""
    if not isinstance(ckpt, dict):
        return f"it is not a checkpoint of this trainer (a {type(ckpt).__name__})"
    missing = [k for k in CKPT_KEYS if k not in ckpt]
    if missing:
        return f"it has an older, incompatible format (no {', '.join(map(repr, missing))})"
    if finished:
        return "its run already finished and wrote metrics.json (retraining from scratch)"
    if ckpt["run_config"] != cfg:
        return "it belongs to a different config"
    now = run_code_digest(cfg)
    if ckpt["code_digest"] != now:
        return f"it was written by other code (code digest {ckpt['code_digest']}, now {now})"
    return None


def _why_unreadable(e: Exception) -> str:
    """A one-line reason; a file refused by ``weights_only`` says which object it asked for."""
    if isinstance(e, pickle.UnpicklingError):
        m = re.search(r"(?:unsupported|Unsupported global:) GLOBAL \S+|Unsupported operand \d+", str(e))
        asked = f" ({m.group(0)})" if m else ""
        return f"it needs objects other than tensors and plain data to load{asked}; refused, as loading it could run code"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _quarantine(p: Path, e: Exception) -> None:
    """Move the unreadable checkpoint ``p`` aside as ``<name>.corrupt`` (never rotated over a good one)."""
    reason = _why_unreadable(e)
    warnings.warn(f"checkpoint {p} is unreadable ({reason}); trying the previous one")
    bad = p.with_name(p.name + ".corrupt")
    try:
        os.replace(p, bad)
        aside = f"; moved aside to {bad.name}"
    except OSError as e2:
        aside = f"; could not move it aside ({e2.strerror})"
    print(f"WARNING: checkpoint {p} is unreadable ({reason}){aside}", flush=True)


def load_checkpoint(ckpt_dir: Path, cfg: dict | None = None):
    """``(checkpoint, path)`` of the newest readable checkpoint in ``ckpt_dir``, or ``(None, None)``.

    Files are read with ``weights_only=True``. An unreadable ``last.pt`` (truncated, corrupt, or
    holding anything but tensors and plain data) falls back to ``prev.pt`` with a warning and is moved
    aside as ``last.pt.corrupt``, so no later save rotates it over the good ``prev.pt``. With ``cfg``,
    the checkpoint is returned only if it can continue that run: current format, same run config,
    same code digest, and not the end state of a run that already wrote its metrics.json; otherwise
    the reason is printed and ``(None, None)`` returned (the run starts fresh)."""
    ckpt_dir = Path(ckpt_dir)
    if cfg is not None:
        run_code_digest(cfg, refresh=True)
    if not ckpt_dir.is_dir():
        return None, None
    ckpt = path = None
    set_aside = False
    with dir_lock(ckpt_dir):
        for name in ("last.pt", "prev.pt"):
            p = ckpt_dir / name
            if not p.exists():
                continue
            try:
                ckpt, path = torch.load(p, map_location="cpu", weights_only=True), p
                break
            except Exception as e:  # truncated, corrupt or unsafe file
                _quarantine(p, e)
                set_aside = True
        finished = (ckpt_dir / FINISHED).exists()
    if set_aside:
        print(f"falling back to {path}" if path else f"no readable checkpoint left in {ckpt_dir}; starting fresh",
              flush=True)
    if ckpt is None or cfg is None:
        return ckpt, path
    reason = _not_resumable(ckpt, cfg, finished)
    if reason:
        print(f"not resuming from checkpoint {path}: {reason}; starting fresh", flush=True)
        return None, None
    return ckpt, path


def _keep_as_prev(ckpt_dir: Path, last: Path, prev: Path) -> None:
    """Hard-link ``last`` to ``prev`` (``last`` stays in place); move it where there are no hard links."""
    link = ckpt_dir / f".prev.pt.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        link.unlink(missing_ok=True)
        os.link(last, link)
        os.replace(link, prev)
    except OSError:  # no hard links on this filesystem: move (last.pt is briefly absent)
        link.unlink(missing_ok=True)
        os.replace(last, prev)


def save_checkpoint(ckpt_dir: Path, state: dict) -> None:
    """Write ``state`` as ``<ckpt_dir>/last.pt`` and keep the one before as ``prev.pt``.

    The new file is written completely first (unique temp file, fsync); then, under an exclusive
    ``flock`` on ``<ckpt_dir>/.lock``, ``last.pt`` is hard-linked to ``prev.pt`` and the new file
    replaces ``last.pt`` atomically, so ``last.pt`` always exists complete once written and
    concurrent writers never interleave. A truncated ``last.pt`` (not a complete zip) is set aside
    as ``last.pt.corrupt`` instead of replacing the good ``prev.pt``. A failed write (disk full,
    file-size limit) raises :class:`common.errors.WriteError` and leaves both files as they were.
    The state gets the run's code digest; a new save means the run is neither finished nor
interrupted."""
    ckpt_dir = Path(ckpt_dir)
    last, prev = ckpt_dir / "last.pt", ckpt_dir / "prev.pt"
    if "run_config" in state and "code_digest" not in state:
        state = {**state, "code_digest": run_code_digest(state["run_config"])}
    buf = io.BytesIO()
    torch.save(state, buf)
    tmp = write_temp(last, buf.getvalue(), "checkpoint")
    try:
        with dir_lock(ckpt_dir):
            for marker in (FINISHED, INTERRUPTED):
                (ckpt_dir / marker).unlink(missing_ok=True)
            if last.exists() and not zipfile.is_zipfile(last):  # truncated (torch.save writes a zip): never keep it as prev
                os.replace(last, last.with_name("last.pt.corrupt"))
                print(f"WARNING: checkpoint {last} is truncated; moved aside to last.pt.corrupt, prev.pt kept", flush=True)
            if last.exists():
                _keep_as_prev(ckpt_dir, last, prev)
            os.replace(tmp, last)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError("checkpoint", last, e) from e
        raise


def mark_finished(ckpt_dir: Path, metrics_path: Path) -> None:
    """After ``metrics_path`` was written from ``<ckpt_dir>/last.pt``: mark the directory finished
    (deleting metrics.json later retrains from scratch instead of resuming the final checkpoint),
    then drop ``prev.pt`` and the progress log, so a finished run keeps one checkpoint."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return
    with dir_lock(ckpt_dir):
        atomic_write_json(ckpt_dir / FINISHED, {"metrics": str(metrics_path)}, "checkpoint marker")
        for name in ("prev.pt", PROGRESS, INTERRUPTED):
            (ckpt_dir / name).unlink(missing_ok=True)


def mark_interrupted(ckpt_dir: Path, signal_name: str) -> None:
    """Record that ``last.pt`` is a stop on ``signal_name`` (see :mod:`common.walltime`)."""
    atomic_write_json(Path(ckpt_dir) / INTERRUPTED, {"signal": signal_name}, "checkpoint marker")


def was_interrupted(ckpt_dir) -> bool:
    """Did the run of ``ckpt_dir`` last stop on a signal, with a checkpoint to resume from? For a
    launcher whose own exit status is not the trainer's 75 (torchrun)."""
    return (Path(ckpt_dir) / INTERRUPTED).exists()


def _plain(v) -> bool:
    if isinstance(v, (bool, int, float, str, type(None))):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return isinstance(v, dict) and all(isinstance(k, str) and _plain(x) for k, x in v.items())


def plain_state(obj) -> dict:
    """The attributes of ``obj`` (a method, its loss terms) holding plain data, and those of its
    attribute objects made only of plain data (e.g. ``LambdaStats``): a method's per-epoch counters,
    which a mid-epoch checkpoint must keep for the epoch's logs. Tensors and other objects are built
    from the config and stay as built."""
    out: dict = {"values": {}, "objects": {}, "parts": []}
    for name, v in vars(obj).items():
        if _plain(v):
            out["values"][name] = v
        elif hasattr(v, "__dict__") and not isinstance(v, torch.nn.Module) and vars(v) and _plain(vars(v)):
            out["objects"][name] = dict(vars(v))
    for part in [getattr(obj, "base", None), *getattr(obj, "terms", [])]:  # a Composite "method+term"
        if part is not None:
            out["parts"].append(plain_state(part))
    return out


def restore_plain_state(obj, state: dict) -> None:
    """Put back what :func:`plain_state` took."""
    for name, v in state["values"].items():
        setattr(obj, name, v)
    for name, d in state["objects"].items():
        vars(getattr(obj, name)).update(d)
    parts = [p for p in [getattr(obj, "base", None), *getattr(obj, "terms", [])] if p is not None]
    for part, s in zip(parts, state["parts"]):
        restore_plain_state(part, s)
