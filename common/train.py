"""The one training loop, for classification and regression.

    python -m common.train --config run.json --out results/quick/runs/<id> [--ckpt-dir DIR]

A run lives in its checkpoint directory until it has finished (``--ckpt-dir``, default
:func:`common.checkpoint.default_checkpoint_dir`): after every epoch a checkpoint is written
atomically, then that epoch's row of the progress log ``epochs.jsonl`` there; rerunning the same
command resumes from it. Only a finished run writes into ``--out``: ``epochs.jsonl`` (one line per
epoch) and, last, ``metrics.json`` (final metrics + provenance); a failed, stopped or killed run
leaves ``--out`` as it was. Randomness is drawn from generators keyed by ``(seed, epoch)`` (and
the rank under DDP), so a resumed run replays exactly the epochs an uninterrupted run would.
SIGUSR1 / SIGTERM stop the run after the current optimisation step with an exact mid-epoch
checkpoint and exit status 75 (:mod:`common.walltime`).

Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU) and
each rank evaluates its shard of the evaluation sets (:mod:`common.distributed`,
:mod:`common.evaluate`). ``train.batch_size`` is the global batch of one optimisation step: each
of the W processes trains 1/W of it, as ``resources.accum_steps`` micro-batches whose gradients
are accumulated (BatchNorm statistics are those of a micro-batch).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import evaluate as ev
from .batch import Batch
from .checkpoint import (PROGRESS, default_checkpoint_dir, load_checkpoint, mark_finished, mark_interrupted,
                         plain_state, restore_plain_state, run_code_digest, save_checkpoint)
from .config import apply_overrides, load_config_file, parse_config_text, resolve, validate_run_config
from .data import BatchTransform, Loader, _mix_seed, prepare_splits
from .distributed import Dist, rank_seed, setup as setup_distributed
from .errors import ConfigError, DataError, NonFiniteLoss, WriteError
from .fileio import atomic_write_text, git_commit, hardware, json_text, package_versions, thread_settings, write_temp
from .methods import RunContext, TrainState, build_method
from .models import build_model, model_info
from .optim import build_ema, lr_at, make_optimizer, set_lr, total_epochs
from .verify import portable
from .walltime import EX_TEMPFAIL, RunInterrupted, StopSignals


def log(msg: str) -> None:
    print(msg, flush=True)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (2-3 s per training process here, paid by every job of the workflow) unless
    inductor is already loaded; the trainer never compiles, so only the ATen flag matters."""
    if "torch._inductor" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


# --------------------------------------------------------------------------- setup
@dataclass
class Run:
    """Everything built from the config before the first step."""

    cfg: dict
    dist: Dist
    splits: Any
    model: torch.nn.Module
    train_model: torch.nn.Module  # the model, wrapped in DDP under torchrun
    method: Any
    ctx: RunContext
    opt: torch.optim.Optimizer
    scaler: Any
    ema: Any
    train_loader: Any
    test_loader: Any
    val_loader: Any
    autocast: dict
    accum: int

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def n_epochs(self) -> int:
        return total_epochs(self.cfg["train"])


@dataclass
class Progress:
    """What the loop has done (the part of a checkpoint beside the model and optimiser states)."""

    history: list = field(default_factory=list)
    start_epoch: int = 0
    best: dict | None = None
    train_time: float = 0.0  # epoch-loop wall seconds over all sessions
    train_cpu: float = 0.0  # and process CPU seconds
    partial: dict | None = None  # a mid-epoch stop to resume: {"epoch", "batch", "world", "ranks"}
    resumed_batch: int = 0
    images_seen: int = 0  # this session (train_images_per_sec)
    epoch_secs: float = 0.0


def _configure_torch(t: dict, dist: Dist) -> None:
    if t["num_threads"]:
        torch.set_num_threads(t["num_threads"])
    deterministic_algorithms()
    if dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = False


def _loaders(splits, cfg: dict, dist: Dist, channels_last: bool):
    """(train, test, val or None) loaders and the ``fetch`` of training samples by index."""
    t, device = cfg["train"], dist.device

    def make_transform(train: bool):
        if not splits.is_image:
            return None
        aug = {**splits.augment, **t["augment"]} if train else {}
        return BatchTransform(splits.mean, splits.std, aug.get("pad", 0), aug.get("flip", False), device, channels_last)

    if getattr(splits.train, "file_based", False) or (splits.is_image and cfg["dataset"]["transform"]):
        # image files, or a per-sample transform: DataLoader workers
        from .loader import build_file_loaders

        loaders = build_file_loaders(splits, cfg, make_transform, device, dist.rank, dist.world, channels_last)
    else:
        eval_bs = cfg["eval"]["batch_size"]
        loaders = (Loader(splits.train, t["batch_size"], make_transform(True), shuffle=t["shuffle"],
                          drop_last=t["drop_last"], seed=int(cfg["seed"]), device=device, train=True),
                   Loader(splits.test, eval_bs, make_transform(False), device=device),
                   Loader(splits.val, eval_bs, make_transform(False), device=device) if splits.val is not None else None)
    fetch_tf = make_transform(True)

    def fetch(indices, generator=None):
        x = splits.train.x[torch.as_tensor(indices).cpu()]
        return fetch_tf(x, generator, True) if fetch_tf is not None else x.to(device)

    return loaders, fetch


def _check_micro_batches(cfg: dict, method, n_train: int, world: int, accum: int) -> None:
    """Every process gets a non-empty micro-batch (of 2 or more samples for a method pairing
    samples within its batch) from every global batch, the last one included."""
    parts = world * accum
    if parts == 1:
        return
    pairs = getattr(method, "base", method).pairs_within_batch  # "cutmix+dm": the base method's
    bs, need = cfg["train"]["batch_size"], 2 if pairs else 1
    last = n_train % bs if not cfg["train"]["drop_last"] else 0
    for size in (bs, last):
        if size and size < need * parts:
            raise ConfigError(f"key 'resources.accum_steps'={accum}: a batch of {size} samples cannot be split into "
                              f"{world} process(es) x {accum} micro-batches of at least {need} sample(s) each "
                              f"(train.batch_size={bs}, {n_train} training samples)")


def build_run(cfg: dict) -> Run:
    """Set up the process layout, data, model, method, optimiser, AMP and EMA of run ``cfg``."""
    t, dist = cfg["train"], setup_distributed()
    _configure_torch(t, dist)
    splits = prepare_splits(cfg["dataset"], t)
    seed_everything(int(cfg["seed"]))
    model = build_model(cfg["model"], splits.num_classes, splits.input_shape).to(dist.device)
    channels_last = bool(t["channels_last"]) and splits.is_image
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loaders, fetch = _loaders(splits, cfg, dist, channels_last)
    ctx = RunContext(splits.task, splits.num_classes, splits.input_shape, dist.device, splits.train, fetch,
                     t["label_smoothing"], model_info(model))
    method = build_method(cfg["method"], ctx)
    method.setup(model)
    accum = int(cfg["resources"]["accum_steps"])
    _check_micro_batches(cfg, method, len(splits.train), dist.world, accum)
    train_model = model
    if dist.world > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    opt = make_optimizer(model, t)
    use_amp = bool(t["amp"]) and dist.device.type == "cuda"  # CPU stays fp32 (exact CPU tests)
    amp_dtype = getattr(torch, t["amp_dtype"])
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)  # bf16 needs none
    autocast = {"device_type": dist.device.type, "enabled": use_amp, **({"dtype": amp_dtype} if use_amp else {})}
    return Run(cfg, dist, splits, model, train_model, method, ctx, opt, scaler, build_ema(model, t["ema"]),
               *loaders, autocast, accum)


def resume(run: Run, ckpt_dir: Path) -> Progress:
    """The progress of the run's newest resumable checkpoint (model, optimiser, scaler and EMA
    states loaded into ``run``), or a fresh start."""
    prog = Progress()
    ckpt, path = load_checkpoint(ckpt_dir, run.cfg)
    if ckpt is None:
        return prog
    partial = ckpt["partial"]
    if partial is not None and partial["world"] != run.dist.world:
        raise ConfigError(f"checkpoint {path} stopped inside epoch {partial['epoch'] + 1} under {partial['world']} "
                          f"process(es); resume it with as many (now {run.dist.world}) or delete it to start over")
    run.model.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.scaler.load_state_dict(ckpt["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    prog.history, prog.best, prog.start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
    prog.train_time, prog.train_cpu, prog.partial = ckpt["train_time"], ckpt["train_cpu"], partial
    prog.resumed_batch = partial["batch"] if partial else 0
    log(f"resumed from {path} at epoch {prog.start_epoch}" + (f", batch {prog.resumed_batch}" if partial else ""))
    return prog


def checkpoint_state(run: Run, prog: Progress, epoch: int, partial: dict | None = None) -> dict:
    """What a checkpoint holds after ``epoch`` (0-based, -1: none) was finished; ``partial``: the
    point inside the next epoch where a signal stopped the run."""
    state = {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "scaler": run.scaler.state_dict(),
             "history": prog.history, "epoch": epoch, "best": prog.best, "run_config": run.cfg,
             "train_time": prog.train_time, "train_cpu": prog.train_cpu, "partial": partial}
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    return state


# --------------------------------------------------------------------------- one epoch
@dataclass
class EpochState:
    """The running state of one epoch on this rank (what a mid-epoch checkpoint keeps of it)."""

    generator: torch.Generator  # the mixing draws
    sums: dict = field(default_factory=dict)  # per-step loss and method logs, summed
    n_steps: int = 0
    start: int = 0  # the first batch to train (a resumed epoch skips those trained before the stop)

    def rank_state(self, run: Run) -> dict:
        cuda = torch.cuda.get_rng_state(run.dist.device) if run.dist.device.type == "cuda" else None
        return {"mix": self.generator.get_state(), "torch": torch.get_rng_state(), "cuda": cuda, "sums": self.sums,
                "n_steps": self.n_steps, "method": plain_state(run.method)}


def epoch_seeds(seed: int, rank: int, epoch: int) -> tuple[int, int]:
    """``(mixing generator seed, torch global seed)`` of ``rank`` in ``epoch``: keyed by
    ``(seed + rank, epoch)`` (:func:`common.distributed.rank_seed`), so rank 0 draws exactly what a
    single process draws and every other rank draws its own."""
    s = rank_seed(seed, rank)
    return _mix_seed(s, epoch, 0x3A11), _mix_seed(s, epoch, 0x70C4)


def _epoch_start(run: Run, prog: Progress, epoch: int) -> EpochState:
    """Seed the epoch's draws (mixing; dropout and drop-path through torch's global RNG) from
    :func:`epoch_seeds`; continue a stopped epoch where it stopped."""
    mix, glob = epoch_seeds(run.cfg["seed"], run.dist.rank, epoch)
    torch.manual_seed(glob)
    es = EpochState(torch.Generator().manual_seed(mix))
    p = prog.partial
    if p is None or p["epoch"] != epoch:
        return es
    mine = p["ranks"][run.dist.rank]
    es.generator.set_state(mine["mix"])
    torch.set_rng_state(mine["torch"])
    if mine["cuda"] is not None:
        torch.cuda.set_rng_state(mine["cuda"], run.dist.device)
    restore_plain_state(run.method, mine["method"])
    es.sums, es.n_steps, es.start, prog.partial = dict(mine["sums"]), mine["n_steps"], p["batch"], None
    return es


def _batches(run: Run, epoch: int, start: int):
    """Epoch ``epoch``'s batches of this rank from batch ``start`` on: the file loader skips without
    reading images; the in-memory loader computes and drops the skipped batches (its augmentation
    draws run in sequence through the epoch)."""
    from .loader import FileLoader

    loader = run.train_loader
    if isinstance(loader, FileLoader):
        return loader.epoch(epoch, run.dist.rank, run.dist.world, start=start)
    return itertools.islice(loader.epoch(epoch, run.dist.rank, run.dist.world), start, None)


def _micro_batches(batch: Batch, accum: int) -> list[Batch]:
    if accum == 1:
        return [batch]
    return [Batch(batch.x[j::accum], batch.y[j::accum], batch.index[j::accum]) for j in range(accum)]


def optimisation_step(run: Run, batch: Batch, state: TrainState) -> tuple[float, dict, int]:
    """One optimisation step on this rank's part of a global batch, as ``accum`` micro-batches
    (DDP synchronises the gradients on the last one); returns the step's mean loss, mean method
    logs and number of images."""
    t = run.cfg["train"]
    set_lr(run.opt, lr_at(state.step, state.steps_per_epoch, t))
    micro = _micro_batches(batch, run.accum)
    loss_sum, logs = 0.0, {}
    for j, mb in enumerate(micro):
        last = j == len(micro) - 1
        with contextlib.nullcontext() if last or run.dist.world == 1 else run.train_model.no_sync():
            with torch.autocast(**run.autocast):
                out = run.method.step(run.train_model, mb, state)
            loss = out.loss
            if not torch.isfinite(loss.detach()):
                raise NonFiniteLoss(f"non-finite loss {loss.item()} at epoch {state.epoch + 1}, step {state.step} "
                                    f"(run stopped; no metrics.json written)")
            if j == 0:
                run.opt.zero_grad(set_to_none=True)
            run.scaler.scale(loss / len(micro)).backward()
        loss_sum += float(loss.detach()) / len(micro)
        for k, v in out.logs.items():
            logs[k] = logs.get(k, 0.0) + float(v) / len(micro)
    if t["clip_grad_norm"]:
        run.scaler.unscale_(run.opt)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), t["clip_grad_norm"])
    run.scaler.step(run.opt)
    run.scaler.update()
    ema = run.ema
    if ema is not None and (state.step + 1) % ema.every == 0:
        ema.update(run.model, step=state.step + 1) if ema.use_warmup else ema.update(run.model)
    return loss_sum, logs, batch.x.shape[0]


def train_epoch(run: Run, prog: Progress, epoch: int, stop: StopSignals, ckpt_dir: Path, show: bool) -> dict:
    """Train epoch ``epoch``; the training part of its row. A stop signal on any rank ends it after
    the current step with a mid-epoch checkpoint (:class:`RunInterrupted`)."""
    spe = run.steps_per_epoch
    es = _epoch_start(run, prog, epoch)
    run.train_model.train()
    te, tc = time.time(), time.process_time()
    it = _batches(run, epoch, es.start)
    if show and run.dist.main:
        from tqdm import tqdm

        it = tqdm(it, total=spe - es.start, desc=f"epoch {epoch + 1}/{run.n_epochs}", leave=False)
    state = TrainState(epoch, (epoch + 1) * spe - 1, spe, spe * run.n_epochs, es.generator, run.ctx)
    for b, batch in enumerate(it, start=es.start):
        state = TrainState(epoch, epoch * spe + b, spe, spe * run.n_epochs, es.generator, run.ctx)
        loss, logs, n_images = optimisation_step(run, batch, state)
        es.n_steps += 1
        prog.images_seen += n_images
        es.sums["loss"] = es.sums.get("loss", 0.0) + loss
        for k, v in logs.items():
            es.sums[k] = es.sums.get(k, 0.0) + v
        if run.dist.any(stop.requested is not None):
            _add_time(prog, te, tc)
            _interrupt(run, prog, epoch, b + 1, es, ckpt_dir, stop)
    secs = _add_time(prog, te, tc)
    row = {"epoch": epoch + 1, "lr": run.opt.param_groups[0]["lr"], "train_secs": round(secs, 3)}
    row.update({f"train_{k}": v / max(1, es.n_steps) for k, v in es.sums.items()})
    row.update({f"train_{k}": v for k, v in run.method.epoch_end(state).items()} if es.n_steps else {})
    return row


def _add_time(prog: Progress, te: float, tc: float) -> float:
    secs = time.time() - te
    prog.epoch_secs += secs
    prog.train_time += secs
    prog.train_cpu += time.process_time() - tc
    return secs


def _interrupt(run: Run, prog: Progress, epoch: int, batches_done: int, es: EpochState, ckpt_dir: Path,
               stop: StopSignals) -> None:
    """Write the checkpoint of this point inside ``epoch`` (rank 0, with every rank's draws) and stop."""
    ranks = run.dist.gather_objects(es.rank_state(run))
    if run.dist.main:
        partial = {"epoch": epoch, "batch": batches_done, "world": run.dist.world, "ranks": ranks}
        save_checkpoint(ckpt_dir, checkpoint_state(run, prog, epoch - 1, partial))
        mark_interrupted(ckpt_dir, stop.name())
    run.dist.barrier()
    run.dist.close()
    raise RunInterrupted(f"stopped by {stop.name()} after batch {batches_done} of epoch {epoch + 1}; checkpoint "
                         f"{Path(ckpt_dir) / 'last.pt'} written; rerun the same command to resume")


def evaluate_epoch(run: Run, prog: Progress, epoch: int) -> dict:
    """The evaluation part of epoch ``epoch``'s row (every ``eval_every`` epochs and the last one);
    keeps the model of the best validation epoch when ``train.select`` asks for it."""
    t, dist = run.cfg["train"], run.dist
    if (epoch + 1) % t["eval_every"] and epoch + 1 != run.n_epochs:
        return {}
    task = run.splits.task
    dist.broadcast_buffers(run.model)
    row = ev.epoch_metrics(run.model, run.test_loader, task, "test", dist)
    if run.ema is not None:
        dist.broadcast_buffers(run.ema.module)
        row.update({f"{k}_ema": v for k, v in ev.epoch_metrics(run.ema.module, run.test_loader, task, "test",
                                                                dist).items()})
    if run.val_loader is not None:
        row.update(ev.epoch_metrics(run.model, run.val_loader, task, "val", dist))
        _keep_best(run, prog, row, epoch)
    return row


def _keep_best(run: Run, prog: Progress, row: dict, epoch: int) -> None:
    """``best_val``: the lowest validation loss (RMSE), ties to the later epoch (C-Mixup);
    ``best_val_acc``: the highest validation top-1 (lowest RMSE), ties to the earlier epoch."""
    select, reg = run.cfg["train"]["select"], run.splits.task == "regression"
    if select == "best_val":
        score = -row["val_rmse" if reg else "val_loss"]
        better = prog.best is None or score >= prog.best["score"]
    elif select == "best_val_acc":
        score = -row["val_rmse"] if reg else row["val_top1"]
        better = prog.best is None or score > prog.best["score"]
    else:
        return
    if better:
        prog.best = {"score": score, "epoch": epoch + 1,
                     "model": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}}


def end_epoch(run: Run, prog: Progress, row: dict, epoch: int, ckpt_dir: Path) -> None:
    """Log the row, write the epoch's checkpoint, then its row in the progress log (rank 0)."""
    prog.history.append(row)
    if run.dist.main:
        log(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}))
        save_checkpoint(ckpt_dir, checkpoint_state(run, prog, epoch))
        atomic_write_text(Path(ckpt_dir) / PROGRESS, _jsonl(prog.history), "progress log")
    run.dist.barrier()


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# --------------------------------------------------------------------------- finish
def finish(run: Run, prog: Progress, out_dir: Path, ckpt_dir: Path, t0: float) -> dict:
    """The final evaluation (of the selected model and its EMA) and, on rank 0, the run's outputs."""
    cfg, dist, task = run.cfg, run.dist, run.splits.task
    selected = cfg["train"]["select"] in ("best_val", "best_val_acc") and prog.best is not None
    if selected:
        run.model.load_state_dict(prog.best["model"])
    loaders = (run.test_loader, run.val_loader)
    metrics = ev.final_metrics(run.model, cfg, task, loaders, run.splits, dist)
    ema_metrics = ev.final_metrics(run.ema.module, cfg, task, loaders, run.splits, dist) if run.ema else None
    if not dist.main:
        dist.close()
        return metrics
    result = {
        "run_id": out_dir.name, "task": task, "test": metrics,
        "selected_epoch": prog.best["epoch"] if selected else run.n_epochs,
        "best_epoch_test": ev.best_epoch(prog.history, task),
        "last_epoch": prog.history[-1] if prog.history else {},
        "train_images_per_sec": prog.images_seen / prog.epoch_secs if prog.epoch_secs > 0 else None,
        "provenance": _provenance(run, prog, t0),
    }
    if ema_metrics is not None:
        result["test_ema"] = ema_metrics
    write_outputs(out_dir, prog.history, result, ckpt_dir)
    dist.close()
    return result


def _provenance(run: Run, prog: Progress, t0: float) -> dict:
    """What computed the run: config, code, versions, machine, process layout, times, data."""
    cfg, dist, splits = run.cfg, run.dist, run.splits
    return {
        "config": cfg, "seed": int(cfg["seed"]), "git_commit": git_commit(), "versions": package_versions(),
        "threads": thread_settings(), "hardware": hardware(), "portable": portable.provenance_entry(),
        "device": str(dist.device),
        "world_size": dist.world, "accum_steps": run.accum,
        "micro_batch_size": cfg["train"]["batch_size"] // (dist.world * run.accum),  # BatchNorm sees this many
        "wall_time_sec": round(time.time() - t0, 2), "train_time_sec": round(prog.train_time, 2),
        "train_cpu_sec": round(prog.train_cpu, 2), "resumed_from_epoch": prog.start_epoch,
        "resumed_from_batch": prog.resumed_batch, "argv": sys.argv, "code_digest": run_code_digest(cfg),
        "dataset_sizes": {"train": len(splits.train), "val": len(splits.val) if splits.val is not None else 0,
                          "test": len(splits.test)},
        "data_files": getattr(splits, "sources", None),  # name, size, sha256 of each file read (common.data)
    }


def write_outputs(out_dir: Path, history: list[dict], result: dict, ckpt_dir: Path | None = None) -> None:
    """Put ``epochs.jsonl`` and then ``metrics.json`` into ``out_dir``: both are written completely
    (hidden temp files, fsync'd) before either replaces anything, so a failed write (disk full)
    leaves ``out_dir`` as it was; then the checkpoint directory is marked finished."""
    out_dir = Path(out_dir)
    files = [(out_dir / "epochs.jsonl", _jsonl(history), "epochs log"), (out_dir / "metrics.json", json_text(result), "metrics")]
    temps: list[str] = []
    try:
        for path, text, what in files:
            temps.append(write_temp(path, text.encode("utf-8"), what))
        for (path, _, what), tmp in zip(files, temps):
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise WriteError(what, path, e) from e
    finally:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
    if ckpt_dir is not None:
        mark_finished(ckpt_dir, out_dir / "metrics.json")


# --------------------------------------------------------------------------- the loop
def train(cfg: dict, out_dir: Path, ckpt_dir: Path | None = None, stop_after_epoch: int | None = None,
          progress: bool | None = None) -> dict | None:
    """Train run ``cfg`` into ``out_dir`` (checkpoints in ``ckpt_dir``). Returns the metrics.json
    content (on other ranks than 0: their test metrics), or None when stopped by
    ``stop_after_epoch``; raises :class:`RunInterrupted` after a stop on SIGUSR1/SIGTERM."""
    validate_run_config(cfg)
    out_dir = Path(out_dir)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else default_checkpoint_dir(out_dir)
    t0 = time.time()
    run = build_run(cfg)
    prog = resume(run, ckpt_dir)
    show = sys.stderr.isatty() if progress is None else progress
    with StopSignals() as stop:
        for epoch in range(prog.start_epoch, run.n_epochs):
            row = train_epoch(run, prog, epoch, stop, ckpt_dir, show)
            row.update(evaluate_epoch(run, prog, epoch))
            end_epoch(run, prog, row, epoch, ckpt_dir)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                log(f"stopping after epoch {epoch + 1} as asked (--stop-after-epoch)")
                run.dist.close()
                return None
        return finish(run, prog, out_dir, ckpt_dir, t0)


# --------------------------------------------------------------------------- CLI
def _epoch_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of epochs, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (epochs to train before stopping), got {n}")
    return n


def _read_config(args) -> tuple[dict, str]:
    """The config given on the command line and where it came from (for messages)."""
    if args.config_json is not None:
        return parse_config_text(args.config_json, "<--config-json>", "json"), "<--config-json>"
    if not Path(args.config).exists():
        raise ConfigError(f"config file {args.config} does not exist")
    return load_config_file(args.config), args.config


def _remove_empty_dirs(created: list[Path]) -> None:
    """After a failed run: remove the directories it created that hold nothing (but a lock file),
    deepest first. Never a directory with other files."""
    for d in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            if d.is_dir() and {p.name for p in d.iterdir()} <= {".lock"}:
                (d / ".lock").unlink(missing_ok=True)
                d.rmdir()
        except OSError:
            pass


EPILOG = ("exit codes: 0 done (or stopped by --stop-after-epoch); 2 invalid config; 3 non-finite loss; 4 dataset "
          "missing/corrupt or an output cannot be written (disk full, file-size limit, --out under a file); 75 "
          "stopped by SIGUSR1 or SIGTERM (e.g. SLURM --signal=USR1@<seconds>) after writing a resumable "
          "checkpoint: run the same command again to continue. Anything else is a bug and shows its traceback.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=EPILOG)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="run config file (JSON or YAML)")
    src.add_argument("--config-json", help="run config as a JSON string (what the Snakefile passes)")
    ap.add_argument("--out", required=True, help="run directory (metrics.json, epochs.jsonl), written when the run ends")
    ap.add_argument("--ckpt-dir", default=None, help="checkpoint directory (default: <root>/checkpoints/<id> for "
                                                     "--out <root>/runs/<id>, else <parent>/.<name>.checkpoints)")
    ap.add_argument("--stop-after-epoch", type=_epoch_count, default=None, metavar="N",
                    help="stop (as if killed) after epoch N (N >= 1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (dotted key, YAML value), e.g. --set train.epochs=2")
    args = ap.parse_args(argv)
    portable.apply()  # MIXREPRO_PORTABLE=1: fixed kernels, before the first tensor operation
    from .fileio import check_writable_dir
    from .registry import RegistryError

    # Only user-facing errors become "error: ..." + exit code; anything else is a bug and keeps its traceback.
    try:
        cfg, where = _read_config(args)
        cfg = resolve(apply_overrides(cfg, args.set))
        validate_run_config(cfg, where)
        out = Path(args.out)
        ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else default_checkpoint_dir(out)
        check_writable_dir(out, "run directory (--out)")  # before any training: e.g. --out under a regular file
        check_writable_dir(ckpt_dir, "checkpoint directory")
        created = [d for p in (out, ckpt_dir) for d in (p, *p.parents) if not d.exists()]  # to tidy up after a failure
        try:
            train(cfg, out, ckpt_dir, args.stop_after_epoch)
        except ConfigError as e:  # found while building (model, method, data options): name the file too
            _remove_empty_dirs(created)
            if where in str(e):
                raise
            raise ConfigError(f"{where}: {e}") from None
        except (NonFiniteLoss, DataError, WriteError):
            _remove_empty_dirs(created)
            raise
    except (ConfigError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (DataError, WriteError) as e:  # missing/corrupt data; cannot write outputs (disk full, bad --out)
        print(f"error: {e}", file=sys.stderr)
        return 4
    except RunInterrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    return 0


if __name__ == "__main__":
    sys.exit(main())
