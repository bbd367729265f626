"""Decoupled Mixup (DM) — Liu, Li, Wang, Tan, Wu, Li, "Harnessing Hard Mixed Samples with
Decoupled Regularizer", NeurIPS 2023 (arXiv 2203.10761). Official code: Westlake-AI/openmixup
(``openmixup/models/losses/cross_entropy_loss.py`` ``soft_mix_cross_entropy``,
``openmixup/models/heads/cls_mixup_head.py``).

DM is a loss term added to any mixer that reports ``(y_a, y_b, lam)``. With ``z`` the logits of
a mixed sample, ``p = softmax(z)`` and ``a != b`` its two classes (``lam`` = share of ``a``):

    MCE   = -lam log p_a - (1 - lam) log p_b                                   (Eq. 1)
    phi(z)_{i,j} = exp(z_i) / sum_{c != j} exp(z_c) = p_i / (1 - p_j)            (Eq. 4)
    DR    = -log phi_{a,b} - log phi_{b,a}                                     (Eq. 5)
    L_DM(CE) = MCE + eta * DR                                                  (Sec. 3.2)

``eta`` is one constant (0.1 for static mixers, App. B.3) and lambda does not enter DR. The
base method already returns the batch mean of MCE; this term adds ``(1/N) sum_rows eta * DR``
over the rows that really mix two classes (rows with ``y_a == y_b`` or ``lam`` within ``eps``
of 0 or 1 add nothing, as in the official code and the paper's assumption ``a != b``).
``-log phi_{a,b}`` is computed as ``logsumexp_{c != b}(z) - z_a`` with the partner logit masked
to ``-inf`` (no K-1 wide tensors, stable for any logits).

Official-code behaviours, all opt-in:

* ``mode`` (``both``/``less``/``more``), ``lam_scale`` (``none``/``pow``), ``lam_idx``,
  ``lam_thr``, ``thr``: openmixup's ``eta_weight`` — weights ``eta * r(lam)``, ``eta * r(1-lam)``
  (``both``) or on the minority / majority class only, with ``r(u) = min(u / lam_thr, 1) ** lam_idx``;
* ``official_order: true`` — the weight-ordering quirk: if the first mixed row has
  ``y_a > y_b`` the two weights are swapped for the whole batch;
* ``skip_lam_half: true`` — a batch with ``lam == 0.5`` exactly gets no DR.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.losses import mixed_cross_entropy
from common.methods import LossTerm, check_bool, check_choice, check_range, register_method


@dataclass
class DMParams:
    eta: float = 0.1  # trade-off weight of DR (paper: 0.1 static mixers, 1 dynamic mixers)
    mode: str = "both"  # openmixup eta_weight mode: both | less (minority class only) | more (majority only)
    lam_scale: str = "none"  # none: weight eta (paper); pow: eta * r(lam) (openmixup lam_scale_mode='pow')
    lam_idx: float = 1.0  # t in r(u) = min(u / lam_thr, 1) ** t (openmixup lam_idx; |.| is used)
    lam_thr: float = 1.0  # xi in r(u) (openmixup lam_thr; every released DM config uses 1)
    thr: float = 0.5  # less/more split point (openmixup eta_weight thr)
    eps: float = 1e-3  # rows with lam <= eps or lam >= 1 - eps get no DR (official 1e-3 rule)
    official_order: bool = False  # reproduce openmixup's weight swap when y_a > y_b in the first mixed row
    skip_lam_half: bool = False  # reproduce openmixup's skip of DR when lam == 0.5

    def __post_init__(self):
        w = "method term 'dm'"
        check_range(w, "eta", self.eta, 0.0)
        check_choice(w, "mode", self.mode, ("both", "less", "more"))
        check_choice(w, "lam_scale", self.lam_scale, ("none", "pow"))
        check_range(w, "lam_idx", self.lam_idx)
        check_range(w, "lam_thr", self.lam_thr, 0.0, 1.0, lo_open=True)
        check_range(w, "thr", self.thr, 0.0, 1.0)
        check_range(w, "eps", self.eps, 0.0, 0.5, hi_open=True)
        for key in ("official_order", "skip_lam_half"):
            check_bool(w, key, getattr(self, key))


# --------------------------------------------------------------------------- the regulariser
def neg_log_decoupled_softmax(logits: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """``-log phi(z)_{i,j} = -z_i + log sum_{c != j} exp(z_c)`` per row (paper Eq. 4)."""
    drop = F.one_hot(j, logits.shape[1]).bool()
    lse = torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1)
    return lse - logits.gather(1, i.view(-1, 1)).squeeze(1)


def dm_weights(lam: torch.Tensor, p: DMParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row weights ``(w_a, w_b)`` of ``-log phi_{a,b}`` and ``-log phi_{b,a}``.

    Paper form (``mode='both'``, ``lam_scale='none'``): ``(eta, eta)``. Otherwise openmixup's
    ``ClsMixupHead`` rule: base pair ``(lam, 1-lam)`` (``both``), minority only (``less``) or
    majority only (``more``) split at ``thr``; each non-zero entry ``u`` becomes
    ``eta * min(u / lam_thr, 1) ** |lam_idx|`` (``pow``) or ``eta`` (``none``)."""
    one = torch.ones_like(lam)
    u_a, u_b = lam, 1 - lam
    if p.mode == "less":  # only the minority component
        first = lam < p.thr
        u_a, u_b = torch.where(first, lam, 0 * one), torch.where(first, 0 * one, 1 - lam)
    elif p.mode == "more":  # only the majority component
        first = lam >= p.thr
        u_a, u_b = torch.where(first, lam, 0 * one), torch.where(first, 0 * one, 1 - lam)

    def scale(u):
        if p.lam_scale == "pow":
            w = p.eta * torch.clamp(u / p.lam_thr, max=1.0) ** abs(p.lam_idx)
        else:
            w = p.eta * one
        return torch.where(u > 0, w, 0 * one)

    if p.mode == "both" and p.lam_scale == "none":
        return p.eta * one, p.eta * one
    return scale(u_a), scale(u_b)


def decoupled_regularizer(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam, params: DMParams | None = None,
                          reduction: str = "mean") -> tuple[torch.Tensor, dict]:
    """``(1/N) sum_rows [w_a (-log phi_{a,b}) + w_b (-log phi_{b,a})]`` over the mixed rows.

    ``lam`` is a float or a per-row tensor. Returns ``(value, stats)``; ``stats`` holds the
    unweighted mean DR and the mean ``p_a + p_b`` over mixed rows, and the share of mixed rows.
    """
    p = params or DMParams()
    z = logits if logits.dtype == torch.float64 else logits.float()
    n = z.shape[0]
    y_a, y_b = y_a.to(z.device).long(), y_b.to(z.device).long()
    lam_t = lam.to(z.device, z.dtype).reshape(-1).expand(n) if isinstance(lam, torch.Tensor) \
        else torch.full((n,), float(lam), dtype=z.dtype, device=z.device)
    # rows that mix two different classes (Prop. 1 assumes a != b; official 1e-3 rule for lam)
    mixed = (y_a != y_b) & (lam_t > p.eps) & (lam_t < 1 - p.eps)
    if p.skip_lam_half:
        mixed = mixed & (lam_t != 0.5)
    nl_a = neg_log_decoupled_softmax(z, y_a, y_b)  # -log phi_{a,b}: class b dropped from the normaliser
    nl_b = neg_log_decoupled_softmax(z, y_b, y_a)  # -log phi_{b,a}
    w_a, w_b = dm_weights(lam_t, p)
    if p.official_order and bool(mixed.any()):
        first = int(mixed.nonzero()[0, 0])
        if bool(y_a[first] > y_b[first]):  # openmixup pairs eta_weight with ascending class order
            w_a, w_b = w_b, w_a
    per_row = torch.where(mixed, w_a * nl_a + w_b * nl_b, torch.zeros_like(nl_a))
    value = per_row.mean() if reduction == "mean" else per_row
    with torch.no_grad():
        k = mixed.sum().clamp(min=1)
        prob = z.detach().softmax(1)
        pair_mass = prob.gather(1, y_a.view(-1, 1)).squeeze(1) + prob.gather(1, y_b.view(-1, 1)).squeeze(1)
        stats = {"dm_dr": float(((nl_a + nl_b) * mixed).sum() / k),
                 "dm_pair_mass": float((pair_mass * mixed).sum() / k),
                 "dm_rows": float(mixed.double().mean())}
    return value, stats


def dm_loss(logits, y_a, y_b, lam, params: DMParams | None = None, smoothing: float = 0.0) -> torch.Tensor:
    """``L_DM(CE) = MCE + eta * DR`` (batch mean); label smoothing, if any, enters MCE only."""
    mce = mixed_cross_entropy(logits, y_a, y_b, lam, smoothing)
    dr, _ = decoupled_regularizer(logits, y_a, y_b, lam, params)
    return mce + dr


@register_method("dm")
class DecoupledMixup(LossTerm):
    """Loss term ``dm``: select as ``mixup+dm`` / ``cutmix+dm`` (any mixer reporting
    ``MixInfo(y_a, y_b, lam)``; CutMix's ``lam`` is the area-corrected one)."""

    Params = DMParams
    tasks = ("classification",)

    def __call__(self, model, batch, out, state):
        mix = out.mix
        if self.p.eta == 0:  # eta = 0 is plain MCE (the official code would assert here)
            return out.loss.new_zeros(()), {}
        dr, stats = decoupled_regularizer(out.logits, mix.y_a, mix.y_b, mix.lam, self.p)
        return dr, stats
