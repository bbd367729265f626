"""RankMixup -- Noh, Park, Lee, Ham, "RankMixup: Ranking-Based Mixup Training for Network
Calibration", ICCV 2023, pp. 1358-1368 (arXiv 2308.11990).
Official code: github.com/cvlab-yonsei/RankMixup (read at e5dc77f; ``calibrate/losses/rankmixup.py``).

A raw sample should be more confident than its mixup-augmented versions (MRL), and among several
augmented versions those keeping more of the raw sample should be more confident (M-NDCG).
Per step: ``z = f(x)`` (raw pass); ``Q`` mixed copies ``x~_q = lam_q x + (1 - lam_q) x[pi_q]``
(one ``lam_q ~ Beta(a, a)`` and one ``randperm`` per copy) in ONE second pass; then
``L = CE(z, y) + w * L_rank`` (no loss on the mixed labels).

* ``rankmixup_mrl`` (Q = 1): ``h_i = max(0, max_k z~_ik - max_k z_ik + m)`` on samples whose mixed
  label is not one-hot;
* ``rankmixup_mndcg`` (Q = 3): ``1 - min(DCG/IDCG, IDCG/DCG)`` with confidences as gains and
  ``max(lam_q, 1 - lam_q)`` as relevances, the raw sample ranked first.

Official-code choices are the defaults; the alternatives (``space``, ``mask``, ``relevance``,
``ratio``) and the two deliberate deviations are listed in the README.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from common.methods import Method, MixInfo, StepOutput, check_choice, check_range, register_method
from common.mixing import mix_inputs, pair_indices, sample_lambda

MRL_SPACES = ("logit", "prob")
MRL_MASKS = ("official_broadcast", "per_sample")
RELEVANCES = ("max_label", "anchor_label")
RATIOS = ("symmetric", "dcg_over_idcg")


# --------------------------------------------------------------------------- building blocks
def mixed_copies(x: torch.Tensor, q: int, alpha: float, generator: torch.Generator):
    """Step (2): ``Q`` mixed copies of the batch, each with its own scalar ``lam_q ~ Beta(a, a)``
    and its own permutation (self-pairs allowed). Returns ``(x_mix (Q*B, ...), lam (Q,),
    perm (Q, B))``; copy ``q`` occupies rows ``q*B .. (q+1)*B - 1``."""
    b = x.shape[0]
    lams, perms, xs = [], [], []
    for _ in range(q):
        lam = sample_lambda(alpha, generator)
        perm = pair_indices(b, generator, "permute")
        lams.append(lam)
        perms.append(perm)
        xs.append(mix_inputs(x, perm, lam))
    return torch.cat(xs, 0), torch.tensor(lams, dtype=torch.float64), torch.stack(perms)


def not_one_hot(y: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    """``keep_i``: the mixed label ``lam onehot(y_i) + (1 - lam) onehot(y_perm(i))`` has no entry
    equal to 1, i.e. the partner has another class and ``0 < lam < 1``."""
    y = y.view(-1)
    differ = y != y[perm.to(y.device)]
    return differ & (0.0 < lam < 1.0)


def relevance(y: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, kind: str = "max_label") -> torch.Tensor:
    """Relevance ``r_qi`` of each mixed copy, shape (Q, B).

    ``max_label`` (official): the largest entry of the soft label, ``max(lam_q, 1 - lam_q)`` for a
    cross-class partner and exactly 1 for a same-class partner. ``anchor_label``: the soft label's
    weight on the raw sample's class, ``lam_q`` (cross-class) or 1 (same class)."""
    y = y.view(-1)
    same = y.view(1, -1) == y[perm.to(y.device)]  # (Q, B)
    lam = lam.to(y.device, torch.float64).view(-1, 1)
    if kind == "max_label":
        base = torch.maximum(lam, 1.0 - lam)
    elif kind == "anchor_label":
        base = lam
    else:
        raise ValueError(f"relevance must be one of {RELEVANCES}, got {kind!r}")
    return torch.where(same, torch.ones_like(base.expand_as(same)), base.expand_as(same))


def mrl(raw_logits: torch.Tensor, mix_logits: torch.Tensor, keep: torch.Tensor, margin: float,
        space: str = "logit", mask: str = "official_broadcast") -> torch.Tensor:
    """Mixup ranking loss (Q = 1). ``space="logit"``: scores are max logits (official);
    ``"prob"``: max softmax probabilities. ``h_i = max(0, s~_i - s_i + m)``."""
    if space == "logit":
        s_raw, s_mix = raw_logits.float().max(1).values, mix_logits.float().max(1).values
    elif space == "prob":
        s_raw = F.softmax(raw_logits.float(), 1).max(1).values
        s_mix = F.softmax(mix_logits.float(), 1).max(1).values
    else:
        raise ValueError(f"space must be one of {MRL_SPACES}, got {space!r}")
    h = F.relu(s_mix - s_raw + margin)
    k = keep.to(h.device, h.dtype)
    if mask == "official_broadcast":
        return h.mean() * k.mean()  # (B,) mask x (B, 1) hinges broadcast to B x B, then .mean()
    if mask == "per_sample":
        return (h * k).sum() / h.numel()
    raise ValueError(f"mask must be one of {MRL_MASKS}, got {mask!r}")


def ndcg_discounts(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``1 / log2(rank + 1)`` for ranks 1..n."""
    return 1.0 / torch.log2(torch.arange(2, n + 2, dtype=dtype, device=device))


def mndcg(raw_conf: torch.Tensor, mix_conf: torch.Tensor, rel: torch.Tensor, ratio: str = "symmetric",
          reduction: str = "mean") -> torch.Tensor:
    """M-NDCG loss. ``raw_conf`` (B,), ``mix_conf`` (Q, B) confidences; ``rel`` (Q, B)
    relevances of the copies (the raw sample has relevance 1 and rank 1)."""
    q, b = mix_conf.shape
    order = torch.argsort(rel.to(mix_conf.device), dim=0, descending=True, stable=True)
    c = torch.cat([raw_conf.view(1, b), mix_conf.gather(0, order)], 0)  # confidences in relevance order
    r = torch.cat([torch.ones(1, b, dtype=rel.dtype, device=rel.device), rel.gather(0, order.to(rel.device))], 0)
    r = r.to(c.device, c.dtype)
    disc = ndcg_discounts(q + 1, c.dtype, c.device).view(-1, 1)
    dcg = (c * disc).sum(0)
    idcg = (r * disc).sum(0)
    if ratio == "symmetric":
        score = torch.where(idcg > dcg, dcg / idcg, idcg / dcg)
    elif ratio == "dcg_over_idcg":
        score = dcg / idcg
    else:
        raise ValueError(f"ratio must be one of {RATIOS}, got {ratio!r}")
    loss = 1.0 - score
    return loss.mean() if reduction == "mean" else loss


# --------------------------------------------------------------------------- methods
class _RankMixup(Method):
    """Shared step: raw pass, CE on raw, Q mixed copies in one second pass, ranking term."""

    tasks = ("classification",)
    pairs_within_batch = True
    num_copies: int = 1

    def copies(self) -> int:
        return self.num_copies

    def rank_loss(self, logits, mix_logits, y, lam, perm) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def step(self, model, batch, state):
        x, y = batch.x, batch.y
        b = x.shape[0]
        logits = model(x)  # (1) raw forward
        ce = self.plain_loss(logits, y)
        q = self.copies()
        x_mix, lam, perm = mixed_copies(x, q, self.p.alpha, state.generator)  # (2)
        mix_logits = model(x_mix).view(q, b, -1)  # (3) one pass over the Q*B mixed images
        rank, logs = self.rank_loss(logits, mix_logits, y, lam, perm)
        loss = ce + self.p.weight * rank  # (4)
        with torch.no_grad():
            conf_raw = F.softmax(logits.float(), 1).max(1).values.mean()
            conf_mix = F.softmax(mix_logits.float(), 2).max(2).values.mean()
        logs.update({"ce": float(ce.detach()), "rank": float(rank.detach()), "lam": float(lam.mean()),
                     "conf_raw": float(conf_raw), "conf_mix": float(conf_mix)})
        return StepOutput(loss, logits, MixInfo(y, y, 1.0, None), logs)


@dataclass
class MRLParams:
    alpha: float = 2.0  # a of Beta(a, a) (official model.mixup_alpha; 2.0 CIFAR, 1.0 Tiny-ImageNet)
    margin: float = 2.0  # m (2.0 CIFAR, 1.0 Tiny-ImageNet; on logits)
    weight: float = 0.1  # w, the ranking-loss weight (official loss.alpha)
    space: str = "logit"  # "logit" (official code) | "prob" (paper as summarised; needs margin < 1)
    mask: str = "official_broadcast"  # "official_broadcast" (code's reduction) | "per_sample"

    def __post_init__(self):
        check_range("method", "alpha", self.alpha, 0.0, None, lo_open=True)
        check_range("method", "margin", self.margin, 0.0)
        check_range("method", "weight", self.weight, 0.0)
        check_choice("method", "space", self.space, MRL_SPACES)
        check_choice("method", "mask", self.mask, MRL_MASKS)
        if self.space == "prob":
            check_range("method", "margin", self.margin, 0.0, 1.0, hi_open=True)


@register_method("rankmixup_mrl")
class RankMixupMRL(_RankMixup):
    """RankMixup with the mixup ranking loss (one mixed copy per raw sample)."""

    Params = MRLParams
    num_copies = 1

    def rank_loss(self, logits, mix_logits, y, lam, perm):
        keep = not_one_hot(y, perm[0], float(lam[0]))
        loss = mrl(logits, mix_logits[0], keep, self.p.margin, self.p.space, self.p.mask)
        return loss, {"keep": float(keep.float().mean())}


@dataclass
class MNDCGParams:
    alpha: float = 2.0  # a of Beta(a, a) (2.0 CIFAR, 1.0 Tiny-ImageNet)
    weight: float = 0.1  # w
    num_mixup: int = 3  # Q mixed copies per raw sample (official num_mixup)
    relevance: str = "max_label"  # "max_label" (code: max(lam, 1-lam)) | "anchor_label" (lam)
    ratio: str = "symmetric"  # "symmetric" (code: min(DCG/IDCG, IDCG/DCG)) | "dcg_over_idcg"

    def __post_init__(self):
        check_range("method", "alpha", self.alpha, 0.0, None, lo_open=True)
        check_range("method", "weight", self.weight, 0.0)
        if isinstance(self.num_mixup, bool) or not isinstance(self.num_mixup, int):
            raise ValueError(f"num_mixup must be an integer, got {self.num_mixup!r}")
        check_range("method", "num_mixup", self.num_mixup, 1)
        check_choice("method", "relevance", self.relevance, RELEVANCES)
        check_choice("method", "ratio", self.ratio, RATIOS)


@register_method("rankmixup_mndcg")
class RankMixupMNDCG(_RankMixup):
    """RankMixup with M-NDCG over Q mixed copies per raw sample."""

    Params = MNDCGParams

    def copies(self) -> int:
        return self.p.num_mixup

    def rank_loss(self, logits, mix_logits, y, lam, perm):
        c0 = F.softmax(logits.float(), 1).max(1).values
        cq = F.softmax(mix_logits.float(), 2).max(2).values  # (Q, B)
        rel = relevance(y, perm, lam, self.p.relevance).to(cq.device, cq.dtype)
        loss = mndcg(c0, cq, rel, self.p.ratio)
        return loss, {"relevance": float(rel.mean())}
