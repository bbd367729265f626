"""Shared fixtures: random CIFAR-sized data, models, contexts and one training step
built exactly like :func:`common.train.train` builds them."""
from __future__ import annotations

import copy

import torch
from torch import nn

from common.data import ArrayData, BatchTransform
from common.image_datasets import CIFAR10_MEAN, CIFAR10_STD
from common.methods import Batch, RunContext, TrainState
from common.models import build_model, model_info
from common.optim import make_optimizer

CNN = {"name": "resnet20", "width": 16}
VIT = {"name": "vit", "patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3}
MLP = {"name": "mlp", "hidden": [128, 128], "negative_slope": 0.1}
IMAGE_SHAPE = (3, 32, 32)

# optimiser blocks as in the shared cpu settings (lr kept small: random labels must not blow up)
SGD = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
ADAMW = {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.05, "betas": None}
ADAM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "betas": None}


def random_images(n: int, seed: int = 0, num_classes: int = 10) -> ArrayData:
    """uint8 CIFAR-sized images with random labels (what the trainer keeps in memory)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *IMAGE_SHAPE), dtype=torch.uint8, generator=g)
    return ArrayData(x, torch.randint(0, num_classes, (n,), generator=g))


def random_regression(n: int = 1003, d: int = 5, seed: int = 0) -> ArrayData:
    """Airfoil-shaped regression data (1003 training rows, 5 features, 1 target)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, 1, generator=g)).squeeze(1) + 0.1 * torch.randn(n, generator=g)
    return ArrayData(x, y.view(-1, 1))


def cifar_transform(train: bool = True, channels_last: bool = False) -> BatchTransform:
    return BatchTransform(CIFAR10_MEAN, CIFAR10_STD, pad=4 if train else 0, flip=train, channels_last=channels_last)


def image_batch(data: ArrayData, batch_size: int) -> Batch:
    """The first ``batch_size`` images, normalised (no augmentation: a fixed batch)."""
    x = cifar_transform(False)(data.x[:batch_size], None, False)
    return Batch(x, data.y[:batch_size].clone(), torch.arange(batch_size))


def make_context(task: str, data: ArrayData, model: nn.Module, num_classes: int, input_shape) -> RunContext:
    tf = cifar_transform(True) if data.x.dtype == torch.uint8 else None

    def fetch(indices, generator=None):
        x = data.x[torch.as_tensor(indices).cpu()]
        return tf(x, generator, True) if tf is not None else x

    return RunContext(task, num_classes, tuple(input_shape), torch.device("cpu"), data, fetch, 0.0, model_info(model))


def build(spec: dict, num_classes: int, input_shape, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = build_model(copy.deepcopy(spec), num_classes, tuple(input_shape))
    m.train()
    return m


def optimizer(model: nn.Module, block: dict):
    """The trainer's optimiser for a ``train`` block (plain momentum unless it says otherwise; the
    schema's defaults for every other key it leaves out)."""
    from common.config import resolve

    return make_optimizer(model, resolve({"train": {"nesterov": False, **block}})["train"])


class StepRunner:
    """One optimisation step as the trainer does it: ``method.step`` -> finiteness check ->
    zero_grad -> backward -> optimiser step -> float() of the loss and logs."""

    def __init__(self, method, model, opt, batch: Batch, ctx: RunContext, seed: int = 0, steps_per_epoch: int = 100):
        self.method, self.model, self.opt, self.batch, self.ctx = method, model, opt, batch, ctx
        self.gen = torch.Generator().manual_seed(seed)
        self.spe, self.step_i = steps_per_epoch, 0
        method.setup(model)

    def __call__(self):
        state = TrainState(0, self.step_i, self.spe, self.spe * 10, self.gen, self.ctx)
        self.step_i += 1
        out = self.method.step(self.model, self.batch, state)
        loss = out.loss
        bool(torch.isfinite(loss.detach()))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        float(loss.detach())
        for v in out.logs.values():
            float(v)


class Probe(nn.Module):
    """A near-free stand-in model (global average pool + linear head): stepping a method with it
    measures the method's own work outside the network (mixing, partner draws, loss terms)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1))
