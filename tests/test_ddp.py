"""Multi-process training through torchrun: 2 processes on CPU (gloo), tiny digits configs.

* each rank makes its own random draws, from ``seed + rank`` as the authors' code does; rank 0
  exactly the draws of a single process (samplers keep the rank-free seed);
* the sharded evaluation (each rank its share of every evaluation batch, outputs gathered) equals
  the single-process evaluation of the same weights, on a test set whose size does not divide by 2,
  through the in-memory loader and the DataLoader path;
* 2 ranks, each training half of every global batch, train the same model as 1 process
  accumulating the gradients of the same global batch over 2 micro-batches (ERM, BatchNorm-free
  MLP). Stated tolerance: both average the same two per-shard gradients (DDP: all-reduce of the
  gradients divided by 2; accumulation: backward of each loss / 2), in another order of float
  additions only, so the weights agree to 1e-5 and the test metrics to 1e-4 (top-1 within one
  test sample);
* a stop signal to one rank stops both after the same step; the rerun resumes exactly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
HOOKED = ROOT / "tests" / "reliability" / "plugins" / "hooked_train.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

MIXUP = {
    "seed": 3,
    "dataset": {"name": "digits", "train_size": 300, "test_size": 199, "val_size": 101},
    "model": {"name": "mlp", "hidden": [32]},
    "method": {"name": "mixup", "alpha": 1.0},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "num_threads": 1},
    "eval": {"batch_size": 50, "occlusion": None},
}
ERM = {
    "seed": 0,
    "dataset": {"name": "digits", "val_size": 100},
    "model": {"name": "mlp", "hidden": [64, 64]},
    "method": {"name": "erm"},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05, "num_threads": 1},
    "eval": {"occlusion": None},
}


def _env(**extra) -> dict:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update({k: str(v) for k, v in extra.items()})
    return e


def _train(tmp: Path, name: str, cfg: dict, nproc: int, *extra: str, hooked: bool = False, **env_extra):
    """One run through the CLI (torchrun for nproc 2); returns (process, run dir, checkpoint dir)."""
    cfgp = tmp / f"{name}.yaml"
    cfgp.write_text(yaml.safe_dump(cfg))
    out, ckpt = tmp / "runs" / name, tmp / "ckpt" / name
    entry = [str(HOOKED)] if hooked else ["-m", "common.train"]
    cmd = (TORCHRUN if nproc == 2 else [sys.executable]) + entry
    p = subprocess.run([*cmd, "--config", str(cfgp), "--out", str(out), "--ckpt-dir", str(ckpt), *extra],
                       capture_output=True, text=True, timeout=900, env=_env(**env_extra), cwd=tmp)
    return p, out, ckpt


def _ok(p) -> None:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(s).items() if k != "train_secs"}
            for s in (out / "epochs.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- seeding
def test_each_rank_seeds_from_seed_plus_rank_and_rank_0_like_one_process():
    from common.data import _mix_seed
    from common.train import epoch_seeds

    for seed in (0, 7):
        for epoch in (0, 3):
            assert epoch_seeds(seed, 0, epoch) == (_mix_seed(seed, epoch, 0x3A11), _mix_seed(seed, epoch, 0x70C4))
            keys = [epoch_seeds(seed, r, epoch) for r in range(8)]
            assert len({k for pair in keys for k in pair}) == 16  # every rank, both streams: distinct
            assert keys[1] == epoch_seeds(seed + 1, 0, epoch)  # seed + rank, as timm/DeiT/MixPro
    assert epoch_seeds(0, 1, 0) != epoch_seeds(0, 0, 1)


@pytest.fixture(scope="module")
def mixup_ddp(tmp_path_factory):
    """An uninterrupted 2-rank mixup run, every rank recording its per-step lambda."""
    tmp = tmp_path_factory.mktemp("mixup_ddp")
    draws = tmp / "draws"
    draws.mkdir()
    p, out, _ = _train(tmp, "ref", MIXUP, 2, hooked=True, TEST_DRAWS_DIR=draws)
    _ok(p)
    lams = {r: [json.loads(s)["lam"] for s in (draws / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)}
    return {"out": out, "lams": lams, "metrics": json.loads((out / "metrics.json").read_text())}


@pytest.mark.slow
def test_ranks_draw_different_lambdas_and_rank_0_draws_like_one_process(mixup_ddp):
    from common.mixing import sample_lambda
    from common.train import epoch_seeds

    lams, steps = mixup_ddp["lams"], 5  # ceil(300 / 64) steps per epoch, 3 epochs
    assert len(lams[0]) == len(lams[1]) == 3 * steps
    assert all(a != b for a, b in zip(lams[0], lams[1]))
    for epoch in range(3):  # the first draw of each epoch: rank 0's is the single-process one
        first = sample_lambda(1.0, torch.Generator().manual_seed(epoch_seeds(3, 0, epoch)[0]))
        assert lams[0][epoch * steps] == pytest.approx(float(first), abs=0)
    assert mixup_ddp["metrics"]["provenance"]["world_size"] == 2


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_at_the_same_step_and_resumes_exactly(tmp_path, mixup_ddp):
    p, out, ckpt = _train(tmp_path, "r", MIXUP, 2, hooked=True, TEST_SIGNAL_AT_STEP=7, TEST_SIGNAL_RANK=1)
    assert p.returncode != 0 and "stopped by SIGUSR1 after batch 3 of epoch 2" in p.stderr, p.stderr[-3000:]
    assert not out.exists() and (ckpt / "interrupted.json").exists()
    state = torch.load(ckpt / "last.pt", weights_only=True)
    assert state["partial"]["world"] == 2 and len(state["partial"]["ranks"]) == 2
    p, out, _ = _train(tmp_path, "r", MIXUP, 2)
    _ok(p)
    assert "resumed from" in p.stdout and "at epoch 1, batch 3" in p.stdout
    got = json.loads((out / "metrics.json").read_text())
    assert got["test"] == mixup_ddp["metrics"]["test"]
    assert _rows(out) == _rows(mixup_ddp["out"])


# --------------------------------------------------------------------------- sharded evaluation
EVAL_SCRIPT = textwrap.dedent("""
    import json, sys
    from common.config import resolve
    from common import evaluate as ev
    from common.train import build_run

    results = {}
    for name, cfg in json.loads(open(sys.argv[1]).read()).items():
        run = build_run(resolve(cfg))
        loaders = (run.test_loader, run.val_loader)
        m = ev.final_metrics(run.model, run.cfg, "classification", loaders, run.splits, run.dist)
        m.update(ev.epoch_metrics(run.model, run.val_loader, "classification", "val", run.dist))
        results[name] = m
    if run.dist.rank == 0:
        open(sys.argv[2], "w").write(json.dumps(results))
    run.dist.close()
""")
EVAL_CONFIGS = {
    "in_memory": {"seed": 1, "dataset": {"name": "digits", "train_size": 200, "test_size": 199, "val_size": 101},
                  "model": {"name": "resnet8", "width": 4}, "train": {"batch_size": 32},
                  "eval": {"batch_size": 50, "occlusion": {"sizes": [0.25, 0.5], "modes": ["center", "random"]}}},
    "dataloader": {"seed": 2, "dataset": {"name": "random", "val_size": 11, "transform": {"reflect_pad": 1},
                                          "loader": {"workers": 0},
                                          "options": {"n_train": 24, "n_test": 45, "image_size": 8}},
                   "model": {"name": "resnet8", "width": 4}, "train": {"batch_size": 8},
                   "eval": {"batch_size": 8, "occlusion": {"sizes": [0.5], "modes": ["random"]}}},
}


@pytest.mark.slow
def test_sharded_evaluation_equals_single_process_evaluation(tmp_path):
    """The same initial weights (seeded) evaluated by 2 ranks and by one process."""
    from common import evaluate as ev
    from common.config import resolve
    from common.train import build_run

    (tmp_path / "configs.json").write_text(json.dumps(EVAL_CONFIGS))
    (tmp_path / "script.py").write_text(EVAL_SCRIPT)
    p = subprocess.run([*TORCHRUN, str(tmp_path / "script.py"), str(tmp_path / "configs.json"),
                        str(tmp_path / "out.json")], capture_output=True, text=True, timeout=900, env=_env(), cwd=tmp_path)
    _ok(p)
    sharded = json.loads((tmp_path / "out.json").read_text())
    for name, cfg in EVAL_CONFIGS.items():
        run = build_run(resolve(cfg))
        loaders = (run.test_loader, run.val_loader)
        single = ev.final_metrics(run.model, run.cfg, "classification", loaders, run.splits)
        single.update(ev.epoch_metrics(run.model, run.val_loader, "classification", "val"))
        got = sharded[name]
        assert sorted(got) == sorted(single), name
        assert got["top1"] == single["top1"] and got["val_top1"] == single["val_top1"], name
        assert got["reliability"]["count"] == single["reliability"]["count"], name
        for k, v in single.items():
            if k.startswith("occ_"):
                assert got[k] == v, (name, k)
            elif isinstance(v, float):
                assert got[k] == pytest.approx(v, abs=1e-6), (name, k)  # ECE, AdaECE, NLL, temperature: 1e-6


# --------------------------------------------------------------------------- batch split vs accumulation
@pytest.mark.slow
def test_two_ranks_equal_one_process_accumulating_the_same_global_batch(tmp_path):
    single, out1, ck1 = _train(tmp_path, "accum", {**ERM, "resources": {"accum_steps": 2}}, 1)
    _ok(single)
    ddp, out2, ck2 = _train(tmp_path, "ddp", ERM, 2)
    _ok(ddp)
    a, b = (json.loads((o / "metrics.json").read_text()) for o in (out1, out2))
    assert (a["provenance"]["world_size"], a["provenance"]["accum_steps"]) == (1, 2)
    assert (b["provenance"]["world_size"], b["provenance"]["accum_steps"]) == (2, 1)
    assert a["provenance"]["micro_batch_size"] == b["provenance"]["micro_batch_size"] == 64
    wa, wb = (torch.load(c / "last.pt", weights_only=True)["model"] for c in (ck1, ck2))
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=0, atol=1e-5), k
    n_test = a["provenance"]["dataset_sizes"]["test"]
    assert abs(a["test"]["top1"] - b["test"]["top1"]) <= 100 / n_test + 1e-9  # at most one test image
    for k in ("nll", "ece"):
        assert a["test"][k] == pytest.approx(b["test"][k], abs=1e-4), k


@pytest.mark.slow
def test_torchrun_forwards_sigusr1_when_told_and_the_workers_stop_resumably(tmp_path):
    """SLURM's ``--signal=USR1@N`` reaches torchrun: with ``--signals-to-handle`` naming SIGUSR1 it
    forwards the signal, both workers stop after the same step with a checkpoint, and torchrun exits 1
    (not 75): ``was_interrupted`` tells the launcher the run is to be resumed."""
    import signal
    import time

    from common.checkpoint import was_interrupted

    cfg = tmp_path / "long.yaml"
    cfg.write_text(yaml.safe_dump({**MIXUP, "train": {**MIXUP["train"], "epochs": 40}}))
    out, ckpt = tmp_path / "runs" / "long", tmp_path / "ckpt"
    handle = "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
    proc = subprocess.Popen([*TORCHRUN, handle, "-m", "common.train", "--config", str(cfg), "--out", str(out),
                             "--ckpt-dir", str(ckpt)], env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        while not (ckpt / "epochs.jsonl").exists() and proc.poll() is None:  # epoch 1 done; 39 to go
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    stops = [ln for ln in err.splitlines() if ln.startswith("stopped: stopped by SIGUSR1 after batch")]
    assert len(stops) == 2 and stops[0] == stops[1], err[-3000:]  # both ranks, after the same batch
    assert was_interrupted(ckpt) and not out.exists()
    assert torch.load(ckpt / "last.pt", weights_only=True)["partial"]["world"] == 2
