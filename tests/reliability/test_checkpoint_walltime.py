"""Walltime chaining: SIGUSR1 (SLURM ``--signal=USR1@N``) or SIGTERM stops a run after the current
optimisation step with an exact mid-epoch checkpoint, exit status 75 and no result; rerunning the
same command resumes there and ends with the same test metrics and ``epochs.jsonl`` rows as an
uninterrupted run, bit for bit. The signals are real: sent by the process to itself after a chosen
step (``plugins/trainer_hooks.py``), or by the test to a running trainer.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from rel_helpers import (PLUGIN_DIR, assert_same_run, env, epochs, metrics, popen_train, run_train, signal_when, tiny,
                         write_config)

from common.config import resolve

HOOKED = [sys.executable, str(PLUGIN_DIR / "hooked_train.py")]
STEPS = 35  # steps per epoch of the tiny config: ceil(1097 / 32)


def _hooked(cfg, out, ckpt, cwd, **hook_env) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKED, "--config", str(cfg), "--out", str(out), "--ckpt-dir", str(ckpt)], cwd=cwd,
                          env=env(**hook_env), capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("sig,step", [
    ("SIGUSR1", STEPS + 5),  # inside epoch 2
    pytest.param("SIGTERM", 2 * STEPS - 1, marks=pytest.mark.slow),  # after the last step of epoch 2
    pytest.param("SIGUSR1", 0, marks=pytest.mark.slow),  # after the very first step (no checkpoint yet)
])
def test_signal_mid_epoch_exits_75_and_the_rerun_matches_an_uninterrupted_run(tmp_path, reference, sig, step):
    cfg = write_config(tmp_path / "run.yaml", tiny())
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    r = _hooked(cfg, out, ckpt, tmp_path, TEST_SIGNAL_AT_STEP=step, TEST_SIGNAL=sig)
    epoch, batch = step // STEPS, step % STEPS + 1
    assert r.returncode == 75, r.stderr
    assert f"stopped by {sig} after batch {batch} of epoch {epoch + 1}" in r.stderr, r.stderr
    assert not out.exists()  # no metrics.json, no epochs.jsonl: the run directory is untouched
    assert json.loads((ckpt / "interrupted.json").read_text()) == {"signal": sig}
    state = torch.load(ckpt / "last.pt", weights_only=True)  # the trainer's own checkpoints are plain data
    assert (state["epoch"], state["partial"]["epoch"], state["partial"]["batch"]) == (epoch - 1, epoch, batch)
    assert [row["epoch"] for row in state["history"]] == list(range(1, epoch + 1))

    r = run_train(cfg, out, "--ckpt-dir", str(ckpt), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {ckpt / 'last.pt'} at epoch {epoch}, batch {batch}" in r.stdout, r.stdout
    assert_same_run(out, reference)
    assert metrics(out)["provenance"]["resumed_from_batch"] == batch
    assert not (ckpt / "interrupted.json").exists()


@pytest.mark.slow
def test_a_signal_from_outside_stops_and_resumes_exactly(tmp_path, reference):
    """SIGUSR1 sent by another process while the trainer runs (wherever it lands)."""
    cfg = write_config(tmp_path / "run.yaml", tiny())
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    proc = popen_train(cfg, out, "--ckpt-dir", str(ckpt), cwd=tmp_path)
    _, stderr = signal_when(ckpt / "epochs.jsonl", proc, signal.SIGUSR1)  # epoch 1 checkpointed; 2 and 3 remain
    assert proc.returncode == 75, stderr
    assert not out.exists() and (ckpt / "interrupted.json").exists()
    r = run_train(cfg, out, "--ckpt-dir", str(ckpt), cwd=tmp_path)
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stderr
    assert_same_run(out, reference)


# --------------------------------------------------------------------------- in-process, per method
def _signal_after(monkeypatch, at_step: int, sig=signal.SIGUSR1) -> None:
    import common.train as T

    real = T.optimisation_step

    def step(run, batch, state):
        res = real(run, batch, state)
        if state.step == at_step:
            os.kill(os.getpid(), sig)
        return res

    monkeypatch.setattr(T, "optimisation_step", step)


def _rows(path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_secs"} for r in epochs(path)]


METHOD_CONFIGS = {
    # C-Mixup counts self-pairs per epoch (plain counters on the method)
    "c_mixup": {"seed": 1, "dataset": {"name": "diabetes"},
                "model": {"name": "mlp", "hidden": [16]}, "method": {"name": "c_mixup", "alpha": 2.0, "bandwidth": 20.0},
                "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "num_threads": 1,
                          "select": "best_val"},
                "eval": {"occlusion": None}},
    # TransMix keeps per-epoch lambda statistics (LambdaStats); drop-path (0.1 in the 2nd block) draws from torch's RNG
    "transmix": {"seed": 2, "dataset": {"name": "digits", "train_size": 160, "test_size": 60},
                 "model": {"name": "vit", "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2,
                           "drop_path_rate": 0.1},
                 "method": {"name": "transmix"},
                 "train": {"epochs": 2, "batch_size": 32, "optimizer": "adamw", "lr": 0.001, "num_threads": 1,
                           "ema": {"decay": 0.9}},
                 "eval": {"occlusion": {"sizes": [0.5], "modes": ["random"]}}},
}


def _image_folder(root):
    """``<root>/imagenet/{train,val}/<class>/*.JPEG``: 2 classes of random 20x24 images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per in (("train", 9), ("val", 4)):
        for c in ("n01", "n02"):
            d = root / "imagenet" / split / c
            d.mkdir(parents=True)
            for i in range(per):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.JPEG")
    return str(root)


def _file_configs(tmp_path) -> dict:
    """The DataLoader path: image files with the batched augmentation, and an in-memory split with a
    per-sample transform (a resumed epoch skips batches without reading them)."""
    small = {"model": {"name": "resnet8", "width": 4}, "method": {"name": "cutmix", "alpha": 1.0, "prob": 1.0},
             "eval": {"batch_size": 5, "occlusion": None}}
    return {
        "files_batched_augment": {**small, "seed": 5, "dataset": {
            "name": "imagenet", "root": _image_folder(tmp_path / "data"), "loader": {"workers": 0},
            "options": {"image_size": 12, "resize": 14}},
            "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "num_threads": 1, "augment": {"pad": 2, "flip": True}}},
        "per_sample_transform": {**small, "seed": 6, "dataset": {
            "name": "random", "loader": {"workers": 0}, "transform": {"reflect_pad": 2, "hflip": 0.5},
            "options": {"n_train": 20, "n_test": 9, "image_size": 8}},
            "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "num_threads": 1}},
    }


@pytest.mark.parametrize("name", sorted(METHOD_CONFIGS) + ["files_batched_augment", "per_sample_transform"])
def test_a_stop_mid_epoch_resumes_exactly(tmp_path, monkeypatch, name):
    """Per method with epoch counters, and per loader path."""
    from common.train import train
    from common.walltime import RunInterrupted

    cfg = resolve({**METHOD_CONFIGS, **_file_configs(tmp_path)}[name])
    want = train(cfg, tmp_path / "a" / "run", tmp_path / "a" / "ck", progress=False)
    _signal_after(monkeypatch, 7)  # inside epoch 2 (5 steps per epoch) or 1 (c_mixup: 9 steps)
    with pytest.raises(RunInterrupted, match="SIGUSR1 after batch"):
        train(cfg, tmp_path / "b" / "run", tmp_path / "b" / "ck", progress=False)
    monkeypatch.undo()
    got = train(cfg, tmp_path / "b" / "run", tmp_path / "b" / "ck", progress=False)
    assert got["provenance"]["resumed_from_batch"] > 0
    assert got["test"] == want["test"] and got.get("test_ema") == want.get("test_ema")
    assert _rows(tmp_path / "b" / "run") == _rows(tmp_path / "a" / "run")
    if name in METHOD_CONFIGS:
        assert any(k.startswith("train_") and k != "train_loss" for k in _rows(tmp_path / "a" / "run")[0])


def test_the_signal_handlers_are_put_back(tmp_path):
    from common.train import train

    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    train(resolve(tiny(**{"train.epochs": 1, "dataset.train_size": 64})), tmp_path / "r", tmp_path / "ck",
          progress=False)
    assert {s: signal.getsignal(s) for s in before} == before

