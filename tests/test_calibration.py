"""common/calibration.py: hand-computed cases,
agreement with torchmetrics where it computes the same quantity, an independent re-implementation
of the official AdaECE, and temperature scaling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from common import calibration as cal

D = torch.float64
torch.set_num_threads(1)  # tiny tensors: intra-op threads only add overhead on a loaded machine


def logits_for(conf, hits, k=4):
    """Logits whose softmax has max probability ``conf_i`` (rest spread evenly) and whose label
    is the argmax iff ``hits_i``."""
    conf = torch.as_tensor(conf, dtype=D)
    n = len(conf)
    p = ((1 - conf) / (k - 1)).view(-1, 1).repeat(1, k)
    p[:, 0] = conf
    y = torch.where(torch.as_tensor(hits, dtype=torch.bool), torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long))
    return p.log(), y


# --------------------------------------------------------------------------- spec 6.3
SET_A_CONF = [0.95] * 4 + [0.62] * 5 + [0.35]
SET_A_HITS = [1, 1, 1, 0, 1, 1, 0, 0, 0, 1]


def test_set_a_ece_and_official_adaece():
    conf, hits = torch.tensor(SET_A_CONF, dtype=D), torch.tensor(SET_A_HITS, dtype=D)
    assert cal.ece_from_confidence(conf, hits) == pytest.approx(0.255, abs=1e-12)  # .4*.2 + .5*.22 + .1*.65
    assert cal.adaece_from_confidence(conf, hits) == pytest.approx(0.19, abs=1e-12)  # the 0.35 minimum is dropped
    z, y = logits_for(SET_A_CONF, SET_A_HITS)
    assert cal.ece(z, y) == pytest.approx(0.255, abs=1e-12)
    assert cal.adaptive_ece(z, y) == pytest.approx(0.19, abs=1e-12)


def test_small_sets():
    ece = cal.ece_from_confidence
    # 5 at 0.8 with 4 correct + 5 at 0.6 with 3 correct: calibrated
    assert ece(torch.tensor([0.8] * 5 + [0.6] * 5, dtype=D), torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 0, 0.])) == pytest.approx(0, abs=1e-12)
    assert ece(torch.ones(7, dtype=D), torch.ones(7, dtype=D)) == 0.0
    assert ece(torch.full((4,), 0.9, dtype=D), torch.tensor([1, 1, 0, 0.])) == pytest.approx(0.4, abs=1e-12)


CW_P = torch.tensor([[.70, .25, .05], [.10, .85, .05], [.30, .25, .45], [.55, .35, .10], [.15, .10, .75], [.50, .45, .05]], dtype=D)
CW_Y = torch.tensor([0, 1, 2, 1, 2, 0])


def test_classwise_example():
    edges = cal.equal_width_edges(15)
    per_class = [cal.binned_calibration_error(CW_P[:, k], (CW_Y == k).double(), edges) for k in range(3)]
    assert per_class == pytest.approx([0.316667, 0.308333, 0.175000], abs=1e-6)
    z = CW_P.log()
    assert cal.classwise_ece(z, CW_Y) == pytest.approx(0.266667, abs=1e-6)
    assert (z.argmax(1) == CW_Y).double().mean().item() == pytest.approx(5 / 6)
    assert cal.ece(z, CW_Y) == pytest.approx(0.383333, abs=1e-6)
    assert cal.adaptive_ece(z, CW_Y) == pytest.approx(0.291667, abs=1e-6)


def test_bin_membership_is_lo_open_hi_closed():
    e = cal.equal_width_edges(15)
    b = cal.bin_index(torch.stack([e[0], e[2], e[2] + 1e-9, e[-1], torch.tensor(1.5, dtype=D)]), e)
    assert b.tolist() == [-1, 1, 2, 14, -1]  # 0 in no bin; k/15 in the lower bin; 1.0 in the last


# --------------------------------------------------------------------------- vs torchmetrics
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 300), k=st.integers(2, 12), scale=st.floats(0.1, 8.0))
def test_ece_matches_torchmetrics(seed, n, k, scale):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=D) * scale
    y = torch.randint(0, k, (n,), generator=g)
    ref = multiclass_calibration_error(F.softmax(z, 1).float(), y, num_classes=k, n_bins=15, norm="l1")
    # same quantity; torchmetrics works in float32 and uses [lo, hi) bins (no confidence sits on an edge here)
    assert cal.ece(z, y) == pytest.approx(float(ref), abs=2e-6)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 200), k=st.integers(2, 8))
def test_classwise_ece_is_mean_of_torchmetrics_binary_ece(seed, n, k):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=D) * 2
    y = torch.randint(0, k, (n,), generator=g)
    p = F.softmax(z, 1)
    ref = np.mean([float(binary_calibration_error(p[:, c].float(), (y == c).long(), n_bins=15, norm="l1")) for c in range(k)])
    assert cal.classwise_ece(z, y) == pytest.approx(ref, abs=2e-6)


def test_reliability_bins_reproduce_ece():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(500, 10, generator=g) * 3
    y = torch.randint(0, 10, (500,), generator=g)
    r = cal.reliability_bins(z, y)
    n = sum(r["count"])
    assert n == 500 and len(r["edges"]) == 16
    ece = sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["acc"], r["conf"]) if c)
    assert ece == pytest.approx(cal.ece(z, y), abs=1e-12)
    assert all((c == 0) == (a is None) for c, a in zip(r["count"], r["acc"]))


# --------------------------------------------------------------------------- AdaECE
def official_adaece_numpy(conf: np.ndarray, hits: np.ndarray, n_bins: int = 15) -> float:
    """Independent transcription of the official algorithm: np.histogram on interpolated edges,
    then (lo, hi] membership with the fraction of ALL samples as the weight."""
    n = len(conf)
    edges = np.interp(np.linspace(0, n, n_bins + 1), np.arange(n), np.sort(conf))
    _, edges = np.histogram(conf, edges)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.mean() > 0:
            total += abs(conf[m].mean() - hits[m].mean()) * m.mean()
    return total


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 400), ties=st.booleans())
def test_adaece_matches_official_algorithm(seed, n, ties):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.1, 1.0, n)
    if ties:
        conf = np.round(conf, 1)  # many repeated confidences
    hits = (rng.uniform(size=n) < conf).astype(float)
    assert cal.adaece_from_confidence(torch.tensor(conf), torch.tensor(hits)) == pytest.approx(
        official_adaece_numpy(conf, hits), abs=1e-12)


def test_adaece_all_counts_every_sample():
    conf, hits = torch.tensor(SET_A_CONF, dtype=D), torch.tensor(SET_A_HITS, dtype=D)
    z, y = logits_for(SET_A_CONF, SET_A_HITS)
    # one bin: |mean acc - mean conf| over all 10 samples
    assert cal.adaptive_ece_all(z, y, n_bins=1) == pytest.approx(abs(hits.mean() - conf.mean()).item(), abs=1e-12)
    # 10 bins of one sample each: mean |hit - conf|
    assert cal.adaptive_ece_all(z, y, n_bins=10) == pytest.approx((hits - conf).abs().mean().item(), abs=1e-12)


# --------------------------------------------------------------------------- NLL and temperature scaling
def overconfident_set(n, k=10, sharpen=4.0, seed=0):
    """Labels drawn from softmax(z): z is calibrated; sharpen * z is over-confident (true T = sharpen)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=D) * 1.5
    y = torch.multinomial(F.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * sharpen, y


def test_nll_is_cross_entropy():
    z, y = overconfident_set(100)
    assert cal.nll(z, y) == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-12)


def test_temperature_scaling_lowers_nll_on_miscalibrated_set():
    zv, yv = overconfident_set(3000, seed=1)
    zt, yt = overconfident_set(3000, seed=2)
    t = cal.fit_temperature(zv, yv)
    assert 3.3 < t < 4.7  # recovers the sharpening factor 4
    assert cal.nll(zt / t, yt) < cal.nll(zt, yt) - 0.3
    assert cal.ece(zt / t, yt) < cal.ece(zt, yt)
    # exact minimiser of the validation NLL: better than any point of a fine grid
    grid = np.exp(np.linspace(math.log(0.5), math.log(20), 400))
    assert cal.nll(zv / t, yv) <= min(cal.nll(zv / g, yv) for g in grid) + 1e-12


def test_temperature_is_scale_equivariant_and_handles_degenerate_sets():
    z, y = overconfident_set(500, seed=3)
    assert cal.fit_temperature(2.0 * z, y) == pytest.approx(2.0 * cal.fit_temperature(z, y), rel=1e-9)
    assert cal.fit_temperature(torch.zeros(20, 5), torch.zeros(20, dtype=torch.long)) == 1.0
    sep = torch.eye(5, dtype=D).repeat(4, 1)  # every sample correct: NLL decreases as T -> 0
    assert cal.fit_temperature(sep, torch.arange(5).repeat(4)) == 0.01
    assert cal.fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0


def test_ece_grid_temperature_is_the_grid_argmin():
    z, y = overconfident_set(400, sharpen=2.5, seed=4)
    t = cal.fit_temperature(z, y, objective="ece_grid")
    assert t in cal.TS_GRID and len(cal.TS_GRID) == 100 and cal.TS_GRID[0] == 0.1 and cal.TS_GRID[-1] == 10.0
    assert cal.ece(z / t, y) == min(cal.ece(z / g, y) for g in cal.TS_GRID)
    with pytest.raises(ValueError, match="objective"):
        cal.fit_temperature(z, y, objective="brier")


def test_calibration_metrics_keys():
    z, y = overconfident_set(50)
    m = cal.calibration_metrics(z, y, prefix="ts_")
    assert set(m) == {"ts_ece", "ts_adaece", "ts_cw_ece", "ts_nll"}
    assert all(0 <= m[k] <= 1 for k in ("ts_ece", "ts_adaece", "ts_cw_ece"))
