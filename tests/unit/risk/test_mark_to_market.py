"""Equity marks futures and perpetuals to market and counts the ledger: checked against the maths, written out here.

Equity = sum over positions of size x mark + (cash - costs - funding), in MONEY with one floor per account
(docs/risk-model.md, "Equity"). The expected values below come from that definition in exact decimals (or, for a
forward derived from the rate, ``math.exp`` within a stated tolerance), never from the engine's helpers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params
from pmoracle.errors import InputError
from pmoracle.risk.inputs import (
    MAX_BALANCE,
    MONEY_SCALE,
    PRICE_SCALE,
    WAD,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
)
from pmoracle.risk.margin import AccountMargin, compute_book

from .factories import DAY, EXPIRIES, T0, account, make_market, option, size

PARAMS = default_params()
BTC_PERP = Instrument("BTC", InstrumentKind.PERPETUAL)
ETH_PERP = Instrument("ETH", InstrumentKind.PERPETUAL)
ETH_FUTURE_QUOTED = Instrument("ETH", InstrumentKind.FUTURE, expiry=EXPIRIES[2])  # forward quoted at index x 1.01
BTC_FUTURE_RATE = Instrument("BTC", InstrumentKind.FUTURE, expiry=EXPIRIES[3])  # forward from the 3% rate


def usd(amount: str | int | Decimal) -> int:
    """Return a USD amount in WAD, exactly."""
    wad = Decimal(amount) * WAD
    assert wad == int(wad)
    return int(wad)


def money(amount: Decimal | int) -> int:
    """Return a USD amount in MONEY (1e-8 USD), floored toward minus infinity like the engine's one rounding."""
    return math.floor(Decimal(amount) * MONEY_SCALE)


def equity_of(portfolio: Portfolio, market: MarketSnapshot | None = None) -> int:
    """Return the engine's equity of one account."""
    return compute_book(market or make_market(), PARAMS, [portfolio]).accounts[0].equity


def test_long_perpetual_with_funding_owed() -> None:
    # long 2 BTC perpetual bought at 90,000, index 95,000, funding owed 120 USD: 2 x 95,000 - 180,000 - 120
    position = Position(BTC_PERP, size(2), cost=usd(2 * 90_000), funding=usd(120))
    assert equity_of(Portfolio(positions=(position,), account=account(1))) == money(9_880)


def test_short_perpetual_in_profit_with_funding_received_and_cash() -> None:
    # short 1.5 ETH perpetual sold at 3,100.25, index 3,000, funding received 7.125, cash owed 500.5
    position = Position(ETH_PERP, size(-1.5), cost=usd("-4650.375"), funding=usd("-7.125"))
    portfolio = Portfolio(positions=(position,), account=account(2), cash=usd("-500.5"))
    expected = Decimal("-1.5") * 3_000 - Decimal("-4650.375") - Decimal("-7.125") + Decimal("-500.5")
    assert expected == Decimal("-343.0")
    assert equity_of(portfolio) == money(expected)


def test_dated_future_at_its_quoted_forward() -> None:
    # the ETH forward of EXPIRIES[2] is quoted at 3,000 x 1.01 = 3,030: long 5 bought at 3,000 gains 5 x 30
    position = Position(ETH_FUTURE_QUOTED, size(5), cost=usd(5 * 3_000))
    assert equity_of(Portfolio(positions=(position,))) == money(150)
    # at ETH 3,300 the forward is quoted at 3,333: the mark is the forward, not the index (that would give 1,500)
    assert equity_of(Portfolio(positions=(position,)), make_market(eth=3_300.0)) == money(5 * 3_333 - 15_000)


def test_dated_future_at_the_forward_of_the_rate() -> None:
    # F = 95,000 x exp(0.03 x 90/365) for the 90-day BTC future; short 3 sold at 95,500
    forward = 95_000 * math.exp(0.03 * (EXPIRIES[3] - T0) / (365 * DAY))
    position = Position(BTC_FUTURE_RATE, size(-3), cost=usd(-3 * 95_500))
    expected_usd = -3 * forward + 3 * 95_500
    got = equity_of(Portfolio(positions=(position,)))
    # the engine's forward differs from math.exp's in the last bits, and its mark is quantized to 1e-4 USD per unit
    assert abs(got - expected_usd * MONEY_SCALE) <= 3 * 0.5e-4 * MONEY_SCALE + 1
    assert -620 < expected_usd < -610  # F ~ 95,705.3: sold below the forward, a loss of the carry


def test_unrealized_pnl_is_size_times_the_move_of_the_mark() -> None:
    position = Position(BTC_PERP, size(-0.7), cost=usd("-66150"))  # short 0.7 at 94,500
    at = {index: equity_of(Portfolio(positions=(position,)), make_market(btc=index)) for index in (80_000.0, 95_000.0)}
    assert at[95_000.0] == money(Decimal("-0.7") * 95_000 + 66_150)
    assert at[80_000.0] - at[95_000.0] == money(Decimal("0.7") * 15_000)


def test_settled_positions_are_their_cash_payoff() -> None:
    """A book just expired, valued on an index equal to the settlement price, has the equity of the settled book."""
    settlement = "97250.5"
    call = option("BTC", EXPIRIES[0], 90_000, True)
    put = option("BTC", EXPIRIES[0], 100_000, False)
    otm_put = option("BTC", EXPIRIES[0], 80_000, False)
    future = Instrument("BTC", InstrumentKind.FUTURE, expiry=EXPIRIES[0])
    expired = make_market(btc=float(settlement), time=EXPIRIES[0])  # at expiry: valued on the index, not priced
    before = Portfolio(
        positions=(
            Position(call, size(3)),
            Position(put, size(-2)),
            Position(otm_put, size(-4)),
            Position(future, size(-2), cost=usd(-2 * 91_000)),
        ),
        account=account(3),
        cash=usd("1234.567"),
    )
    s = Decimal(settlement)
    payoff = 3 * (s - 90_000) - 2 * (100_000 - s) - 4 * 0 + (-2 * s + 2 * 91_000)  # options' payoffs + futures P&L
    after = Portfolio(account=account(3), cash=usd("1234.567") + usd(payoff))
    assert equity_of(before, expired) == equity_of(after, expired) == money(payoff + Decimal("1234.567"))
    assert payoff == Decimal("3751.5")


def test_a_fixed_settlement_price_makes_an_expired_position_its_constant_settlement_value() -> None:
    """Once the settlement price is fixed on chain, an expired, unsettled position is worth exactly what `settle`
    will pay, whatever the index does meanwhile, and carries no risk: equity, IM and MM equal the settled book's."""
    call = option("BTC", EXPIRIES[0], 90_000, True)
    put = option("BTC", EXPIRIES[0], 100_000, False)
    future = Instrument("BTC", InstrumentKind.FUTURE, expiry=EXPIRIES[0])
    live_put = option("BTC", EXPIRIES[3], 80_000, False)  # a live hedge: margin that must not change
    settlement = 97_250
    base = make_market(btc=103_000.0, time=EXPIRIES[0] + 3_600)  # the index moved on after the expiry
    btc = dataclasses.replace(base.underlyings[0], settlements=((EXPIRIES[0], settlement * PRICE_SCALE),))
    fixed = dataclasses.replace(base, underlyings=(btc, base.underlyings[1]))
    before = Portfolio(
        positions=(Position(call, size(3)), Position(put, size(-2)), Position(future, size(-2), cost=usd(-2 * 91_000)),
                   Position(live_put, size(-1))),
        account=account(4), cash=usd(10_000),
    )  # fmt: skip
    payoff = 3 * (settlement - 90_000) - 2 * (100_000 - settlement) + (-2 * settlement + 2 * 91_000)
    after = Portfolio(positions=(Position(live_put, size(-1)),), account=account(4), cash=usd(10_000 + payoff))
    (m_before, m_after) = compute_book(fixed, PARAMS, [before, after]).accounts
    assert margins(m_before) == margins(m_after)
    assert m_before.equity == m_after.equity == equity_of(after, fixed)
    # on the index instead (no price fixed yet) the same book is worth what the index says: a different equity
    unfixed = equity_of(before, base)
    assert unfixed != m_before.equity
    # the calls gain the move, the short puts no longer owe their 2,750, the short futures lose the move
    move = 103_000 - settlement
    assert unfixed - m_before.equity == money(3 * move + 2 * (100_000 - settlement) - 2 * move)


def test_one_floor_per_account_toward_minus_infinity() -> None:
    unit = 10**10  # wei per MONEY unit
    for cash, expected in ((-1, -1), (unit - 1, 0), (-unit, -1), (-unit - 1, -2), (unit, 1)):
        assert equity_of(Portfolio(account=account(4), cash=cash)) == expected, cash
    # per-balance rounding would give 0 + 0: the account's total is one MONEY unit exactly
    received = Position(BTC_PERP, size(1), cost=usd(95_000), funding=-1)
    assert equity_of(Portfolio(positions=(received,), cash=unit - 1)) == 1


# --- properties -----------------------------------------------------------------------------------------------------

MARKET = make_market()
POOL = (
    BTC_PERP,
    ETH_PERP,
    ETH_FUTURE_QUOTED,
    BTC_FUTURE_RATE,
    Instrument("BTC", InstrumentKind.FUTURE, expiry=EXPIRIES[1]),
    option("BTC", EXPIRIES[2], 95_000, True),
    option("ETH", EXPIRIES[3], 2_500, False),
    option("BTC", EXPIRIES[1], 110_000, False),
)
BALANCE = st.integers(-(10**25), 10**25)  # +-1e7 USD to the wei
ROUND_BALANCE = st.integers(-(10**15), 10**15).map(lambda x: x * 10**10)  # whole MONEY units


@st.composite
def positions(draw: st.DrawFn, balances: st.SearchStrategy[int]) -> Position:
    """Return a position of the pool, with a cost (futures, perpetuals) and funding (perpetuals) where it may."""
    instrument = draw(st.sampled_from(POOL))
    sz = draw(st.integers(-(10**7), 10**7))
    cost = draw(balances) if not instrument.is_option else 0
    funding = draw(balances) if instrument.kind == InstrumentKind.PERPETUAL else 0
    return Position(instrument, sz, cost=cost, funding=funding)


@st.composite
def portfolios(draw: st.DrawFn, balances: st.SearchStrategy[int] = BALANCE) -> Portfolio:
    """Return a random book: up to six positions, collateral, cash."""
    held = tuple(draw(st.lists(positions(balances), max_size=6)))
    collateral = tuple((symbol, draw(st.integers(1, 10**9))) for symbol in ("ETH", "USDC") if draw(st.booleans()))
    return Portfolio(positions=held, collateral=collateral, account=account(5), cash=draw(balances))


def parts_of(portfolio: Portfolio) -> list[Portfolio]:
    """Return the book split into one account per position (with its cost and funding), its collateral, its cash."""
    parts = [Portfolio(positions=(p,), account=account(6 + k)) for k, p in enumerate(portfolio.positions)]
    parts.append(Portfolio(collateral=portfolio.collateral, account=account(1), cash=portfolio.cash))
    return parts


def margins(margin: AccountMargin) -> tuple[int, int, int]:
    """Return what must not depend on the ledger: IM, MM and the worst scenario."""
    return margin.initial_margin, margin.maintenance_margin, margin.worst_scenario


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portfolios())
def test_equity_is_additive_over_positions_and_cash(portfolio: Portfolio) -> None:
    parts = parts_of(portfolio)
    result = compute_book(MARKET, PARAMS, [portfolio, *parts])
    whole, pieces = result.accounts[0].equity, sum(a.equity for a in result.accounts[1:])
    # one floor per account: floor(sum) - sum(floors) is in [0, number of parts - 1]
    assert 0 <= whole - pieces <= len(parts) - 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portfolios(ROUND_BALANCE))
def test_equity_is_exactly_additive_for_whole_money_balances(portfolio: Portfolio) -> None:
    result = compute_book(MARKET, PARAMS, [portfolio, *parts_of(portfolio)])
    assert result.accounts[0].equity == sum(a.equity for a in result.accounts[1:])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portfolios(), st.data())
def test_margin_is_invariant_to_cost_cash_and_funding(portfolio: Portfolio, data: st.DataObject) -> None:
    rebalanced = dataclasses.replace(
        portfolio,
        cash=data.draw(BALANCE),
        positions=tuple(
            dataclasses.replace(
                p,
                cost=data.draw(BALANCE) if not p.instrument.is_option else 0,
                funding=data.draw(BALANCE) if p.instrument.kind == InstrumentKind.PERPETUAL else 0,
            )
            for p in portfolio.positions
        ),
    )
    bare = dataclasses.replace(
        portfolio, cash=0, positions=tuple(Position(p.instrument, p.size) for p in portfolio.positions)
    )
    result = compute_book(MARKET, PARAMS, [portfolio, rebalanced, bare])
    assert margins(result.accounts[0]) == margins(result.accounts[1]) == margins(result.accounts[2])
    # and the ledger moves equity by exactly its folded balance
    owed = sum(p.cost + p.funding for p in portfolio.positions)
    assert result.accounts[0].equity - result.accounts[2].equity == (portfolio.cash - owed) // 10**10


def test_ledger_fields_are_validated_where_they_cannot_apply_or_are_too_large() -> None:
    future = Instrument("BTC", InstrumentKind.FUTURE, expiry=EXPIRIES[1])
    call = option("BTC", EXPIRIES[1], 95_000, True)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("cost", lambda: Position(call, size(1), cost=1)),
        ("funding", lambda: Position(call, size(1), funding=1)),
        ("funding", lambda: Position(future, size(1), cost=1, funding=1)),
        ("cost", lambda: Position(BTC_PERP, size(1), cost=MAX_BALANCE + 1)),
        ("funding", lambda: Position(BTC_PERP, size(1), funding=-MAX_BALANCE - 1)),
        ("cash", lambda: Portfolio(cash=MAX_BALANCE + 1)),
        ("cash", lambda: Portfolio(cash=1.5)),  # type: ignore[arg-type]
    ]
    for field, build in cases:
        with pytest.raises(InputError) as info:
            build()
        assert info.value.field == field
    # at the bounds: accepted
    Position(BTC_PERP, size(1), cost=-MAX_BALANCE, funding=MAX_BALANCE)
    Portfolio(cash=-MAX_BALANCE)
    assert MAX_BALANCE == 10**10 * WAD
