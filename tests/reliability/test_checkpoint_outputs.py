"""What a run leaves behind. ``--out`` changes only when the run finishes (a failed, stopped or
killed run leaves it as it was); the checkpoints stay in one documented place beside the run for any
``--out``; a finished run keeps one checkpoint; a write failure leaves no empty checkpoint directory
and no ``epochs.jsonl`` row without a checkpoint behind it; ``--stop-after-epoch`` below 1 is refused.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rel_helpers import ROOT, env, epochs, limit_file_size, run_train, tiny, train_cmd, write_config


@pytest.mark.parametrize("out,want", [
    ("results/cpu/runs/mixup-x-s0-1234", "results/cpu/checkpoints/mixup-x-s0-1234"),
    ("/x", "/.x.checkpoints"),
    ("/scratch/me/myrun", "/scratch/me/.myrun.checkpoints"),
    ("runs", ".runs.checkpoints"),
])
def test_default_checkpoint_dir_stays_beside_the_run(out, want, monkeypatch, tmp_path):
    from common.checkpoint import default_checkpoint_dir

    monkeypatch.chdir(tmp_path)
    got = default_checkpoint_dir(Path(out))
    assert got == Path(os.path.abspath(want))
    out_abs = Path(os.path.abspath(out))
    if out_abs.parent.name != "runs":
        assert got.parent == out_abs.parent  # a hidden sibling: never above the run's own folder


def test_the_workflow_layout_checkpoints_are_gitignored():
    r = subprocess.run(["git", "check-ignore", "-q", "results/cpu/checkpoints/some-run/last.pt"], cwd=ROOT)
    assert r.returncode == 0


def test_cli_default_for_an_out_outside_runs(tmp_path, capsys):
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny(**{"train.epochs": 2}))
    assert main(["--config", str(cfg), "--out", str(tmp_path / "myrun"), "--stop-after-epoch", "1"]) == 0
    assert (tmp_path / ".myrun.checkpoints" / "last.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".myrun.checkpoints", "run.yaml"]  # no --out yet


def test_a_finished_run_keeps_one_checkpoint(reference):
    assert sorted(p.name for p in reference["ckpt"].iterdir()) == [".lock", "finished.json", "last.pt"]


def _committed(out: Path) -> dict:
    out.mkdir(parents=True)
    files = {"metrics.json": b'{"old": true}\n', "epochs.jsonl": b'{"epoch": 1, "old": true}\n'}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def _contents(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_failed_stopped_or_killed_runs_leave_the_run_directory_as_it_was(tmp_path, reference):
    """A NaN stop (exit 3), a stop after epoch 1 and a SIGKILL mid-run leave the existing
    metrics.json and epochs.jsonl byte-identical; the run that finishes replaces both."""
    cfg = write_config(tmp_path / "run.yaml", tiny(method={"name": "nan_at_step_test", "at_step": 40}))
    out = tmp_path / "runs" / "r"
    before = _committed(out)
    r = run_train(cfg, out, "--ckpt-dir", str(tmp_path / "nan_ck"), cwd=tmp_path, plugins=True)
    assert r.returncode == 3, r.stderr
    assert _contents(out) == before

    cfg = write_config(tmp_path / "run.yaml", tiny())
    ckpt = tmp_path / "ck"
    assert run_train(cfg, out, "--ckpt-dir", str(ckpt), "--stop-after-epoch", "1", cwd=tmp_path).returncode == 0
    assert _contents(out) == before
    proc = subprocess.Popen(train_cmd(cfg, out, "--ckpt-dir", str(ckpt)), cwd=tmp_path, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = ckpt / "epochs.jsonl"
        while proc.poll() is None and len(log.read_text().splitlines()) < 2:  # killed in epoch 3 or its evaluation
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _contents(out) == before

    assert run_train(cfg, out, "--ckpt-dir", str(ckpt), cwd=tmp_path).returncode == 0
    assert epochs(out) == reference["epochs"]  # the finished run's files replaced the old ones


@pytest.mark.slow
def test_a_first_checkpoint_that_cannot_be_written_leaves_nothing_behind(tmp_path):
    """A file-size limit below the checkpoint's size (a cluster's ``ulimit -f``) on a fresh run:
    exit 4 and no trace: no checkpoint directory (nor the parents the run created), no run
    directory, no progress row (it is written only after its checkpoint)."""
    cfg = write_config(tmp_path / "run.yaml", tiny(**{"train.epochs": 1}))
    e = env(MIXREPRO_CACHE=tmp_path / "cache")
    warm = subprocess.run(train_cmd(cfg, tmp_path / "warm" / "r", "--ckpt-dir", str(tmp_path / "warm" / "ck")),
                          cwd=tmp_path, env=e, capture_output=True, text=True, timeout=240)  # fills the data cache
    assert warm.returncode == 0, warm.stderr
    size = (tmp_path / "warm" / "ck" / "last.pt").stat().st_size
    out = tmp_path / "results" / "runs" / "r"
    r = subprocess.run(train_cmd(cfg, out), cwd=tmp_path, env=e, capture_output=True, text=True, timeout=240,
                       preexec_fn=limit_file_size(size // 2))
    assert r.returncode == 4 and "cannot write checkpoint" in r.stderr, r.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_stop_after_epoch_below_one_is_refused(tmp_path, capsys, value):
    from common.train import main

    cfg = write_config(tmp_path / "run.yaml", tiny())
    with pytest.raises(SystemExit) as ei:
        main(["--config", str(cfg), "--out", str(tmp_path / "runs" / "r"), "--stop-after-epoch", value])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "argument --stop-after-epoch" in err and f"got {value}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_provenance_names_the_data_files_and_the_process_layout(tmp_path):
    """``metrics.json`` records ``splits.sources`` (name, size, digest of each file the dataset read,
    set by the data layer) as ``data_files``, and the world size and gradient accumulation."""
    from common.data import DATASETS, register_dataset
    from common.image_datasets import load_digits
    from common.config import resolve
    from common.train import train

    sources = [{"name": "digits.csv", "size": 123, "sha256": "ab" * 32}]

    def with_sources(root=None, download=None):
        splits = load_digits(root, download)
        splits.sources = sources
        return splits

    if "digits_with_sources" not in DATASETS:
        register_dataset("digits_with_sources")(with_sources)
    cfg = resolve({"dataset": {"name": "digits_with_sources", "train_size": 64, "test_size": 32},
                   "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 16},
                   "eval": {"occlusion": None}, "resources": {"accum_steps": 2}})
    prov = train(cfg, tmp_path / "r", tmp_path / "ck", progress=False)["provenance"]
    assert prov["data_files"] == sources
    assert (prov["world_size"], prov["accum_steps"], prov["micro_batch_size"]) == (1, 2, 8)
