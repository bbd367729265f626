"""The workflow on a real single-node SLURM cluster (.ci/slurm-cluster; .ci/run installs and starts
it): `--workflow-profile profiles/slurm` gives the same runs and aggregates as a local run, a
two-process torchrun job included, and a run whose job reaches its time limit (1 or 2 min; SLURM's
minimum is 1) continues in a chain of jobs with the same metrics as an uninterrupted run.

To make "the run is longer than its job" independent of machine speed, the chain tests freeze the
trainer (SIGSTOP) once it runs and thaw it when the launcher's stop request (SIGUSR1, sent before the
job's end) is pending; it then checkpoints and the job is requeued. Skipped, with the reason, where
the cluster cannot be started (not root, slurm-wlm/munge missing) or the SLURM plugin is missing;
failed instead when MIXREPRO_REQUIRE_SLURM=1 (.ci/run sets it: there the tests must run).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from workflow_helpers import ROOT, SNAKEMAKE, _add_paper, _copy_repo, _smk

pytestmark = pytest.mark.slow
CLUSTER = ROOT / ".ci" / "slurm-cluster"
STANDIN = ROOT / "tests" / "chain_standin.py"
# this node: squeue as status command (no accounting), no account, quick first status check
NODE = ["--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "5", "--slurm-keep-successful-logs"]
TIMING = {"train_secs", "train_time_sec", "wall_time_sec", "train_cpu_sec", "train_images_per_sec"}
ENVIRONMENT = {"git_commit", "argv", "threads"}  # where the run was started: checkout, thread settings
RESUMED = {"resumed_from_epoch", "resumed_from_batch"}  # how the run got there: a chain resumed (mid-epoch)


def _unavailable(reason: str):
    """Skip (a developer without root or the packages), but fail where the SLURM tests must run:
    .ci/run sets MIXREPRO_REQUIRE_SLURM=1, so that CI never passes with these tests skipped."""
    if os.environ.get("MIXREPRO_REQUIRE_SLURM") == "1":
        pytest.fail(f"MIXREPRO_REQUIRE_SLURM=1, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError as e:
        _unavailable(f"the SLURM executor plugin cannot be imported ({e}): pip install -e '.[slurm]'")
    if subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0:
        yield
        return
    p = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        _unavailable(f"no SLURM cluster: {p.stderr.strip() or p.stdout.strip()}")
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=300)


def _cluster_yaml(max_runtime: int, lead_s: int) -> str:
    return f"partitions:\n  cpu: {{max_gpu: 0, max_runtime: {max_runtime}}}\ncheckpoint_lead_s: {lead_s}\n"


def _tiny_repo(dst: Path, grid: str, max_runtime: int, lead_s: int, claim: str = "mixup") -> Path:
    """A copy of the workflow with one tiny paper (`grid` replaces its quick grid; its claim compares
    `claim` with erm) and profiles/slurm set for this node (its partition and limits)."""
    dst.mkdir()
    r = _copy_repo(dst)
    _add_paper(r, "tinya", "erm", claim)
    exp = r / "papers/tinya/experiments.yaml"
    exp.write_text(re.sub(r"    grid:\n(      .*\n)+", "    grid:\n" + grid, exp.read_text()))
    (r / "profiles/slurm/cluster.yaml").write_text(_cluster_yaml(max_runtime, lead_s))
    return r


def _twin(repo: Path, dst: Path) -> Path:
    shutil.copytree(repo, dst)
    return dst


def _start(repo: Path, *args: str, code: Path | None = None) -> subprocess.Popen:
    """Snakemake in `repo`, importing `common` from `code` (default: the repo)."""
    env = {**os.environ, "PYTHONPATH": str(code or repo),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(SNAKEMAKE + list(args), cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@contextmanager
def _stopped_on_failure(*procs: subprocess.Popen):
    """Stop the Snakemake processes (which cancel their SLURM jobs) when the block fails."""
    try:
        yield
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.communicate(timeout=300)
        raise


def _finish(p: subprocess.Popen, what: str, timeout: int = 900) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    return out


# --------------------------------------------------------------------------- comparing outputs
def _drop(x):
    if isinstance(x, dict):
        return {k: _drop(v) for k, v in x.items() if k not in TIMING | ENVIRONMENT | RESUMED}
    return [_drop(v) for v in x] if isinstance(x, list) else x


def _comparable(path: Path):
    """A file's content without timings and the checkout it ran in (which differ between two runs)."""
    text = path.read_text() if path.suffix in {".json", ".jsonl", ".csv", ".md", ".tex", ".txt"} else None
    if text is None:
        return path.read_bytes()
    if path.suffix == ".json":
        return _drop(json.loads(text))
    if path.suffix == ".jsonl":
        return [_drop(json.loads(line)) for line in text.splitlines()]
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        return [{k: v for k, v in r.items() if k not in TIMING and not k.startswith("time")}
                for r in rows if r.get("metric") not in TIMING]
    return re.sub(r"\d+(\.\d+)? (s|min|h) \|", "<time> |", text)  # the time column of the markdown tables


def _outputs(repo: Path) -> dict:
    """Every run and aggregate (not logs, benchmarks, checkpoints; not the input digests, which hash
    the metrics.json bytes and so their timings)."""
    skip = ("logs", "benchmarks", "checkpoints", "digests")
    return {f.relative_to(repo).as_posix(): _comparable(f)
            for d in ("results", "figures") for f in sorted((repo / d).rglob("*"))
            if f.is_file() and not f.name.startswith(".") and not set(skip) & set(f.relative_to(repo).parts)}


# --------------------------------------------------------------------------- freezing a run past its job's end
def _pids(match) -> list[int]:
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if match(cmd, cwd):
            out.append(int(d.name))
    return out


def _status_mask(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(re.search(rf"^{field}:\s*([0-9a-f]+)", text, re.M).group(1), 16)


def _has(mask: int, sig: int) -> bool:
    return bool(mask >> (sig - 1) & 1)


def _wait_for(cond, what: str, timeout: float = 240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = cond()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _freeze_past_the_deadline(match, what: str) -> None:
    """Stop the training process(es) once they handle SIGUSR1, and let them go on when the launcher's
    stop request is pending: the run is then still running when its job nears its end, however fast
    this machine trains."""
    pids = _wait_for(lambda: [p for p in _pids(match) if _has(_status_mask(p, "SigCgt"), signal.SIGUSR1)],
                     f"{what} to run and handle SIGUSR1 (the trainer's stop contract)")
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        _wait_for(lambda: all(_has(_status_mask(p, "ShdPnd") | _status_mask(p, "SigPnd"), signal.SIGUSR1)
                              for p in pids), "the launcher's SIGUSR1 before the job's end", timeout=120)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)


def _jobs(snakemake_output: str, fmt: str) -> list[str]:
    """`fmt` (squeue -o) of each SLURM job of a workflow run (its jobs are named by the run ID)."""
    run_id = re.search(r"SLURM run ID: (\S+)", snakemake_output).group(1)
    out = subprocess.run(["squeue", "--states=all", "-h", "-n", run_id, "-o", fmt], capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def _job_cpus(snakemake_output: str) -> list[int]:
    """CPUs SLURM allocated to each job of a workflow run."""
    return [int(c) for c in _jobs(snakemake_output, "%C")]


def _requeues(snakemake_output: str) -> int:
    """Times SLURM started the jobs of a workflow run again (`Restarts`: requeues of the same job id)."""
    shown = [subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                            check=True).stdout for job in _jobs(snakemake_output, "%i")]
    return sum(int(re.search(r"\bRestarts=(\d+)", s).group(1)) for s in shown)


# --------------------------------------------------------------------------- tests
def test_the_slurm_profile_gives_the_runs_and_aggregates_of_a_local_run(cluster, tmp_path):
    """Three runs (one of them two processes through torchrun, gloo) and every aggregate, through
    profiles/slurm (its partition set for this node), equal a local run of the same plan."""
    grid = ("      - vary: {method: [erm, {name: mixup, alpha: 0.4}], seed: [0]}\n"
            "      - set: {resources: {procs: 2, cpus: 2}}\n"
            "        vary: {method: [{name: mixup, alpha: 0.4}], seed: [1]}\n")
    repo = _tiny_repo(tmp_path / "slurm", grid, max_runtime=10, lead_s=60)
    local = _start(_twin(repo, tmp_path / "local"), "--cores", "2")
    on_slurm = _start(repo, "--workflow-profile", "profiles/slurm", *NODE)
    _finish(local, "the local run")
    log = _finish(on_slurm, "the run on SLURM")
    ddp = [json.loads(f.read_text()) for f in (repo / "results/quick/runs").glob("*/metrics.json")]
    assert sorted(m["provenance"]["world_size"] for m in ddp) == [1, 1, 2]
    cpus = _job_cpus(log)  # resources.cpus reached SLURM: only the two-process run has 2 CPUs
    assert len(cpus) > 3 and sorted(cpus) == [1] * (len(cpus) - 1) + [2], cpus
    ours, theirs = _outputs(repo), _outputs(tmp_path / "local")
    assert len(ours) > 20 and sorted(ours) == sorted(theirs)
    for name in ours:
        assert ours[name] == theirs[name], name


CHAIN = """\
rule chain:
    output: "out/metrics.json"
    resources: runtime=1
    shell: "python -m common.launch --lead {lead} --max-requeues 3 -- {standin} out 20 0.25"
"""


def test_a_job_past_its_time_limit_is_requeued_and_the_run_resumes(cluster, tmp_path):
    """The launcher protocol with a stand-in trainer, through the real profile and plugin: signalled
    before the job's 1-minute limit, it checkpoints, the job is requeued (same id, which the workflow
    waits for) and the run finishes as if never interrupted."""
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    (tmp_path / "profiles/slurm/cluster.yaml").write_text(_cluster_yaml(1, 15))
    (tmp_path / "Snakefile").write_text(CHAIN.format(lead=15, standin=STANDIN))
    run = _start(tmp_path, "--workflow-profile", "profiles/slurm", *NODE, code=ROOT)
    with _stopped_on_failure(run):
        _freeze_past_the_deadline(lambda cmd, cwd: cwd == str(tmp_path) and str(STANDIN) in cmd
                                  and "common.launch" not in cmd, "the stand-in")
    _finish(run, "the chain")
    starts = [line.split() for line in (tmp_path / "out/starts-0.txt").read_text().splitlines()]
    assert len(starts) >= 2 and len({job for _, job in starts}) == 1  # one SLURM job id, started again
    assert [int(s) for s, _ in starts] == sorted(int(s) for s, _ in starts) and int(starts[1][0]) > 0
    ref = tmp_path / "reference"
    subprocess.run([sys.executable, str(STANDIN), str(ref), "20", "0"], check=True)
    assert json.loads((tmp_path / "out/metrics.json").read_text()) == json.loads((ref / "metrics.json").read_text())


def test_a_training_run_longer_than_its_job_finishes_in_a_chain_with_the_same_metrics(cluster, tmp_path):
    """python -m common.train under a 2-minute cap: signalled 45 s before the limit, checkpoints, is
    requeued and resumes; its metrics and per-epoch log equal an uninterrupted local run's.
    Needs the trainer's stop contract (SIGUSR1/SIGTERM -> checkpoint at a step boundary, exit 75).
    Each start of the job spends up to ~50 s on a loaded machine before training (two Snakemake
    processes, importing torch): 2 minutes leave room to train before the stop request and, after
    the last epoch, for Snakemake to finish before the limit (1 minute with a 15 s lead did not)."""
    grid = "      - set: {train: {epochs: 30}}\n        vary: {method: [erm], seed: [0]}\n"
    repo = _tiny_repo(tmp_path / "slurm", grid, max_runtime=2, lead_s=45, claim="erm")
    local = _start(_twin(repo, tmp_path / "local"), "--cores", "1", "--until", "train")
    on_slurm = _start(repo, "--workflow-profile", "profiles/slurm", *NODE, "--until", "train")
    with _stopped_on_failure(local, on_slurm):
        _freeze_past_the_deadline(lambda cmd, cwd: cwd == str(repo) and "-m common.train" in cmd
                                  and "common.launch" not in cmd, "the trainer")
    log = _finish(on_slurm, "the chain on SLURM")
    _finish(local, "the local run")
    assert _requeues(log) >= 1
    ours, theirs = _outputs(repo), _outputs(tmp_path / "local")
    runs = [n for n in ours if n.startswith("results/quick/runs/")]
    assert len(runs) == 2 and sorted(ours) == sorted(theirs)
    for name in runs:
        assert ours[name] == theirs[name], name
