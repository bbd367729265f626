"""The shared evaluator: accuracy, calibration (before/after temperature scaling), occlusion
robustness for classification; RMSE/MAPE for regression."""
from __future__ import annotations

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


def with_temperature(test_logits, test_y, val_logits, val_y, n_bins=15) -> dict:
    t = cal.fit_temperature(val_logits, val_y)
    out = {"temperature": t}
    out.update(cal.calibration_metrics(test_logits / t, test_y, n_bins, prefix="ts_"))
    return out


@torch.no_grad()
def occlusion_metrics(model, loader, sizes=(0.25, 0.5), modes=("center", "random"), seed: int = 0) -> dict:
    """Top-1 on test images with a square patch blanked out (set to the normalised value 0, i.e.
    the dataset mean). ``sizes`` are side fractions of the image side; ``random`` places the
    patch uniformly (seeded, the same for every method)."""
    model.eval()
    out = {}
    for mode in modes:
        for s in sizes:
            g = torch.Generator().manual_seed(seed)
            correct = total = 0
            for batch in loader.epoch(0):
                x = batch.x.clone()
                n, _, h, w = x.shape
                ph, pw = max(1, round(h * s)), max(1, round(w * s))
                if mode == "center":
                    r0 = torch.full((n,), (h - ph) // 2)
                    c0 = torch.full((n,), (w - pw) // 2)
                else:
                    r0 = torch.randint(0, h - ph + 1, (n,), generator=g)
                    c0 = torch.randint(0, w - pw + 1, (n,), generator=g)
                rows = torch.arange(h).view(1, h, 1)
                cols = torch.arange(w).view(1, 1, w)
                m = ((rows >= r0.view(n, 1, 1)) & (rows < (r0 + ph).view(n, 1, 1))
                     & (cols >= c0.view(n, 1, 1)) & (cols < (c0 + pw).view(n, 1, 1)))
                x = x.masked_fill(m.unsqueeze(1).to(x.device), 0.0)
                correct += (model(x).argmax(1).cpu() == batch.y.cpu()).sum().item()
                total += n
            out[f"occ_{mode}_{int(round(s * 100))}"] = 100.0 * correct / max(1, total)
    return out
