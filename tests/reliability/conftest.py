"""Fixtures of the reliability suite (helpers live in ``rel_helpers.py``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/workflow_helpers.py, for workflow-level tests

from rel_helpers import TINY, epochs, metrics


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict:
    """One uninterrupted run of ``TINY`` (in-process; a subprocess gives the same numbers, which
    the fault tests check implicitly by comparing their subprocess runs against this one)."""
    from common.config import resolve
    from common.train import train

    d = tmp_path_factory.mktemp("reference")
    out = d / "runs" / "ref"
    train(resolve(TINY), out, d / "ckpt", progress=False)
    return {"out": out, "metrics": metrics(out), "epochs": epochs(out), "ckpt": d / "ckpt"}
