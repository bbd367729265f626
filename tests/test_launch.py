"""The launcher (common/launch.py) without a cluster: what a run's job asks for, exit statuses, CPUs
per process, and the stop/requeue protocol against a stand-in trainer (tests/chain_standin.py) and
a stand-in `scontrol` (the real cluster is tested in test_slurm.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from common import launch
from common.errors import ConfigError
from common.loader import loader_options

ROOT = Path(__file__).resolve().parent.parent
STANDIN = str(ROOT / "tests" / "chain_standin.py")
PARTITIONS = {"gpu": {"max_gpu": 8, "max_runtime": 2880}, "cpu": {"max_gpu": 0, "max_runtime": 1440},
              "long": {"max_gpu": 0, "max_runtime": 10080}}


def _cfg(**res):
    return {"resources": {"gpus": 0, "nodes": 1, "cpus": 1, "mem_mb": 4000, "runtime_min": 60, **res}}


# --------------------------------------------------------------------------- plan time
def test_processes_default_to_one_per_gpu_and_a_cpu_run_may_ask_for_more():
    assert launch.procs(_cfg()) == 1 and launch.procs(_cfg(gpus=4, cpus=32)) == 4
    assert launch.procs(_cfg(procs=2, cpus=2)) == 2


@pytest.mark.parametrize("res, key", [({"gpus": 2, "procs": 1}, "resources.procs"),
                                      ({"procs": 2}, "resources.cpus"),
                                      ({"nodes": 2}, "resources.nodes")])
def test_resources_a_run_cannot_use_are_rejected_naming_the_key(res, key):
    with pytest.raises(ConfigError, match=key):
        launch.cpus(_cfg(**res))


def test_walltime_is_capped_by_the_partitions_that_can_take_the_run():
    gpu_run = _cfg(gpus=8, cpus=32, runtime_min=10080)
    assert launch.runtime(gpu_run, PARTITIONS, 0) == 2880  # only `gpu` has GPUs
    assert launch.runtime(_cfg(runtime_min=5000), PARTITIONS, 0) == 5000  # CPU partitions: `long` allows 10080
    assert launch.runtime(_cfg(runtime_min=5000), {"cpu": PARTITIONS["cpu"]}, 0) == 1440
    assert launch.runtime(gpu_run, {}, 0) == 10080  # no partitions: no cap (local runs)
    assert launch.runtime(_cfg(runtime_min=5000, slurm_partition="cpu"), PARTITIONS, 0) == 1440  # the run's own
    # a CPU-only run goes to partitions without GPUs when there are any, else anywhere
    assert launch.runtime(_cfg(runtime_min=5000), {"gpu": PARTITIONS["gpu"]}, 0) == 2880
    with pytest.raises(ConfigError, match="resources.gpus: 8 GPUs"):
        launch.runtime(gpu_run, {"cpu": PARTITIONS["cpu"]}, 0)
    with pytest.raises(ConfigError, match="slurm_partition: nowhere"):
        launch.runtime(_cfg(slurm_partition="nowhere"), PARTITIONS, 0)


def test_a_job_has_the_runs_estimate_before_it_is_asked_to_stop():
    assert launch.runtime(_cfg(runtime_min=30), PARTITIONS, 900) == 30 + 15
    assert launch.runtime(_cfg(runtime_min=5000), {"cpu": PARTITIONS["cpu"]}, 900) == 1440
    with pytest.raises(ConfigError, match="checkpoint_lead_s: 900 s"):
        launch.runtime(_cfg(), {"cpu": {"max_gpu": 0, "max_runtime": 15}}, 900)


def test_a_chain_may_use_twice_the_jobs_its_runtime_needs():
    gpu_run = _cfg(gpus=8, cpus=32, runtime_min=10080)
    assert launch.max_requeues(gpu_run, PARTITIONS, 0) == 2 * 4
    assert launch.max_requeues(gpu_run, PARTITIONS, 900) == 2 * 4  # 2865 of 2880 min train per job
    assert launch.max_requeues(_cfg(runtime_min=2880), {"gpu": PARTITIONS["gpu"]}, 900) == 2 * 2
    assert launch.max_requeues(_cfg(runtime_min=30), PARTITIONS, 0) == 2


def test_rule_resources_are_functions_of_the_run_id():
    runs = {"a": _cfg(procs=2, cpus=6, mem_mb=9000, runtime_min=3000), "b": _cfg(gpus=2, cpus=8)}
    rr = launch.RuleResources(runs.__getitem__, {k: PARTITIONS[k] for k in ("gpu", "cpu")}, 600)
    a, b = SimpleNamespace(run_id="a"), SimpleNamespace(run_id="b")
    assert (rr.threads(a), rr.gpus(a), rr.mem_mb(a), rr.runtime(a), rr.partition(a)) == (6, 0, 9000, 1440, None)
    assert rr.runtime(b) == 60 + 10
    assert rr.args(a) == "--procs 2 --lead 600 --max-requeues 6"
    assert (rr.threads(b), rr.gpus(b), rr.args(b)) == (8, 2, "--procs 2 --lead 600 --max-requeues 2")


# --------------------------------------------------------------------------- run time pieces
def test_exit_status_is_75_only_when_every_failed_process_stopped_to_resume():
    assert launch.exit_status([0, 0]) == 0
    assert launch.exit_status([75, 75]) == 75 and launch.exit_status([75, 0]) == 75
    assert launch.exit_status([75, 1]) == 1 and launch.exit_status([-9, 75]) == 128 + 9
    # torchrun stops the peers of a process that exited 75 with SIGTERM: still a resumable stop
    assert launch.exit_status([75, -15]) == 75 and launch.exit_status([-15, 0]) == 128 + 15


def test_cpus_per_process_come_from_the_launcher_or_the_job():
    assert launch.cpus_per_rank({"OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "32"}) == 3
    assert launch.cpus_per_rank({"SLURM_CPUS_PER_TASK": "32", "LOCAL_WORLD_SIZE": "8"}) == 4
    assert launch.cpus_per_rank({"SLURM_CPUS_PER_TASK": "2", "LOCAL_WORLD_SIZE": "8"}) == 1
    assert launch.cpus_per_rank({}) == len(os.sched_getaffinity(0))


def test_loader_workers_default_to_the_cpus_of_the_process(monkeypatch):
    cfg = {"dataset": {"name": "imagenet", "loader": {"workers": None}}, "resources": {"cpus": 32}}
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert loader_options(cfg)["workers"] == 4  # not 32 per rank
    cfg["dataset"]["loader"]["workers"] = 2
    assert loader_options(cfg)["workers"] == 2


# --------------------------------------------------------------------------- the launcher, run
@pytest.fixture
def launched():
    """Starts launchers; at teardown stops any still running (SIGTERM: torchrun stops its workers),
    then kills what is left of their process groups."""
    procs = []

    def start(args, env=None):
        p = subprocess.Popen([sys.executable, "-m", "common.launch", *args], env={**os.environ, **(env or {})},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop(p: subprocess.Popen) -> None:
    """SIGUSR1 to the launcher as soon as it handles it (the trainer may not have started yet)."""
    deadline = time.time() + 60
    while not launch.catches(p.pid, signal.SIGUSR1) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGUSR1)


def _finished(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _uninterrupted(tmp_path: Path, steps: int) -> dict:
    ref = tmp_path / "reference"
    subprocess.run([sys.executable, STANDIN, str(ref), str(steps), "0"], check=True)
    return _finished(ref)


def test_each_process_gets_its_share_of_the_jobs_threads(tmp_path, launched):
    """Snakemake sets OMP/MKL/... to the job's threads; torch follows MKL_NUM_THREADS too, so every
    one of them must be the process's share."""
    probe = tmp_path / "threads.py"
    probe.write_text("import torch; print(torch.get_num_threads())\n")
    job = dict.fromkeys(launch.THREAD_VARS, "2")
    p = launched(["--procs", "1", "--cpus", "1", "--", str(probe)], env=job)
    assert p.wait(timeout=120) == 0 and p.stdout.read().split() == ["1"]


def test_a_stop_request_checkpoints_exits_75_and_the_rerun_resumes_exactly(tmp_path, launched):
    out = tmp_path / "run"
    p = launched(["--procs", "1", "--", STANDIN, str(out), "400", "0.02"])
    _stop(p)  # early: delivered to the trainer only once it handles SIGUSR1, never killing it
    assert p.wait(timeout=120) == launch.EX_TEMPFAIL, p.stdout.read()
    assert not (out / "metrics.json").exists() and (out / "ckpt-0.json").exists()
    p = launched(["--", STANDIN, str(out), "400", "0.02"])
    assert p.wait(timeout=120) == 0, p.stdout.read()
    assert len((out / "starts-0.txt").read_text().splitlines()) == 2
    assert _finished(out) == _uninterrupted(tmp_path, 400)


@pytest.mark.slow
def test_two_processes_through_torchrun_stop_and_resume(tmp_path, launched):
    out = tmp_path / "run"
    p = launched(["--procs", "2", "--cpus", "2", "--", STANDIN, str(out), "200", "0.05"])
    _stop(p)
    assert p.wait(timeout=300) == launch.EX_TEMPFAIL, p.stdout.read()
    assert {f.name for f in out.glob("ckpt-*.json")} == {"ckpt-0.json", "ckpt-1.json"}
    p = launched(["--procs", "2", "--cpus", "2", "--", STANDIN, str(out), "200", "0.05"])
    assert p.wait(timeout=300) == 0, p.stdout.read()
    assert _finished(out) == _uninterrupted(tmp_path, 200)


def _fake_scontrol(tmp_path: Path, restarts: int, ends_in_s: int) -> dict:
    """A `scontrol` on PATH that reports a running job ending in `ends_in_s` and records requeues."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    end = (datetime.now() + timedelta(seconds=ends_in_s)).isoformat(timespec="seconds")
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        f'[ "$1" = show ] && echo "JobId=$4 JobName=x JobState=RUNNING Restarts={restarts} EndTime={end} X=1"\n'
        "exit 0\n")
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "calls": calls}


@pytest.mark.parametrize("restarts, requeued", [(0, True), (3, False)])
def test_in_a_slurm_job_the_run_is_stopped_before_the_end_and_the_job_requeued(tmp_path, restarts, requeued,
                                                                            launched):
    env = _fake_scontrol(tmp_path, restarts, ends_in_s=12)
    calls = env.pop("calls")
    out = tmp_path / "run"
    t0 = time.time()
    p = launched(["--lead", "10", "--max-requeues", "3", "--", STANDIN, str(out), "100000", "0.02"], env=env)
    if requeued:  # the launcher then waits for SLURM to stop the requeued job
        deadline = time.time() + 120
        while "requeue 4242" not in (calls.read_text() if calls.exists() else "") and time.time() < deadline:
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == -signal.SIGTERM
    else:
        assert p.wait(timeout=120) == launch.EX_TEMPFAIL
    assert time.time() - t0 < 60
    assert ("requeue 4242" in calls.read_text()) == requeued
    assert (out / "ckpt-0.json").exists() and not (out / "metrics.json").exists()
