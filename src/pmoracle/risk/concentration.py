"""The concentration and liquidity add-on: a position large against its market's volume pays the cost of closing it.

Per account and underlying ``u``, with ``Q_u`` the account's net delta-equivalent size (sum of size x delta per
unit, see below) and the square-root impact law the cascade stress test already uses (docs/stress.md):

    X_u = max(0, |Q_u| - threshold x ADV_u)                        units of the underlying
    A_u = Y x sigma_u x sqrt(X_u / ADV_u) x X_u x index_u         USD, rounded up to MONEY
    A   = sum over u of A_u                                        part of MM (and so of IM)

Delta per unit: 1 for futures, perpetuals and a collateral asset that follows ``u`` (closing a unit sells a unit),
an option's Black-76 delta on its forward, an expired option's 1 / -1 / 0 in the money; quantized to 1e-6
(``DELTA_SCALE``, round half even), so ``Q_u`` (SIZE x DELTA units, 1e-10 of the underlying) is an exact integer
sum whatever the order of the positions.

Determinism (docs/determinism.md): the coefficient ``c_u = float(Y sigma index / 1e15) / sqrt(float(ADV))`` is
computed once per round here, from exact rationals by correctly rounded conversions, one ``sqrt`` and one
division; the kernel and the reference then compute ``(c_u * x) * sqrt(x)`` with ``x = float(X_u)`` (in 1e-10
units) and take the ceiling: + - * / and sqrt only, in one fixed order, no FMA.

Convexity: ``t -> max(0, |t| - T)^(3/2)`` is convex and 0 at 0, ``Q_u`` is linear in the sizes, so ``A`` is convex
with ``A(0) = 0`` and ``A(f x) <= f A(x)`` for 0 <= f <= 1: docs/liquidation.md, "The concentration add-on".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pmoracle.risk.errors import ConcentrationOverflowError
from pmoracle.risk.inputs import MONEY_DECIMALS, PRICE_DECIMALS, SIZE_DECIMALS, MarketSnapshot
from pmoracle.risk.params import ConcentrationParams

DELTA_DECIMALS = 6
DELTA_SCALE = 10**DELTA_DECIMALS  # an instrument's delta per unit, quantized to 1e-6
# Q is in SIZE x DELTA units: one unit of the underlying is EXPOSURE_SCALE of them
EXPOSURE_SCALE = 10 ** (SIZE_DECIMALS + DELTA_DECIMALS)
# USD per (index unit x exposure unit^(3/2) / sqrt(ADV)): MONEY / (PRICE x EXPOSURE^(3/2))
COEF_DIVISOR = 10 ** (PRICE_DECIMALS + 3 * (SIZE_DECIMALS + DELTA_DECIMALS) // 2 - MONEY_DECIMALS)
THRESHOLD_CLAMP = 2**62  # a threshold at least this large is never reached by an account under the overflow bound
CHARGE_LIMIT = 2.0**62  # the float an add-on must stay under (the kernel's account limit is checked on the total)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def compute_concentration_terms(
    params: ConcentrationParams | None, market: MarketSnapshot, underlyings: Sequence[str]
) -> tuple[FloatArray, IntArray]:
    """Return the per-underlying coefficient ``c_u`` and threshold (exposure units) of the add-on, in the order of
    ``underlyings`` (the scenario columns); both empty when the document has no ``[concentration]`` section.

    An underlying the section does not list has ``c_u = 0``: it is never charged.
    """
    if params is None:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    adv = dict(params.adv)
    vol = dict(params.daily_vol)
    coef = np.zeros(len(underlyings), dtype=np.float64)
    threshold = np.zeros(len(underlyings), dtype=np.int64)
    for u, symbol in enumerate(underlyings):
        if symbol not in adv:
            continue
        index = market.underlying(symbol).index
        coef[u] = float(params.impact * vol[symbol] * index / COEF_DIVISOR) / math.sqrt(float(adv[symbol]))
        free = params.threshold * adv[symbol] * EXPOSURE_SCALE
        threshold[u] = min(THRESHOLD_CLAMP, free.numerator // free.denominator)
    return coef, threshold


def concentration_charge_float(coef: float, threshold: int, exposure: int) -> float:
    """Return one underlying's add-on before rounding: (coef x x) x sqrt(x), or 0.0 below the threshold."""
    excess = abs(exposure) - threshold
    if excess <= 0 or not coef > 0.0:
        return 0.0
    x = float(excess)
    return coef * x * math.sqrt(x)


def compute_concentration_addon(coef: Sequence[float], threshold: Sequence[int], exposures: Sequence[int]) -> int:
    """Return the add-on (MONEY) of per-underlying net exposures; raise ``ConcentrationOverflowError`` when one is not
    finite or reaches 2**62 (the kernel reports such an account as an overflow)."""
    return sum(
        _ceil(concentration_charge_float(float(c), int(t), q), q)
        for c, t, q in zip(coef, threshold, exposures, strict=True)
    )


def compute_bid_reserve(
    coef: Sequence[float], threshold: Sequence[int], bidder: Sequence[int], received: Sequence[int]
) -> int:
    """Return R (MONEY) with A(y + f x) <= A(y) + f A(x) + R for every 0 <= f <= 1, given the per-underlying exposures
    of the bidder's book ``y`` and of the auctioned book ``x``: the margin a bid may add beyond the sum of the parts,
    which the Liquidator's check cannot see (docs/liquidation.md, "The bidder").

    Per underlying the gap ``A_u(y + f x) - A_u(y) - f A_u(x)`` is convex in ``f`` and 0 at ``f = 0``, so its maximum
    over [0, 1] is ``max(0, gap at f = 1)``; it is 0 when the merged exposure stays under the threshold, and at most 0
    when the two exposures have opposite signs. The engine rounds each charge up: 3 MONEY of slack per charged
    underlying, and 1e-12 of the merged charge for the floats' last bits.
    """
    total = 0
    for c, t, y, x in zip(coef, threshold, bidder, received, strict=True):
        merged = concentration_charge_float(float(c), int(t), y + x)
        if merged <= 0.0:
            continue  # nothing above the threshold: A_u(y + f x) = 0 for every f in [0, 1]
        apart = _ceil(concentration_charge_float(float(c), int(t), y), y)
        apart += _ceil(concentration_charge_float(float(c), int(t), x), x)
        total += max(0, _ceil(merged, y + x) - apart + 2) + 1 + math.ceil(merged * 1e-12)
    return total


def _ceil(value: float, exposure: int) -> int:
    """Return ceil(value) of an add-on (0.0 and up), raising ``ConcentrationOverflowError`` from 2**62 on (also for
    infinities and NaN: the kernel's overflow)."""
    if not value < CHARGE_LIMIT:
        raise ConcentrationOverflowError(exposure, value)
    return math.ceil(value)


def exposure_of(
    positions: Sequence[tuple[int, int]], und: Sequence[int], delta: Sequence[int], n_underlyings: int
) -> list[int]:
    """Return the net exposure (SIZE x DELTA units) per underlying of (row, size) positions."""
    out = [0] * n_underlyings
    for row, size in positions:
        u = int(und[row])
        if u >= 0:
            out[u] += size * int(delta[row])
    return out
