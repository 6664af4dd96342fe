"""Tail probabilities of over-dispersed counts, and the 0-100 anomaly score made from them.

Pure math on plain floats (no scipy: the stream detector and the offline replay must compute
bit-identical figures with the standard library only).

* ``nb_sf(y, mean, alpha)``: P(Y >= y) for a negative binomial with that mean and variance
  ``mean + alpha * mean**2`` (``alpha`` -> 0 is Poisson). Via the regularised incomplete beta
  function: P(Y >= y) = I_{1-p}(y, r) with r = 1/alpha, p = r / (r + mean).
* ``betabinom_sf(k, n, share, rho)``: P(K >= k) for a beta-binomial count of ``n`` trials
  with mean share ``share`` and intra-class correlation ``rho`` (over-dispersion of shares).
* ``score_of(p, per_decade)``: Elastic ML's convention, an anomaly score in 0..100 that grows
  with the surprise ``-log10 p`` (``per_decade`` points per factor ten, capped at 100).
"""
from __future__ import annotations

import math

_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-13:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def nb_sf(y: float, mean: float, alpha: float) -> float:
    """P(Y >= y), Y negative binomial (mean ``mean``, variance ``mean + alpha mean^2``)."""
    if y <= 0:
        return 1.0
    mean = max(mean, 1e-9)
    r = 1.0 / max(alpha, 1e-9)
    p = r / (r + mean)
    return min(1.0, max(betainc(float(y), r, 1.0 - p), 0.0))


def betabinom_sf(k: int, n: int, share: float, rho: float) -> float:
    """P(K >= k), K beta-binomial: ``n`` trials, mean share ``share``, correlation ``rho``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    share = min(max(share, 1e-6), 1 - 1e-6)
    ab = 1.0 / max(rho, 1e-9) - 1.0
    a, b = share * ab, (1.0 - share) * ab

    def log_pmf(j: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                + math.lgamma(j + a) + math.lgamma(n - j + b) - math.lgamma(n + a + b)
                + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))

    # sum the upper tail from k with the pmf's ratio recursion (the terms fall fast)
    term = math.exp(log_pmf(k))
    total = term
    j = k
    while j < n:
        term *= (n - j) * (j + a) / ((j + 1) * (n - j - 1 + b))
        total += term
        j += 1
        if term < total * 1e-12:
            break
    return min(1.0, total)


def surprise(p: float) -> float:
    """``-log10 p`` (p floored at 1e-300)."""
    return -math.log10(max(p, _TINY))


def score_of(p: float, per_decade: float) -> float:
    """0-100 anomaly score of a tail probability: ``per_decade`` points per factor ten."""
    return min(100.0, max(0.0, per_decade * surprise(p)))
