"""What a verdict could detect, computed for the test the verdict actually runs.

A claim is tested either by a **paired t test** over ``n`` pairs (the design gives every seed of the
method a partner of the baseline, see :func:`common.aggregate.stats.claim_design`) or by **Welch's t
test** over two independent arms. Both are two-sided at the verdict's level ``alpha`` (the
family-adjusted level, :mod:`common.aggregate.stats`).

Power of the paired test (exact): the mean of ``n`` differences with standard deviation ``s_d`` gives
``T ~ noncentral t(n - 1, d / (s_d / sqrt(n)))``, and the test rejects when ``|T| > t_{1-alpha/2, n-1}``.

Power of Welch's test with per-seed SDs ``s_a``, ``s_b`` (taken as the truth) is **simulated**: its
degrees of freedom are estimated from the sample variances, and with a handful of seeds that estimate is
often far below the textbook value, so the noncentral-t formula overstates the power (at 3 seeds per arm
it gives 80% where the real test has about 70%). The simulation draws the sufficient statistics of normal
samples (each arm's mean and its ``chi2``-distributed variance) ``SIMS`` times from a fixed seed, so it is
exact in distribution and reproducible; the same draws serve every difference ``d`` (common random
numbers), which makes the power a smooth function of ``d`` for the bisection.

The **detectable effect** (:func:`mde`) is the smallest ``d`` with power 80%. **Seeds needed**
(:func:`seeds_needed`) is the smallest number of seeds per arm (pairs) at which the paper's difference
reaches 80% power; it is only as good as the per-seed SD estimated from the seeds at hand, so it is
shown as an order of magnitude. Beyond ``SIM_UP_TO`` seeds Welch's estimated degrees of freedom are
large and stable, and the noncentral-t formula (with the Welch-Satterthwaite degrees of freedom of the
true variances) replaces the simulation.
"""
from __future__ import annotations

import math

import numpy as np

ALPHA = 0.05  # the verdict's level before adjustment for the family of claims
POWER = 0.8
SIMS = 200_000
SIM_SEED = 20231  # fixed: the simulated power is the same on every run
SIM_UP_TO = 30  # seeds per arm up to which Welch's power is simulated (analytic beyond)
CAP = 1000  # seeds per arm beyond which seeds_needed gives up


def _nct_power(ncp: float, df: float, alpha: float) -> float:
    from scipy import stats

    t = stats.t.ppf(1 - alpha / 2, df)
    # rejections on the far side: negligible for a large ncp, where scipy's nct.cdf returns NaN
    far = float(np.nan_to_num(stats.nct.cdf(-t, df, ncp), nan=0.0))
    return float(stats.nct.sf(t, df, ncp)) + far


def paired_power(d: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t test over ``n`` pairs whose differences have SD ``sd``."""
    return _nct_power(abs(d) / (sd / math.sqrt(n)), n - 1, alpha)


def welch_df(va: float, vb: float, na: int, nb: int) -> float:
    """Welch-Satterthwaite degrees of freedom for per-seed variances ``va``, ``vb``."""
    a, b = va / na, vb / nb
    return (a + b) ** 2 / (a ** 2 / (na - 1) + b ** 2 / (nb - 1))


def welch_power_analytic(d: float, sa: float, sb: float, na: int, nb: int, alpha: float = ALPHA) -> float:
    """Large-sample power of Welch's test: noncentral t with the Satterthwaite degrees of freedom of the true
    variances (accurate once both arms have tens of seeds; optimistic for a handful)."""
    se = math.sqrt(sa ** 2 / na + sb ** 2 / nb)
    return _nct_power(abs(d) / se, welch_df(sa ** 2, sb ** 2, na, nb), alpha)


class WelchSimulation:
    """Welch's test on ``SIMS`` simulated pairs of normal samples (arm SDs ``sa``, ``sb``; ``na``, ``nb``
    seeds): ``power(d)`` is the share of draws the test rejects when the true difference is ``d``."""

    def __init__(self, sa: float, sb: float, na: int, nb: int, alpha: float = ALPHA, sims: int = SIMS,
                 seed: int = SIM_SEED):
        from scipy import stats

        rng = np.random.default_rng(seed)
        za, zb = rng.standard_normal(sims), rng.standard_normal(sims)
        va = sa ** 2 * rng.chisquare(na - 1, sims) / (na - 1)  # sample variances of normal arms
        vb = sb ** 2 * rng.chisquare(nb - 1, sims) / (nb - 1)
        self.noise = sa * za / math.sqrt(na) - sb * zb / math.sqrt(nb)  # mean difference minus d
        a, b = va / na, vb / nb
        df = (a + b) ** 2 / (a ** 2 / (na - 1) + b ** 2 / (nb - 1))
        # the critical t of each draw's df, interpolated on a fine grid (df lies in [min(n)-1, na+nb-2]; the
        # quantile is smooth in df, so 4001 points give it to better than 1e-6 at a fraction of the cost)
        grid = np.linspace(df.min(), df.max(), 4001)
        crit = np.interp(df, grid, stats.t.ppf(1 - alpha / 2, grid))
        self.reject_above = crit * np.sqrt(a + b)  # |mean difference| that rejects

    def power(self, d: float) -> float:
        return float(np.mean(np.abs(d + self.noise) > self.reject_above))


def welch_power(d: float, sa: float, sb: float, na: int, nb: int, alpha: float = ALPHA) -> float:
    """Power of Welch's test: simulated up to ``SIM_UP_TO`` seeds per arm, analytic beyond."""
    if max(na, nb) <= SIM_UP_TO:
        return WelchSimulation(sa, sb, na, nb, alpha).power(d)
    return welch_power_analytic(d, sa, sb, na, nb, alpha)


def _bisect(power, scale: float, target: float) -> float:
    """Smallest ``d`` with ``power(d) >= target`` (``power`` increasing in ``d``; ``scale`` a first guess)."""
    lo, hi = 0.0, scale
    while power(hi) < target:
        lo, hi = hi, 2 * hi
    for _ in range(40):  # 2^-40 of the bracket
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power(mid) < target else (lo, mid)
    return hi


def mde(test: str, sds: tuple[float, ...], ns: tuple[int, ...], alpha: float = ALPHA, target: float = POWER) -> float:
    """Smallest difference the claim's test detects with probability ``target`` at level ``alpha``.

    ``test`` "paired": ``sds = (sd of the differences,)``, ``ns = (pairs,)``; "welch": ``sds = (s_a, s_b)``,
    ``ns = (n_a, n_b)``. NaN with fewer than 2 seeds (pairs), 0 when nothing varies."""
    if min(ns) < 2 or any(s is None or math.isnan(s) for s in sds):
        return float("nan")
    if all(s == 0 for s in sds):
        return 0.0
    if test == "paired":
        (sd,), (n,) = sds, ns
        return _bisect(lambda d: paired_power(d, sd, n, alpha), sd / math.sqrt(n), target)
    (sa, sb), (na, nb) = sds, ns
    sim = WelchSimulation(sa, sb, na, nb, alpha)
    return _bisect(sim.power, math.sqrt(sa ** 2 / na + sb ** 2 / nb), target)


def first_n(resolves, start: int = 2, cap: int = CAP) -> int | None:
    """Smallest ``n`` in ``[start, cap]`` with ``resolves(n)`` true, for ``resolves`` monotone in ``n``
    (doubling, then bisection); ``None`` when even ``cap`` does not resolve."""
    if resolves(start):
        return start
    lo, hi = start, start  # resolves(lo) is false
    while not resolves(hi):
        if hi >= cap:
            return None
        lo, hi = hi, min(2 * hi, cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if resolves(mid) else (mid, hi)
    return hi


def seeds_needed(effect: float | None, test: str, sds: tuple[float, ...], alpha: float = ALPHA,
                 target: float = POWER, cap: int = CAP) -> int | None:
    """Seeds per arm (pairs, for the paired test) at which the test detects ``|effect|`` with probability
    ``target``, the arms' SDs as estimated now; ``None`` beyond ``cap`` or when the effect or SD is unknown."""
    if effect is None or math.isnan(effect) or effect == 0 or any(s is None or math.isnan(s) for s in sds):
        return None
    if all(s == 0 for s in sds):
        return 2
    if test == "paired":
        return first_n(lambda n: paired_power(effect, sds[0], n, alpha) >= target, cap=cap)
    return first_n(lambda n: welch_power(effect, sds[0], sds[1], n, n, alpha) >= target, cap=cap)


def order_of_magnitude(n: int | None) -> str:
    """``seeds_needed`` in words: the SDs behind it come from a few seeds, so only its order is meaningful."""
    if n is None:
        return f"over {CAP} seeds"
    if n < 10:
        return "a few (< 10) seeds"
    return "tens of seeds" if n < 100 else "hundreds of seeds"
