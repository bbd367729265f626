"""The shared evaluator: accuracy, calibration (before/after temperature scaling), occlusion
robustness for classification; RMSE/MAPE for regression."""
from __future__ import annotations

import math

import torch

from . import calibration as cal


@torch.no_grad()
def predict(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    outs, ys = [], []
    for batch in loader.epoch(0):
        outs.append(model(batch.x).float().cpu())
        ys.append(batch.y.cpu())
    return torch.cat(outs), torch.cat(ys)


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
def occlusion_metrics(model, loader, sizes=(0.25, 0.5), modes=("center", "random"), seed: int = 0) -> dict:
    """Top-1 (%) on test images with a square patch blanked out, for CutMix's occlusion-robustness
    claim (Yun et al. 2019, Sec. 4.3). The patch is set to 0 in the *normalised* input, i.e. to the
    dataset's per-channel mean colour. ``sizes`` are fractions of the image side (0.5 on 32x32 =
    a 16x16 patch = 25% of the area); key ``occ_<mode>_<round(100 * size)>``. ``random`` draws
    its positions from a generator seeded by ``seed`` for every (mode, size), so every model sees
    the same patches; ``size = 0`` leaves the images unchanged (equals plain top-1)."""
    model.eval()
    out = {}
    for mode in modes:
        for s in sizes:
            g = torch.Generator().manual_seed(seed)
            correct = total = 0
            for batch in loader.epoch(0):
                x = batch.x
                n, _, h, w = x.shape
                m = occlusion_mask(n, h, w, s, mode, g)
                if m.any():
                    x = x.masked_fill(m.unsqueeze(1).to(x.device), 0.0)
                correct += (model(x).argmax(1).cpu() == batch.y.cpu()).sum().item()
                total += n
            out[f"occ_{mode}_{int(round(s * 100))}"] = 100.0 * correct / max(1, total)
    return out
