"""The scenario set of a market snapshot: per scenario and underlying a price multiplier and a vol shock.

Built from the parameters with + - * / sqrt only (the exact rationals of the document are converted to floats
by correctly rounded division), so every node gets the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from pmoracle.risk.errors import MissingSmileError
from pmoracle.risk.inputs import SECONDS_PER_YEAR, WAD, MarketSnapshot, UnderlyingMarket
from pmoracle.risk.params import RiskParams, compute_cover_den, compute_extreme_covers, compute_extreme_dampers
from pmoracle.risk.pricing import svi_total_variance


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """Scenarios x underlyings: price multipliers, vol shocks (multiples of the tenor-scaled shift), weights."""

    underlyings: tuple[str, ...]
    labels: tuple[str, ...]
    price_mult: npt.NDArray[np.float64]  # (S, U)
    vol_shock: npt.NDArray[np.float64]  # (S, U), in [-1, 1]
    cover_num: npt.NDArray[np.int64]  # (S,), over cover_den: the fraction of a scenario's loss counted
    cover_den: int
    es_weight: npt.NDArray[np.float64]  # (S,)
    is_extreme: npt.NDArray[np.bool_]  # (S,)
    price_range: npt.NDArray[np.float64]  # (U,), the scan range as a fraction of the price
    horizon_years: float
    # (S,) MONEY: the extended move's dampening amount (``extreme.dampener_usd``), 0 for every other scenario
    damp: npt.NDArray[np.int64]

    @property
    def is_dampened(self) -> bool:
        """Check if any scenario's counted P&L is dampened (``extreme.dampener_usd``)."""
        return bool(self.damp.any())

    def __len__(self) -> int:
        return len(self.labels)

    def underlying_index(self, symbol: str) -> int:
        """Return the column of ``symbol``; raise ``ValueError`` if it is not in the set."""
        return self.underlyings.index(symbol)


def compute_atm_vol(market: MarketSnapshot, underlying: UnderlyingMarket) -> float:
    """Return the ATM (k = 0) implied vol of the nearest unexpired smile of ``underlying``."""
    for smile in underlying.smiles:
        if smile.expiry > market.time:
            t = float(smile.expiry - market.time) / float(SECONDS_PER_YEAR)
            w = svi_total_variance(smile.a / WAD, smile.b / WAD, smile.rho / WAD, smile.m / WAD, smile.sigma / WAD, 0.0)
            return math.sqrt(w / t)
    raise MissingSmileError(underlying.symbol, 0)


def compute_price_ranges(params: RiskParams, market: MarketSnapshot) -> npt.NDArray[np.float64]:
    """Return each underlying's scan range as a fraction of its price."""
    ranges = np.empty(len(market.underlyings), dtype=np.float64)
    horizon_sqrt = math.sqrt(float(params.horizon_seconds) / float(SECONDS_PER_YEAR))
    for u, und in enumerate(market.underlyings):
        scan = params.scan_range_of(und.symbol)
        if params.price_reference == "std":
            ranges[u] = scan * (compute_atm_vol(market, und) * horizon_sqrt)
        else:
            ranges[u] = scan
    return ranges


def _vol_label(v: Fraction | None) -> str:
    if v is None or v == 0:
        return "vol none"
    word = "up" if v > 0 else "down"
    return f"vol {word}" if abs(v) == 1 else f"vol {word} x{float(abs(v)):g}"


def compute_scenarios(params: RiskParams, market: MarketSnapshot) -> ScenarioSet:
    """Return the scenario set of ``params`` for the underlyings of ``market``."""
    symbols = tuple(u.symbol for u in market.underlyings)
    n_und = len(symbols)
    ranges = compute_price_ranges(params, market)
    rho = params.stressed_correlation
    # Each grid point: (move, vol state, cover of its loss); an extreme one has cover None in the grid's sense.
    cover_den = compute_cover_den(params.extreme_moves, params.extreme_cover, params.extreme_cover_scaling)
    extreme_covers = compute_extreme_covers(params.extreme_moves, params.extreme_cover, params.extreme_cover_scaling)
    extreme_dampers = compute_extreme_dampers(params.extreme_moves, params.extreme_dampener)
    extreme_vol = params.extreme_vol_shock if params.extreme_vol_shock is not None else Fraction(0)
    grid: list[tuple[Fraction, Fraction, Fraction | None, int]] = [
        (m, v, None, 0) for m in params.price_moves for v in params.vol_shocks
    ]
    grid += [
        (m, extreme_vol, c, d) for m, c, d in zip(params.extreme_moves, extreme_covers, extreme_dampers, strict=True)
    ]

    # (mode, leader) pairs: "together" has no leader; with one underlying only "together" is distinct.
    layouts: list[tuple[str, int]] = []
    for mode in params.joint_modes:
        if mode == "together":
            layouts.append((mode, -1))
        elif n_und > 1:
            layouts.extend((mode, u) for u in range(n_und))
    if not layouts:
        layouts.append(("together", -1))

    rows_mult: list[tuple[float, ...]] = []
    rows_vol: list[tuple[float, ...]] = []
    labels: list[str] = []
    covers: list[int] = []
    weights: list[float] = []
    extremes: list[bool] = []
    damps: list[int] = []
    seen: set[tuple[tuple[float, ...], tuple[float, ...], Fraction | None, int]] = set()
    for mode, leader in layouts:
        for move, vol, extreme_cover, damp in grid:
            mf = float(move)
            mults = []
            for u in range(n_und):
                if mode == "together" or u == leader:
                    factor = mf
                elif mode == "alone":
                    factor = mf * rho
                else:
                    factor = -(mf * rho)
                mults.append(max(1.0 + factor * ranges[u], params.min_price_multiplier))
            vols = tuple(float(vol) for _ in range(n_und))
            key = (tuple(mults), vols, extreme_cover, damp)
            if key in seen:
                continue
            seen.add(key)
            moves = " ".join(f"{symbols[u]} {100.0 * (mults[u] - 1.0):+.1f}%" for u in range(n_und))
            prefix = "" if n_und == 1 else (f"{mode}: " if leader < 0 else f"{mode} {symbols[leader]}: ")
            if extreme_cover is None:
                labels.append(f"{prefix}{moves} {_vol_label(vol)}")
                covers.append(cover_den)
            else:
                state = "" if vol == 0 else f" {_vol_label(vol)}"
                labels.append(f"{prefix}extreme {moves}{state} ({float(extreme_cover) * 100:g}% cover)")
                covers.append(int(extreme_cover * cover_den))
            rows_mult.append(tuple(mults))
            rows_vol.append(vols)
            weights.append(1.0 if extreme_cover is None else params.es_extreme_weight)
            extremes.append(extreme_cover is not None)
            damps.append(damp)
    return ScenarioSet(
        underlyings=symbols,
        labels=tuple(labels),
        price_mult=np.array(rows_mult, dtype=np.float64).reshape(len(labels), n_und),
        vol_shock=np.array(rows_vol, dtype=np.float64).reshape(len(labels), n_und),
        cover_num=np.array(covers, dtype=np.int64),
        cover_den=cover_den,
        es_weight=np.array(weights, dtype=np.float64),
        is_extreme=np.array(extremes, dtype=np.bool_),
        price_range=ranges,
        horizon_years=float(params.horizon_seconds) / float(SECONDS_PER_YEAR),
        damp=np.array(damps, dtype=np.int64),
    )
