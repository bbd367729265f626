"""Stopping a run for its job's time limit: a signal -> a resumable checkpoint -> exit status 75.

A cluster job that would outlive its walltime is signalled before the limit (SLURM
``--signal=USR1@<seconds>``; SIGTERM at the limit). On SIGUSR1 or SIGTERM the trainer finishes the
optimisation step it is in, writes a checkpoint of exactly that point (mid-epoch: the batches done,
the mixing generator, torch's RNG states, the method's epoch counters), writes no ``metrics.json``
and exits with ``EX_TEMPFAIL`` (75). Rerunning the same command resumes there and ends with the same
metrics and ``epochs.jsonl`` as an uninterrupted run.

Under torchrun every rank checks, after each step, whether any rank was signalled (one gloo
all-reduce of a flag), so all stop after the same step; rank 0 writes the checkpoint. torchrun
itself (``torch.distributed.run``, torch 2.10) catches only the signals of its
``--signals-to-handle`` option (env ``PET_SIGNALS_TO_HANDLE``; default
``SIGTERM,SIGINT,SIGHUP,SIGQUIT``): it forwards such a signal to every worker, waits
``--shutdown-timeout`` seconds (env ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``, default 30) and then
SIGKILLs them, and exits with status 1 (a ``SignalException``), not 75. SIGUSR1 is not in the
default list: torchrun dies of it (the default action) and the workers, not signalled, run on. So a
launcher using SIGUSR1 passes ``--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1``, gives a
shutdown timeout longer than a checkpoint write, and, as torchrun's status is not the workers' 75,
reads :func:`common.checkpoint.was_interrupted` (``<ckpt>/interrupted.json``) to know that the run
stopped to be resumed (both checked in ``tests/test_ddp.py``).
"""
from __future__ import annotations

import signal
import threading

EX_TEMPFAIL = 75  # sysexits.h: temporary failure, retry later
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class RunInterrupted(Exception):
    """The run stopped on a signal after writing a resumable checkpoint (exit status 75)."""


class StopSignals:
    """While active, SIGUSR1 and SIGTERM only set :attr:`requested` (the previous handlers are put
    back on exit). Outside the main thread signals cannot be caught and nothing is installed."""

    def __init__(self):
        self.requested: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else "none"

