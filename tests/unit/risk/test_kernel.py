"""The numba kernels equal the pure-Python reference bit for bit, for any thread count, order or update path."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numba
import numpy as np
import pytest

from pmoracle.config.params import default_params, default_params_text, load_params_file
from pmoracle.risk.errors import AccountOverflowError
from pmoracle.risk.inputs import MAX_BALANCE, MAX_SIZE, Instrument, InstrumentKind, Portfolio, Position
from pmoracle.risk.margin import Book, compute_accounts, compute_book, compute_risk_arrays, portfolio_instruments
from pmoracle.risk.params import RiskParams, parse_params
from pmoracle.risk.reference import ReferenceRoll, reference_account, reference_cash, reference_row
from pmoracle.risk.scenarios import compute_scenarios
from pmoracle.risk.table import CollateralRef, RiskInstrument, build_instrument_table

from .factories import account, folded_cash, make_market, random_instrument, random_portfolio

PARAMS = default_params()
# Deribit's extended table (extreme moves on vol up, each counted at cover / |move|: a cover denominator not 1e6)
# and roll shock
EXTENDED = load_params_file(Path(__file__).resolve().parents[3] / "examples" / "params" / "deribit-pm.toml")
# SPAN's usual volatility scan range: the shift in vol points (vol + shock x k), tenor-scaled and clamped
ABSOLUTE = parse_params(default_params_text().replace("shift = 0.25\n", 'shift = 0.1\nshift_unit = "absolute"\n', 1))
# Deribit's extended table with a dampener (extreme.dampener_usd): each extended move's counted P&L toward zero
DAMPENED = dataclasses.replace(EXTENDED, extreme_dampener=1_000 * 10**8)  # 1,000 USD
BOTH = pytest.mark.parametrize(
    "params",
    [PARAMS, EXTENDED, ABSOLUTE, DAMPENED],
    ids=["default", "deribit-extended", "absolute-vol-shift", "deribit-dampened"],
)


def ledger_cash(portfolio: Portfolio) -> int:
    """Return the portfolio's folded cash by the reference."""
    positions = portfolio.positions
    return reference_cash(portfolio.cash, [p.cost for p in positions], [p.funding for p in positions])


def _random_book(seed: int, vol: float, n_instruments: int, n_accounts: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    market = make_market(btc=rng.uniform(20_000, 200_000), eth=rng.uniform(500, 10_000), vol=vol)
    instruments = sorted({random_instrument(rng, market) for _ in range(n_instruments)})
    portfolios = [random_portfolio(rng, market, instruments, 20, a) for a in range(n_accounts)]
    return market, portfolios


@BOTH
@pytest.mark.parametrize(("seed", "vol"), [(1, 0.01), (2, 0.6), (3, 3.0)])
def test_risk_arrays_equal_reference(seed: int, vol: float, params: RiskParams) -> None:
    rng = random.Random(seed)
    market = make_market(btc=rng.uniform(20_000, 200_000), eth=rng.uniform(500, 10_000), vol=vol)
    distinct: set[RiskInstrument] = set()
    while len(distinct) < 260:
        distinct.add(random_instrument(rng, market))
    instruments: list[RiskInstrument] = sorted(distinct, key=repr)
    instruments += [CollateralRef(a.symbol) for a in market.assets]
    arrays = compute_risk_arrays(market, params, instruments, compute_scenarios(params, market))
    cases = 0
    for i in range(len(arrays.instruments)):
        row = reference_row(arrays.table, arrays.scenarios, i)
        assert row.status == 0
        assert row.pnl == tuple(int(x) for x in arrays.r[i]), arrays.instruments[i]
        assert row.base == int(arrays.base[i])
        assert row.addon == int(arrays.addon[i])
        cases += len(row.pnl)
    assert cases >= 34_000  # three seeds: > 100k instrument-scenario values in all
    assert np.abs(arrays.r).max() > 0
    expired = [k for k, t in zip(arrays.table.kind, arrays.table.tau, strict=True) if k in (1, 2, 3) and t == 0.0]
    assert len(expired) >= 20 and {1, 2, 3} <= set(expired)  # expired futures, calls and puts in the batch


@BOTH
@pytest.mark.parametrize(("seed", "vol"), [(4, 0.01), (5, 0.8), (6, 3.0)])
def test_accounts_equal_reference(seed: int, vol: float, params: RiskParams) -> None:
    market, portfolios = _random_book(seed, vol, 120, 150)
    book = Book(market, params, portfolios)
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    im = (params.im_multiplier.numerator, params.im_multiplier.denominator)
    roll = ReferenceRoll(tuple(book.arrays.roll_bucket.tolist()), tuple(book.arrays.roll_coef.tolist()))
    cases = extreme_worst = 0
    for a in range(len(book)):
        positions = book.positions_of(a)
        cash = ledger_cash(portfolios[a])
        assert cash == folded_cash(portfolios[a])
        ref = reference_account(rows, positions, book.scenarios, im, params.im_min_buffer, cash, None, roll)
        got = book.account_margin(a)
        assert (ref.maintenance_margin, ref.initial_margin, ref.equity, ref.worst) == (
            got.maintenance_margin, got.initial_margin, got.equity, got.worst_scenario,
        )  # fmt: skip
        assert got.initial_margin >= got.maintenance_margin >= 0
        assert got.is_empty == (not positions and cash == 0)
        cases += len(positions) * len(book.scenarios)
        extreme_worst += bool(book.scenarios.is_extreme[got.worst_scenario])
    assert cases >= 35_000
    if params is EXTENDED:  # the extended moves, vol up and their own covers, decide many of these accounts
        assert book.scenarios.cover_den == 4125 and extreme_worst >= 30
        assert book.arrays.roll_coef.size >= 8  # and the roll shock charges the perpetuals and every expiry
    if params is DAMPENED:  # the dampener lowers many of those margins, some still decided by a dampened move
        plain = Book(market, EXTENDED, portfolios)
        lowered = sum(book.account_margin(a).maintenance_margin < plain.account_margin(a).maintenance_margin
                      for a in range(len(book)))  # fmt: skip
        print(f"seed {seed}: {lowered} of {len(book)} margins lowered, {extreme_worst} still extended")
        assert lowered >= 10 and extreme_worst >= 5
    # the books carry every ledger balance: cash, futures and perpetual costs, perpetual funding
    held = [p for portfolio in portfolios for p in portfolio.positions]
    assert sum(p.cash != 0 for p in portfolios) > 50
    assert sum(p.cost != 0 for p in held) > 100 and sum(p.funding != 0 for p in held) > 15


@pytest.mark.parametrize("params", [PARAMS, DAMPENED], ids=["default", "deribit-dampened"])
def test_one_and_two_threads_and_any_order_agree(params: RiskParams) -> None:
    market, portfolios = _random_book(7, 0.7, 200, 400)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = compute_book(market, params, portfolios)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = compute_book(market, params, portfolios)
    finally:
        numba.set_num_threads(previous)
    assert one == two
    order = list(range(len(portfolios)))
    random.Random(8).shuffle(order)
    shuffled = compute_book(market, params, [portfolios[k] for k in order])
    by_account = {a.account: a for a in shuffled.accounts}
    assert tuple(by_account[a.account] for a in one.accounts) == one.accounts
    # Positions listed in another order (and split into duplicates) give the same account.
    k = next(k for k, p in enumerate(portfolios) if p.cash != 0 and sum(x.cost != 0 for x in p.positions) >= 2)
    p = portfolios[k]
    reordered = dataclasses.replace(p, positions=tuple(reversed(p.positions)))
    assert compute_book(market, params, [reordered]).accounts[0] == one.accounts[k]


@pytest.mark.parametrize("params", [PARAMS, DAMPENED], ids=["default", "deribit-dampened"])
def test_incremental_update_equals_full_recompute(params: RiskParams) -> None:
    rng = random.Random(9)
    market, portfolios = _random_book(9, 0.6, 150, 200)
    book = Book(market, params, portfolios)
    fresh_instruments = sorted({random_instrument(rng, market) for _ in range(30)})
    for step in range(40):
        index = rng.randrange(len(portfolios))
        held = [p.instrument for p in portfolios[index].positions]
        pool = fresh_instruments if step % 3 == 0 or not held else held
        portfolios[index] = random_portfolio(rng, market, pool, 25 if step % 2 else 3, index)
        book.update_account(index, portfolios[index])
    assert book.result() == compute_book(market, params, portfolios)


def test_the_books_result_is_each_accounts_margin() -> None:
    """``result()`` reads the kernel's arrays at once: the same values, emptiness included, as account by account."""
    market, portfolios = _random_book(14, 0.6, 120, 60)
    portfolios += [Portfolio(account=account(200)), Portfolio(account=account(201), cash=-1)]  # empty; cash only
    book = Book(market, PARAMS, portfolios)
    result = book.result()
    assert result.accounts == tuple(book.account_margin(i) for i in range(len(portfolios)))
    assert [a.is_empty for a in result.accounts[-2:]] == [True, False]
    assert all(type(v) is int for a in result.accounts for v in (a.initial_margin, a.equity, a.worst_scenario))


def test_overflow_is_reported_not_wrapped() -> None:
    market, portfolios = _random_book(10, 0.6, 40, 5)
    whale_positions = tuple(Position(x.instrument, MAX_SIZE) for x in portfolios[1].positions[:1]) * 40
    whale = Portfolio(positions=whale_positions, account=account(99))
    assert whale_positions, "the random portfolio must hold a position"
    with pytest.raises(AccountOverflowError) as info:
        compute_book(market, PARAMS, [*portfolios, whale])
    assert info.value.account == account(99)
    assert info.value.bound >= 2.0**62 * (1 - 2**-20)
    # The reference agrees that the bound is exceeded, and the exact sum really is beyond int64.
    book = Book(market, PARAMS, portfolios)
    with pytest.raises(AccountOverflowError):
        book.update_account(0, whale)
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    ref = reference_account(rows, book.positions_of(0), book.scenarios, (5, 4), 0)
    assert ref.status == 1


@pytest.mark.parametrize("n_positions", [6, 10])  # folded cash beyond 2**62, and beyond int64 itself
def test_ledger_balances_beyond_int64_are_reported_not_wrapped(n_positions: int) -> None:
    market, portfolios = _random_book(13, 0.6, 40, 5)
    perp = Instrument("BTC", InstrumentKind.PERPETUAL)
    # each cost alone is valid (the largest balance), their sum folds to n x 1e18 MONEY
    shorts = tuple(Position(perp, -1, cost=-MAX_BALANCE) for _ in range(n_positions))
    rich = Portfolio(positions=shorts, account=account(98), cash=MAX_BALANCE)
    assert folded_cash(rich) >= 2**62
    with pytest.raises(AccountOverflowError) as info:
        compute_book(market, PARAMS, [*portfolios, rich])
    assert info.value.account == account(98)
    per_unit = float(Book(market, PARAMS, [rich]).arrays.bound[0])
    assert info.value.bound == float(folded_cash(rich)) + n_positions * per_unit
    book = Book(market, PARAMS, portfolios)
    with pytest.raises(AccountOverflowError):
        book.update_account(2, rich)
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    ref = reference_account(rows, book.positions_of(2), book.scenarios, (5, 4), 0, ledger_cash(rich))
    assert ref.status == 1
    # the same balances netting to nothing: no overflow, equity is the positions' marks only
    alternating = tuple(Position(perp, -1, cost=(-1) ** k * MAX_BALANCE) for k in range(n_positions))
    netted = Portfolio(positions=alternating, account=account(98))
    assert book.update_account(2, netted).equity == -n_positions * int(book.arrays.base[book._rows[perp]])


def test_incremental_update_of_cash_alone() -> None:
    market, portfolios = _random_book(14, 0.6, 60, 30)
    book = Book(market, PARAMS, portfolios)
    before = book.account_margin(4)
    moved = dataclasses.replace(portfolios[4], cash=portfolios[4].cash + 123 * 10**18 + 1)
    after = book.update_account(4, moved)
    assert after.equity == before.equity + 123 * 10**8 + (folded_cash(moved) - folded_cash(portfolios[4]) - 123 * 10**8)
    assert after.equity - before.equity in (123 * 10**8, 123 * 10**8 + 1)  # one floor per account
    assert (after.initial_margin, after.maintenance_margin, after.worst_scenario) == (
        before.initial_margin, before.maintenance_margin, before.worst_scenario,
    )  # fmt: skip
    portfolios[4] = moved
    assert book.result() == compute_book(market, PARAMS, portfolios)
    # an account holding only cash has a leaf (is not empty); one with nothing at all has none
    book.update_account(5, Portfolio(account=account(5), cash=-1))
    assert book.account_margin(5).equity == -1 and not book.account_margin(5).is_empty
    book.update_account(5, Portfolio(account=account(5), cash=10**10 - 1))
    assert book.account_margin(5).equity == 0 and book.account_margin(5).is_empty


def test_table_rejects_nothing_valid_and_matches_scenarios() -> None:
    market, portfolios = _random_book(11, 0.6, 20, 5)
    scenarios = compute_scenarios(PARAMS, market)
    held = sorted({x for p in portfolios for x in portfolio_instruments(p)}, key=repr)
    table = build_instrument_table(market, PARAMS, scenarios, tuple(held))
    assert len(table.instruments) == len(held)


def test_int32_copy_of_the_risk_arrays_gives_identical_accounts() -> None:
    market, portfolios = _random_book(12, 0.9, 120, 300)
    book = Book(market, PARAMS, portfolios)
    assert book.arrays.r_narrow is not None
    args = (book.arrays, PARAMS, book._starts, book._ends, book._inst, book._size, book._cash)
    narrow, wide = compute_accounts(*args, narrow=True), compute_accounts(*args, narrow=False)
    for name in ("maintenance_margin", "initial_margin", "equity", "worst", "status"):
        assert np.array_equal(getattr(narrow, name), getattr(wide, name))
    # A price far beyond 2**31 quantized units per unit keeps only the int64 array.
    rich = make_market(btc=5e9)
    perp = Instrument("BTC", InstrumentKind.PERPETUAL)
    assert Book(rich, PARAMS, [Portfolio(positions=(Position(perp, 1),))]).arrays.r_narrow is None


def test_worst_scenario_in_the_extremes_and_ties_equal_reference() -> None:
    # Short deep out-of-the-money puts lose most in an extreme move (counted at its cover fraction); flat books
    # tie in every scenario (the first one is the worst). The kernel's split search must agree with the reference.
    market = make_market()
    expiry = market.underlyings[0].smiles[0].expiry  # one day: intrinsic value dominates
    portfolios = [
        Portfolio(
            positions=(Position(Instrument("BTC", InstrumentKind.PUT, expiry, strike * 10**8), -(10**4)),),
            account=account(k),
        )
        for k, strike in enumerate(range(30_000, 95_000, 5_000))
    ]
    portfolios.append(Portfolio(collateral=(("USDC", 10**8),), account=account(90)))
    portfolios.append(Portfolio(account=account(91)))
    book = Book(market, PARAMS, portfolios)
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    im = (PARAMS.im_multiplier.numerator, PARAMS.im_multiplier.denominator)
    extremes = {s for s, c in enumerate(book.scenarios.cover_num) if c != book.scenarios.cover_den}
    worst = []
    for a in range(len(book)):
        ref = reference_account(
            rows, book.positions_of(a), book.scenarios, im, PARAMS.im_min_buffer, ledger_cash(portfolios[a])
        )
        got = book.account_margin(a)
        assert (ref.maintenance_margin, ref.worst) == (got.maintenance_margin, got.worst_scenario)
        worst.append(got.worst_scenario)
    assert any(s in extremes for s in worst[:-2]) and any(s not in extremes for s in worst[:-2]), (worst, extremes)
    assert worst[-2:] == [0, 0]
