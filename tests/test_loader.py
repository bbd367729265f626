"""The data path: the in-memory tensor path is unchanged (metrics pinned from before the
file-based loader existed), the file-based loader, samplers and per-sample seeding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.config import resolve

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "trainer_identity.json"

# Two short runs of the in-memory path; their metrics were recorded with the trainer as it was
# before the file-based loader, EMA and the new schedule keys (tests/fixtures/trainer_identity.json).
IDENTITY_CONFIGS = {
    "digits_mixup": {"seed": 3, "dataset": {"name": "digits", "train_size": 300, "test_size": 200},
                     "model": {"name": "resnet8", "width": 8}, "method": {"name": "mixup", "alpha": 1.0},
                     "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "warmup_epochs": 1, "num_threads": 1,
                               "clip_grad_norm": 5.0}},
    "random_cutmix": {"seed": 1, "dataset": {"name": "random", "val_size": 16,
                                             "options": {"n_train": 80, "n_test": 32, "image_size": 16}},
                      "model": {"name": "resnet8", "width": 8}, "method": {"name": "cutmix", "alpha": 1.0, "prob": 0.5},
                      "train": {"epochs": 2, "batch_size": 16, "optimizer": "adamw", "lr": 0.003,
                                "weight_decay": 0.05, "schedule": "step", "milestones": [1], "num_threads": 1,
                                "select": "best_val"},
                      "eval": {"batch_size": 20}},
}


def identity_metrics(cfg: dict, tmp: Path) -> dict:
    """Everything a run records that does not depend on time or the machine."""
    from common.train import train

    res = train(resolve(cfg), tmp / "run", tmp / "ckpt", progress=False)
    rows = [json.loads(s) for s in (tmp / "run" / "epochs.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("train_secs")
    return {"test": res["test"], "selected_epoch": res["selected_epoch"], "best_epoch_test": res["best_epoch_test"],
            "epochs": rows}


@pytest.mark.parametrize("name", sorted(IDENTITY_CONFIGS))
def test_in_memory_path_metrics_unchanged(tmp_path, name):
    want = json.loads(FIXTURE.read_text())[name]
    assert identity_metrics(IDENTITY_CONFIGS[name], tmp_path) == want
