"""Deribit's roll shock: a charge on an account's net delta per expiry (pure; docs/risk-model.md, "Roll shock").

Per account and underlying ``u`` with a ``[roll_shock]`` entry, every live instrument falls in a bucket: the
perpetual in one, each expiry's futures and options in another. With ``Q_b`` the bucket's net delta-equivalent size
(the exact integer sum of size x delta per unit, as the concentration add-on counts it: futures and perpetuals 1,
options their Black-76 delta), the add-on is

    R = sum over buckets b of ceil(c_b x |Q_b|)          (MONEY)
    c_b = index_u x min_move_u                                          the perpetual's bucket
    c_b = index_u x max(exp(annual_move_u x T_b) - 1, min_move_u)       an expiry T_b years away

per exposure unit: Deribit's ``min_annualised_move`` and ``annualised_move_risk`` (its ``private/pme/simulate``
``roll_shock`` in USD instead of the settlement coin). Collateral, expired instruments and underlyings the section
does not list are in no bucket.

Determinism: each ``c_b`` is computed once per round from the exact index and parameters (one correctly rounded
division for the perpetual; ``det_exp``, + - * / for an expiry), and the kernel and the reference then compute
``c_b x float(|Q_b|)`` and its ceiling: the same bits on every node. ``|a + b| <= |a| + |b|`` and
``ceil(x + y) <= ceil(x) + ceil(y)``, so the add-on is subadditive and positively homogeneous up to its rounding:
portfolio MM stays at or below isolated margin.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt

from pmoracle.risk.concentration import DELTA_DECIMALS
from pmoracle.risk.detscalar import det_exp
from pmoracle.risk.inputs import MONEY_DECIMALS, PRICE_DECIMALS, SIZE_DECIMALS, InstrumentKind, MarketSnapshot
from pmoracle.risk.params import RollShockParams
from pmoracle.risk.table import CollateralRef, InstrumentTable

# MONEY per (index unit x exposure unit): index (PRICE) x exposure (SIZE x DELTA) / COEF_DIVISOR is MONEY
COEF_DIVISOR = 10 ** (PRICE_DECIMALS + SIZE_DECIMALS + DELTA_DECIMALS - MONEY_DECIMALS)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def compute_roll_terms(
    params: RollShockParams | None, market: MarketSnapshot, table: InstrumentTable
) -> tuple[IntArray, FloatArray]:
    """Return each row's bucket (-1: none) and each bucket's coefficient ``c_b`` (MONEY per exposure unit).

    Buckets are numbered in the order of (scenario column, expiry; the perpetual's expiry 0), so the numbering, and
    the order the kernel sums the float bound in, depend only on the set of buckets. Both empty without a section.
    """
    n_rows = len(table.instruments)
    bucket = np.full(n_rows, -1, dtype=np.int64)
    if params is None:
        return bucket, np.zeros(0, dtype=np.float64)
    minimum = dict(params.min_move)
    annual = dict(params.annual_move)
    keys: dict[tuple[int, int], float] = {}  # (column, expiry) -> years to expiry
    row_keys: list[tuple[int, tuple[int, int]]] = []
    for i, inst in enumerate(table.instruments):
        if isinstance(inst, CollateralRef) or inst.underlying not in minimum:
            continue
        u = int(table.und[i])
        if inst.kind == InstrumentKind.PERPETUAL:
            key = (u, 0)
        elif table.tau[i] > 0.0:  # a live future or option; an expired one waits for settlement, it does not roll
            key = (u, inst.expiry)
        else:
            continue
        keys.setdefault(key, float(table.tau[i]))
        row_keys.append((i, key))
    order = {key: b for b, key in enumerate(sorted(keys))}
    coef = np.zeros(len(order), dtype=np.float64)
    symbols = [u.symbol for u in market.underlyings]
    for key, b in order.items():
        u, expiry = key
        symbol = symbols[u]
        index = market.underlying(symbol).index
        if expiry == 0:
            coef[b] = float(Fraction(index) * minimum[symbol] / COEF_DIVISOR)
        else:
            move = max(det_exp(float(annual[symbol]) * keys[key]) - 1.0, float(minimum[symbol]))
            coef[b] = float(index) * move / float(COEF_DIVISOR)
    for i, key in row_keys:
        bucket[i] = order[key]
    return bucket, coef
