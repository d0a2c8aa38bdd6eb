"""Exports for risk teams: per-instrument risk arrays (a SPAN-style risk parameter file) and ISDA CRIF sensitivities.

Both read the engine's own numbers and add nothing to the model:

- :func:`compute_instrument_arrays`: the scenario P&L, base value and short-option add-on of one unit of each
  instrument, exactly as the kernel computes them for a round (``R[i, s] = rint(pnl_usd_per_unit * 1e4)``);
- :func:`compute_crif_rows`: delta and vega sensitivities of each position in the ISDA SIMM Common Risk
  Interchange Format (CRIF), from the engine's Black-76 greeks. SIMM has no crypto risk class, so crypto
  underlyings are reported in the Equity class, residual bucket (docs/cli-margin.md explains the mapping).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from pmoracle.risk.inputs import SIZE_SCALE, Instrument, InstrumentKind, MarketSnapshot, Portfolio
from pmoracle.risk.margin import RiskArrays, compute_option_state, compute_risk_arrays
from pmoracle.risk.params import RiskParams
from pmoracle.risk.pricing import black76
from pmoracle.risk.scenarios import compute_scenarios
from pmoracle.risk.table import KIND_ASSET, CollateralRef, RiskInstrument, check_feeds

# ISDA SIMM vega vertices (option expiry), in years: 2 weeks is 14/365, a month 1/12 of a year.
SIMM_VEGA_TENORS: tuple[tuple[str, Fraction], ...] = (
    ("2w", Fraction(14, 365)), ("1m", Fraction(1, 12)), ("3m", Fraction(1, 4)), ("6m", Fraction(1, 2)),
    ("1y", Fraction(1)), ("2y", Fraction(2)), ("3y", Fraction(3)), ("5y", Fraction(5)), ("10y", Fraction(10)),
    ("15y", Fraction(15)), ("20y", Fraction(20)), ("30y", Fraction(30)),
)  # fmt: skip
CRIF_COLUMNS = (
    "TradeID", "PortfolioID", "ProductClass", "RiskType", "Qualifier", "Bucket", "Label1", "Label2",
    "AmountCurrency", "Amount", "AmountUSD", "IMModel",
)  # fmt: skip
CRIF_PRODUCT_CLASS = "Equity"
CRIF_DELTA = "Risk_Equity"
CRIF_VEGA = "Risk_EquityVol"
CRIF_BUCKET = "Residual"
DELTA_SHIFT = 0.01  # SIMM equity delta: the value change for a 1% relative rise of the price


@dataclass(frozen=True, slots=True)
class CrifRow:
    """One CRIF sensitivity: a position's delta (Label1 empty) or its vega at one SIMM expiry vertex, in USD."""

    trade_id: str  # the instrument's name, or COLLATERAL-<symbol> for a collateral holding
    risk_type: str  # Risk_Equity (delta) or Risk_EquityVol (vega)
    qualifier: str  # the underlying
    label1: str  # the vega vertex ("2w" .. "30y"); empty for delta
    amount: float  # USD: delta = dV/dS x S x 1%, vega = dV/dvol per vol point (1% absolute)


def compute_tenor_weights(years: float) -> tuple[tuple[str, float], ...]:
    """Return the SIMM vertices of an expiry ``years`` away, weights linear in time, summing to 1 (flat outside)."""
    first, last = SIMM_VEGA_TENORS[0], SIMM_VEGA_TENORS[-1]
    if years <= float(first[1]):
        return ((first[0], 1.0),)
    if years >= float(last[1]):
        return ((last[0], 1.0),)
    for (lo_name, lo), (hi_name, hi) in itertools.pairwise(SIMM_VEGA_TENORS):
        if years <= float(hi):
            w_hi = (years - float(lo)) / float(hi - lo)
            if w_hi == 1.0:
                return ((hi_name, 1.0),)
            return ((lo_name, 1.0 - w_hi), (hi_name, w_hi)) if w_hi > 0.0 else ((lo_name, 1.0),)
    return ((last[0], 1.0),)


def list_market_instruments(market: MarketSnapshot, extra: Iterable[Instrument]) -> tuple[RiskInstrument, ...]:
    """Return ``extra`` (each once, in order) followed by every collateral asset of ``market``."""
    unique = list(dict.fromkeys(extra))
    return (*unique, *(CollateralRef(a.symbol) for a in market.assets))


def compute_instrument_arrays(
    market: MarketSnapshot, params: RiskParams, instruments: Iterable[RiskInstrument]
) -> RiskArrays:
    """Return the risk arrays of ``instruments`` under ``params``, the rows in the order given.

    Errors: as ``compute_book`` (``StaleFeedError``, ``MissingSmileError``, ``UnknownUnderlyingError``,
    ``UnknownCollateralError``, ``PricingError``).
    """
    check_feeds(market, params)
    return compute_risk_arrays(market, params, tuple(instruments), compute_scenarios(params, market))


def _position_sizes(portfolio: Portfolio) -> list[tuple[RiskInstrument, int]]:
    """Return the portfolio's holdings, duplicates merged and zeros dropped, in first-seen order."""
    merged: dict[RiskInstrument, int] = {}
    for p in portfolio.positions:
        merged[p.instrument] = merged.get(p.instrument, 0) + p.size
    for symbol, amount in portfolio.collateral:
        ref = CollateralRef(symbol)
        merged[ref] = merged.get(ref, 0) + amount
    return [(inst, size) for inst, size in merged.items() if size != 0]


def compute_crif_rows(
    market: MarketSnapshot, params: RiskParams, portfolio: Portfolio, trade_ids: dict[RiskInstrument, str]
) -> tuple[CrifRow, ...]:
    """Return the CRIF delta and vega rows of every holding of ``portfolio`` that moves with an underlying.

    A derivative's delta is ``units x dV/dF x F x 1%`` on its forward ``F`` (a perpetual or future: ``units x level
    x 1%``; the forward moves with the index in every scenario), a collateral holding's is its haircut value x 1%.
    A live option's vega (per vol point) is split over the two SIMM vertices around its expiry, linearly in time.
    Stable collateral and settled expiries move with nothing and give no row. ``trade_ids`` names each holding.

    Errors: as :func:`compute_instrument_arrays`.
    """
    holdings = _position_sizes(portfolio)
    arrays = compute_instrument_arrays(market, params, (inst for inst, _ in holdings))
    table = arrays.table
    symbols = arrays.scenarios.underlyings
    b76 = getattr(black76, "py_func", black76)
    rows: list[CrifRow] = []
    for i, (inst, size) in enumerate(holdings):
        u = int(table.und[i])
        if u < 0:
            continue
        units = size / SIZE_SCALE
        kind = int(table.kind[i])
        qualifier = symbols[u]
        vegas: tuple[tuple[str, float], ...] = ()
        if kind == KIND_ASSET:
            delta_usd = units * float(table.index[i]) * (1.0 - float(table.haircut[i]))
        elif kind in (InstrumentKind.PERPETUAL, InstrumentKind.FUTURE):
            delta_usd = units * arrays.base[i] / 1e4  # the level per unit (index, or forward of a live future)
        elif not float(table.tau[i]) > 0.0:  # expired, unsettled option: intrinsic on the index
            index, strike = float(table.index[i]), float(table.strike[i])
            itm = index > strike if kind == InstrumentKind.CALL else index < strike
            delta_usd = (units if kind == InstrumentKind.CALL else -units) * index if itm else 0.0
        else:
            f, df, vol = compute_option_state(table, i)
            tau = float(table.tau[i])
            _, delta, _, vega, _ = b76(kind == InstrumentKind.CALL, f, float(table.strike[i]), tau, vol, df)
            delta_usd = units * delta * f
            vegas = tuple((name, units * vega / 100.0 * w) for name, w in compute_tenor_weights(tau))
        trade = trade_ids[inst]
        rows.append(CrifRow(trade, CRIF_DELTA, qualifier, "", delta_usd * DELTA_SHIFT))
        rows.extend(CrifRow(trade, CRIF_VEGA, qualifier, name, amount) for name, amount in vegas)
    return tuple(rows)
