"""Deterministic exp, log and rational powers from + - * / sqrt (fdlibm's algorithms, ~1 ulp).

Callable from Python (the reference) and from numba kernels (``register_jitable``); the same operations in the
same order give the same bits in both. ``math.frexp`` and ``math.ldexp`` are exact, so they are allowed.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT_HALF = 0.70710678118654752440


@register_jitable
def det_exp(x: float) -> float:
    """Return e**x computed with fdlibm's argument reduction and polynomial."""
    if x != x:
        return x
    if x > 709.782712893384:
        return math.inf
    if x < -745.1332191019411:
        return 0.0
    k = math.floor(x * _INV_LN2 + 0.5)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return math.ldexp(y, int(k))


@register_jitable
def det_log(x: float) -> float:
    """Return the natural logarithm of x > 0 (fdlibm's reduction to [sqrt(1/2), sqrt(2)))."""
    if x != x or x < 0.0:
        return math.nan
    if x == 0.0:
        return -math.inf
    if x == math.inf:
        return x
    m, e = math.frexp(x)
    if m < _SQRT_HALF:
        m = m * 2.0
        e = e - 1
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    dk = float(e)
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)


@register_jitable
def det_pow_eighths(x: float, n: int) -> float:
    """Return x ** (n / 8) for x > 0 and 0 <= n, by three square roots and repeated multiplication."""
    root = math.sqrt(math.sqrt(math.sqrt(x)))
    result = 1.0
    for _ in range(n):
        result = result * root
    return result
