"""Positive homogeneity of portfolio margin, the property one-step liquidation rests on (docs/liquidation.md).

A bid takes fraction f of every position, balance and the cash of an account, each rounded toward zero as the ledger
does (`MarginAccounts.transferBook`). The engine's MM of the moved book is f x MM(book) up to the rounding of the
sizes and the per-account ceiling of the extreme scenarios' cover fractions:

    |MM(f x book) - f x MM(book)| < sum over held rows i with f x size_i not an integer of (R_i + a_i) + 1
    |E(f x book) - f x E(book)|   <= sum over those rows of |base_i| + 2

in MONEY, with R_i the largest |scenario P&L| of one size unit of row i, a_i its short-option add-on per unit and
base_i its value per unit (docs/liquidation.md, "Rounding", proves both).
"""

from __future__ import annotations

import dataclasses
import math
import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params
from pmoracle.keeper.decision import AuctionParams, max_fraction, quote
from pmoracle.risk.inputs import Instrument, Portfolio, Position
from pmoracle.risk.margin import Book
from pmoracle.risk.table import CollateralRef

from .factories import account, concentration_params, make_market, random_instrument, random_portfolio

PARAMS = default_params()
MARKET = make_market()
WAD = 10**18


def merged(portfolio: Portfolio) -> Portfolio:
    """Return the portfolio with one position per instrument (as the ledger holds it), funding realized into cash."""
    books: dict[Instrument, tuple[int, int]] = {}
    cash = portfolio.cash
    for p in portfolio.positions:
        size, cost = books.get(p.instrument, (0, 0))
        books[p.instrument] = (size + p.size, cost + p.cost)
        cash -= p.funding
    positions = tuple(Position(i, s, cost=c) for i, (s, c) in books.items() if s != 0)
    return Portfolio(positions=positions, collateral=portfolio.collateral, account=portfolio.account, cash=cash)


def toward_zero(x: int, num: int, den: int) -> int:
    """Return x x num / den rounded toward zero (Solidity's signed division)."""
    q = abs(x) * num // den
    return q if x >= 0 else -q


def fraction_of(portfolio: Portfolio, f: int) -> Portfolio:
    """Return what `transferBook` moves for fraction ``f`` (WAD): each size, cost and balance rounded toward zero."""
    positions = []
    for p in portfolio.positions:
        moved = toward_zero(p.size, f, WAD)
        if moved != 0:
            positions.append(Position(p.instrument, moved, cost=toward_zero(p.cost, moved, p.size)))
    collateral = tuple((s, a * f // WAD) for s, a in portfolio.collateral if a * f // WAD != 0)
    return Portfolio(tuple(positions), collateral, account(2), toward_zero(portfolio.cash, f, WAD))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32), f=st.integers(1, WAD), n=st.integers(1, 12))
def test_margin_of_a_fraction_of_a_book_is_the_fraction_of_its_margin(seed: int, f: int, n: int) -> None:
    rng = random.Random(seed)
    instruments = [random_instrument(rng, MARKET) for _ in range(8)]
    book = merged(random_portfolio(rng, MARKET, instruments, n, 1))
    part = fraction_of(book, f)
    engine = Book(MARKET, PARAMS, [book, part])
    whole, moved = engine.account_margin(0), engine.account_margin(1)
    scenarios = engine.arrays.scenarios
    assert int(scenarios.cover_num.max()) <= scenarios.cover_den  # a cover fraction never exceeds 1
    rows = {inst: i for i, inst in enumerate(engine.arrays.instruments)}
    sizes = {rows[p.instrument]: p.size for p in book.positions}
    sizes |= {rows[CollateralRef(symbol)]: amount for symbol, amount in book.collateral}
    mm_bound = 1
    equity_bound = 2
    for i, size in sizes.items():
        if size * f % WAD == 0:
            continue  # moved exactly
        mm_bound += int(abs(engine.arrays.r[i]).max()) + int(engine.arrays.addon[i])
        equity_bound += abs(int(engine.arrays.base[i]))
    assert abs(WAD * moved.maintenance_margin - f * whole.maintenance_margin) < WAD * mm_bound
    assert abs(WAD * moved.equity - f * whole.equity) <= WAD * equity_bound
    # what stays with the account carries the rest, within the same bound (the two parts are complementary)
    moved_of = {q.instrument: q for q in part.positions}
    kept_positions = []
    for p in book.positions:
        q = moved_of.get(p.instrument, Position(p.instrument, 0))
        if p.size != q.size:
            kept_positions.append(Position(p.instrument, p.size - q.size, cost=p.cost - q.cost))
    moved_collateral = dict(part.collateral)
    kept_collateral = tuple(
        (s, a - moved_collateral.get(s, 0)) for s, a in book.collateral if a != moved_collateral.get(s, 0)
    )
    rest = Portfolio(tuple(kept_positions), kept_collateral, account(3), book.cash - part.cash)
    kept = Book(MARKET, PARAMS, [book, rest]).account_margin(1)
    assert abs(WAD * kept.maintenance_margin - (WAD - f) * whole.maintenance_margin) < WAD * mm_bound
    assert abs(WAD * kept.equity - (WAD - f) * whole.equity) <= WAD * equity_bound


AUCTION = AuctionParams(
    buffer=WAD // 10,
    fast_discount=WAD // 50,
    max_discount=WAD // 10,
    fast_phase=300,
    slow_phase=3600,
    fee_share=WAD // 5,
    min_fraction=WAD // 20,
)  # fmt: skip  (the devnet's LIQUIDATION_PARAMS)
CONCENTRATED = concentration_params()


def complement(book: Portfolio, part: Portfolio, cash: int) -> Portfolio:
    """Return what stays with the account after ``part`` moved: every size, cost and balance less the moved one."""
    moved_of = {q.instrument: q for q in part.positions}
    positions = []
    for p in book.positions:
        q = moved_of.get(p.instrument, Position(p.instrument, 0))
        if p.size != q.size:
            positions.append(Position(p.instrument, p.size - q.size, cost=p.cost - q.cost))
    moved = dict(part.collateral)
    collateral = tuple((s, a - moved.get(s, 0)) for s, a in book.collateral if a != moved.get(s, 0))
    return Portfolio(tuple(positions), collateral, account(3), cash)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 10), health=st.integers(0, 99), discount=st.integers(0, WAD // 10))
def test_the_contracts_fraction_restores_a_book_under_the_convex_concentration_addon(
    seed: int, n: int, health: int, discount: int
) -> None:
    """The Liquidator's f* assumes MM((1 - f) x) = (1 - f) MM(x); the add-on is convex, so the engine's MM of what
    stays is at most that (up to the size rounding bound above) and the account is restored (docs/liquidation.md,
    "The concentration add-on")."""
    rng = random.Random(seed)
    instruments = [random_instrument(rng, MARKET) for _ in range(6)]
    book = merged(random_portfolio(rng, MARKET, instruments, n, 1))
    first = Book(MARKET, CONCENTRATED, [book])
    mm = first.account_margin(0).maintenance_margin
    assume(mm > 0)
    # move the cash so that d M <= E < M: breached, and not a whole-book auction
    target = mm * discount // WAD + (mm - mm * discount // WAD) * health // 100
    book = dataclasses.replace(book, cash=book.cash + (target - first.account_margin(0).equity) * 10**10)
    engine = Book(MARKET, CONCENTRATED, [book])
    whole = engine.account_margin(0)
    equity, mm = whole.equity * 10**10, whole.maintenance_margin * 10**10  # USD WAD, as attested
    assert equity < mm
    f = max_fraction(AUCTION, equity, mm, discount)
    bid = quote(AUCTION, f, equity, mm, discount)
    part = fraction_of(book, f)
    rest = complement(book, part, book.cash - part.cash + bid.payment)
    after = Book(MARKET, CONCENTRATED, [book, rest])
    kept = after.account_margin(1)
    rows = {inst: i for i, inst in enumerate(after.arrays.instruments)}
    sizes = {rows[p.instrument]: p.size for p in book.positions}
    sizes |= {rows[CollateralRef(symbol)]: amount for symbol, amount in book.collateral}
    epsilon = 3 + len(after.scenarios.underlyings)  # MONEY: floors and ceilings, one per underlying's add-on
    for i, size in sizes.items():
        if size * f % WAD:
            r = after.arrays
            epsilon += int(abs(r.r[i]).max()) + int(r.addon[i]) + abs(int(r.base[i]))
            # the kept exposure is off (1 - f) Q by under |delta| per position: the add-on's slope times that
            u = int(r.table.und[i])
            if u >= 0:
                reach = abs(after.exposures(0)[u]) + abs(int(r.delta[i]))
                epsilon += math.ceil(1.5 * float(r.concentration_coef[u]) * math.sqrt(reach) * abs(int(r.delta[i])))
    # MM of what stays is at most (1 - f) M: homogeneity is an inequality, in the safe direction
    assert WAD * kept.maintenance_margin <= (WAD - f) * whole.maintenance_margin + WAD * epsilon
    # so the bid restores the account: E' >= (1 + b) MM', the buffer covering the rounding
    assert 10 * kept.equity >= 11 * kept.maintenance_margin - 20 * epsilon
    if AUCTION.buffer * (WAD - f) // WAD * whole.maintenance_margin >= WAD * 2 * epsilon:
        assert kept.equity >= kept.maintenance_margin
