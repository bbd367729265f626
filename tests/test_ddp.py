"""Multi-process training through torchrun (DistributedDataParallel, gloo on CPU).

Stated tolerance: with a BatchNorm-free model and ERM, 2 processes x half batches average to the
same gradient as 1 process x full batch, so final test metrics agree to float round-off: top-1
within 0.5 points and NLL within 1e-3.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

CFG = {
    "seed": 0,
    "dataset": {"name": "digits", "val_size": 100},
    "model": {"name": "mlp", "hidden": [64, 64]},
    "method": {"name": "erm"},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05, "num_threads": 1},
    "eval": {"occlusion": None},
}


def _run(tmp_path, name, nproc):
    cfgp = tmp_path / "cfg.yaml"
    cfgp.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "runs" / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "common.train"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "common.train"]
    p = subprocess.run(cmd + ["--config", str(cfgp), "--out", str(out)], capture_output=True, text=True,
                       timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    single = _run(tmp_path, "single", 1)
    ddp = _run(tmp_path, "ddp", 2)
    assert ddp["provenance"]["world_size"] == 2
    assert abs(single["test"]["top1"] - ddp["test"]["top1"]) <= 0.5
    assert abs(single["test"]["nll"] - ddp["test"]["nll"]) <= 1e-3
