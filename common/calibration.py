"""Calibration metrics: ECE (equal-width bins), adaptive ECE (equal-mass bins), class-wise ECE,
NLL, post-hoc temperature scaling and reliability-diagram bins.

Definitions (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017; Mukhoti et al., "Calibrating Deep Neural Networks using Focal Loss",
NeurIPS 2020, whose evaluation code the RankMixup repository re-uses):

* probabilities ``p = softmax(z)`` (computed in float64), confidence ``c_i = max_k p_ik``,
  prediction ``argmax_k p_ik``, hit ``a_i = [prediction_i == y_i]``;
* binned calibration error over bins ``B_b`` (each a half-open interval ``(lo, hi]``; a value
  ``<= edges[0]`` or ``> edges[-1]`` falls in no bin, but every sample counts in ``N``)::

      CE = sum_b |B_b| / N * | mean_{i in B_b} a_i - mean_{i in B_b} c_i |

* **ECE**: 15 equal-width bins, edges ``0, 1/15, ..., 1``.
* **AdaECE** (official quirk kept): edges = linear interpolation of the sorted confidences at
  positions ``linspace(0, N, n_bins + 1)`` (position ``N`` clamps to the largest value), again
  ``(lo, hi]`` membership, so the sample(s) equal to the smallest confidence are never counted.
  :func:`adaptive_ece_all` is the variant that counts every sample (``n_bins`` groups of
  near-equal size after a stable sort).
* **Class-wise ECE**: for each class ``k`` the equal-width binned error of ``p_ik`` against
  ``[y_i == k]``, averaged over the ``K`` classes of the logits (the official code takes
  ``K = max(label) + 1`` of the evaluated set; identical whenever the last class occurs).
* **NLL**: mean cross-entropy of the softmax.
* **Temperature scaling** (Guo et al. 2017): one ``T > 0`` for ``softmax(z / T)``, fitted on a
  held-out split. ``objective="nll"`` (default, Guo et al.) minimises the validation NLL exactly:
  NLL is convex in ``beta = 1 / T`` (a log-sum-exp of linear functions), so its derivative is
  monotone and we bisect on it. ``objective="ece_grid"`` is the RankMixup repository's protocol:
  ``T`` on the grid ``0.1, 0.2, ..., 10.0`` minimising the validation ECE (first minimum).

Relation to torchmetrics (``multiclass_calibration_error(..., norm="l1")``): the same ECE, except
that torchmetrics uses ``[lo, hi)`` bins (a confidence of exactly 1.0 gets its own bin) and
float32; the two agree unless a confidence lies exactly on an edge ``k / 15``.
``binary_calibration_error(p[:, k], y == k)`` is exactly the class-``k`` term of class-wise ECE.
The official code builds its edges with float32 ``torch.linspace``; ours are float64, so a value
that lands exactly on ``k / 15`` may fall in the neighbouring bin (never the case in practice for
softmax outputs, but test data should avoid such values).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "softmax64", "equal_width_edges", "adaptive_edges", "bin_index", "binned_calibration_error",
    "ece", "adaptive_ece", "adaptive_ece_all", "classwise_ece", "nll", "fit_temperature",
    "calibration_metrics", "reliability_bins", "ece_from_confidence", "adaece_from_confidence",
    "TS_GRID",
]

#: the RankMixup repository's temperature grid (0.1, 0.2, ..., 10.0)
TS_GRID = tuple(round(0.1 * i, 1) for i in range(1, 101))


# --------------------------------------------------------------------------- primitives
def softmax64(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(torch.as_tensor(logits).double(), dim=1)


def _conf_hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    conf, pred = softmax64(logits).max(1)
    return conf, (pred == torch.as_tensor(y).to(pred.device)).double()


def equal_width_edges(n_bins: int = 15) -> torch.Tensor:
    """``0, 1/n, ..., 1`` in float64."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)


def adaptive_edges(conf: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Equal-mass edges of the official AdaECE: ``np.interp(linspace(0, N, n_bins + 1),
    arange(N), sort(conf))`` (positions beyond ``N - 1`` clamp to the largest confidence)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    c = np.sort(torch.as_tensor(conf).double().cpu().numpy())
    n = len(c)
    if n == 0:
        return torch.zeros(n_bins + 1, dtype=torch.float64)
    return torch.from_numpy(np.interp(np.linspace(0, n, n_bins + 1), np.arange(n), c))


def bin_index(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin of each value for the half-open bins ``(edges[b], edges[b + 1]]``; ``-1`` when the
    value is ``<= edges[0]`` or ``> edges[-1]``. ``edges`` must be non-decreasing; with repeated
    edges the empty bins ``(e, e]`` stay empty."""
    v = torch.as_tensor(values).double().contiguous()
    e = torch.as_tensor(edges).double().contiguous()
    # bucketize(right=False) gives i with e[i-1] < v <= e[i]; bin = i - 1
    b = torch.bucketize(v, e, right=False) - 1
    n_bins = len(e) - 1
    b[(b < 0) | (b >= n_bins)] = -1
    return b


def binned_calibration_error(values: torch.Tensor, targets: torch.Tensor, edges: torch.Tensor) -> float:
    """``sum_b |B_b| / N * |mean(targets in B_b) - mean(values in B_b)|`` over non-empty bins;
    ``N`` counts every sample, including those in no bin."""
    v = torch.as_tensor(values).double().flatten()
    t = torch.as_tensor(targets).double().flatten()
    n = v.numel()
    if n == 0:
        return float("nan")
    b = bin_index(v, edges)
    keep = b >= 0
    n_bins = len(edges) - 1
    cnt = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b[keep], torch.ones_like(v[keep]))
    sv = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b[keep], v[keep])
    st = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b[keep], t[keep])
    nz = cnt > 0
    # |B|/N * |sum_t/|B| - sum_v/|B|| = |sum_t - sum_v| / N, but keep the textbook form
    gap = (st[nz] / cnt[nz] - sv[nz] / cnt[nz]).abs()
    return float((cnt[nz] / n * gap).sum())


# --------------------------------------------------------------------------- metrics
def ece_from_confidence(conf, hits, n_bins: int = 15) -> float:
    """ECE from confidences and 0/1 hits (equal-width ``(lo, hi]`` bins)."""
    return binned_calibration_error(conf, hits, equal_width_edges(n_bins))


def adaece_from_confidence(conf, hits, n_bins: int = 15) -> float:
    """Official AdaECE from confidences and 0/1 hits (equal-mass edges, minimum dropped)."""
    return binned_calibration_error(conf, hits, adaptive_edges(conf, n_bins))


def ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error of the max-probability confidence, equal-width bins."""
    conf, hits = _conf_hits(logits, y)
    return ece_from_confidence(conf, hits, n_bins)


def adaptive_ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Adaptive ECE as the RankMixup / focal-calibration code computes it (see module doc)."""
    conf, hits = _conf_hits(logits, y)
    return adaece_from_confidence(conf, hits, n_bins)


def adaptive_ece_all(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Equal-mass ECE counting every sample: stable sort by confidence, ``n_bins`` contiguous
    groups of sizes differing by at most one (``torch.tensor_split``)."""
    conf, hits = _conf_hits(logits, y)
    n = conf.numel()
    order = torch.argsort(conf, stable=True)
    total = 0.0
    for chunk in torch.tensor_split(order, n_bins):
        if len(chunk):
            total += len(chunk) / n * abs(hits[chunk].mean().item() - conf[chunk].mean().item())
    return total


def classwise_ece(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """Mean over the K classes of the equal-width binned error of ``p_k`` against ``[y == k]``."""
    p = softmax64(logits)
    y = torch.as_tensor(y).to(p.device)
    edges = equal_width_edges(n_bins)
    per_class = [binned_calibration_error(p[:, k], (y == k).double(), edges) for k in range(p.shape[1])]
    return float(sum(per_class) / len(per_class))


def nll(logits: torch.Tensor, y: torch.Tensor) -> float:
    return F.cross_entropy(torch.as_tensor(logits).double(), torch.as_tensor(y)).item()


# --------------------------------------------------------------------------- temperature scaling
def _nll_slope(z: torch.Tensor, y: torch.Tensor, beta: float) -> float:
    """d/d beta of mean_i [logsumexp(beta z_i) - beta z_iy] = mean_i (E_{softmax(beta z_i)}[z_i] - z_iy)."""
    p = F.softmax(beta * z, dim=1)
    return float(((p * z).sum(1) - z.gather(1, y.view(-1, 1)).squeeze(1)).mean())


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, objective: str = "nll",
                    t_min: float = 0.01, t_max: float = 100.0, n_bins: int = 15) -> float:
    """Temperature ``T`` for ``softmax(logits / T)`` fitted on held-out ``(logits, y)``.

    ``objective="nll"`` (Guo et al. 2017): the exact minimiser of the NLL over
    ``T in [t_min, t_max]`` (bisection on the monotone derivative in ``beta = 1/T``; clamped to the
    interval when the minimum lies outside, e.g. ``t_min`` for a perfectly separated set).
    ``objective="ece_grid"`` (RankMixup repository): the first ``T`` of :data:`TS_GRID` with the
    smallest ECE. Returns 1.0 for an empty set or when the NLL does not depend on ``T``.
    """
    z = torch.as_tensor(logits).double().cpu()
    y = torch.as_tensor(y).long().cpu()
    if z.shape[0] == 0:
        return 1.0
    if objective == "ece_grid":
        best_t, best = 1.0, math.inf
        for t in TS_GRID:
            e = ece(z / t, y, n_bins)
            if e < best:
                best_t, best = t, e
        return float(best_t)
    if objective != "nll":
        raise ValueError(f"objective must be 'nll' or 'ece_grid', got {objective!r}")
    if not (0 < t_min < t_max):
        raise ValueError(f"need 0 < t_min < t_max, got {t_min}, {t_max}")
    lo, hi = math.log(1.0 / t_max), math.log(1.0 / t_min)  # log beta bracket
    g_lo, g_hi = _nll_slope(z, y, math.exp(lo)), _nll_slope(z, y, math.exp(hi))
    if abs(g_lo) < 1e-12 and abs(g_hi) < 1e-12:
        return 1.0  # NLL flat in T (e.g. constant logits)
    if g_lo >= 0:
        return float(t_max)
    if g_hi <= 0:
        return float(t_min)
    for _ in range(80):  # bracket width shrinks by 2^-80: far below float64 resolution of T
        mid = 0.5 * (lo + hi)
        if _nll_slope(z, y, math.exp(mid)) > 0:
            hi = mid
        else:
            lo = mid
    return float(1.0 / math.exp(0.5 * (lo + hi)))


# --------------------------------------------------------------------------- bundles
def calibration_metrics(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15, prefix: str = "") -> dict:
    """``{ece, adaece, cw_ece, nll}`` (fractions, not %), keys prefixed with ``prefix``."""
    return {
        f"{prefix}ece": ece(logits, y, n_bins),
        f"{prefix}adaece": adaptive_ece(logits, y, n_bins),
        f"{prefix}cw_ece": classwise_ece(logits, y, n_bins),
        f"{prefix}nll": nll(logits, y),
    }


def reliability_bins(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict:
    """Per equal-width bin ``(lo, hi]``: sample count, mean confidence and accuracy (``None`` for
    empty bins) -- the data of a reliability diagram; ``sum_b count_b / N * |acc_b - conf_b|``
    is the ECE."""
    conf, hits = _conf_hits(logits, y)
    edges = equal_width_edges(n_bins)
    b = bin_index(conf, edges)
    out = {"edges": edges.tolist(), "count": [], "conf": [], "acc": []}
    for i in range(n_bins):
        m = b == i
        out["count"].append(int(m.sum()))
        out["conf"].append(conf[m].mean().item() if m.any() else None)
        out["acc"].append(hits[m].mean().item() if m.any() else None)
    return out
