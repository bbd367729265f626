"""The portable mode (common.verify.portable) as a run option, and the study that measures it
(benchmarks/portable.py) on tiny inputs.

A training process started with ``MIXREPRO_PORTABLE=1`` runs ATen's baseline kernels without oneDNN
and records that in its provenance; one started without records the opposite. The study's
comparison: which emulated instruction sets a CPU's flags allow, whether a group of runs is
bit-identical (provenance and clocks aside) and, if not, which run and which value differ first; the
rendered finding and slowdown.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import portable as bench
from common.verify import portable

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": {"name": "diabetes"}, "model": {"name": "mlp"},
        "train": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "schedule": "constant"},
        "eval": {"temperature_scaling": False, "occlusion": None}}


def _train_tiny(out: Path, portable_mode: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != portable.FLAG and k not in portable.ENV}
    if portable_mode:
        env[portable.FLAG] = "1"
    subprocess.run([sys.executable, "-m", "common.train", "--config-json", json.dumps(TINY), "--out", str(out)],
                   env=env, cwd=ROOT, check=True, capture_output=True)
    return json.loads((out / "metrics.json").read_text())["provenance"]["portable"]


@pytest.mark.slow  # two training processes
def test_a_run_records_whether_it_trained_in_the_portable_mode(tmp_path):
    on, off = _train_tiny(tmp_path / "on", True), _train_tiny(tmp_path / "off", False)
    assert on["portable"] is True and on["torch_cpu_capability"] == "DEFAULT"
    assert on["mkldnn_enabled"] is False and on["env"]["MKL_CBWR"] == "COMPATIBLE" and on["torch_num_threads"] == 1
    assert off["portable"] is False and off["mkldnn_enabled"] is True and off["env"]["MKL_CBWR"] is None


def _run_dir(path: Path, loss: float, wall: float, top1: float = 50.0) -> Path:
    """A finished run's outputs: metrics.json (with provenance and a throughput) and epochs.jsonl."""
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"run_id": path.name, "test": {"top1": top1},
                                                   "train_images_per_sec": 1000 / wall,
                                                   "provenance": {"train_time_sec": wall}}))
    (path / "epochs.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": loss, "train_secs": wall}) + "\n")
    return path


def _study(tmp_path: Path) -> pd.DataFrame:
    """Three emulations x two modes of one model: the portable runs equal up to clocks, the normal
    runs' sse4 epoch-1 loss one ulp away."""
    rows = []
    for emu, off_loss, wall in (("native", 2.25, 1.0), ("avx2", 2.25, 2.0), ("sse4", 2.2500000000000004, 3.0)):
        for mode, loss in (("off", off_loss), ("portable", 2.5)):
            d = _run_dir(tmp_path / f"{emu}-{mode}", loss, wall)
            rows.append({"model": "resnet20", "base_run": "mixup-cifar10-resnet20-s0-x", "emulation": emu, "mode": mode,
                         "digest": bench.digest(bench.comparable(d)), "dir": str(d)})
    return pd.DataFrame(rows)


def test_runs_that_differ_only_in_clocks_and_folder_share_a_digest_and_agree(tmp_path):
    df = _study(tmp_path)
    assert df[df["mode"] == "portable"]["digest"].nunique() == 1
    assert bench.group_agreement(df, "portable", "resnet20") == (True, "")


def test_the_first_run_and_value_that_differ_are_named(tmp_path):
    df = _study(tmp_path)
    assert df[df["mode"] == "off"]["digest"].nunique() == 2
    same, diff = bench.group_agreement(df, "off", "resnet20")
    assert not same and diff == "native vs sse4: epochs.0.train_loss: 2.25 vs 2.2500000000000004"
    a, b = {"metrics": {"test": {"top1": 1.0}}, "epochs": []}, {"metrics": {"test": {"top1": 2.0}}, "epochs": []}
    assert bench.agreement([("x", a), ("y", a), ("z", b)]) == (False, "x vs z: metrics.test.top1: 1.0 vs 2.0")


def test_the_finding_states_identity_per_mode_and_the_median_slowdown(tmp_path):
    df = _study(tmp_path)
    timing = pd.DataFrame({"model": ["resnet20"] * 3, "off_cpu_s": [10.0, 11.0, 12.0],
                           "portable_cpu_s": [40.0, 30.0, 60.0], "ratio": [4.0, 30 / 11, 5.0]})
    md = bench.finding_markdown(df, timing, ["header\n"])
    row = next(ln for ln in md.splitlines() if ln.startswith("| resnet20 (`mixup"))
    assert row.endswith("| 2 different results; first: native vs sse4: epochs.0.train_loss: 2.25 vs "
                        "2.2500000000000004 | bit-identical |")
    assert "| resnet20 | 3 | 11.0 | 40.0 | 4.00x | 2.73-5.00x |" in md


def test_emulations_are_the_instruction_sets_the_cpu_offers():
    zen3 = bench.emulations({"sse4_2", "avx", "fma", "avx2"})
    assert list(zen3) == ["native", "native again", "avx2", "avx", "sse4"]
    assert zen3["sse4"]["ATEN_CPU_CAPABILITY"] == zen3["avx"]["ATEN_CPU_CAPABILITY"] == "default"
    assert "-FMA" in zen3["avx"]["GLIBC_TUNABLES"] and zen3["native"] == zen3["native again"] == {}
    assert "avx512" in bench.emulations({"avx", "avx2", "avx512f"})
    assert list(bench.emulations({"sse4_2"})) == ["native", "native again", "sse4"]
