"""The one training loop, for classification and regression.

    python -m common.train --config run.json --out results/quick/runs/<id> [--ckpt-dir DIR]

Writes into ``--out``: ``epochs.jsonl`` (one line per epoch) and, last and atomically,
``metrics.json`` (final metrics + provenance). A checkpoint is written atomically after every
epoch to ``--ckpt-dir`` (default ``<out>/../../checkpoints/<id>``, outside Snakemake's declared
outputs); rerunning the same command resumes from it. Randomness is drawn from generators keyed
by ``(seed, epoch)``, so a resumed run replays exactly the epochs an uninterrupted run would.
Under ``torchrun`` the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

from . import evaluate as ev
from .config import load_yaml, validate_run_config
from .data import BatchTransform, Loader, epoch_generator, prepare_splits, _mix_seed
from .fileio import atomic_write_json, atomic_write_text, git_commit, hardware, package_versions, thread_settings
from .errors import ConfigError, DataError, NonFiniteLoss, WriteError
from .methods import RunContext, TrainState, build_method
from .models import build_model


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, flush=True)


def _no_decay(model, n: str, p, t: dict) -> bool:
    """Is parameter ``n`` excluded from weight decay (``train.no_weight_decay``)?
    null: ndim <= 1 under adam/adamw only; "ndim": ndim <= 1 for every optimizer; "timm": ndim <= 1
    plus the model's ``no_weight_decay()`` names (pos_embed, cls_token, ...); "none": decay all."""
    mode = t.get("no_weight_decay")
    if mode is None:
        return p.ndim <= 1 and t["optimizer"] in ("adamw", "adam")
    if mode == "none":
        return False
    if p.ndim <= 1:
        return True
    if mode == "timm":
        names = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
        return n in names or n.endswith(".bias")
    return False


def make_optimizer(model, t: dict):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if _no_decay(model, n, p, t) else decay).append(p)
    groups = [{"params": decay, "weight_decay": t["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=t["lr"], momentum=t["momentum"], nesterov=t["nesterov"] and t["momentum"] > 0)
    betas = tuple(t.get("betas") or (0.9, 0.999))
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=t["lr"], betas=betas)
    return torch.optim.Adam(groups, lr=t["lr"], betas=betas)


def total_epochs(t: dict) -> int:
    """Epochs trained: ``train.epochs`` plus ``train.cooldown_epochs`` at ``min_lr`` (timm's convention)."""
    return int(t["epochs"]) + int(t.get("cooldown_epochs") or 0)


def lr_factor(step: int, steps_per_epoch: int, t: dict) -> float:
    """Multiplier of the base lr at ``step``: linear warmup, then constant / step / cosine
    (the rule of every run that leaves ``warmup_lr`` unset and ``lr_per`` at "step")."""
    total = t["epochs"] * steps_per_epoch
    warm = int(round(t["warmup_epochs"] * steps_per_epoch))
    if warm and step < warm:
        return (step + 1) / warm
    if t["schedule"] == "cosine":
        if step >= total:  # cool-down epochs
            return 0.0
        prog = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, prog)))
    if t["schedule"] == "step":
        epoch = step // steps_per_epoch  # the official codes change lr at epoch boundaries
        return t["gamma"] ** sum(epoch >= m for m in t["milestones"])
    return 1.0


def timm_lr(t_now: int, t_initial: int, warmup_t: int, base: float, warmup_lr: float, min_lr: float) -> float:
    """timm's ``CosineLRScheduler`` (one cycle, no warmup prefix) at time ``t_now``: linear warmup from
    ``warmup_lr`` over ``warmup_t``, cosine from ``base`` to ``min_lr`` over ``t_initial`` (counted
    from 0, warmup included), then ``min_lr`` (cool-down)."""
    if t_now < warmup_t:
        return warmup_lr + t_now * (base - warmup_lr) / warmup_t
    if t_now >= t_initial:
        return min_lr
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t_now / t_initial))


def lr_at(step: int, steps_per_epoch: int, t: dict) -> float:
    """Learning rate of optimisation step ``step``.

    Default (``warmup_lr`` null, ``lr_per`` "step", ``min_lr`` 0): ``lr * lr_factor``. Otherwise the
    timm rule: per step (Swin/MixPro: time = step) or per epoch (DeiT/TransMix, ``t_in_epochs``:
    time = epoch), warmup from ``warmup_lr``, cosine floor ``min_lr``, cool-down at ``min_lr``."""
    base = t["lr"]
    warmup_lr, min_lr, per = t.get("warmup_lr"), float(t.get("min_lr") or 0.0), t.get("lr_per") or "step"
    if warmup_lr is None and per == "step":
        if min_lr and t["schedule"] == "cosine":
            warm = int(round(t["warmup_epochs"] * steps_per_epoch))
            if not (warm and step < warm):
                return min_lr + (base - min_lr) * lr_factor(step, steps_per_epoch, t)
        return base * lr_factor(step, steps_per_epoch, t)
    if per == "epoch":
        now, t_initial, warm = step // steps_per_epoch, int(t["epochs"]), int(round(t["warmup_epochs"]))
    else:
        now, t_initial = step, int(t["epochs"]) * steps_per_epoch
        warm = int(round(t["warmup_epochs"] * steps_per_epoch))
    w_lr = base if warmup_lr is None else float(warmup_lr)
    if t["schedule"] == "cosine":
        return timm_lr(now, t_initial, warm, base, w_lr, min_lr)
    if now < warm:
        return w_lr + now * (base - w_lr) / warm
    return base * lr_factor(step, steps_per_epoch, {**t, "warmup_epochs": 0})


def set_lr(opt, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


CKPT_KEYS = ("model", "optimizer", "scaler", "history", "epoch", "run_config", "code_digest")
FINISHED = "finished.json"  # in the checkpoint dir: metrics.json was written from its last.pt
_RUN_DIGESTS: dict[str, str] = {}


def run_code_digest(cfg: dict, refresh: bool = False) -> str:
    """``common.codehash.code_digest(cfg)``, taken once when the run starts (``load_checkpoint``
    refreshes it) so checkpoints and metrics.json record the code the run was started with."""
    from .codehash import code_digest

    key = json.dumps(cfg, sort_keys=True, default=str)
    if refresh or key not in _RUN_DIGESTS:
        _RUN_DIGESTS[key] = code_digest(cfg)
    return _RUN_DIGESTS[key]


def _not_resumable(ckpt, cfg: dict, finished: bool) -> str | None:
    """Why checkpoint ``ckpt`` cannot continue the run ``cfg`` (None: it can)."""
    if not isinstance(ckpt, dict):
        return f"it is not a checkpoint of this trainer (a {type(ckpt).__name__})"
    missing = [k for k in CKPT_KEYS if k not in ckpt]
    if missing:
        return f"it has an older, incompatible format (no {', '.join(map(repr, missing))})"
    if finished:
        return "its run already finished and wrote metrics.json (retraining from scratch)"
    if ckpt["run_config"] != cfg:
        return "it belongs to a different config"
    now = run_code_digest(cfg)
    if ckpt["code_digest"] != now:
        return f"it was written by other code (code digest {ckpt['code_digest']}, now {now})"
    return None


def load_checkpoint(ckpt_dir: Path, cfg: dict | None = None):
    """``(checkpoint, path)`` of the newest readable checkpoint in ``ckpt_dir``, or ``(None, None)``.

    An unreadable ``last.pt`` (truncated, corrupt) falls back to ``prev.pt`` with a warning and is
    moved aside as ``last.pt.corrupt``, so no later save rotates it over the good ``prev.pt``. With
    ``cfg``, the checkpoint is returned only if it can continue that run: current format, same run
    config, same code digest, and not the end state of a run that already wrote its metrics.json;
    otherwise the reason is logged and ``(None, None)`` returned (the run starts fresh)."""
    from .fileio import dir_lock

    ckpt_dir = Path(ckpt_dir)
    if cfg is not None:
        run_code_digest(cfg, refresh=True)
    if not ckpt_dir.is_dir():
        return None, None
    ckpt = path = None
    with dir_lock(ckpt_dir):
        for name in ("last.pt", "prev.pt"):
            p = ckpt_dir / name
            if not p.exists():
                continue
            try:
                ckpt, path = torch.load(p, map_location="cpu", weights_only=False), p
                break
            except Exception as e:  # truncated / corrupt file
                warnings.warn(f"checkpoint {p} is unreadable ({type(e).__name__}: {e}); trying the previous one")
                bad = p.with_name(p.name + ".corrupt")
                try:  # never let a later save rotate a known-corrupt file over a good one
                    os.replace(p, bad)
                    aside = f"; moved aside to {bad.name}"
                except OSError as e2:
                    aside = f"; could not move it aside ({e2.strerror})"
                log(f"WARNING: checkpoint {p} is unreadable ({type(e).__name__}){aside}; falling back")
        finished = (ckpt_dir / FINISHED).exists()
    if ckpt is None or cfg is None:
        return ckpt, path
    reason = _not_resumable(ckpt, cfg, finished)
    if reason:
        log(f"not resuming from checkpoint {path}: {reason}; starting fresh")
        return None, None
    return ckpt, path


def save_checkpoint(ckpt_dir: Path, state: dict) -> None:
    """Write ``state`` as ``<ckpt_dir>/last.pt`` and keep the one before as ``prev.pt``.

    The new file is written completely first (unique temp file, fsync); then, under an exclusive
    ``flock`` on ``<ckpt_dir>/.lock``, ``last.pt`` is hard-linked to ``prev.pt`` and the new file
    replaces ``last.pt`` atomically, so ``last.pt`` always exists complete once written and
    concurrent writers never interleave. A truncated ``last.pt`` (not a complete zip) is set aside
    as ``last.pt.corrupt`` instead of replacing the good ``prev.pt``. A failed write (disk full, file-size limit) raises
    :class:`common.fileio.WriteError` and leaves both files as they were. The state gets the run's
    code digest; a new save means the run is not finished."""
    import zipfile

    from .fileio import dir_lock, write_temp

    ckpt_dir = Path(ckpt_dir)
    last, prev = ckpt_dir / "last.pt", ckpt_dir / "prev.pt"
    if "run_config" in state and "code_digest" not in state:
        state = {**state, "code_digest": run_code_digest(state["run_config"])}
    import io as _io

    buf = _io.BytesIO()
    torch.save(state, buf)
    tmp = write_temp(last, buf.getvalue(), "checkpoint")
    try:
        with dir_lock(ckpt_dir):
            (ckpt_dir / FINISHED).unlink(missing_ok=True)
            if last.exists() and not zipfile.is_zipfile(last):  # truncated (torch.save writes a zip): never keep it as prev
                os.replace(last, last.with_name("last.pt.corrupt"))
                log(f"WARNING: checkpoint {last} is truncated; moved aside to last.pt.corrupt, prev.pt kept")
            if last.exists():
                link = ckpt_dir / f".prev.pt.{os.getpid()}.{threading.get_ident()}.tmp"
                try:
                    link.unlink(missing_ok=True)
                    os.link(last, link)
                    os.replace(link, prev)
                except OSError:  # no hard links on this filesystem: move (last.pt is briefly absent)
                    link.unlink(missing_ok=True)
                    os.replace(last, prev)
            os.replace(tmp, last)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError("checkpoint", last, e) from e
        raise


def write_metrics(path: Path, result: dict, ckpt_dir: Path | None = None) -> None:
    """Write ``metrics.json`` atomically, then mark the checkpoint dir as finished: deleting
    metrics.json later retrains from scratch instead of resuming the final checkpoint."""
    from .fileio import dir_lock

    atomic_write_json(path, result, "metrics")
    if ckpt_dir is not None and Path(ckpt_dir).is_dir():
        with dir_lock(ckpt_dir):
            atomic_write_json(Path(ckpt_dir) / FINISHED, {"metrics": str(path)}, "checkpoint marker")


def _remove_if_empty(out_dir: Path, created: list[Path]) -> None:
    """After a failed run: remove ``out_dir`` if it holds nothing but an empty ``epochs.jsonl``,
    then the (now empty) parent directories this run created. Never a directory with other files."""
    try:
        log_file = out_dir / "epochs.jsonl"
        if log_file.is_file() and log_file.stat().st_size == 0 and [p.name for p in out_dir.iterdir()] == [log_file.name]:
            log_file.unlink()
        for d in [out_dir, *created]:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    except OSError:
        pass


def build_ema(model, spec: dict | None):
    """timm's ``ModelEmaV3`` (``ModelEmaV2`` on older timm) for ``train.ema = {decay, warmup, every}``:
    after every ``every``-th step, ema = decay * ema + (1 - decay) * param (``warmup``: timm's
    decay warm-up from the step count)."""
    if not spec:
        return None
    from timm.utils import model_ema

    decay = float(spec["decay"])
    if hasattr(model_ema, "ModelEmaV3"):
        ema = model_ema.ModelEmaV3(model, decay=decay, use_warmup=bool(spec.get("warmup", False)))
    else:  # pragma: no cover - timm < 1.0
        ema = model_ema.ModelEmaV2(model, decay=decay)
    ema.use_warmup = bool(spec.get("warmup", False))
    ema.every = int(spec.get("every", 1) or 1)
    ema.module.eval()
    return ema


# --------------------------------------------------------------------------- main loop
def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (2-3 s per training process here, paid by every job of the workflow) unless
    inductor is already loaded; the trainer never compiles, so only the ATen flag matters."""
    if "torch._inductor" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def train(cfg: dict, out_dir: Path, ckpt_dir: Path | None = None, stop_after_epoch: int | None = None,
          progress: bool | None = None) -> dict | None:
    validate_run_config(cfg)
    out_dir = Path(out_dir)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else out_dir.parent.parent / "checkpoints" / out_dir.name
    t, seed = cfg["train"], int(cfg["seed"])

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if t["num_threads"]:
        torch.set_num_threads(t["num_threads"])
    deterministic_algorithms()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False

    t0 = time.time()
    splits = prepare_splits(cfg["dataset"], cfg["train"])
    task = splits.task
    seed_everything(seed)
    model = build_model(cfg["model"], splits.num_classes, splits.input_shape).to(device)
    channels_last = bool(t["channels_last"]) and splits.is_image
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def make_transform(train: bool):
        if not splits.is_image:
            return None
        aug = {**splits.augment, **(t["augment"] or {})} if train else {}
        return BatchTransform(splits.mean, splits.std, aug.get("pad", 0), aug.get("flip", False), device, channels_last)

    bs = t["batch_size"]
    eval_bs = cfg["eval"]["batch_size"]
    if getattr(splits.train, "file_based", False) or (splits.is_image and cfg["dataset"].get("transform")):
        # image files, or a per-sample transform: DataLoader workers
        from .loader import build_file_loaders

        train_loader, test_loader, val_loader = build_file_loaders(splits, cfg, make_transform, device, rank, world,
                                                                   channels_last)
    else:
        train_loader = Loader(splits.train, bs, make_transform(True), shuffle=t.get("shuffle", True),
                              drop_last=t["drop_last"], seed=seed, device=device, train=True)
        test_loader = Loader(splits.test, eval_bs, make_transform(False), device=device)
        val_loader = Loader(splits.val, eval_bs, make_transform(False), device=device) if splits.val is not None else None
    fetch_tf = make_transform(True)

    def fetch(indices, generator=None):
        x = splits.train.x[torch.as_tensor(indices).cpu()]
        return fetch_tf(x, generator, True) if fetch_tf is not None else x.to(device)

    model_info = {}
    for k in ("patch_size", "num_prefix_tokens"):
        v = getattr(model, k, None) or getattr(getattr(model, "patch_embed", None), k, None)
        if v is not None:
            model_info[k] = v if not isinstance(v, tuple) else v[0]
    ctx = RunContext(task, splits.num_classes, splits.input_shape, device, splits.train, fetch,
                     t["label_smoothing"], model_info)
    method = build_method(cfg["method"], ctx)
    method.setup(model)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(model, t)
    use_amp = bool(t["amp"]) and device.type == "cuda"  # CPU stays fp32 (exact CPU tests)
    amp_dtype = getattr(torch, t.get("amp_dtype") or "float16")
    autocast_kw = {"dtype": amp_dtype} if use_amp else {}
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)  # bf16 needs none
    ema = build_ema(model, t.get("ema"))
    select = t["select"]

    steps_per_epoch = len(train_loader)
    n_epochs = total_epochs(t)
    total_steps = steps_per_epoch * n_epochs
    history: list[dict] = []
    start_epoch, best = 0, None
    train_time, train_cpu = 0.0, 0.0  # epoch-loop wall and process-CPU seconds
    ckpt, ckpt_path = load_checkpoint(ckpt_dir, cfg)
    if ckpt is not None:
        if ckpt.get("run_config") != cfg:
            log(f"checkpoint {ckpt_path} belongs to a different config; starting fresh")
        else:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            history, start_epoch, best = ckpt["history"], ckpt["epoch"] + 1, ckpt.get("best")
            train_time, train_cpu = ckpt.get("train_time", 0.0), ckpt.get("train_cpu", 0.0)
            log(f"resumed from {ckpt_path} at epoch {start_epoch}")
    interactive = sys.stderr.isatty() if progress is None else progress
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:  # (re)write the per-epoch log from the checkpoint's history (Snakemake removed it)
        atomic_write_text(out_dir / "epochs.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    images_seen = 0
    epoch_time_total = 0.0

    for epoch in range(start_epoch, n_epochs):
        torch.manual_seed(_mix_seed(seed, epoch, 0x70C4))  # dropout, drop-path: keyed by epoch
        gen = epoch_generator(seed, epoch, 0x3A11)
        train_model.train()
        sums: dict[str, float] = {}
        n_steps = 0
        te, tc = time.time(), time.process_time()
        it = train_loader.epoch(epoch, rank, world)
        if interactive and rank == 0:
            from tqdm import tqdm

            it = tqdm(it, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{n_epochs}", leave=False)
        for b, batch in enumerate(it):
            step = epoch * steps_per_epoch + b
            set_lr(opt, lr_at(step, steps_per_epoch, t))
            state = TrainState(epoch, step, steps_per_epoch, total_steps, gen, ctx)
            with torch.autocast(device.type, enabled=use_amp, **autocast_kw):
                out = method.step(train_model, batch, state)
            loss = out.loss
            if not torch.isfinite(loss.detach()):
                raise NonFiniteLoss(f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {step} (run stopped; "
                                    f"no metrics.json written)")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t["clip_grad_norm"]:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip_grad_norm"])
            scaler.step(opt)
            scaler.update()
            if ema is not None and (step + 1) % ema.every == 0:
                ema.update(model, step=step + 1) if ema.use_warmup else ema.update(model)
            n_steps += 1
            images_seen += batch.x.shape[0]
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in out.logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        epoch_secs = time.time() - te
        epoch_time_total += epoch_secs
        train_time += epoch_secs
        train_cpu += time.process_time() - tc
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_secs": round(epoch_secs, 3)}
        row.update({f"train_{k}": v / max(1, n_steps) for k, v in sums.items()})
        row.update({f"train_{k}": v for k, v in method.epoch_end(state).items()} if n_steps else {})
        if (epoch + 1) % t["eval_every"] == 0 or epoch + 1 == n_epochs:
            row.update(_quick_eval(model, test_loader, task, "test"))
            if ema is not None:
                row.update({f"{k}_ema": v for k, v in _quick_eval(ema.module, test_loader, task, "test").items()})
            if val_loader is not None:
                row.update(_quick_eval(model, val_loader, task, "val"))
            if select == "best_val" and val_loader is not None:
                key = "val_rmse" if task == "regression" else "val_loss"
                if best is None or row[key] <= best["score"]:  # ties go to the later epoch (C-Mixup)
                    best = {"score": row[key], "epoch": epoch + 1,
                            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            elif select == "best_val_acc" and val_loader is not None:
                key = "val_rmse" if task == "regression" else "val_top1"
                score = -row[key] if task == "regression" else row[key]
                if best is None or score > best["score"]:  # strictly better: ties keep the earlier epoch
                    best = {"score": score, "epoch": epoch + 1,
                            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        history.append(row)
        if rank == 0:
            log(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}))
            atomic_write_text(out_dir / "epochs.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            state_dict = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "scaler": scaler.state_dict(), "history": history, "epoch": epoch,
                          "best": best, "run_config": cfg, "train_time": train_time,
                          "train_cpu": train_cpu}
            if ema is not None:
                state_dict["ema"] = ema.state_dict()
            save_checkpoint(ckpt_dir, state_dict)
        if world > 1:
            torch.distributed.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            log(f"stopping after epoch {epoch + 1} as asked (--stop-after-epoch)")
            return None

    # ---------------------------------------------------------------- final evaluation
    if select in ("best_val", "best_val_acc") and best is not None:
        model.load_state_dict(best["model"])
    metrics = final_metrics(model, cfg, task, test_loader, val_loader, splits)
    ema_metrics = final_metrics(ema.module, cfg, task, test_loader, val_loader, splits) if ema is not None else None
    if rank != 0:
        return metrics
    result = {
        "run_id": out_dir.name,
        "task": task,
        "test": metrics,
        "selected_epoch": best["epoch"] if (select in ("best_val", "best_val_acc") and best) else n_epochs,
        "best_epoch_test": _best_epoch(history, task),
        "last_epoch": history[-1] if history else {},
        "train_images_per_sec": images_seen / epoch_time_total if epoch_time_total > 0 else None,
        "provenance": {
            "config": cfg, "seed": seed, "git_commit": git_commit(), "versions": package_versions(),
            "threads": thread_settings(), "hardware": hardware(), "device": str(device), "world_size": world,
            "wall_time_sec": round(time.time() - t0, 2), "train_time_sec": round(train_time, 2),
            "train_cpu_sec": round(train_cpu, 2),
            "resumed_from_epoch": start_epoch, "argv": sys.argv,
            "code_digest": run_code_digest(cfg),
            "dataset_sizes": {"train": len(splits.train), "val": len(splits.val) if splits.val is not None else 0,
                              "test": len(splits.test)},
        },
    }
    if ema_metrics is not None:
        result["test_ema"] = ema_metrics
    write_metrics(out_dir / "metrics.json", result, ckpt_dir)
    if world > 1:
        torch.distributed.destroy_process_group()
    return result


@torch.no_grad()
def _quick_eval(model, loader, task, prefix) -> dict:
    out, y = ev.predict(model, loader)
    if task == "regression":
        m = ev.regression_metrics(out, y)
        return {f"{prefix}_rmse": m["rmse"], f"{prefix}_mape": m["mape"]}
    return {f"{prefix}_top1": 100.0 * (out.argmax(1) == y).double().mean().item(),
            f"{prefix}_loss": torch.nn.functional.cross_entropy(out, y).item()}


def _best_epoch(history, task):
    key, better = ("test_rmse", min) if task == "regression" else ("test_top1", max)
    rows = [r for r in history if key in r]
    if not rows:
        return None
    r = better(rows, key=lambda r: r[key])
    return {"epoch": r["epoch"], key: r[key]}


def final_metrics(model, cfg, task, test_loader, val_loader, splits) -> dict:
    out, y = ev.predict(model, test_loader)
    if task == "regression":
        m = ev.regression_metrics(out, y)
        domain = getattr(splits.test, "domain", None)
        if domain is not None:  # test order is the split's order (eval loaders never shuffle)
            m.update(ev.domain_rmse(out, y, domain))
        if val_loader is not None:
            vo, vy = ev.predict(model, val_loader)
            m.update({f"val_{k}": v for k, v in ev.regression_metrics(vo, vy).items()})
        return m
    e = cfg["eval"]
    m = ev.classification_metrics(out, y, e["calibration_bins"])
    if e["temperature_scaling"] and val_loader is not None:
        vo, vy = ev.predict(model, val_loader)
        m.update(ev.with_temperature(out, y, vo, vy, e["calibration_bins"]))
    from .calibration import reliability_bins

    m["reliability"] = reliability_bins(out, y, e["calibration_bins"])
    occ = e.get("occlusion")
    if occ and splits.is_image:
        m.update(ev.occlusion_metrics(model, test_loader, occ["sizes"], occ["modes"]))
    return m


# --------------------------------------------------------------------------- CLI
def _read_json_config(p: Path):
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {raw[e.start:e.start + 1]!r} at offset {e.start}); "
                          f"save the file as UTF-8") from None
    return _parse_json(text, p)


def _parse_json(text: str, p: Path):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:  # only here: a JSON error elsewhere is not the config's fault
        raise ConfigError(f"{p}: not valid JSON: {e}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="exit codes: 0 done (or stopped by --stop-after-epoch); 2 invalid config; "
                                        "3 non-finite loss; 4 dataset missing/corrupt or an output cannot be written "
                                        "(disk full, file-size limit, --out under a file). Anything else is a bug and "
                                        "shows its traceback.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="run config file (JSON or YAML)")
    src.add_argument("--config-json", help="run config as a JSON string (what the Snakefile passes)")
    ap.add_argument("--out", required=True, help="run directory (metrics.json, epochs.jsonl)")
    ap.add_argument("--ckpt-dir", default=None, help="checkpoint directory (default: <out>/../../checkpoints/<id>)")
    ap.add_argument("--stop-after-epoch", type=int, default=None, help="stop (as if killed) after this epoch")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (dotted key, YAML value), e.g. --set train.epochs=2")
    args = ap.parse_args(argv)
    from .fileio import check_writable_dir
    from .registry import RegistryError

    # Only user-facing errors become "error: ..." + exit code; anything else is a bug and keeps its traceback.
    try:
        if args.config_json is not None:
            p = Path("<--config-json>")
            cfg = _parse_json(args.config_json, p)
        else:
            p = Path(args.config)
            if not p.exists():
                raise ConfigError(f"config file {p} does not exist")
            cfg = _read_json_config(p) if p.suffix == ".json" else load_yaml(p)
        if not isinstance(cfg, dict):
            raise ConfigError(f"{p}: expected a mapping")
        from .config import apply_overrides, resolve

        cfg = resolve(apply_overrides(cfg, args.set))
        validate_run_config(cfg, str(p))
        out = Path(args.out)
        ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else out.parent.parent / "checkpoints" / out.name
        check_writable_dir(out, "run directory (--out)")  # before any training: e.g. --out under a regular file
        check_writable_dir(ckpt_dir, "checkpoint directory")
        created = [d for d in out.parents if not d.exists()]  # to tidy up after a failed run
        try:
            train(cfg, out, ckpt_dir, args.stop_after_epoch)
        except ConfigError as e:  # found while building (model, method, data options): name the file too
            if str(p) in str(e):
                raise
            raise ConfigError(f"{p}: {e}") from None
        except NonFiniteLoss:  # a NaN stop leaves no empty run directory behind
            _remove_if_empty(out, created)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
