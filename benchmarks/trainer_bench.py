"""Sections 2 and 3: our trainer against a bare PyTorch loop, and the data path alone.

Section 2 runs the real :func:`common.train.train` (ERM, resnet20 w16, the ``random`` dataset of
uint8 CIFAR-sized images with CIFAR augmentation pad 4 + flip, one epoch) and reads its own
``train_images_per_sec`` from ``metrics.json``: the epoch loop only (data path, method step,
lr schedule, finiteness check, logging), not setup, evaluation or checkpointing. While it runs,
the trainer's clock (``common.train.time``) reads this process's CPU time instead of the wall
clock, so the figure is immune to other processes on a shared machine. The bare loops use the
same initialisation (``seed_everything`` + ``build_model``), the same optimiser
(``make_optimizer``) and the very batches the trainer's loader yields for epoch 0:

* ``bare loop`` — the batches materialised in memory beforehand; ``model(x)``, cross-entropy,
  ``zero_grad``, ``backward``, ``step``: nothing else (run twice per round: an A/A control);
* ``bare loop + our data path`` — the same loop pulling batches from :class:`common.data.Loader`.

The end-to-end ratio is limited by the machine's noise (the A/A control shows how much). The
isolated estimate runs the same comparison with a near-free probe model registered for this
process (``bench_probe``), so the difference is the trainer's own per-step work, and divides it
by the real bare-loop step: ``1 + (t_trainer(probe) - t_bare(probe)) / t_bare(resnet20)``.

Section 3 times the data path alone (``Loader`` + ``BatchTransform``: index, pad-and-crop, flip,
normalise) per batch against one ERM model step on the same batch size, and against a
per-sample torchvision ``transforms.v2`` pipeline (RandomCrop + RandomHorizontalFlip +
normalise, one image at a time, then stacked), the usual PyTorch data path.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import common.train as T
from common.config import resolve
from common.data import BatchTransform, Loader, prepare_splits
from common.optim import make_optimizer

from . import harness as H
from .timing import interleave, make_row, ratio_summary

TRAINER_TARGET = 1 / 0.95  # time ratio: trainer images/s >= 0.95 x the bare loop's


class _CpuClock:
    """Stands in for the ``time`` module inside :mod:`common.train`: ``time()`` is CPU time."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def time():
        return time.process_time()


@contextlib.contextmanager
def cpu_clock_in(module):
    old = module.time
    module.time = _CpuClock()
    try:
        yield
    finally:
        module.time = old


PROBE_MODEL = "bench_probe"


def _register_probe() -> None:
    """A near-free model (global pool + linear) the trainer can build by name, for the isolated
    estimate of the trainer's own per-step work (registered in this process only)."""
    from common.models import MODELS, register_model

    if PROBE_MODEL not in MODELS:
        register_model(PROBE_MODEL)(lambda num_classes, input_shape: H.Probe(input_shape[0], num_classes))


def trainer_config(n_train: int, batch_size: int, threads: int, model: dict | None = None) -> dict:
    return resolve({
        "seed": 0,
        "dataset": {"name": "random", "options": {"n_train": n_train, "n_test": 32, "image_size": 32}},
        "model": dict(model or H.CNN),
        "method": {"name": "erm"},
        "train": {"epochs": 1, "batch_size": batch_size, "drop_last": True, "augment": {"pad": 4, "flip": True},
                  "num_threads": threads, **{k: v for k, v in H.SGD.items()}},
        "eval": {"temperature_scaling": False, "occlusion": None, "batch_size": 32},
    })


class _Setting:
    """The trainer and the bare loops for one model, on the trainer's own epoch-0 batches."""

    def __init__(self, cfg: dict, tmp: Path):
        self.cfg, self.tmp, self.calls = cfg, tmp, 0
        self.splits = prepare_splits(cfg["dataset"])
        aug = {**self.splits.augment, **cfg["train"]["augment"]}
        tf = BatchTransform(self.splits.mean, self.splits.std, aug["pad"], aug["flip"])
        self.loader = Loader(self.splits.train, cfg["train"]["batch_size"], tf, shuffle=True, drop_last=True,
                             seed=cfg["seed"], train=True)
        self.batches = [(b.x, b.y) for b in self.loader.epoch(0)]  # exactly the trainer's epoch-0 batches
        self.wall: list[float] = []

    def trainer(self) -> float:
        self.calls += 1
        out = self.tmp / f"c{self.calls}" / "runs" / "bench"
        w0 = time.perf_counter()
        with cpu_clock_in(T):
            res = T.train(self.cfg, out, ckpt_dir=self.tmp / f"ck{self.calls}", progress=False)
        self.wall.append(time.perf_counter() - w0)
        return res["train_images_per_sec"]

    def bare(self, with_data: bool = False) -> float:
        T.seed_everything(self.cfg["seed"])
        model = H.build(self.cfg["model"], self.splits.num_classes, self.splits.input_shape, self.cfg["seed"])
        opt = make_optimizer(model, self.cfg["train"])
        source = ((b.x, b.y) for b in self.loader.epoch(0)) if with_data else iter(self.batches)
        c0 = time.process_time()
        n = 0
        for x, y in source:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += x.shape[0]
        return n / (time.process_time() - c0)


def _rounds(fns: dict, rounds: int) -> dict[str, list[float]]:
    """images/s of each variant per round, in a new random order each round (seeded)."""
    import random

    rng = random.Random(0)
    out = {k: [] for k in fns}
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for k in order:
            out[k].append(fns[k]())
    return out


def run_trainer(quick: bool, threads: int) -> list[dict]:
    _register_probe()
    bs = 16 if quick else 128
    n_steps = 2 if quick else 6
    rounds = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="mixrepro-bench-"))
    try:
        real = _Setting(trainer_config(bs * n_steps, bs, threads), tmp / "real")
        probe = _Setting(trainer_config(bs * (4 if quick else 16), bs, threads, {"name": PROBE_MODEL}), tmp / "probe")
        probe.trainer()  # warm-up (first call imports and builds what later calls reuse)
        e2e = _rounds({"trainer": real.trainer, "bare": real.bare, "bare_data": lambda: real.bare(True),
                       "bare_repeat": real.bare}, rounds)
        iso = _rounds({"trainer": probe.trainer, "bare": probe.bare}, 2 if quick else 5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads)

    label = {"trainer": "common.train.train", "bare": "bare loop (batches in memory)",
             "bare_data": "bare loop + our data path", "bare_repeat": "bare loop (repeat)"}
    aa = _throughput_summary(e2e["bare_repeat"], e2e["bare"], bs)
    aa_text = (f"A/A control bare vs bare: {100 * (aa['ratio'] - 1):+.1f}% time "
               f"[{100 * (aa['q25'] - 1):+.1f}%, {100 * (aa['q75'] - 1):+.1f}%]")
    note = (f"end to end: real common.train.train, erm, resnet20 w16, batch {bs}, {n_steps} steps (1 epoch); trainer "
            f"clock = process CPU time; a trainer call incl. setup/eval took {min(real.wall):.1f}-{max(real.wall):.1f} "
            f"s wall; {aa_text}")
    rows = []
    for variant, baseline, name in (("trainer", "bare", "trainer_vs_bare"), ("trainer", "bare_data", "trainer_vs_bare"),
                                    ("bare_data", "bare", "trainer_vs_bare"), ("bare_repeat", "bare", "aa_control")):
        rows.append(make_row("trainer", name, "resnet20", label[variant], label[baseline],
                             _throughput_summary(e2e[variant], e2e[baseline], bs), images=bs, note=note))
    # isolated: the trainer's own per-step work (data path + bookkeeping) on the probe model,
    # relative to the real bare-loop step
    diffs = [bs / t - bs / b for t, b in zip(iso["trainer"], iso["bare"])]
    from .timing import quantiles

    q25, med, q75 = quantiles(diffs)
    real_step = sorted(bs / x for x in e2e["bare"])[len(e2e["bare"]) // 2]
    s = {"clock": "cpu", "repeats": len(diffs), "variant_s": real_step + med, "baseline_s": real_step,
         "ratio": 1 + med / real_step, "q25": 1 + q25 / real_step, "q75": 1 + q75 / real_step,
         "ratio_wall": float("nan")}
    rows.append(make_row("trainer", "trainer_vs_bare_isolated", "resnet20", label["trainer"], label["bare"], s,
                         images=bs, target=">= 0.95x bare-loop images/s", target_ratio_max=TRAINER_TARGET,
                         note=f"isolated: trainer minus bare loop per step ({1e3 * med:.2f} ms: data path + loop "
                              f"bookkeeping) measured with a near-free probe model over {16 if not quick else 4} "
                              f"steps per call, relative to the real resnet20 bare-loop step"))
    return rows


def _throughput_summary(v_ips: list[float], b_ips: list[float], images: int) -> dict:
    """Time ratio from images/s per round (variant time / baseline time = baseline ips / variant ips)."""
    from .timing import quantiles

    ratios = [b / v for v, b in zip(v_ips, b_ips)]
    q25, med, q75 = quantiles(ratios)
    vs = sorted(images / x for x in v_ips)[len(v_ips) // 2]
    bs_ = sorted(images / x for x in b_ips)[len(b_ips) // 2]
    return {"clock": "cpu", "repeats": len(ratios), "variant_s": vs, "baseline_s": bs_, "ratio": med,
            "q25": q25, "q75": q75, "ratio_wall": float("nan")}


# --------------------------------------------------------------------------- section 3
def run_data_path(quick: bool, threads: int) -> list[dict]:
    from torchvision.transforms import v2

    from common.image_datasets import CIFAR10_MEAN, CIFAR10_STD
    from common.methods import build_method

    bs = 16 if quick else 128
    nb = 2 if quick else 4
    data = H.random_images(bs * nb)
    loader = Loader(data, bs, H.cifar_transform(True), shuffle=True, drop_last=True, seed=0, train=True)
    epoch = [0]

    def data_path():  # one epoch of nb batches; timed per batch below via inner=1 and division
        epoch[0] += 1
        for b in loader.epoch(epoch[0]):
            pass

    per_sample = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                             v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)])

    def torchvision_per_sample():
        for i0 in range(0, bs * nb, bs):
            torch.stack([per_sample(data.x[i]) for i in range(i0, i0 + bs)])

    model = H.build(H.CNN, 10, H.IMAGE_SHAPE)
    batch = H.image_batch(data, bs)
    ctx = H.make_context("classification", data, model, 10, H.IMAGE_SHAPE)
    step = H.StepRunner(build_method({"name": "erm"}, ctx), model, H.optimizer(model, H.SGD), batch, ctx)

    def model_steps():
        for _ in range(nb):
            step()

    t = interleave({"data path": data_path, "torchvision v2 per-sample": torchvision_per_sample,
                    "erm model step": model_steps}, 2 if quick else 5, 1, warmup=1)
    for d in (t.cpu, t.wall):  # per batch
        for k in d:
            d[k] = [x / nb for x in d[k]]
    rows = [
        make_row("data_path", "data_vs_step", "resnet20", "data path", "erm model step",
                 ratio_summary(t, "data path", "erm model step"), unit="batch", images=bs,
                 note=f"Loader + BatchTransform (pad 4 crop, flip, normalise) per batch of {bs} uint8 images vs one "
                      f"erm training step of resnet20 w16: ratio = share of a step the data path costs"),
        make_row("data_path", "data_vs_torchvision", "-", "data path", "torchvision v2 per-sample",
                 ratio_summary(t, "data path", "torchvision v2 per-sample"), unit="batch", images=bs,
                 note="same augmentation done image by image with torchvision.transforms.v2 then stacked"),
    ]
    return rows
