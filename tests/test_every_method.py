"""Every registered method and every paper grid, with no per-method test to write.

Parametrised over the method registry (a new method is covered as soon as it registers) and over
the ``quick`` and ``paper`` configs of every ``papers/*/experiments.yaml``:

* on a fixed batch the method's loss goes down after a few optimiser steps (the same draws are
  replayed before and after, so only the parameters differ);
* mixing methods really mix: the target ``lam y_a + (1 - lam) y_b`` differs from the clean label
  for some sample, ``lam`` lies in [0, 1], partner labels are ``y[index]``, and the network sees
  mixed inputs (or mixes hidden features through ``forward_mix``); logged lambdas lie in [0, 1];
* every quick classification config, shortened, is well above chance on ``digits``; every quick
  regression config beats the constant predictor;
* every paper config builds its model and method on random data of the paper's input shape:
  per distinct model one training step (first method) and one forward step per other method
  (the deep paper-scale test lives in ``test_paper_scale_cpu.py``).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from benchmarks import harness as H
from common.config import expand_grid, load_experiments, resolve
from common.data import DATASETS, DataError, prepare_splits
from common.methods import METHODS, Batch, LossTerm, Method, TrainState, build_method
from common.registry import load_plugins
from common.train import train

ROOT = Path(__file__).resolve().parents[1]
load_plugins()

SHAPE = (3, 16, 16)  # 16 px: a ViT patch of 4 and a MaskMix cell of 8 both divide it
K = 10
CNN = {"name": "resnet8", "width": 8}
VIT = {"name": "vit", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0}
MLP = {"name": "mlp", "hidden": [32, 32]}


# --------------------------------------------------------------------------- what to parametrise over
def _registered() -> list[dict]:
    """``{"name": m}`` for every registered method, ``mixup+t`` for every loss term."""
    specs = []
    for n in METHODS.names():
        cls = METHODS.get(n)
        if isinstance(cls, type) and issubclass(cls, LossTerm):
            specs.append({"name": f"mixup+{n}"})
        elif isinstance(cls, type) and issubclass(cls, Method):
            specs.append({"name": n})
    return specs


def _grid(scale: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted(ROOT.glob("papers/*/experiments.yaml")):
        exp = load_experiments(path)
        if scale in exp.get("scales", {}):
            out += [(path.parent.name, c) for c in expand_grid(exp, scale, path.parent.name)]
    return out


def _distinct(configs, key) -> list[tuple[str, dict]]:
    seen, out = set(), []
    for paper, c in configs:
        k = key(c)
        if k not in seen:
            seen.add(k)
            out.append((paper, c))
    return out


def _tasks(spec: dict) -> tuple:
    return getattr(METHODS.get(spec["name"].split("+")[0]), "tasks", ("classification",))


# --------------------------------------------------------------------------- fixed-batch fixtures
def _setup(spec: dict):
    """(method, model, ctx, batch) on the first of a small CNN, a small ViT (classification) and an
    MLP (regression) that the method accepts without a fallback warning."""
    images = H.random_images(64, seed=1, num_classes=K)
    images.x = images.x[:, :, :16, :16].contiguous()
    table = H.random_regression(n=256, d=5, seed=1)
    candidates = []
    if "classification" in _tasks(spec):
        batch = H.image_batch(images, 32)
        candidates += [(CNN, "classification", K, SHAPE, images, batch), (VIT, "classification", K, SHAPE, images, batch)]
    if "regression" in _tasks(spec):
        batch = Batch(table.x[:32].clone(), table.y[:32].clone(), torch.arange(32))
        candidates.append((MLP, "regression", 1, (5,), table, batch))
    errors = []
    for mspec, task, k, shape, data, batch in candidates:
        model = H.build(mspec, k, shape)
        ctx = H.make_context(task, data, model, k, shape)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                method = build_method(copy.deepcopy(spec), ctx)
                method.setup(model)
            return method, model, ctx, batch
        except (TypeError, Warning, RuntimeError) as e:
            errors.append(f"{mspec['name']}: {e}")
    raise AssertionError(f"{spec['name']}: no test model accepts it ({'; '.join(errors)})")


def _state(ctx, seed: int, step: int = 0) -> TrainState:
    return TrainState(0, step, 10, 100, torch.Generator().manual_seed(seed), ctx)


@pytest.mark.parametrize("spec", _registered(), ids=lambda s: s["name"])
def test_loss_decreases_on_a_fixed_batch(spec):
    method, model, ctx, batch = _setup(spec)

    def replayed_loss():  # the same draws (generator seed 123) before and after training
        with torch.no_grad():
            return float(method.step(model, batch, _state(ctx, 123)).loss)

    before = replayed_loss()
    opt = H.optimizer(model, {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0})
    gen = torch.Generator().manual_seed(0)
    for step in range(8):
        out = method.step(model, batch, TrainState(0, step, 10, 100, gen, ctx))
        assert torch.isfinite(out.loss)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    after = replayed_loss()
    assert after < 0.97 * before, f"{spec['name']}: loss {before:.4f} -> {after:.4f} after 8 steps"


def _record_inputs(model) -> list:
    """Wrap ``forward`` / ``forward_mix`` to record what the network receives."""
    seen = []
    for attr in ("forward", "forward_mix"):
        fn = getattr(model, attr, None)
        if fn is not None:
            def rec(*a, _fn=fn, _attr=attr, **kw):
                seen.append((_attr, a[0].detach().clone() if a and torch.is_tensor(a[0]) else None))
                return _fn(*a, **kw)
            setattr(model, attr, rec)
    return seen


def _draws_beta(params) -> bool:
    """Its parameters include a Beta(alpha, alpha) parameter (``alpha``, ``mixup_alpha``,
    ``cutmix_alpha``) that is switched on: the method must mix."""
    if not dataclasses.is_dataclass(params):
        return False
    return any(f.name.endswith("alpha") and isinstance(getattr(params, f.name), (int, float))
               and not isinstance(getattr(params, f.name), bool) and getattr(params, f.name) > 0
               for f in dataclasses.fields(params))


def _has_new_rows(x, clean: torch.Tensor) -> bool:
    """``x`` holds a sample that is not one of the clean batch's samples."""
    if x is None or x.shape[1:] != clean.shape[1:]:
        return False
    rows, ref = x.flatten(1), clean.flatten(1)
    return not bool((rows[:, None, :] == ref[None, :, :]).all(-1).any(1).all())


def _lam(mix, n: int) -> torch.Tensor:
    lam = torch.as_tensor(mix.lam, dtype=torch.float64).detach().cpu().flatten()
    return lam.expand(n) if lam.numel() == 1 else lam


@pytest.mark.parametrize("spec", _registered(), ids=lambda s: s["name"])
def test_mixing_methods_mix_labels_and_inputs(spec):
    method, model, ctx, batch = _setup(spec)
    mixing = _draws_beta(method.p)
    seen = _record_inputs(model)
    gen = torch.Generator().manual_seed(5)
    mixes = []
    with torch.no_grad():
        for step in range(6):
            mixes.append(method.step(model, batch, TrainState(0, step, 10, 100, gen, ctx)).mix)
    stats = method.epoch_end(TrainState(0, 6, 10, 100, gen, ctx)) or {}
    for key in ("lam", "lam_area", "lam_attn", "alpha"):
        if key in stats:
            assert 0.0 <= stats[key] <= 1.0, f"{spec['name']}: logged {key}={stats[key]} outside [0, 1]"
    labels_mixed = False
    for mix in [m for m in mixes if m is not None]:
        lam = _lam(mix, mix.y_a.shape[0])
        assert bool(((lam >= 0) & (lam <= 1)).all()), f"{spec['name']}: lam outside [0, 1]: {lam}"
        if ctx.task == "classification":
            if mix.index is not None:
                assert torch.equal(mix.y_b.cpu(), batch.y[mix.index.cpu()]), f"{spec['name']}: y_b is not y[index]"
            differs = mix.y_b.cpu() != mix.y_a.cpu()
        else:
            differs = (mix.y_b.double().cpu() - mix.y_a.double().cpu()).abs().flatten(1).amax(1) > 1e-6
        labels_mixed |= bool(((lam < 1) & differs).any())
    inputs_mixed = any(kind == "forward_mix" or _has_new_rows(x, batch.x) for kind, x in seen)
    reports_lam = any(m is not None and bool((_lam(m, m.y_a.shape[0]) < 1).any()) for m in mixes)
    if reports_lam:
        assert labels_mixed, f"{spec['name']}: lam < 1 but every target equals the clean label"
    if mixing or reports_lam:
        assert inputs_mixed, f"{spec['name']}: the network saw only clean inputs"
    else:  # erm, label smoothing, focal loss: clean inputs, clean targets
        assert not inputs_mixed, f"{spec['name']} mixes its inputs but reports lam = 1 and has no Beta parameter"


# --------------------------------------------------------------------------- quick configs, shortened
QUICK = _distinct(_grid("quick"), lambda c: (c["dataset"]["name"], json.dumps(c["model"], sort_keys=True),
                                             json.dumps(c["method"], sort_keys=True)))


def _short(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["train"].update(epochs=3, warmup_epochs=0, num_threads=1)
    if cfg["dataset"]["name"] == "digits":
        cfg["dataset"].update(train_size=640, val_size=100, test_size=300)
    cfg["eval"].update(temperature_scaling=False)
    return resolve(cfg)


@pytest.mark.parametrize("paper,cfg", QUICK, ids=[f"{p}-{c['method']['name']}-{c['model']['name']}-{c['dataset']['name']}"
                                                  for p, c in QUICK])
def test_quick_config_learns(tmp_path, paper, cfg):
    """Three short epochs (640 digits, no warmup). Measured: the CNN configs reach 65-80 % top-1
    (chance 10 %); the digits ViT of TransMix/MixPro needs its warmup and more epochs to leave
    chance, so for it only the training loss must fall."""
    cfg = _short(cfg)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(cfg, tmp_path / "run", tmp_path / "ckpt", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.005, [r["train_loss"] for r in rows]
    assert all(math.isfinite(v) for r in rows for k, v in r.items() if k.startswith("train_") and isinstance(v, float))
    if cfg["eval"].get("occlusion"):
        assert any(k.startswith("occ_") for k in res["test"]), sorted(res["test"])
    if res["task"] == "classification":
        if cfg["model"]["name"] != "vit":
            assert res["test"]["top1"] > 30.0, f"{paper}: top-1 {res['test']['top1']:.1f}% after 3 short epochs"
    else:
        splits = prepare_splits(cfg["dataset"])
        y, yt = splits.train.y.double(), splits.test.y.double()
        const_rmse = math.sqrt(float(((yt - y.mean(0)) ** 2).mean()))
        assert res["test"]["rmse"] < const_rmse, f"{paper}: rmse {res['test']['rmse']} vs constant {const_rmse}"


# --------------------------------------------------------------------------- paper configs, one step each
PAPER = _distinct(_grid("paper"), lambda c: (c["dataset"]["name"], json.dumps(c["model"], sort_keys=True),
                                             json.dumps(c["method"], sort_keys=True)))
PAPER_MODELS: dict[tuple, list[dict]] = {}
for _paper, _c in PAPER:
    PAPER_MODELS.setdefault((_c["dataset"]["name"], json.dumps(_c["model"], sort_keys=True)), []).append(_c)


# image datasets whose loader declares no image size (yet): their files' side length
IMAGE_SIZE_UNDECLARED = {"cifar100": 32, "tiny_imagenet": 64}


def _input_shape(cfg: dict):
    """(task, shape, classes) of the paper's dataset: image datasets from their registered image
    size (3 channels, 10 classes: the head size does not matter here), others from the real files."""
    name, options = cfg["dataset"]["name"], cfg["dataset"].get("options") or {}
    factory = DATASETS.get(name)
    from common.data import dataset_info
    import inspect

    p = inspect.signature(factory).parameters.get("image_size")
    size = (options.get("image_size") or dataset_info(name).image_size or (p.default if p else None)
            or IMAGE_SIZE_UNDECLARED.get(name))
    if isinstance(size, int):
        return "classification", (3, size, size), K, None
    try:
        splits = prepare_splits({**cfg["dataset"], "train_size": None, "val_size": 0})
    except DataError as e:
        pytest.skip(f"{name} not available: {e}")
    return splits.task, tuple(splits.train.x.shape[1:]), splits.num_classes, splits.train


@pytest.mark.parametrize("key", list(PAPER_MODELS), ids=[f"{d}-{json.loads(m)['name']}" for d, m in PAPER_MODELS])
def test_paper_configs_build_and_step_on_random_data(key):
    cfgs = PAPER_MODELS[key]
    task, shape, k, train_data = _input_shape(cfgs[0])
    model = H.build(cfgs[0]["model"], k, shape)
    g = torch.Generator().manual_seed(0)
    if task == "classification":
        data = H.random_images(4, num_classes=k)
        x = torch.randn(2, *shape, generator=g)
        batch = Batch(x, torch.tensor([0, 1]), torch.arange(2))
    else:
        data = train_data
        batch = Batch(data.x[:2].clone(), data.y[:2].clone(), torch.arange(2))
    ctx = H.make_context(task, data, model, k, shape)
    ctx.label_smoothing = cfgs[0]["train"]["label_smoothing"]
    for i, cfg in enumerate(cfgs):  # one training step with the first method, a forward step with the rest
        method = build_method(copy.deepcopy(cfg["method"]), ctx)
        with warnings.catch_warnings(), (contextlib.nullcontext() if i == 0 else torch.no_grad()):
            warnings.simplefilter("ignore")
            method.setup(model)
            out = method.step(model, batch, _state(ctx, 0))
        assert torch.isfinite(out.loss), cfg["method"]
        if i == 0:
            out.loss.backward()
            assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()), "no gradient"
