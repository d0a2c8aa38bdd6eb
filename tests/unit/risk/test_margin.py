"""The margin API: what a risk manager relies on (hedges pay less, collateral moves, bad inputs are named)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pmoracle.config.params import default_params
from pmoracle.risk.errors import (
    MissingSmileError,
    StaleFeedError,
    UnknownCollateralError,
    UnknownUnderlyingError,
)
from pmoracle.risk.inputs import (
    MONEY_SCALE,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
)
from pmoracle.risk.margin import Book, compute_account_report, compute_book

from .factories import (
    DAY,
    EXPIRIES,
    T0,
    account,
    make_market,
    option,
    random_instrument,
    random_portfolio,
    size,
)

PARAMS = default_params()
MONTH = EXPIRIES[2]


def _straddle(units: float) -> tuple[Position, ...]:
    return (
        Position(option("BTC", MONTH, 95_000, True), size(-units)),
        Position(option("BTC", MONTH, 95_000, False), size(-units)),
    )


def test_short_straddle_needs_far_less_than_isolated() -> None:
    report = compute_account_report(make_market(), PARAMS, Portfolio(positions=_straddle(10), account=account(1)))
    assert report.maintenance_margin > 0
    assert report.maintenance_margin < 0.6 * report.isolated_margin
    assert report.capital_released == report.isolated_margin - report.maintenance_margin
    assert abs(report.greeks[0].delta) < 1.5  # 10 straddles ATM: near delta-neutral
    assert report.greeks[0].gamma < 0 and report.greeks[0].vega < 0 and report.greeks[0].theta > 0
    assert report.initial_margin >= report.maintenance_margin
    # ES at 90% of 29 scenarios (27 of weight 1, 2 extremes of 0.35): the mean of the worst 2.77 units of weight.
    assert 0 < report.expected_shortfall <= -min(report.risk_array)
    assert report.cross_margin > 0
    # MM = the worst loss, extreme scenarios counted at 35% (rounded up), plus the short-option minimum
    # 0.5% x 95,000 per unit short (20 units).
    book = Book(make_market(), PARAMS, [])
    counted = [
        -(pnl * int(c) // book.scenarios.cover_den)
        for pnl, c in zip(report.risk_array, book.scenarios.cover_num, strict=True)
    ]
    assert max(counted) == counted[report.worst_scenario]
    assert report.maintenance_margin == max(counted) + 20 * 475 * MONEY_SCALE
    assert min(report.risk_array) < report.risk_array[report.worst_scenario]  # an extreme move, at 35%


def test_delta_hedge_reduces_margin() -> None:
    market = make_market()
    call = option("BTC", MONTH, 95_000, True)
    naked = Portfolio(positions=(Position(call, size(-10)),), account=account(1))
    hedged = Portfolio(
        positions=(Position(call, size(-10)), Position(Instrument("BTC", InstrumentKind.PERPETUAL), size(5))),
        account=account(2),
    )
    result = compute_book(market, PARAMS, [naked, hedged])
    assert result.accounts[1].maintenance_margin < 0.5 * result.accounts[0].maintenance_margin


def test_perpetual_margin_is_the_scan_range_move() -> None:
    perp = Instrument("BTC", InstrumentKind.PERPETUAL)
    bought_at_index = Position(perp, size(1), cost=95_000 * 10**18)
    report = compute_account_report(make_market(), PARAMS, Portfolio(positions=(bought_at_index,)))
    assert report.maintenance_margin == 95_000 * 16 // 100 * MONEY_SCALE  # a 16% drop of 95,000
    assert report.equity == 0  # marked to market at the index it was bought at: no unrealized P&L
    assert "BTC -16.0%" in report.worst_scenario_label


def test_eth_collateral_loses_value_when_eth_falls() -> None:
    report = compute_account_report(make_market(), PARAMS, Portfolio(collateral=(("ETH", size(10)),)))
    book = Book(make_market(), PARAMS, [Portfolio(collateral=(("ETH", size(10)),))])
    eth = book.scenarios.underlying_index("ETH")
    assert report.equity == 10 * 3000 * 9 // 10 * MONEY_SCALE  # 10 ETH at 3,000 with a 10% haircut
    for s, pnl in enumerate(report.risk_array):
        move = float(book.scenarios.price_mult[s, eth]) - 1.0
        assert pnl == pytest.approx(27_000 * move * MONEY_SCALE, abs=2)
        assert (pnl < 0) == (move < 0)
    assert report.maintenance_margin == pytest.approx(27_000 * 0.20 * MONEY_SCALE, abs=2)
    stable = compute_account_report(make_market(), PARAMS, Portfolio(collateral=(("USDC", size(1000)),)))
    assert set(stable.risk_array) == {0} and stable.maintenance_margin == 0


def test_long_option_never_needs_more_than_its_premium() -> None:
    market = make_market()
    for strike in (50_000, 95_000, 200_000):
        for call in (True, False):
            p = Portfolio(positions=(Position(option("BTC", MONTH, strike, call), size(3)),))
            report = compute_account_report(market, PARAMS, p)
            assert 0 <= report.maintenance_margin <= report.equity + 1


def test_im_is_the_stricter_documented_version() -> None:
    result = compute_book(
        make_market(), PARAMS, [Portfolio(positions=_straddle(2)), Portfolio(positions=_straddle(0.001))]
    )
    for a in result.accounts:
        mm = a.maintenance_margin
        expected = max(-(-mm * 5 // 4), mm + PARAMS.im_min_buffer)
        assert a.initial_margin == expected
    assert result.accounts[1].initial_margin == result.accounts[1].maintenance_margin + 10 * MONEY_SCALE


def test_missing_smile_is_named() -> None:
    p = Portfolio(positions=(Position(option("BTC", T0 + 45 * DAY, 90_000, True), size(1)),))
    with pytest.raises(MissingSmileError) as info:
        compute_book(make_market(), PARAMS, [p])
    assert info.value.field == "underlyings.BTC.smiles"


def test_unknown_collateral_and_underlying_are_named() -> None:
    with pytest.raises(UnknownCollateralError) as info:
        compute_book(make_market(), PARAMS, [Portfolio(collateral=(("DOGE", 1),))])
    assert info.value.field == "collateral.DOGE"
    with pytest.raises(UnknownUnderlyingError):
        compute_book(
            make_market(), PARAMS, [Portfolio(positions=(Position(Instrument("SOL", InstrumentKind.PERPETUAL), 1),))]
        )


def test_stale_feed_invalidates_the_inputs() -> None:
    market = make_market()
    fresh = dataclasses.replace(market.underlyings[0], updated_at=market.time - PARAMS.max_feed_age_seconds)
    stale = dataclasses.replace(market.underlyings[0], updated_at=market.time - PARAMS.max_feed_age_seconds - 1)
    ok = MarketSnapshot(time=market.time, underlyings=(fresh, market.underlyings[1]), assets=market.assets)
    compute_book(ok, PARAMS, [Portfolio(positions=_straddle(1))])
    bad = MarketSnapshot(time=market.time, underlyings=(stale, market.underlyings[1]), assets=market.assets)
    with pytest.raises(StaleFeedError) as info:
        compute_book(bad, PARAMS, [Portfolio(positions=_straddle(1))])
    assert info.value.field == "underlyings.BTC.updated_at"
    assert info.value.age == PARAMS.max_feed_age_seconds + 1


def test_isolated_margin_charges_volatile_collateral_alone() -> None:
    # A covered call: short calls against ETH collateral. Isolated = the calls alone + the ETH alone (USDC: 0).
    market = make_market()
    call = Position(option("ETH", MONTH, 3_300, True), size(-20))
    collateral = (("ETH", size(20)), ("USDC", size(5_000)))
    report = compute_account_report(market, PARAMS, Portfolio(positions=(call,), collateral=collateral))
    alone = compute_book(
        market,
        PARAMS,
        [
            Portfolio(positions=(call,), account=account(1)),
            Portfolio(collateral=(("ETH", size(20)),), account=account(2)),
            Portfolio(collateral=(("USDC", size(5_000)),), account=account(3)),
        ],
    )
    charges = [a.maintenance_margin for a in alone.accounts]
    assert charges[1] > 0 and charges[2] == 0  # ETH collateral can fall, USDC cannot
    assert report.isolated_margin == sum(charges)
    assert 0 < report.maintenance_margin <= report.isolated_margin
    assert report.capital_released == report.isolated_margin - report.maintenance_margin > 0
    # Cross margin nets the collateral's delta (0.9 per ETH after the 10% haircut) against the calls' (negative).
    naked = compute_account_report(market, PARAMS, Portfolio(positions=(call,)))
    eth = compute_account_report(market, PARAMS, Portfolio(collateral=(("ETH", size(20)),)))
    assert eth.cross_margin == pytest.approx(20 * 0.9 * 3_000 * 0.20 * MONEY_SCALE, rel=1e-12)
    assert report.cross_margin < naked.cross_margin + eth.cross_margin


def test_isolated_margin_is_never_below_portfolio_margin_on_random_books() -> None:
    # Sub-additivity of the counted max loss over one scenario set: a guard on the implementation.
    rng = random.Random(20261125)
    market = make_market()
    instruments = [random_instrument(rng, market) for _ in range(40)]
    for n in range(80):
        portfolio = random_portfolio(rng, market, instruments, 6, n)
        report = compute_account_report(market, PARAMS, portfolio)
        assert report.maintenance_margin <= report.isolated_margin, portfolio
        assert report.capital_released >= 0
