"""The shared evaluator: accuracy, calibration (before/after temperature scaling), occlusion
robustness for classification; RMSE/MAPE for regression; the trainer's per-epoch and final metrics.

Under DDP (``dist``: :class:`common.distributed.Dist`) each rank evaluates its shard of every
evaluation batch (the loaders split each batch between the ranks, no sample twice); the outputs are
gathered back into the split's order, so every metric is computed from the same outputs as in one
process, and occlusion counts are summed exactly. In a single process nothing is gathered.
"""
from __future__ import annotations

import math

import torch

from . import calibration as cal
from .distributed import Dist

SINGLE = Dist()


def _shards(loader, dist: Dist):
    """``(global batch size, shard)`` of each evaluation batch (each rank's share of it)."""
    n, bs = len(loader.data), loader.batch_size
    for b, batch in enumerate(loader.epoch(0, dist.rank, dist.world)):
        yield min(bs, n - b * bs), batch


@torch.no_grad()
def predict(model, loader, dist: Dist = SINGLE) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs and targets of the whole split, in the split's order (gathered over ranks)."""
    model.eval()
    outs, ys, idx = [], [], []
    for _, batch in _shards(loader, dist):
        if len(batch.y):
            outs.append(model(batch.x).float().cpu())
            ys.append(batch.y.cpu())
            idx.append(batch.index.cpu())
    out, y = torch.cat(outs), torch.cat(ys)
    if dist.world == 1:
        return out, y
    index = torch.cat(idx)
    return dist.gather_rows(out, index), dist.gather_rows(y, index)


def classification_metrics(logits, y, n_bins: int = 15) -> dict:
    pred = logits.argmax(1)
    out = {"top1": 100.0 * (pred == y).double().mean().item()}
    if logits.shape[1] >= 5:
        out["top5"] = 100.0 * (logits.topk(5, 1).indices == y.view(-1, 1)).any(1).double().mean().item()
    out.update(cal.calibration_metrics(logits, y, n_bins))
    return out


def regression_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict:
    """RMSE over all entries, and MAPE (in %) as C-Mixup computes it: mean |pred - y| / |y|."""
    pred = pred.double().view_as(y)
    y = y.double()
    err = pred - y
    out = {"rmse": err.pow(2).mean().sqrt().item(), "mse": err.pow(2).mean().item(), "mae": err.abs().mean().item()}
    nz = y.abs() > 0
    out["mape"] = 100.0 * (err[nz].abs() / y[nz].abs()).mean().item() if nz.any() else float("nan")
    return out


def domain_rmse(pred: torch.Tensor, y: torch.Tensor, domain: torch.Tensor) -> dict:
    """C-Mixup's out-of-distribution statistic: the RMSE of each test domain, averaged over domains
    (``rmse_domain_avg``) and the largest (``rmse_domain_worst``)."""
    pred = pred.double().view_as(y)
    err2 = (pred - y.double()).pow(2).reshape(len(y), -1).mean(1)
    domain = torch.as_tensor(domain).reshape(-1)
    if domain.numel() != len(y):
        raise ValueError(f"domain has {domain.numel()} entries for {len(y)} test samples")
    per = torch.stack([err2[domain == d].mean().sqrt() for d in torch.unique(domain)])
    return {"rmse_domain_avg": per.mean().item(), "rmse_domain_worst": per.max().item()}


def with_temperature(test_logits, test_y, val_logits, val_y, n_bins=15) -> dict:
    t = cal.fit_temperature(val_logits, val_y)
    out = {"temperature": t}
    out.update(cal.calibration_metrics(test_logits / t, test_y, n_bins, prefix="ts_"))
    return out


def occlusion_side(d: int, size: float) -> int:
    """Side in pixels of an occluding patch covering the fraction ``size`` of an image side
    ``d``: ``floor(size * d + 0.5)`` (half rounds up); ``size = 0`` gives no patch."""
    if not 0.0 <= size <= 1.0:
        raise ValueError(f"occlusion size must lie in [0, 1] (a fraction of the image side), got {size}")
    return int(math.floor(size * d + 0.5))


def occlusion_mask(n: int, h: int, w: int, size: float, mode: str, generator: torch.Generator | None = None):
    """Boolean (n, h, w) mask, True on the occluded patch (side fraction ``size`` of each dim) of each image.

    * ``center``: rows ``[(h - ph) // 2, (h - ph) // 2 + ph)`` and the same for columns, i.e. the
      patch is centred exactly when ``h - ph`` is even (otherwise it sits half a pixel up/left);
    * ``random``: top-left corner uniform over all positions that keep the whole patch inside the
      image, one draw per image from ``generator``.
    """
    ph, pw = occlusion_side(h, size), occlusion_side(w, size)
    if mode == "center":
        r0 = torch.full((n,), (h - ph) // 2)
        c0 = torch.full((n,), (w - pw) // 2)
    elif mode == "random":
        r0 = torch.randint(0, h - ph + 1, (n,), generator=generator)
        c0 = torch.randint(0, w - pw + 1, (n,), generator=generator)
    else:
        raise ValueError(f"unknown occlusion mode {mode!r}; choose 'center' or 'random'")
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    return ((rows >= r0.view(n, 1, 1)) & (rows < (r0 + ph).view(n, 1, 1))
            & (cols >= c0.view(n, 1, 1)) & (cols < (c0 + pw).view(n, 1, 1)))


@torch.no_grad()
def occlusion_metrics(model, loader, sizes=(0.25, 0.5), modes=("center", "random"), seed: int = 0,
                      dist: Dist = SINGLE) -> dict:
    """Top-1 (%) on test images with a square patch blanked out, for CutMix's occlusion-robustness
    claim (Yun et al. 2019, Sec. 4.3). The patch is set to 0 in the *normalised* input, i.e. to the
    dataset's per-channel mean colour. ``sizes`` are fractions of the image side (0.5 on 32x32 =
    a 16x16 patch = 25% of the area); key ``occ_<mode>_<round(100 * size)>``. ``random`` draws
    its positions from a generator seeded by ``seed`` for every (mode, size), so every model sees
    the same patches; ``size = 0`` leaves the images unchanged (equals plain top-1). Under DDP the
    patches are drawn for the whole batch and each rank takes its shard's rows."""
    model.eval()
    out = {}
    for mode in modes:
        for s in sizes:
            g = torch.Generator().manual_seed(seed)
            correct = total = 0
            for n_batch, batch in _shards(loader, dist):
                x = batch.x
                n, _, h, w = x.shape
                m = occlusion_mask(n_batch, h, w, s, mode, g)[dist.rank::dist.world]
                if n == 0:
                    continue
                if m.any():
                    x = x.masked_fill(m.unsqueeze(1).to(x.device), 0.0)
                correct += (model(x).argmax(1).cpu() == batch.y.cpu()).sum().item()
                total += n
            correct, total = dist.sum_ints([correct, total])
            out[f"occ_{mode}_{int(round(s * 100))}"] = 100.0 * correct / max(1, total)
    return out


# --------------------------------------------------------------------------- the trainer's metrics
@torch.no_grad()
def epoch_metrics(model, loader, task: str, prefix: str, dist: Dist = SINGLE) -> dict:
    """The per-epoch row's metrics: ``<prefix>_top1``/``_loss`` (classification) or ``_rmse``/``_mape``."""
    out, y = predict(model, loader, dist)
    if task == "regression":
        m = regression_metrics(out, y)
        return {f"{prefix}_rmse": m["rmse"], f"{prefix}_mape": m["mape"]}
    return {f"{prefix}_top1": 100.0 * (out.argmax(1) == y).double().mean().item(),
            f"{prefix}_loss": torch.nn.functional.cross_entropy(out, y).item()}


def best_epoch(history: list[dict], task: str) -> dict | None:
    """The epoch row with the best test metric (top-1, or RMSE for regression)."""
    key, better = ("test_rmse", min) if task == "regression" else ("test_top1", max)
    rows = [r for r in history if key in r]
    if not rows:
        return None
    r = better(rows, key=lambda r: r[key])
    return {"epoch": r["epoch"], key: r[key]}


def final_metrics(model, cfg: dict, task: str, loaders, splits, dist: Dist = SINGLE) -> dict:
    """metrics.json's ``test`` block for ``model``: ``loaders`` = (test, val or None)."""
    test_loader, val_loader = loaders
    out, y = predict(model, test_loader, dist)
    if task == "regression":
        m = regression_metrics(out, y)
        domain = getattr(splits.test, "domain", None)
        if domain is not None:  # test order is the split's order (eval loaders never shuffle)
            m.update(domain_rmse(out, y, domain))
        if val_loader is not None:
            vo, vy = predict(model, val_loader, dist)
            m.update({f"val_{k}": v for k, v in regression_metrics(vo, vy).items()})
        return m
    e = cfg["eval"]
    m = classification_metrics(out, y, e["calibration_bins"])
    if e["temperature_scaling"] and val_loader is not None:
        vo, vy = predict(model, val_loader, dist)
        m.update(with_temperature(out, y, vo, vy, e["calibration_bins"]))
    m["reliability"] = cal.reliability_bins(out, y, e["calibration_bins"])
    occ = e["occlusion"]
    if occ and splits.is_image:
        m.update(occlusion_metrics(model, test_loader, occ["sizes"], occ["modes"], dist=dist))
    return m
