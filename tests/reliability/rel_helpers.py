"""Helpers for the reliability suite: a tiny digits config, the trainer CLI as a real
subprocess, and one uninterrupted reference run every fault test compares against.

Every run here is small (a 8-wide ResNet-8 on 8x8 digits, a few epochs of ~0.3 s) so the suite
stays within a few minutes on a loaded 2-core machine; most of a subprocess's time is importing
torch.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"

# 3 epochs x 35 steps (batch 32 of 1097 training images); best_val selection and temperature
# scaling exercise the parts of the state a resume must restore (BN statistics, momentum, best model).
TINY = {
    "seed": 0,
    "dataset": {"name": "digits", "val_size": 200},
    "model": {"name": "resnet8", "width": 8},
    "method": {"name": "mixup", "alpha": 1.0},
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "num_threads": 1, "select": "best_val"},
    "eval": {"occlusion": None},
}
TIMING_KEYS = ("train_secs",)  # per-epoch fields that legitimately differ between runs


def tiny(**over) -> dict:
    """The tiny raw run config with dotted overrides, e.g. ``tiny(**{"train.epochs": 2})``."""
    from common.config import set_dotted

    cfg = copy.deepcopy(TINY)
    for k, v in over.items():
        cfg = set_dotted(cfg, k, v)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def env(**extra) -> dict:
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update({k: str(v) for k, v in extra.items()})
    return e


def train_cmd(config: Path, out: Path, *args: str, plugins: bool = False) -> list[str]:
    """``python -m common.train ...``; with ``plugins`` the test-only methods in ./plugins are
    imported first (they exist only in the subprocess, never in the pytest process)."""
    argv = ["--config", str(config), "--out", str(out), *args]
    if not plugins:
        return [sys.executable, "-m", "common.train", *argv]
    code = (f"import sys; sys.path.insert(0, {str(PLUGIN_DIR)!r}); import reliability_methods; "
            "from common.train import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *argv]


def run_train(config: Path, out: Path, *args: str, cwd: Path, plugins: bool = False, timeout: float = 240,
              **env_extra) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(config, out, *args, plugins=plugins), cwd=cwd, env=env(**env_extra),
                          capture_output=True, text=True, timeout=timeout)


def popen_train(config: Path, out: Path, *args: str, cwd: Path, **env_extra) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(config, out, *args), cwd=cwd, env=env(**env_extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Poll until ``path`` exists (fail if the process ends first or time runs out)."""
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (rc={proc.returncode}) before {path} appeared:\n{out}\n{err}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def signal_when(path: Path, proc: subprocess.Popen, sig: int, delay: float = 0.0) -> tuple[str, str]:
    """Send ``sig`` to ``proc`` once ``path`` exists (and ``delay`` seconds more); the process's
    (stdout, stderr) when it has ended. The process never outlives the call."""
    try:
        wait_for(path, proc)
        time.sleep(delay)
        proc.send_signal(sig)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


def limit_file_size(nbytes: int):
    """A ``preexec_fn`` setting ``RLIMIT_FSIZE`` (as a cluster scheduler or ``ulimit -f`` does): a
    write past ``nbytes`` fails with EFBIG instead of killing the process."""
    import resource
    import signal

    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return pre


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def epochs(out: Path) -> list[dict]:
    """epochs.jsonl rows without the timing fields."""
    rows = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def stray_temp_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name.endswith(".tmp"))


def assert_same_run(out: Path, ref: dict) -> None:
    """The final test metrics and every per-epoch row (minus timing) equal the reference exactly."""
    got = metrics(out)
    assert got["test"] == ref["metrics"]["test"]
    assert got["selected_epoch"] == ref["metrics"]["selected_epoch"]
    assert epochs(out) == ref["epochs"]
