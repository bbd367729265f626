"""Calibration metrics: ECE (equal-width bins), adaptive ECE (equal-mass bins), class-wise ECE,
NLL, and post-hoc temperature scaling (Guo et al. 2017).

All take logits (N, K) and integer labels (N,). ECE follows Guo et al.: 15 equal-width bins over
the max-probability confidence, ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``; a confidence equal to a
bin's upper edge falls in that bin (bins are ``(lo, hi]``, as torchmetrics does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _conf_pred(logits):
    p = F.softmax(logits.double(), dim=1)
    conf, pred = p.max(1)
    return p, conf, pred


def ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    _, conf, pred = _conf_pred(logits)
    acc = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    b = torch.bucketize(conf, edges[1:-1], right=False)  # (lo, hi]
    total = 0.0
    for i in range(n_bins):
        m = b == i
        if m.any():
            total += m.double().mean().item() * abs(acc[m].mean().item() - conf[m].mean().item())
    return total


def adaptive_ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Equal-mass bins: sort by confidence and split into ``n_bins`` near-equal groups."""
    _, conf, pred = _conf_pred(logits)
    acc = (pred == y).double()
    order = torch.argsort(conf, stable=True)
    total, n = 0.0, len(conf)
    for chunk in torch.tensor_split(order, n_bins):
        if len(chunk):
            total += len(chunk) / n * abs(acc[chunk].mean().item() - conf[chunk].mean().item())
    return total


def classwise_ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Mean over classes of the ECE of the per-class probability p_k against 1[y == k]."""
    p = F.softmax(logits.double(), dim=1)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    k_total = 0.0
    for k in range(p.shape[1]):
        pk = p[:, k]
        hit = (y == k).double()
        b = torch.bucketize(pk.contiguous(), edges[1:-1], right=False)
        s = 0.0
        for i in range(n_bins):
            m = b == i
            if m.any():
                s += m.double().mean().item() * abs(hit[m].mean().item() - pk[m].mean().item())
        k_total += s
    return k_total / p.shape[1]


def nll(logits: torch.Tensor, y: torch.Tensor) -> float:
    return F.cross_entropy(logits.double(), y).item()


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Temperature T > 0 minimising the NLL of ``logits / T`` (LBFGS on log T)."""
    logits = logits.double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if torch.isfinite(torch.tensor(t)) and t > 0 else 1.0


def calibration_metrics(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15, prefix: str = "") -> dict:
    return {
        f"{prefix}ece": ece(logits, y, n_bins),
        f"{prefix}adaece": adaptive_ece(logits, y, n_bins),
        f"{prefix}cw_ece": classwise_ece(logits, y, n_bins),
        f"{prefix}nll": nll(logits, y),
    }


def reliability_bins(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict:
    """Per-bin (count, mean confidence, accuracy) for reliability diagrams."""
    _, conf, pred = _conf_pred(logits)
    acc = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    b = torch.bucketize(conf, edges[1:-1], right=False)
    out = {"edges": edges.tolist(), "count": [], "conf": [], "acc": []}
    for i in range(n_bins):
        m = b == i
        out["count"].append(int(m.sum()))
        out["conf"].append(conf[m].mean().item() if m.any() else None)
        out["acc"].append(acc[m].mean().item() if m.any() else None)
    return out
