"""Model EMA (timm ModelEmaV3) in the training loop: the update rule, its evaluation beside the raw
model (epochs.jsonl, metrics.json) and exact resume with the EMA state in the checkpoint."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from common.config import resolve
from common.optim import build_ema
from common.train import train


def _spec(**ema) -> dict:
    """``train.ema`` as a resolved config has it (the schema's defaults filled in)."""
    return resolve({"train": {"ema": ema}})["train"]["ema"]


def test_ema_update_is_decay_times_ema_plus_one_minus_decay_times_param():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ema = build_ema(model, _spec(decay=0.9))
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()
    ema.update(model)
    now = model.state_dict()
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.9 * before[k] + 0.1 * now[k], atol=1e-7), k
            assert not torch.equal(v, now[k]) or torch.equal(before[k], now[k])


def test_ema_every_and_warmup_options():
    model = torch.nn.Linear(2, 2)
    ema = build_ema(model, _spec(decay=0.99, every=4, warmup=True))
    assert ema.every == 4 and ema.use_warmup and ema.get_decay(1) == 0.0 < ema.get_decay(50) <= 0.99
    assert build_ema(model, None) is None


def _cfg(**train_over):
    t = {"epochs": 3, "batch_size": 32, "lr": 0.05, "num_threads": 1, "ema": {"decay": 0.8}}
    t.update(train_over)
    return resolve({"seed": 2, "dataset": {"name": "digits", "train_size": 128, "test_size": 64},
                    "model": {"name": "resnet8", "width": 4}, "method": {"name": "mixup"}, "train": t,
                    "eval": {"occlusion": None}})


def test_ema_recorded_each_epoch_and_in_metrics(tmp_path):
    res = train(_cfg(), tmp_path / "run", tmp_path / "ck", progress=False)
    rows = [json.loads(s) for s in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    assert all({"test_top1_ema", "test_loss_ema", "test_top1", "test_loss"} <= set(r) for r in rows)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(m["test_ema"]) == set(m["test"]) and m["test_ema"]["nll"] != m["test"]["nll"]
    assert m["test_ema"]["top1"] == pytest.approx(rows[-1]["test_top1_ema"])


def test_resume_with_ema_is_exact(tmp_path):
    cfg = _cfg()
    full = train(copy.deepcopy(cfg), tmp_path / "a" / "run", tmp_path / "a" / "ck", progress=False)
    assert train(copy.deepcopy(cfg), tmp_path / "b" / "run", tmp_path / "b" / "ck", stop_after_epoch=1,
                 progress=False) is None
    ck = torch.load(tmp_path / "b" / "ck" / "last.pt", weights_only=True)
    assert any(k.startswith("module.") for k in ck["ema"])
    resumed = train(copy.deepcopy(cfg), tmp_path / "b" / "run", tmp_path / "b" / "ck", progress=False)
    assert resumed["provenance"]["resumed_from_epoch"] == 1
    assert resumed["test_ema"] == full["test_ema"] and resumed["test"] == full["test"]
