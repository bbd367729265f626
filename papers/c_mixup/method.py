"""C-Mixup — Yao, Wang, Zhang, Zou, Finn, "C-Mixup: Improving Generalization in Regression",
NeurIPS 2022 (arXiv 2210.05775). Official code: github.com/huaxiuyao/C-Mixup (read at commit
``0b88fb3``; ``src/algorithm.py``).

Partners are sampled over the whole training set by label distance, for anchor i:

    P(j | i) = exp(-||y_i - y_j||^2 / (2 sigma^2)) / sum_l (same)       j = i is kept

Per step one ``lam ~ Beta(alpha, alpha)``; for each anchor ``j ~ P(. | i)`` (with replacement);
inputs (``layer = 0``) or one hidden layer (``model.forward_mix``) and labels are mixed with
``lam``; loss = MSE. ``P`` is never stored: the rows of the current anchors are computed in log
space in chunks and sampled by inverse CDF with ``state.generator`` (identical for any chunk size).

Baselines as the official code runs them: ``mixup_global`` (uniform partners from the whole
training set, input mixing; the paper's "mixup" column) and ``manifold_mixup_global`` (the same
partners at the fixed hidden layer; "ManiMix"). papers/mixup's ``mixup`` / ``manifold_mixup``
pair within the batch instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.methods import ConfigError, Method, MixInfo, StepOutput, check_bool, check_range, register_method
from common.mixing import sample_lambda


# --------------------------------------------------------------------------- the kernel
def _as_matrix(y: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(y).detach().cpu().double()
    return y.view(-1, 1) if y.dim() == 1 else y.reshape(y.shape[0], -1)


def _chunk_rows(n: int, d: int, chunk_elems: int) -> int:
    return max(1, int(chunk_elems) // max(1, n * d))


def pair_log_probabilities(y: torch.Tensor, bandwidth: float, rows=None, exclude_self: bool = False,
                           chunk_elems: int = 1 << 24) -> torch.Tensor:
    """``log P(j | i)`` for the anchors ``rows`` (default: all) against every training label.

    ``logit_ij = -||y_i - y_j||^2 / (2 sigma^2)``, then a row-wise log-softmax (the row maximum,
    the diagonal 0 when self-pairs are kept, is subtracted first, so tiny sigma gives the identity
    rather than NaN). ``exclude_self`` sets ``logit_ii = -inf`` (an option; the official code keeps
    self-pairs). At most ``chunk_elems`` label differences (rows x N x d) exist at a time.
    Returns float64 of shape (len(rows), N)."""
    ys = _as_matrix(y)
    n, d = ys.shape
    rows = torch.arange(n) if rows is None else torch.as_tensor(rows, dtype=torch.long).view(-1).cpu()
    if exclude_self and n < 2:
        raise ValueError("exclude_self needs at least 2 training samples")
    out = torch.empty(len(rows), n, dtype=torch.float64)
    step = _chunk_rows(n, d, chunk_elems)
    inv = 1.0 / (2.0 * float(bandwidth) ** 2)
    for s in range(0, len(rows), step):
        r = rows[s:s + step]
        d2 = (ys[r].unsqueeze(1) - ys.unsqueeze(0)).pow(2).sum(-1)  # exact differences, (r, N)
        logits = -d2 * inv
        if exclude_self:
            logits[torch.arange(len(r)), r] = float("-inf")
        out[s:s + step] = torch.log_softmax(logits, dim=1)
    return out


def pair_probabilities(y: torch.Tensor, bandwidth: float, rows=None, exclude_self: bool = False,
                       chunk_elems: int = 1 << 24) -> torch.Tensor:
    """``P(j | i)`` (each row sums to 1); see :func:`pair_log_probabilities`."""
    return pair_log_probabilities(y, bandwidth, rows, exclude_self, chunk_elems).exp()


def sample_from_rows(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (B, N) by inverse CDF: ``u ~ U[0, 1)`` per row, first
    ``j`` with ``cdf_j > u * cdf_N``. Zero-probability entries are never returned."""
    cdf = probs.cumsum(1)
    u = torch.rand(probs.shape[0], generator=generator, dtype=torch.float64)
    j = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return j.clamp_max(probs.shape[1] - 1)


class KernelPartnerSampler:
    """Partners ``j ~ P(. | i)`` over the whole training set (C-Mixup), rows built on demand."""

    def __init__(self, y: torch.Tensor, bandwidth: float, exclude_self: bool = False, chunk_elems: int = 1 << 24):
        self.y = _as_matrix(y)
        self.bandwidth, self.exclude_self, self.chunk_elems = float(bandwidth), bool(exclude_self), int(chunk_elems)

    def __len__(self) -> int:
        return self.y.shape[0]

    def probs(self, anchors) -> torch.Tensor:
        return pair_probabilities(self.y, self.bandwidth, anchors, self.exclude_self, self.chunk_elems)

    def sample(self, anchors, generator: torch.Generator) -> torch.Tensor:
        return sample_from_rows(self.probs(anchors), generator)

    def mean_self_probability(self, max_pairs: float = 2e8) -> float | None:
        """Mean of the diagonal ``P(i | i)`` (the official script's "self rate"); None if
        ``N^2 d`` exceeds ``max_pairs`` (too slow to compute just for a log line)."""
        n, d = self.y.shape
        if self.exclude_self:
            return 0.0
        if n * n * d > max_pairs:
            return None
        total, step = 0.0, max(1, _chunk_rows(n, d, self.chunk_elems))
        for s in range(0, n, step):
            r = torch.arange(s, min(n, s + step))
            lp = pair_log_probabilities(self.y, self.bandwidth, r, False, self.chunk_elems)
            total += lp[torch.arange(len(r)), r].exp().sum().item()
        return total / n


class UniformPartnerSampler:
    """Partners uniform over the whole training set, with replacement (official ``random``)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def sample(self, anchors, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.n, (len(anchors),), generator=generator)


# --------------------------------------------------------------------------- methods
class GlobalPartnerMix(Method):
    """Shared step of C-Mixup and its official baselines: anchors = the batch, partners drawn
    by ``self.sampler`` from the whole training set, one lam per batch, mixing at ``layer``."""

    tasks = ("regression",)

    def make_sampler(self):
        raise NotImplementedError

    def setup(self, model):
        if self.p.layer > 0 and not hasattr(getattr(model, "module", model), "forward_mix"):
            raise ConfigError(f"method {self.name!r}: layer={self.p.layer} (hidden-layer mixing) needs a model with "
                              f"forward_mix(x_a, x_b, lam, layer); {type(model).__name__} has none. Use layer: 0.")
        self.sampler = self.make_sampler()
        self._self_pairs = self._draws = 0

    def step(self, model, batch, state):
        g = state.generator
        lam = sample_lambda(self.p.alpha, g)  # one lam ~ Beta(alpha, alpha) per batch
        anchors = batch.index.cpu()
        partners = self.sampler.sample(anchors, g)  # j_b, drawn per anchor from the whole training set
        x_b = state.ctx.fetch(partners, g)
        y_a = batch.y
        y_b = state.ctx.train.y[partners].to(y_a.device)
        if self.p.layer == 0:
            out = model(lam * batch.x + (1 - lam) * x_b)  # x~ = lam x_i + (1 - lam) x_j
        else:
            out = getattr(model, "module", model).forward_mix(batch.x, x_b, lam, self.p.layer)  # h~ at `layer`
        loss = self.mixed_loss(out, y_a, y_b, lam)  # MSE(f(x~), lam y_i + (1 - lam) y_j)
        same = int((partners == anchors).sum())
        self._self_pairs += same
        self._draws += len(anchors)
        return StepOutput(loss, out, MixInfo(y_a, y_b, lam, partners), {"lam": lam})

    def epoch_end(self, state):
        out = {"self_pair_rate": self._self_pairs / max(1, self._draws)}
        self._self_pairs = self._draws = 0
        return out


def _check_common(p, default_layer_name="layer"):
    check_range("method", "alpha", p.alpha, 0.0, None, lo_open=True)
    if isinstance(p.layer, bool) or not isinstance(p.layer, int):
        raise ValueError(f"{default_layer_name} must be an integer (0 = inputs), got {p.layer!r}")
    check_range("method", "layer", p.layer, 0)


@dataclass
class CMixupParams:
    alpha: float = 2.0  # Beta(alpha, alpha) for the per-batch lam
    bandwidth: float = 1.0  # sigma of the Gaussian label kernel, in the label's own units
    layer: int = 0  # 0 = mix inputs; k >= 1 = mix the hidden state after block k (model.forward_mix)
    exclude_self: bool = False  # official: self-pairs kept (j = i allowed)
    chunk_elems: int = 1 << 24  # max label differences (rows x N x d) held at once

    def __post_init__(self):
        _check_common(self)
        check_range("method", "bandwidth", self.bandwidth, 0.0, None, lo_open=True)
        check_bool("method", "exclude_self", self.exclude_self)
        if isinstance(self.chunk_elems, bool) or not isinstance(self.chunk_elems, int):
            raise ValueError(f"chunk_elems must be an integer, got {self.chunk_elems!r}")
        check_range("method", "chunk_elems", self.chunk_elems, 1)


@register_method("c_mixup")
class CMixup(GlobalPartnerMix):
    """C-Mixup: partners drawn with P(j|i) proportional to a Gaussian kernel on label distance."""

    Params = CMixupParams

    def make_sampler(self):
        if self.p.exclude_self and len(self.ctx.train) < 2:
            raise ConfigError("method 'c_mixup': exclude_self needs at least 2 training samples")
        return KernelPartnerSampler(self.ctx.train.y, self.p.bandwidth, self.p.exclude_self, self.p.chunk_elems)

    def setup(self, model):
        super().setup(model)
        self._mean_self_p = self.sampler.mean_self_probability()

    def epoch_end(self, state):
        out = super().epoch_end(state)
        if self._mean_self_p is not None:
            out["expected_self_rate"] = self._mean_self_p
        return out


@dataclass
class GlobalMixupParams:
    alpha: float = 2.0
    layer: int = 0  # 0 = input mixing (the paper's "mixup")

    def __post_init__(self):
        _check_common(self)


@dataclass
class GlobalManifoldParams:
    alpha: float = 2.0
    layer: int = 1  # the official fixed layer: after the MLP's first block / LSTNet's convolution

    def __post_init__(self):
        _check_common(self)
        check_range("method", "layer", self.layer, 1)


@register_method("mixup_global")
class MixupGlobal(GlobalPartnerMix):
    """The paper's mixup baseline: uniform partners from the whole training set, input mixing."""

    Params = GlobalMixupParams

    def make_sampler(self):
        return UniformPartnerSampler(len(self.ctx.train))


@register_method("manifold_mixup_global")
class ManifoldMixupGlobal(GlobalPartnerMix):
    """The paper's ManiMix baseline: uniform partners from the whole set, mixed at a fixed layer."""

    Params = GlobalManifoldParams

    def make_sampler(self):
        return UniformPartnerSampler(len(self.ctx.train))
