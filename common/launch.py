"""How a training run is launched: what its job asks a cluster for, its processes, walltime chains.

**Plan time** (``workflow/rules/train.smk`` through :class:`RuleResources`): from a run config's
``resources`` block, the job's CPUs (Snakemake ``threads``, which the SLURM executor plugin passes
as ``--cpus-per-task``), GPUs, memory and walltime. The walltime is the run's ``runtime_min`` plus
the checkpoint lead, capped at the ``max_runtime`` of the partitions that can take the run
(``partitions`` of the workflow config, which the SLURM profile sets from
``profiles/slurm/cluster.yaml``, the file the plugin also reads to place GPU runs on GPU partitions
and everything else on CPU partitions). A run has ``resources.procs`` processes on one node
(default: one per GPU, at least one).

**Run time**::

    python -m common.launch --procs N --cpus C [--lead S --max-requeues K] -- -m common.train ...

runs the Python command line after ``--`` in N processes, through torchrun's launcher
(``torch.distributed.run``, rendezvous on this node) when N > 1, each with C // N threads
(``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ...). Inside a SLURM job it asks SLURM for the job's
end time and, S seconds before it, sends SIGUSR1 to the processes (each once it handles SIGUSR1);
a trainer then checkpoints at its next step boundary and exits with 75 (EX_TEMPFAIL), and this
launcher requeues the job (``scontrol requeue``): the same job id runs the same command again,
which resumes from the checkpoint, so a run longer than the cap finishes as a chain of jobs (at
most K requeues). A SIGUSR1 sent to the launcher does the same. SLURM's own ``sbatch --signal``
is not used: its B: form signals only the batch shell and its step form every process of the
step, and either kills the plugin's Snakemake process (no handler for SIGUSR1) before the trainer
can checkpoint; DataLoader workers would die of it too. SIGTERM (scancel, preemption, the time
limit itself) is forwarded but never requeues.

Exit status: 0 when every process succeeded; 75 when every process that failed exited 75 and the
job was not requeued; else the first other failure's status (128 + signal for a signal).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from .errors import ConfigError

EX_TEMPFAIL = 75  # the trainer's status after a requested stop with a resumable checkpoint
# the thread counts of the numerical libraries, which Snakemake sets to a job's threads: each
# process gets its share (MKL_NUM_THREADS, if left at the job's, sets torch's threads too)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
RECHECK_S = 600  # how often a waiting launcher asks SLURM again for the job's end time


# --------------------------------------------------------------------------- plan time
def _resources(cfg: dict) -> dict:
    return cfg["resources"]


def gpus(cfg: dict) -> int:
    return int(_resources(cfg)["gpus"])


def procs(cfg: dict) -> int:
    """Processes of the run on its one node: ``resources.procs``, default one per GPU (at least 1)."""
    res, g = _resources(cfg), gpus(cfg)
    if int(res["nodes"]) != 1:
        raise ConfigError(f"resources.nodes: {res['nodes']} nodes; runs start all their processes on one node "
                          "(torchrun rendezvous on the node), so resources.nodes must be 1")
    n = int(res.get("procs", max(1, g)))
    if g and n != g:
        raise ConfigError(f"resources.procs: {n} processes for resources.gpus: {g}; a GPU run has one process per GPU")
    return n


def cpus(cfg: dict) -> int:
    """CPUs of the run's job (all its processes): ``resources.cpus``, at least one per process."""
    n, p = int(_resources(cfg)["cpus"]), procs(cfg)
    if n < p:
        raise ConfigError(f"resources.cpus: {n} CPUs for resources.procs: {p} processes; "
                          "give each process at least one CPU")
    return n


def mem_mb(cfg: dict) -> int:
    return int(_resources(cfg)["mem_mb"])


def partition(cfg: dict) -> str | None:
    """The run's own partition (``resources.slurm_partition``), else None: the plugin chooses."""
    return _resources(cfg).get("slurm_partition")


def walltime_cap(cfg: dict, partitions: dict) -> int | None:
    """The longest walltime (minutes) a partition that can take the run allows, None without a limit.

    The run's own partition when it names one; else for GPU runs the partitions with at least
    ``resources.gpus`` GPUs (``max_gpu``), for CPU-only runs the partitions without GPUs when there
    are any (where the plugin puts them), else all."""
    if not partitions:
        return None
    g, own = gpus(cfg), partition(cfg)
    if own is not None:
        fit = [partitions[own]] if own in partitions else []
    else:
        fit = [p for p in partitions.values() if int(p.get("max_gpu", 0)) >= g]
        if not g:
            fit = [p for p in fit if not int(p.get("max_gpu", 0))] or fit
    if not fit:
        need = f"resources.slurm_partition: {own}" if own is not None else f"resources.gpus: {g} GPUs"
        raise ConfigError(f"{need}, but no partition of the SLURM profile can take it "
                          f"(`partitions`: {', '.join(f'{k} {v}' for k, v in partitions.items())})")
    limits = [p.get("max_runtime") for p in fit]
    return None if any(m is None for m in limits) else max(int(m) for m in limits)


def runtime(cfg: dict, partitions: dict, lead_s: int) -> int:
    """Walltime (minutes) of one job of the run: ``resources.runtime_min`` plus the checkpoint lead
    (the run is asked to stop ``lead_s`` before the end), capped by :func:`walltime_cap`."""
    want, cap = int(_resources(cfg)["runtime_min"]) + math.ceil(lead_s / 60), walltime_cap(cfg, partitions)
    if cap is not None and lead_s >= cap * 60:
        raise ConfigError(f"checkpoint_lead_s: {lead_s} s is not shorter than the {cap} min a job of this run may "
                          "take (max_runtime of its partitions): the run would stop as soon as it starts")
    return want if cap is None else min(want, cap)


def max_requeues(cfg: dict, partitions: dict, lead_s: int) -> int:
    """Requeues a run's job may use: twice the jobs its ``runtime_min`` needs (each trains for its
    walltime less the lead), so an estimate short by half still finishes and a run that makes no
    progress stops."""
    per_job = runtime(cfg, partitions, lead_s) * 60 - lead_s
    return 2 * math.ceil(int(_resources(cfg)["runtime_min"]) * 60 / per_job)


class RuleResources:
    """The train rule's per-run values, as functions of the wildcards that Snakemake calls per job.

    ``run_config`` maps a run id to its resolved config; ``partitions`` and ``lead_s`` are the
    workflow config's ``partitions`` and ``checkpoint_lead_s``."""

    def __init__(self, run_config, partitions: dict, lead_s: int):
        self.run_config, self.partitions, self.lead_s = run_config, partitions, int(lead_s)

    def _cfg(self, wc) -> dict:
        return self.run_config(wc.run_id)

    def threads(self, wc) -> int:
        return cpus(self._cfg(wc))

    def gpus(self, wc) -> int:
        return gpus(self._cfg(wc))

    def mem_mb(self, wc) -> int:
        return mem_mb(self._cfg(wc))

    def runtime(self, wc) -> int:
        return runtime(self._cfg(wc), self.partitions, self.lead_s)

    def partition(self, wc) -> str | None:
        return partition(self._cfg(wc))

    def args(self, wc) -> str:
        """The launcher's options (besides ``--cpus``, which the rule takes from its threads)."""
        cfg = self._cfg(wc)
        return (f"--procs {procs(cfg)} --lead {self.lead_s} "
                f"--max-requeues {max_requeues(cfg, self.partitions, self.lead_s)}")


# --------------------------------------------------------------------------- run time
def cpus_per_rank(env=None) -> int:
    """CPUs each process of this job may use: ``OMP_NUM_THREADS`` when set (the launcher sets it),
    else the job's CPUs (``SLURM_CPUS_PER_TASK``, or the CPUs this process may run on) over the
    processes on this node (``LOCAL_WORLD_SIZE`` under torchrun)."""
    env = os.environ if env is None else env
    if str(env.get("OMP_NUM_THREADS", "")).isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return int(env["OMP_NUM_THREADS"])
    job = int(env.get("SLURM_CPUS_PER_TASK") or len(os.sched_getaffinity(0)))
    return max(1, job // int(env.get("LOCAL_WORLD_SIZE") or 1))


def log(msg: str) -> None:
    print(f"launch: {msg}", file=sys.stderr, flush=True)


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (the trainer, or torchrun's worker processes)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` of /proc/<pid>/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line.split()[1] for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (sig - 1) & 1)


def forward(sig: int) -> None:
    for pid in child_pids(os.getpid()):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class StopRequest:
    """SIGUSR1 to the launcher, or the walltime watcher: ask the processes to checkpoint and stop.

    Each process gets SIGUSR1 once it has a handler for it (a process still starting up would die
    of it), checked every second until the launcher is done."""

    def __init__(self):
        self.requested, self.done = False, threading.Event()

    def __call__(self, *_):
        if not self.requested:
            self.requested = True
            threading.Thread(target=self._deliver, daemon=True).start()

    def _deliver(self):
        sent = set()
        while not self.done.is_set():
            for pid in child_pids(os.getpid()):
                if pid not in sent and catches(pid, signal.SIGUSR1):
                    try:
                        os.kill(pid, signal.SIGUSR1)
                    except ProcessLookupError:
                        pass
                    sent.add(pid)
            self.done.wait(1)


def exit_status(codes) -> int:
    """One status for the processes' exit codes (negative: killed by that signal). Once one process exits
    with 75, torchrun stops the others with SIGTERM; one that it stopped before its own exit 75 is part of
    the same resumable stop (the checkpoint is written before any process exits)."""
    failed = [c for c in codes if c]
    if not failed:
        return 0
    peers_stopped = EX_TEMPFAIL in failed
    other = [c for c in failed if c != EX_TEMPFAIL and not (peers_stopped and c == -signal.SIGTERM)]
    if not other:
        return EX_TEMPFAIL
    return 128 - other[0] if other[0] < 0 else other[0]


def run_processes(command: list[str], n: int, shutdown_timeout: int) -> int:
    """Run ``python <command>`` in ``n`` processes and return :func:`exit_status` of their codes."""
    if n == 1:
        return exit_status([subprocess.Popen([sys.executable, *command]).wait()])
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    # torchrun --standalone, run in this process so that each worker's exit code is known
    args = torchrun.parse_args(["--nnodes=1", f"--nproc-per-node={n}", "--rdzv-backend=c10d",
                                "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}",
                                f"--shutdown-timeout={shutdown_timeout}", *command])
    config, entrypoint, entry_args = torchrun.config_from_args(args)
    try:
        elastic_launch(config, entrypoint)(*entry_args)
    except ChildFailedError as e:
        return exit_status([f.exitcode for f in e.failures.values()])
    except SignalException as e:  # SIGTERM/SIGINT/SIGHUP/SIGQUIT to the launcher; workers were stopped
        return 128 + int(e.sigval)
    return 0


# ------------------------------------------------------------------ SLURM: end time, requeue
def slurm_job(job: str) -> dict:
    """``EndTime``, ``JobState``, ``Restarts`` of a SLURM job (``scontrol show job``), {} if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {k: v for k in ("EndTime", "JobState", "Restarts") if (v := _field(out, k)) is not None}


def _field(text: str, key: str) -> str | None:
    m = re.search(rf"(?:^|\s){key}=(\S+)", text)
    return m.group(1) if m else None


def end_time(job: str) -> float | None:
    """The job's end time (seconds since the epoch), None when SLURM gives none (no time limit)."""
    try:
        return datetime.fromisoformat(slurm_job(job).get("EndTime", "")).timestamp()
    except ValueError:  # Unknown, NONE, or no answer
        return None


def watch_walltime(job: str, lead_s: int, stop: StopRequest) -> None:
    """Call ``stop`` ``lead_s`` seconds before the job's end time (asked again every RECHECK_S, as a
    time limit can change), unless the launcher is done first."""
    while True:
        end = end_time(job)
        if end is None:
            return
        wait = end - lead_s - time.time()
        if wait <= 0:
            break
        if stop.done.wait(min(wait, RECHECK_S)):
            return
    log(f"SLURM job {job} ends in {max(0, round(end - time.time()))} s: asking the run to checkpoint and stop")
    stop()


def requeue(job: str, limit: int) -> bool:
    """Requeue the running SLURM job ``job`` unless it was requeued ``limit`` times already."""
    info = slurm_job(job)
    restarts = int(info.get("Restarts", 0))
    if info.get("JobState") != "RUNNING":
        log(f"SLURM job {job} is {info.get('JobState', 'unknown')}: not requeued")
        return False
    if restarts >= limit:
        log(f"SLURM job {job} was requeued {restarts} times already (the limit for this run's runtime_min); "
            "its checkpoint is kept: rerun snakemake to continue, and raise resources.runtime_min if it is short")
        return False
    p = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if p.returncode != 0:
        log(f"scontrol requeue {job} failed: {p.stderr.strip()}")
        return False
    log(f"SLURM job {job} requeued ({restarts + 1} of at most {limit}); the run resumes in its next start")
    return True


def await_requeue_kill(seconds: int = 600) -> None:
    """SLURM stops a requeued job's processes (SIGTERM, then SIGKILL): wait for it here, so the
    workflow never sees this job fail."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(seconds)
    log(f"the requeued job was not stopped within {seconds} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.launch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=1, help="processes on this node (N > 1: through torchrun)")
    ap.add_argument("--cpus", type=int, default=1, help="CPUs of the job; threads per process: cpus // procs")
    ap.add_argument("--lead", type=int, default=0,
                    help="inside a SLURM job: seconds before its end time to ask the run to stop (0: never)")
    ap.add_argument("--max-requeues", type=int, default=0, help="requeues of the SLURM job allowed for this run")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the Python command line, e.g. -m common.train ...")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.procs < 1 or args.cpus < 1:
        ap.error("give --procs >= 1, --cpus >= 1 and, after --, the Python command line to run")
    os.environ.update(dict.fromkeys(THREAD_VARS, str(max(1, args.cpus // args.procs))))
    stop = StopRequest()
    signal.signal(signal.SIGUSR1, stop)
    signal.signal(signal.SIGTERM, lambda *_: forward(signal.SIGTERM))
    job = os.environ.get("SLURM_JOB_ID")
    if job and args.lead > 0:
        threading.Thread(target=watch_walltime, args=(job, args.lead, stop), daemon=True).start()
    status = run_processes(command, args.procs, shutdown_timeout=max(30, args.lead // 2))
    stop.done.set()
    if status == EX_TEMPFAIL and stop.requested and job and requeue(job, args.max_requeues):
        await_requeue_kill()
    return status


if __name__ == "__main__":
    sys.exit(main())
