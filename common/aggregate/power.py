"""What a verdict could detect: the minimum detectable effect of the two-sided Welch test at the
verdict's level, and the seeds per arm needed to resolve a given effect.

With ``n_a`` and ``n_b`` seeds and a per-seed standard deviation ``s`` (pooled over both arms), the
difference of the seed means has standard error ``se = s * sqrt(1/n_a + 1/n_b)`` and Welch's degrees
of freedom under equal variances ``df = (1/n_a + 1/n_b)^2 / (1/(n_a^2 (n_a-1)) + 1/(n_b^2 (n_b-1)))``.
The test rejects when ``|T| > t_crit = t_{1-alpha/2, df}``; with a true difference ``d``, ``T`` follows
the noncentral t distribution with ``df`` and noncentrality ``d / se``, so

    power(d) = P(T' > t_crit) + P(T' < -t_crit),   T' ~ nct(df, d / se),

and the minimum detectable effect is the ``d`` at which ``power(d)`` reaches the target (0.8).
"""
from __future__ import annotations

import math

LEVEL = 0.95  # the verdict's interval
POWER = 0.8


def pooled_sd(a: list[float], b: list[float]) -> float:
    """Per-seed standard deviation pooled over both arms (each arm with >= 2 values)."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    ss = sum((x - ma) ** 2 for x in a) + sum((x - mb) ** 2 for x in b)
    return math.sqrt(ss / (na + nb - 2))


def welch_df(na: int, nb: int) -> float:
    """Welch's degrees of freedom for equal per-seed variances."""
    return (1 / na + 1 / nb) ** 2 / (1 / (na ** 2 * (na - 1)) + 1 / (nb ** 2 * (nb - 1)))


def power(d: float, sd: float, na: int, nb: int, level: float = LEVEL) -> float:
    """Probability that the two-sided Welch test at ``level`` rejects when the true difference is ``d``."""
    from scipy import stats

    df = welch_df(na, nb)
    se = sd * math.sqrt(1 / na + 1 / nb)
    t = stats.t.ppf(0.5 + level / 2, df)
    ncp = abs(d) / se
    return float(stats.nct.sf(t, df, ncp) + stats.nct.cdf(-t, df, ncp))


def mde(sd: float, na: int, nb: int, level: float = LEVEL, target: float = POWER) -> float:
    """Smallest difference the test detects with probability ``target`` (bisection on :func:`power`);
    NaN with fewer than 2 seeds in an arm, 0 when the seeds do not vary."""
    if na < 2 or nb < 2 or sd is None or math.isnan(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    se = sd * math.sqrt(1 / na + 1 / nb)
    lo, hi = 0.0, se
    while power(hi, sd, na, nb, level) < target:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if power(mid, sd, na, nb, level) < target:
            lo = mid
        else:
            hi = mid
    return hi


def seeds_needed(effect: float, sd: float, level: float = LEVEL, target: float = POWER, cap: int = 1000) -> int | None:
    """Seeds per arm at which :func:`mde` falls to ``|effect|``; ``None`` beyond ``cap`` or when unknown.
    Power grows with the difference, so ``mde(n) <= |effect|`` exactly when ``power(|effect|, n) >= target``:
    one power evaluation per candidate ``n`` instead of a bisection."""
    if effect is None or sd is None or math.isnan(effect) or math.isnan(sd) or effect == 0:
        return None
    if sd == 0:
        return 2

    def resolves(n: int) -> bool:
        return power(abs(effect), sd, n, n, level) >= target

    n = 2
    while not resolves(n):
        n = n + 1 if n < 20 else int(n * 1.25)
        if n > cap:
            return None
    if n > 20:  # the geometric steps may overshoot: step back one seed at a time
        while n > 2 and resolves(n - 1):
            n -= 1
    return n
