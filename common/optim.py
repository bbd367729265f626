"""The optimiser, learning-rate schedule and weight EMA of a run (``train.*`` of a resolved config).

* :func:`make_optimizer`: SGD / Adam / AdamW with two parameter groups (decay, no decay);
* :func:`lr_at`: the learning rate of an optimisation step: the default rule (linear warmup, then
  constant / step / cosine per step) or timm's ``CosineLRScheduler`` per step or per epoch, with
  DeiT's one-epoch scheduler lag (``train.lr_epoch_lag``);
* :func:`build_ema`: timm's model EMA for ``train.ema``.

Every function takes the resolved ``train`` block, so the schema's defaults are the only ones.
"""
from __future__ import annotations

import math

import torch


def _no_decay(model, n: str, p, t: dict) -> bool:
    """Is parameter ``n`` excluded from weight decay (``train.no_weight_decay``)?
    null: ndim <= 1 under adam/adamw only; "ndim": ndim <= 1 for every optimizer; "timm": ndim <= 1
    plus the model's ``no_weight_decay()`` names (pos_embed, cls_token, ...); "none": decay all."""
    mode = t["no_weight_decay"]
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
    betas = tuple(t.get("betas") or (0.9, 0.999))  # the schema gives train.betas no default: torch's
    if t["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=t["lr"], betas=betas)
    return torch.optim.Adam(groups, lr=t["lr"], betas=betas)


def total_epochs(t: dict) -> int:
    """Epochs trained: ``train.epochs`` plus ``train.cooldown_epochs`` at ``min_lr`` (timm's convention)."""
    return int(t["epochs"]) + int(t["cooldown_epochs"])


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
    time = epoch), warmup from ``warmup_lr``, cosine floor ``min_lr``, cool-down at ``min_lr``.
    ``lr_epoch_lag`` = k runs the schedule k epochs late: epoch e trains at what the schedule gives
    epoch e - k (the first k epochs at its start). DeiT's ``main.py`` steps its per-epoch scheduler
    after each epoch with that epoch's index, so its epoch e trains at lr(e - 1) (k = 1)."""
    step = max(0, step - t["lr_epoch_lag"] * steps_per_epoch)
    base = t["lr"]
    warmup_lr, min_lr, per = t["warmup_lr"], float(t["min_lr"]), t["lr_per"]
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


def build_ema(model, spec: dict | None):
    """timm's ``ModelEmaV3`` (``ModelEmaV2`` on older timm) for the resolved ``train.ema = {decay,
    warmup, every}``: after every ``every``-th step, ema = decay * ema + (1 - decay) * param
    (``warmup``: timm's decay warm-up from the step count). None when ``spec`` is null."""
    if not spec:
        return None
    from timm.utils import model_ema

    decay, warmup = float(spec["decay"]), bool(spec["warmup"])
    if hasattr(model_ema, "ModelEmaV3"):
        ema = model_ema.ModelEmaV3(model, decay=decay, use_warmup=warmup)
    else:  # pragma: no cover - timm < 1.0
        ema = model_ema.ModelEmaV2(model, decay=decay)
    ema.use_warmup = warmup
    ema.every = int(spec["every"])
    ema.module.eval()
    return ema
