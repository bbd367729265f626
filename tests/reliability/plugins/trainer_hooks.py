"""Test-only hooks into the trainer's optimisation step, imported only inside trainer subprocesses
(``hooked_train.py``), each switched on by an environment variable:

* ``TEST_SIGNAL_AT_STEP=k``: after global optimisation step ``k`` the process sends itself a real
  signal (``TEST_SIGNAL``, default ``SIGUSR1``; under torchrun only rank ``TEST_SIGNAL_RANK``,
  default 0): a stop at a known point inside an epoch;
* ``TEST_DRAWS_DIR=d``: every rank appends ``{"step", "loss", <method logs>}`` of each step (e.g.
  mixup's lambda) to ``d/rank<r>.jsonl``.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import common.train as T

_step = T.optimisation_step
_AT = os.environ.get("TEST_SIGNAL_AT_STEP")
_SIGNAL = getattr(signal, os.environ.get("TEST_SIGNAL", "SIGUSR1"))
_RANK = int(os.environ.get("TEST_SIGNAL_RANK", "0"))
_DRAWS = os.environ.get("TEST_DRAWS_DIR")


def optimisation_step(run, batch, state):
    loss, logs, n = _step(run, batch, state)
    if _DRAWS:
        with open(Path(_DRAWS) / f"rank{run.dist.rank}.jsonl", "a") as f:
            f.write(json.dumps({"step": state.step, "loss": loss, **logs}) + "\n")
    if _AT is not None and state.step == int(_AT) and run.dist.rank == _RANK:
        os.kill(os.getpid(), _SIGNAL)
    return loss, logs, n


T.optimisation_step = optimisation_step
