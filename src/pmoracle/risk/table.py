"""The instrument table: a market snapshot's instruments as float arrays, the input of the risk-array kernel.

Converting integer inputs to floats uses correctly rounded division only (``int / int``), so the table is the same
on every node. Validation happens here: a missing smile of a live option, an unknown underlying or collateral asset,
or a stale feed raises a named error before anything is computed.

An option or dated future whose expiry is at or before the valuation time is not refused: until it is settled it is
valued at expiry value on its underlying's index (docs/risk-model.md, "Expired instruments"). Its row has
``tau = 0`` (a live instrument always has ``tau > 0``), ``fwd = 0`` and no smile; the kernel values ``tau == 0`` as
expired. Once its expiry's settlement price is fixed on chain the value is a constant, the settlement value per
unit (intrinsic value at that price, or the price for a future): the row is then a stable asset row (no
underlying, no haircut), which no scenario moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pmoracle.risk.errors import (
    MissingSmileError,
    StaleFeedError,
    UnknownCollateralError,
    UnknownUnderlyingError,
)
from pmoracle.risk.inputs import (
    PRICE_SCALE,
    SECONDS_PER_YEAR,
    WAD,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
)
from pmoracle.risk.params import RiskParams
from pmoracle.risk.scenarios import ScenarioSet

KIND_ASSET = 4  # a collateral asset (the other kinds are InstrumentKind values)
VOL_PARAM_COUNT = 7


@dataclass(frozen=True, slots=True, order=True)
class CollateralRef:
    """A collateral asset held by an account, as a row of the risk arrays."""

    symbol: str


RiskInstrument = Instrument | CollateralRef
# InstrumentTable.vol_params[VOL_UNIT_PARAM]: 1.0 when the vol shift counts vol points (vol.shift_unit = "absolute")
VOL_UNIT_PARAM = 7


@dataclass(frozen=True, eq=False)
class InstrumentTable:
    """Per-instrument float inputs of the risk-array kernel (one row per instrument)."""

    instruments: tuple[RiskInstrument, ...]
    kind: npt.NDArray[np.int64]
    und: npt.NDArray[np.int64]  # scenario column of the underlying; -1 for a stable asset
    strike: npt.NDArray[np.float64]  # USD
    tau: npt.NDArray[np.float64]  # years to expiry; 0.0 for an expired option or future (valued at expiry value)
    index: npt.NDArray[np.float64]  # underlying index USD (asset: its price)
    fwd: npt.NDArray[np.float64]  # quoted forward USD, 0.0 when derived from the rate
    rate: npt.NDArray[np.float64]
    haircut: npt.NDArray[np.float64]
    svi: npt.NDArray[np.float64]  # (I, 5): a, b, rho, m, sigma
    horizon: float  # years
    # the document's constant shift (the kernel reads vol_shift), tenor_days, min_dte_days, max_shift, min_vol,
    # max_vol, short_min, and 1.0 when the shift counts vol points (vol.shift_unit = "absolute") else 0.0
    vol_params: npt.NDArray[np.float64]
    power_eighths: int
    vol_shift: npt.NDArray[np.float64]  # the shift k of each scenario column's underlying (RiskParams.vol_shift_of)


def instrument_field(inst: RiskInstrument) -> str:
    """Return a readable name of an instrument for error messages."""
    if isinstance(inst, CollateralRef):
        return f"collateral.{inst.symbol}"
    if inst.kind == InstrumentKind.PERPETUAL:
        return f"{inst.underlying}-PERPETUAL"
    if inst.kind == InstrumentKind.FUTURE:
        return f"{inst.underlying} future expiring {inst.expiry}"
    cp = "C" if inst.kind == InstrumentKind.CALL else "P"
    return f"{inst.underlying} option expiring {inst.expiry} strike {inst.strike / PRICE_SCALE:g} {cp}"


def compute_settlement_value(inst: Instrument, price: int) -> int:
    """Return what one unit of an expired option or future settles for at ``price`` (both PRICE_SCALE, exact)."""
    if inst.kind == InstrumentKind.FUTURE:
        return price
    return max(price - inst.strike, 0) if inst.kind == InstrumentKind.CALL else max(inst.strike - price, 0)


def check_feeds(market: MarketSnapshot, params: RiskParams) -> None:
    """Raise ``StaleFeedError`` if any timestamped feed is older than the limit (0 = not timestamped)."""
    limit = params.max_feed_age_seconds
    feeds = [(f"underlyings.{u.symbol}.updated_at", u.updated_at) for u in market.underlyings]
    feeds += [(f"assets.{a.symbol}.updated_at", a.updated_at) for a in market.assets]
    for field, updated_at in feeds:
        if updated_at == 0:
            continue
        age = market.time - updated_at
        if age > limit or age < 0:
            raise StaleFeedError(field, age, limit)


def build_instrument_table(
    market: MarketSnapshot, params: RiskParams, scenarios: ScenarioSet, instruments: tuple[RiskInstrument, ...]
) -> InstrumentTable:
    """Return the kernel inputs of ``instruments``; raise a named error for any instrument that cannot be valued.

    Errors: ``UnknownCollateralError``, ``UnknownUnderlyingError``, ``MissingSmileError`` (a live option only).
    """
    n = len(instruments)
    kind = np.zeros(n, dtype=np.int64)
    und = np.full(n, -1, dtype=np.int64)
    strike = np.zeros(n, dtype=np.float64)
    tau = np.zeros(n, dtype=np.float64)
    index = np.zeros(n, dtype=np.float64)
    fwd = np.zeros(n, dtype=np.float64)
    rate = np.zeros(n, dtype=np.float64)
    haircut = np.zeros(n, dtype=np.float64)
    svi = np.zeros((n, 5), dtype=np.float64)
    symbols = {s: i for i, s in enumerate(scenarios.underlyings)}
    # lookups built once: a round values thousands of instruments of a few underlyings and expiries
    assets = {a.symbol: a for a in market.assets}
    smiles = {(u.symbol, smile.expiry): smile for u in market.underlyings for smile in u.smiles}
    forwards = {(u.symbol, expiry): price for u in market.underlyings for expiry, price in u.forwards}
    settlements = {(u.symbol, expiry): price for u in market.underlyings for expiry, price in u.settlements}
    for i, inst in enumerate(instruments):
        if isinstance(inst, CollateralRef):
            asset = assets.get(inst.symbol)
            if asset is None:
                raise UnknownCollateralError(inst.symbol)
            kind[i] = KIND_ASSET
            und[i] = -1 if asset.underlying is None else symbols[asset.underlying]
            index[i] = asset.price / PRICE_SCALE
            haircut[i] = asset.haircut / WAD
            continue
        if inst.underlying not in symbols:
            raise UnknownUnderlyingError(instrument_field(inst), inst.underlying)
        market_u = market.underlying(inst.underlying)
        kind[i] = int(inst.kind)
        und[i] = symbols[inst.underlying]
        index[i] = market_u.index / PRICE_SCALE
        rate[i] = market_u.rate / WAD
        if inst.kind == InstrumentKind.PERPETUAL:
            continue
        if inst.is_option:
            strike[i] = inst.strike / PRICE_SCALE
        if inst.is_expired_at(market.time):
            settled = settlements.get((inst.underlying, inst.expiry))
            if settled is not None:  # a constant: the settlement value, in a row no scenario moves
                kind[i], und[i], strike[i], rate[i] = KIND_ASSET, -1, 0.0, 0.0
                index[i] = compute_settlement_value(inst, settled) / PRICE_SCALE
            continue  # else tau = 0, fwd = 0, no smile: valued at expiry value on the index
        tau[i] = (inst.expiry - market.time) / SECONDS_PER_YEAR
        quoted = forwards.get((inst.underlying, inst.expiry))
        fwd[i] = 0.0 if quoted is None else quoted / PRICE_SCALE
        if inst.is_option:
            smile = smiles.get((inst.underlying, inst.expiry))
            if smile is None:
                raise MissingSmileError(inst.underlying, inst.expiry)
            svi[i] = (smile.a / WAD, smile.b / WAD, smile.rho / WAD, smile.m / WAD, smile.sigma / WAD)
    vol_params = np.array(
        [
            params.vol_shift,
            params.vol_tenor_days,
            params.vol_min_dte_days,
            params.vol_max_shift,
            params.min_vol,
            params.max_vol,
            params.short_option_minimum,
            1.0 if params.is_absolute_vol_shift else 0.0,
        ],
        dtype=np.float64,
    )
    return InstrumentTable(
        instruments=instruments,
        kind=kind,
        und=und,
        strike=strike,
        tau=tau,
        index=index,
        fwd=fwd,
        rate=rate,
        haircut=haircut,
        svi=svi,
        horizon=scenarios.horizon_years,
        vol_params=vol_params,
        power_eighths=params.vol_power_eighths,
        vol_shift=np.array([params.vol_shift_of(u) for u in scenarios.underlyings], dtype=np.float64),
    )
