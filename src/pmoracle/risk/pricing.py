"""Option and futures valuation (Black-76 on the forward) and the SVI smile.

PLACEHOLDER NOTE: the bodies below use libm (math.exp/log/erfc) until the deterministic math of
``risk/detmath.py`` lands; the signatures are the contract the rest of the engine is written against.
All functions are numba ``njit`` with fastmath off; ``f.py_func`` is the pure-Python reference of ``f``.
"""

from __future__ import annotations

import math

from numba import njit

SQRT_2PI = 2.5066282746310002


@njit(cache=True)
def svi_total_variance(a: float, b: float, rho: float, m: float, sigma: float, k: float) -> float:
    """Return SVI raw total implied variance w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))."""
    d = k - m
    return a + b * (rho * d + math.sqrt(d * d + sigma * sigma))


@njit(cache=True)
def black76(
    is_call: bool, F: float, K: float, T: float, vol: float, df: float
) -> tuple[float, float, float, float, float]:
    """Return (price, delta, gamma, vega, theta) of a European option on forward F.

    delta and gamma are with respect to F; vega per unit of vol (1.0 = 100 vol points); theta is dV/dt per year
    (calendar time, holding F and vol fixed). T <= 0 gives the intrinsic value and zero greeks.
    """
    if T <= 0.0 or vol <= 0.0:
        intrinsic = max(F - K, 0.0) if is_call else max(K - F, 0.0)
        d = (1.0 if F > K else 0.0) if is_call else (-1.0 if F < K else 0.0)
        return df * intrinsic, df * d, 0.0, 0.0, 0.0
    sqrt_t = math.sqrt(T)
    s = vol * sqrt_t
    d1 = math.log(F / K) / s + 0.5 * s
    d2 = d1 - s
    pdf1 = math.exp(-0.5 * d1 * d1) / SQRT_2PI
    if is_call:
        n1 = 0.5 * math.erfc(-d1 / math.sqrt(2.0))
        n2 = 0.5 * math.erfc(-d2 / math.sqrt(2.0))
        price = df * (F * n1 - K * n2)
        delta = df * n1
    else:
        n1 = 0.5 * math.erfc(d1 / math.sqrt(2.0))
        n2 = 0.5 * math.erfc(d2 / math.sqrt(2.0))
        price = df * (K * n2 - F * n1)
        delta = -df * n1
    gamma = df * pdf1 / (F * s)
    vega = df * F * pdf1 * sqrt_t
    theta = -df * F * pdf1 * vol / (2.0 * sqrt_t)
    return price, delta, gamma, vega, theta
