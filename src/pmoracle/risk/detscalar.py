"""Deterministic scalar helpers of the risk model: ``det_exp``/``det_log`` (re-exported from ``detmath``) and
powers in eighths from square roots only.

Callable from Python (the reference) and from numba kernels (``register_jitable``); the same operations in the
same order give the same bits in both.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

from pmoracle.risk.detmath import det_exp, det_log

__all__ = ["det_exp", "det_log", "det_pow_eighths"]


@register_jitable
def det_pow_eighths(x: float, n: int) -> float:
    """Return x ** (n / 8) for x > 0 and n >= 0: x**(n // 8) times square, fourth and eighth roots by n's bits."""
    result = 1.0
    for _ in range(n // 8):
        result = result * x
    r2 = math.sqrt(x)
    r4 = math.sqrt(r2)
    if n & 4:
        result = result * r2
    if n & 2:
        result = result * r4
    if n & 1:
        result = result * math.sqrt(r4)
    return result
