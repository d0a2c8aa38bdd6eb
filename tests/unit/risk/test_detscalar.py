"""Powers in eighths (the tenor scaling of vol shocks): accurate, and the same bits from Python and numba."""

from __future__ import annotations

import math
import random

from numba import njit

from pmoracle.risk.detscalar import det_pow_eighths


@njit(cache=True)
def _compiled(x: float, n: int) -> float:
    return det_pow_eighths(x, n)


def test_pow_eighths_matches_python_and_numba_bit_for_bit() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        x = math.exp(rng.uniform(-8.0, 8.0))
        n = rng.randrange(0, 17)
        value = det_pow_eighths(x, n)
        assert value == _compiled(x, n)
        assert math.isclose(value, x ** (n / 8), rel_tol=1e-15)
    for x in (30.0 / 7.0, 30.0 / 365.0, 1e-3, 7.5):
        assert det_pow_eighths(x, 4) == math.sqrt(x)
        assert det_pow_eighths(x, 8) == x
        assert det_pow_eighths(x, 0) == 1.0
