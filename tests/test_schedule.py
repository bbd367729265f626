"""Schedule and optimiser keys of the training loop: the lr equals timm's CosineLRScheduler
(per epoch and per step, warmup_lr/min_lr/cool-down), the no_weight_decay modes, the
best_val_acc checkpoint rule, and AMP staying off on CPU."""
from __future__ import annotations

import json

import pytest
import torch
from timm.scheduler import CosineLRScheduler

from common.config import resolve
from common.optim import lr_at, make_optimizer, total_epochs
from common.train import train


def _t(**over):
    return {**resolve({})["train"], **over}


def _timm_values(t, spe, per_epoch):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t["lr"])
    if per_epoch:
        s = CosineLRScheduler(opt, t_initial=t["epochs"], lr_min=t["min_lr"], warmup_t=t["warmup_epochs"],
                              warmup_lr_init=t["warmup_lr"], cycle_limit=1, t_in_epochs=True)
        out = []
        for e in range(total_epochs(t)):
            s.step(e)
            out.extend([opt.param_groups[0]["lr"]] * spe)
        return out
    s = CosineLRScheduler(opt, t_initial=t["epochs"] * spe, lr_min=t["min_lr"], warmup_t=t["warmup_epochs"] * spe,
                          warmup_lr_init=t["warmup_lr"], cycle_limit=1, t_in_epochs=False)
    out = []
    for k in range(total_epochs(t) * spe):
        s.step_update(k)
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("per", ["epoch", "step"])
def test_lr_matches_timm_cosine_scheduler(per):
    """TransMix's DeiT-S values scaled down: lr 1e-3, warmup from 1e-6 for 2 of 10 epochs, floor 1e-5,
    2 cool-down epochs; every step, warmup boundaries and the cool-down included."""
    t = _t(lr=1e-3, epochs=10, warmup_epochs=2, warmup_lr=1e-6, min_lr=1e-5, cooldown_epochs=2, lr_per=per)
    spe = 3
    want = _timm_values(t, spe, per == "epoch")
    got = [lr_at(k, spe, t) for k in range(total_epochs(t) * spe)]
    assert len(got) == 12 * spe
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert got[0] == 1e-6  # first step: the warmup lr
    w = 2 * spe  # first step after the warmup: timm's cosine counts from 0, so below the base lr
    assert got[w - 1] < got[w] < 1e-3
    assert got[-1] == 1e-5 and got[10 * spe] == 1e-5  # cool-down at min_lr


def test_default_rule_unchanged():
    t = _t(lr=0.1, epochs=4, warmup_epochs=1)
    # linear warmup (step + 1) / warmup_steps, then the cosine starts after the warmup
    assert [lr_at(k, 2, t) for k in range(4)] == [0.05, 0.1, 0.1, pytest.approx(0.05 * (1 + 0.8660254037844387))]


def test_no_weight_decay_modes():
    from common.models import build_model

    vit = build_model({"name": "vit", "patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}, 10, (3, 8, 8))
    names = {id(p): n for n, p in vit.named_parameters()}

    def no_decay(mode, optimizer="adamw"):
        opt = make_optimizer(vit, _t(optimizer=optimizer, no_weight_decay=mode))
        return {names[id(p)] for p in opt.param_groups[1]["params"]}

    timm_mode = no_decay("timm")
    assert {"pos_embed", "cls_token"} <= timm_mode and "blocks.0.attn.qkv.weight" not in timm_mode
    assert "pos_embed" not in no_decay(None) and "blocks.0.norm1.weight" in no_decay(None)
    assert no_decay(None, "sgd") == set() and no_decay("ndim", "sgd") == no_decay("ndim") != set()
    assert no_decay("none") == set()


def _run(tmp_path, name, **train_over):
    cfg = resolve({"seed": 4, "dataset": {"name": "random", "val_size": 16,
                                          "options": {"n_train": 64, "n_test": 16, "image_size": 8}},
                   "model": {"name": "resnet8", "width": 4}, "method": {"name": "erm"},
                   "train": {"epochs": 4, "batch_size": 16, "lr": 0.05, "num_threads": 1, **train_over},
                   "eval": {"occlusion": None, "temperature_scaling": False}})
    res = train(cfg, tmp_path / name, tmp_path / f"ck_{name}", progress=False)
    rows = [json.loads(s) for s in (tmp_path / name / "epochs.jsonl").read_text().splitlines()]
    return res, rows


def test_best_val_acc_selects_the_first_best_validation_accuracy(tmp_path):
    res, rows = _run(tmp_path, "acc", select="best_val_acc")
    best = max(r["val_top1"] for r in rows)
    assert res["selected_epoch"] == next(r["epoch"] for r in rows if r["val_top1"] == best)


def test_amp_stays_off_on_cpu(tmp_path):
    a, _ = _run(tmp_path, "plain")
    b, _ = _run(tmp_path, "amp", amp=True, amp_dtype="bfloat16")
    assert a["test"] == b["test"]


def _deit_epoch_lrs(t, n_epochs):
    """The lr each epoch trains at in DeiT's main.py: timm's CosineLRScheduler is created before
    training (which sets the warmup lr) and ``lr_scheduler.step(epoch)`` runs after each epoch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t["lr"])
    s = CosineLRScheduler(opt, t_initial=t["epochs"], lr_min=t["min_lr"], warmup_t=t["warmup_epochs"],
                          warmup_lr_init=t["warmup_lr"], cycle_limit=1, t_in_epochs=True)
    out = []
    for epoch in range(n_epochs):
        out.append(opt.param_groups[0]["lr"])  # train_one_epoch(...) at this lr
        s.step(epoch)
    return out


def test_lr_epoch_lag_runs_deits_scheduler_one_epoch_late():
    t = _t(lr=1e-3, epochs=10, warmup_epochs=3, warmup_lr=1e-6, min_lr=1e-5, cooldown_epochs=2, lr_per="epoch",
           lr_epoch_lag=1)
    spe = 4
    got = [lr_at(e * spe + k, spe, t) for e in range(total_epochs(t)) for k in range(spe)]
    want = [lr for lr in _deit_epoch_lrs(t, total_epochs(t)) for _ in range(spe)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    unlagged = [lr_at(e * spe, spe, {**t, "lr_epoch_lag": 0}) for e in range(total_epochs(t))]
    assert got[::spe] == [unlagged[0]] + unlagged[:-1]  # epoch e at lr(e - 1); epochs 0 and 1 both at lr(0)


def test_lr_epoch_lag_per_step_shifts_the_schedule_by_whole_epochs():
    t = _t(lr=0.1, epochs=6, warmup_epochs=1, lr_epoch_lag=2)
    spe = 3
    unlagged = {**t, "lr_epoch_lag": 0}
    got = [lr_at(k, spe, t) for k in range(6 * spe)]
    assert got[:2 * spe] == [lr_at(0, spe, unlagged)] * (2 * spe)  # the first 2 epochs at the schedule's start
    assert got[2 * spe:] == [lr_at(k, spe, unlagged) for k in range(4 * spe)]


def test_lr_epoch_lag_is_neutral_at_zero():
    from common.config import run_id

    assert run_id(resolve({"train": {"lr_epoch_lag": 0}})) == run_id(resolve({}))
    assert run_id(resolve({"train": {"lr_epoch_lag": 1}})) != run_id(resolve({}))


def test_accum_steps_is_runtime_only():
    from common.config import run_id

    assert run_id(resolve({"resources": {"accum_steps": 4}})) == run_id(resolve({}))
    assert resolve({})["resources"]["accum_steps"] == 1


def _erm_mlp(accum: int, **train_over) -> dict:
    return resolve({"seed": 1, "dataset": {"name": "digits", "train_size": 256, "test_size": 100},
                    "model": {"name": "mlp", "hidden": [32]}, "method": {"name": "erm"},
                    "train": {"epochs": 2, "batch_size": 64, "lr": 0.1, "num_threads": 1, **train_over},
                    "eval": {"occlusion": None}, "resources": {"accum_steps": accum}})


def test_gradient_accumulation_averages_the_micro_batches_like_one_batch(tmp_path):
    """ERM on a BatchNorm-free MLP with batches that split evenly: 2 accumulated micro-batches of 32
    give the gradient of the batch of 64 up to float rounding (mean of the two halves' means)."""
    one = train(_erm_mlp(1), tmp_path / "a", tmp_path / "ck_a", progress=False)
    two = train(_erm_mlp(2), tmp_path / "b", tmp_path / "ck_b", progress=False)
    wa, wb = (torch.load(tmp_path / ck / "last.pt", weights_only=True)["model"] for ck in ("ck_a", "ck_b"))
    assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=1e-6) for k in wa)
    assert two["test"]["nll"] == pytest.approx(one["test"]["nll"], abs=1e-5)
    assert (one["provenance"]["micro_batch_size"], two["provenance"]["micro_batch_size"]) == (64, 32)


@pytest.mark.parametrize("accum,method,fits", [
    (128, "erm", 16),  # the batch of 60 cannot make 128 micro-batches
    (32, "erm", 16),  # the last batch (256 - 4 x 60 = 16 samples) cannot make 32
    (10, "mixup", 8),  # 16 samples make 10 micro-batches, but mixup pairs samples within each: 2 x 10 needed
])
def test_accum_steps_that_leave_a_micro_batch_too_small_are_refused(tmp_path, accum, method, fits):
    from common.config import ConfigError

    cfg = resolve({**_erm_mlp(accum, batch_size=60), "method": {"name": method}})
    with pytest.raises(ConfigError, match="resources.accum_steps"):
        train(cfg, tmp_path / "r", tmp_path / "ck", progress=False)
    assert not (tmp_path / "r").exists()
    cfg["resources"]["accum_steps"] = fits  # the largest that fits: trains
    assert train(cfg, tmp_path / "r", tmp_path / "ck", progress=False, stop_after_epoch=1) is None
