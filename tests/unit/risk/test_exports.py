"""Exports for risk teams: risk arrays of listed instruments and CRIF sensitivities, checked against values
computed here independently (closed forms, scipy's normal distribution)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from scipy.stats import norm

from pmoracle.config.params import default_params
from pmoracle.risk.errors import StaleFeedError
from pmoracle.risk.exports import (
    CRIF_DELTA,
    CRIF_VEGA,
    SIMM_VEGA_TENORS,
    compute_crif_rows,
    compute_instrument_arrays,
    compute_tenor_weights,
    list_market_instruments,
)
from pmoracle.risk.inputs import (
    PRICE_SCALE,
    SIZE_SCALE,
    WAD,
    CollateralAsset,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    UnderlyingMarket,
)
from pmoracle.risk.table import CollateralRef
from tests.unit.risk.factories import DAY, T0, flat_smile

YEAR = 365 * DAY
EXPIRY = T0 + 73 * DAY  # 0.2 years: between the 1m and 3m SIMM vertices
VOL = 0.55
RATE = 0.04
INDEX = 95_000.0
STRIKE = 100_000.0
CALL = Instrument("BTC", InstrumentKind.CALL, EXPIRY, int(STRIKE) * PRICE_SCALE)
PERP = Instrument("BTC", InstrumentKind.PERPETUAL)


def make_market(updated_at: int = 0) -> MarketSnapshot:
    """Return one BTC market with a flat smile (so the option's vol is known exactly) and BTC/USDC collateral."""
    btc = UnderlyingMarket(
        "BTC",
        int(INDEX) * PRICE_SCALE,
        rate=round(RATE * WAD),
        smiles=(flat_smile(EXPIRY, VOL),),
        updated_at=updated_at,
    )
    assets = (
        CollateralAsset("BTC", int(INDEX) * PRICE_SCALE, haircut=WAD // 20, underlying="BTC"),
        CollateralAsset("USDC", PRICE_SCALE, haircut=0),
    )
    return MarketSnapshot(time=T0, underlyings=(btc,), assets=assets)


def black76_call(f: float, k: float, t: float, vol: float, df: float) -> tuple[float, float, float]:
    """Return (price, dV/dF, dV/dvol) of a call on forward ``f`` (textbook Black-76, scipy's normal CDF)."""
    d1 = (math.log(f / k) + 0.5 * vol * vol * t) / (vol * math.sqrt(t))
    d2 = d1 - vol * math.sqrt(t)
    price = df * (f * norm.cdf(d1) - k * norm.cdf(d2))
    return price, df * norm.cdf(d1), df * f * norm.pdf(d1) * math.sqrt(t)


def test_tenor_weights_split_linearly_between_vertices() -> None:
    assert compute_tenor_weights(1 / 365) == (("2w", 1.0),)  # below the first vertex: all on it
    assert compute_tenor_weights(14 / 365) == (("2w", 1.0),)
    assert compute_tenor_weights(40.0) == (("30y", 1.0),)  # beyond the last: all on it
    assert compute_tenor_weights(2.0) == (("2y", 1.0),)  # on a vertex: all on it
    (lo, w_lo), (hi, w_hi) = compute_tenor_weights(0.2)
    assert (lo, hi) == ("1m", "3m")
    assert w_hi == pytest.approx((0.2 - 1 / 12) / (1 / 4 - 1 / 12), rel=1e-15)
    assert w_lo + w_hi == pytest.approx(1.0, rel=1e-15)
    assert [name for name, _ in SIMM_VEGA_TENORS] == [
        "2w", "1m", "3m", "6m", "1y", "2y", "3y", "5y", "10y", "15y", "20y", "30y"
    ]  # fmt: skip
    assert all(a < b for (_, a), (_, b) in itertools.pairwise(SIMM_VEGA_TENORS))
    assert SIMM_VEGA_TENORS[0][1] == Fraction(14, 365)


def test_market_instruments_are_listed_once_then_every_asset() -> None:
    market = make_market()
    listed = list_market_instruments(market, [CALL, PERP, CALL])
    assert listed == (CALL, PERP, CollateralRef("BTC"), CollateralRef("USDC"))


def test_risk_arrays_match_closed_forms() -> None:
    market = make_market()
    params = default_params()
    arrays = compute_instrument_arrays(market, params, list_market_instruments(market, [PERP, CALL]))
    mult = arrays.scenarios.price_mult[:, 0]
    assert len(arrays.scenarios) == 27 + 2  # 9 moves x 3 vol states + 2 extremes (one underlying: one mode)
    # a perpetual: level x (m - 1) per unit, USD x 1e4
    assert list(arrays.r[0]) == [round(INDEX * (float(m) - 1.0) * 1e4) for m in mult]
    assert arrays.base[0] == round(INDEX * 1e4) and arrays.addon[0] == 0
    # BTC collateral: its haircut value moves with BTC; USDC never moves
    haircut_value = INDEX * 0.95
    assert list(arrays.r[2]) == [round((haircut_value * float(m) - haircut_value) * 1e4) for m in mult]
    assert arrays.base[2] == round(haircut_value * 1e4)
    assert not arrays.r[3].any() and arrays.base[3] == 10**4
    # the call: premium by textbook Black-76 on the forward index x e^(rT); add-on 0.5% of the index
    t = (EXPIRY - T0) / YEAR
    price, _, _ = black76_call(INDEX * math.exp(RATE * t), STRIKE, t, VOL, math.exp(-RATE * t))
    assert abs(int(arrays.base[1]) - price * 1e4) <= 0.5 + 1e-5  # quantized to 1e-4 USD, rounded to nearest
    assert arrays.addon[1] == round(0.005 * INDEX * 1e4)


def test_risk_arrays_refuse_a_stale_feed() -> None:
    market = make_market(updated_at=T0 - 301)
    with pytest.raises(StaleFeedError) as info:
        compute_instrument_arrays(market, default_params(), [PERP])
    assert info.value.field == "underlyings.BTC.updated_at"


def test_crif_rows_match_independent_greeks() -> None:
    market = make_market()
    portfolio = Portfolio(
        positions=(Position(CALL, -3 * SIZE_SCALE), Position(PERP, 2 * SIZE_SCALE)),
        collateral=(("BTC", SIZE_SCALE // 2), ("USDC", 1000 * SIZE_SCALE)),
    )
    ids = {CALL: "call", PERP: "perp", CollateralRef("BTC"): "btc", CollateralRef("USDC"): "usdc"}
    rows = compute_crif_rows(market, default_params(), portfolio, ids)
    t = (EXPIRY - T0) / YEAR
    f = INDEX * math.exp(RATE * t)
    _, delta, vega = black76_call(f, STRIKE, t, VOL, math.exp(-RATE * t))
    w_3m = (t - 1 / 12) / (1 / 4 - 1 / 12)
    expected = [
        ("call", CRIF_DELTA, "", -3 * delta * f * 0.01),
        ("call", CRIF_VEGA, "1m", -3 * vega / 100 * (1 - w_3m)),
        ("call", CRIF_VEGA, "3m", -3 * vega / 100 * w_3m),
        ("perp", CRIF_DELTA, "", 2 * INDEX * 0.01),
        ("btc", CRIF_DELTA, "", 0.5 * INDEX * 0.95 * 0.01),
    ]  # USDC moves with nothing: no row
    assert [(r.trade_id, r.risk_type, r.label1) for r in rows] == [e[:3] for e in expected]
    for row, (*_, amount) in zip(rows, expected, strict=True):
        assert row.qualifier == "BTC"
        assert row.amount == pytest.approx(amount, rel=1e-9), row


def test_crif_of_expired_and_dated_instruments() -> None:
    expired_call = Instrument("BTC", InstrumentKind.CALL, T0 - DAY, 90_000 * PRICE_SCALE)  # in the money by 5000
    expired_put = Instrument("BTC", InstrumentKind.PUT, T0 - DAY, 90_000 * PRICE_SCALE)  # out of the money
    future = Instrument("BTC", InstrumentKind.FUTURE, EXPIRY)
    base = make_market()
    btc = base.underlyings[0]
    quoted = UnderlyingMarket(
        btc.symbol, btc.index, rate=btc.rate, smiles=btc.smiles, forwards=((EXPIRY, 96_500 * PRICE_SCALE),)
    )
    market = MarketSnapshot(time=T0, underlyings=(quoted,), assets=base.assets)
    portfolio = Portfolio(
        positions=(
            Position(expired_call, 2 * SIZE_SCALE),
            Position(expired_put, 4 * SIZE_SCALE),
            Position(future, -SIZE_SCALE),
        )
    )
    ids = {expired_call: "c", expired_put: "p", future: "f"}
    rows = compute_crif_rows(market, default_params(), portfolio, ids)
    # expired, unsettled: intrinsic on the index, no vega; a live future: its quoted forward
    assert [(r.trade_id, r.risk_type, r.label1, r.amount) for r in rows] == [
        ("c", CRIF_DELTA, "", 2 * INDEX * 0.01),
        ("p", CRIF_DELTA, "", 0.0),
        ("f", CRIF_DELTA, "", -96_500 * 0.01),
    ]
