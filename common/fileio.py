"""Atomic file writes and run provenance.

Every result file is written to a unique temporary file in the same directory and then
``os.replace``-d into place, so a kill during a write leaves the previous file intact and
concurrent jobs never share a temporary file. A failed write raises :class:`WriteError`
(``cannot write <what> <path>: <reason>``); ``dir_lock`` serialises writers of one directory.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import WriteError  # noqa: F401  (raised here; re-exported for callers)


_UMASK = os.umask(0o022)  # read the process umask (only possible by setting it) and restore it
os.umask(_UMASK)


def check_writable_dir(path, what: str = "output directory") -> None:
    """Raise :class:`WriteError` if directory ``path`` cannot be created or written: an existing
    non-directory on the way (``--out`` under a regular file) or an unwritable nearest ancestor.
    Creates nothing."""
    path = Path(path)
    for p in [path, *path.parents]:
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise WriteError(what, path, f"{p} exists and is not a directory")
            if not os.access(p, os.W_OK | os.X_OK):
                raise WriteError(what, path, f"{p} is not writable")
            return


def write_temp(path, data: bytes, what: str = "file") -> str:
    """Write ``data`` completely (fsync'd, umask permissions) to a new unique hidden temporary file
    beside ``path`` and return its name; the caller moves it into place with ``os.replace``. Any
    OSError becomes a :class:`WriteError` naming ``what`` and ``path``; nothing is left behind."""
    path = Path(path)
    tmp = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a regular file where a directory should be
            raise NotADirectoryError(20, f"{path.parent} exists and is not a directory") from None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; results are shared: use the umask like open()
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
        return tmp
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(what, path, e) from e
        raise


def atomic_write_bytes(path, data: bytes, what: str = "file") -> None:
    """Write ``data`` to ``path`` via a unique temporary file and ``os.replace``: readers see the old
    or the new file, never a partial one. Failures raise :class:`WriteError` (temp file removed)."""
    tmp = write_temp(path, data, what)
    try:
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(what, path, e) from e
        raise


def files_digest(paths, root=".") -> str:
    """SHA-256 over the sorted relative paths and the contents of ``paths`` (a missing file counts
    as missing): what the workflow records in ``results/<scale>/readmes.done`` to know which
    inputs its committed aggregates were built from."""
    import hashlib

    h = hashlib.sha256()
    for rel in sorted({str(p) for p in paths}):
        f = Path(root) / rel
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"missing")
    return h.hexdigest()


def atomic_write_text(path, text: str, what: str = "file") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)


def json_text(obj) -> str:
    """How result files are written: indented JSON with sorted keys (tensors and numpy scalars as numbers)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n"


def atomic_write_json(path, obj, what: str = "file") -> None:
    atomic_write_text(path, json_text(obj), what)


def atomic_torch_save(obj, path, what: str = "checkpoint") -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue(), what)


@contextlib.contextmanager
def dir_lock(directory, shared: bool = False):
    """Hold an advisory ``fcntl.flock`` on ``<directory>/.lock`` (exclusive unless ``shared``).
    Processes and threads each open their own descriptor, so they exclude each other. Where
    ``fcntl`` does not exist (Windows), or the lock cannot be taken, this is a no-op."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        fcntl = None
    fd = None
    try:
        if fcntl is not None:
            fd = os.open(Path(directory) / ".lock", os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    except OSError:  # read-only directory or a filesystem without flock (some NFS setups): unlocked
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_commit(cwd=None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd or Path(__file__).parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("torch", "torchvision", "timm", "numpy", "pillow", "scikit-learn", "snakemake", "torchmetrics"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# the x86 instruction-set extensions whose presence changes which float kernels torch runs
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def cpu_info() -> tuple[str, set[str]]:
    """``(model name, flags)`` of the first CPU in ``/proc/cpuinfo`` (``platform.processor()`` and no
    flags where that file does not exist)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                key, _, value = ln.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown", flags


def hardware() -> dict:
    """The CPU that computed a run. Float results are bit-identical across reruns on the same CPU
    type but not across instruction sets: oneDNN and ATen choose their kernels by ISA (AVX2,
    AVX-512, AMX), so the summation order, and after training the metrics, differ."""
    import torch

    model, flags = cpu_info()
    return {"cpu_model": model, "cpu_flags": [f for f in _ISA_FLAGS if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def thread_settings() -> dict:
    import torch

    return {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
    }
