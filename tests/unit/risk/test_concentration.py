"""The concentration and liquidity add-on: its parameters, its formula, kernel == reference bit for bit, thread count
and order independence, overflow, and convexity (the add-on of a fraction of a book is at most that fraction of it).
"""

from __future__ import annotations

import dataclasses
import math
import random
from decimal import Decimal, localcontext
from fractions import Fraction

import numba
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params, default_params_text
from pmoracle.risk.concentration import EXPOSURE_SCALE, compute_bid_reserve, compute_concentration_addon
from pmoracle.risk.errors import AccountOverflowError, ConcentrationOverflowError, ParamsError
from pmoracle.risk.inputs import PRICE_SCALE, Instrument, InstrumentKind, Portfolio, Position
from pmoracle.risk.margin import Book, compute_account_report, compute_book
from pmoracle.risk.params import parse_params
from pmoracle.risk.reference import ReferenceConcentration, reference_account, reference_row
from pmoracle.risk.table import CollateralRef

from .factories import (
    EXPIRIES,
    account,
    concentration_params,
    make_market,
    option,
    random_instrument,
    random_portfolio,
    size,
)
from .test_homogeneity import fraction_of, merged

MARKET = make_market()
PERP = Instrument("BTC", InstrumentKind.PERPETUAL)
ETH_PERP = Instrument("ETH", InstrumentKind.PERPETUAL)
FUTURE = Instrument("BTC", InstrumentKind.FUTURE, expiry=EXPIRIES[2])
WAD = 10**18


PARAMS = concentration_params()


def random_book(seed: int, n_accounts: int, n_positions: int = 12) -> list[Portfolio]:
    rng = random.Random(seed)
    instruments = sorted({random_instrument(rng, MARKET) for _ in range(60)})
    return [random_portfolio(rng, MARKET, instruments, n_positions, a) for a in range(n_accounts)]


def reference_terms(book: Book) -> ReferenceConcentration:
    arrays = book.arrays
    coef = tuple(float(c) for c in arrays.concentration_coef)
    return ReferenceConcentration(coef, tuple(int(t) for t in arrays.concentration_threshold))


# --- the parameters ------------------------------------------------------------------------------------------------


def test_a_document_without_the_section_keeps_its_bytes_and_one_with_it_hashes_it() -> None:
    base = default_params()
    assert base.concentration is None and b"concentration" not in base.canonical_bytes
    assert PARAMS.params_hash != base.params_hash
    assert dataclasses.replace(PARAMS, concentration=None).canonical_bytes == base.canonical_bytes
    assert b'"concentration":{"adv":[["BTC","200"],["ETH","3000"]]' in PARAMS.canonical_bytes


def test_bad_sections_list_every_problem_naming_the_field() -> None:
    text = (
        default_params_text()
        + """
[concentration]
impact = "11"
threshold = "-0.1"
extra = 1

[concentration.adv]
BTC = "0"
ETH = "100"

[concentration.daily_vol]
BTC = "0.03"
SOL = "0.05"
"""
    )
    with pytest.raises(ParamsError) as info:
        parse_params(text)
    problems = "\n".join(info.value.problems)
    for expected in (
        "concentration.impact: '11' is outside [0, 10]",
        "concentration.threshold: '-0.1' is outside [0, 1]",
        "concentration.extra: unknown field",
        "concentration.adv.BTC: 0 must be positive",
        "concentration.daily_vol.ETH: missing",
        "concentration.adv.SOL: missing",
    ):
        assert expected in problems, problems


# --- the formula ---------------------------------------------------------------------------------------------------


def exact_addon(units: Fraction, adv: int, threshold: Fraction, sigma: Fraction, index_usd: Fraction) -> Decimal:
    """Return Y x sigma x sqrt(X / ADV) x X x index in 1e-8 USD, X = max(0, |units| - threshold x ADV), 40 digits."""
    x = max(Fraction(0), abs(units) - threshold * adv)
    with localcontext() as ctx:
        ctx.prec = 40
        root = (Decimal(x.numerator) / Decimal(x.denominator) / Decimal(adv)).sqrt()
        money = sigma * x * index_usd * 10**8
        scale = Decimal(money.numerator) / Decimal(money.denominator)
        return root * scale


@pytest.mark.parametrize("units", [1, 2, 2.0001, 3, 17.5, 250, -250, 4_000])
def test_a_perpetual_pays_the_square_root_cost_of_closing_it_above_the_threshold(units: float) -> None:
    plain = compute_book(MARKET, default_params(), [Portfolio((Position(PERP, size(units)),))]).accounts[0]
    book = Book(MARKET, PARAMS, [Portfolio((Position(PERP, size(units)),))])
    got = book.concentration_addon(0)
    index = Fraction(MARKET.underlying("BTC").index, PRICE_SCALE)
    expected = exact_addon(Fraction(size(units), 10**4), 200, Fraction(1, 100), Fraction(35, 1000), index)
    # the float value rounded up: at least the exact cost but for the float's own last bits (a few ulp)
    assert expected * (1 - Decimal("1e-12")) <= got < expected * (1 + Decimal("1e-12")) + 1
    assert (got == 0) == (abs(units) <= 2)  # 1% of 200 BTC a day is free
    assert book.account_margin(0).maintenance_margin == plain.maintenance_margin + got
    assert book.exposures(0) == [size(units) * 10**6, 0]


def test_an_option_counts_its_quantized_delta_and_a_hedged_book_pays_nothing() -> None:
    call = option("BTC", EXPIRIES[2], 100_000, call=True)
    book = Book(MARKET, PARAMS, [Portfolio((Position(call, size(500)),))])
    row = book.arrays.instruments.index(call)
    delta = int(book.arrays.delta[row])
    assert 0 < delta < 10**6
    assert book.exposures(0)[0] == size(500) * delta
    index = Fraction(MARKET.underlying("BTC").index, PRICE_SCALE)
    expected = exact_addon(
        Fraction(size(500) * delta, EXPOSURE_SCALE), 200, Fraction(1, 100), Fraction(35, 1000), index
    )
    assert expected * (1 - Decimal("1e-12")) <= book.concentration_addon(0) < expected * (1 + Decimal("1e-12")) + 1
    # long the perpetual, short as much of the future: no net delta, nothing to charge; the margin is the plain one
    hedged = Portfolio((Position(PERP, size(3000)), Position(FUTURE, -size(3000))))
    assert Book(MARKET, PARAMS, [hedged]).concentration_addon(0) == 0
    assert compute_book(MARKET, PARAMS, [hedged]) == dataclasses.replace(
        compute_book(MARKET, default_params(), [hedged]), params_hash=PARAMS.params_hash
    )


def test_books_under_the_threshold_margin_exactly_as_without_the_section() -> None:
    portfolios = random_book(11, 120)
    liquid = concentration_params(adv_btc="1000000000", adv_eth="1000000000", threshold="0.5")
    without = compute_book(MARKET, default_params(), portfolios)
    assert compute_book(MARKET, liquid, portfolios).accounts == without.accounts
    assert compute_book(MARKET, concentration_params(impact="0"), portfolios).accounts == without.accounts
    charged = compute_book(MARKET, PARAMS, portfolios).accounts
    assert sum(a.maintenance_margin > b.maintenance_margin for a, b in zip(charged, without.accounts, strict=True)) > 40
    assert all(a.maintenance_margin >= b.maintenance_margin for a, b in zip(charged, without.accounts, strict=True))


# --- determinism ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_accounts_with_the_addon_equal_the_reference(seed: int) -> None:
    portfolios = random_book(seed, 150, 20)
    book = Book(MARKET, PARAMS, portfolios)
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    assert [r.delta for r in rows] == book.arrays.delta.tolist()
    assert [r.underlying for r in rows] == book.arrays.table.und.tolist()
    im = (PARAMS.im_multiplier.numerator, PARAMS.im_multiplier.denominator)
    terms = reference_terms(book)
    charged = 0
    for a, portfolio in enumerate(portfolios):
        cash = book.layout().cash[a]
        ref = reference_account(rows, book.positions_of(a), book.scenarios, im, PARAMS.im_min_buffer, int(cash), terms)
        got = book.account_margin(a)
        assert (ref.maintenance_margin, ref.initial_margin, ref.equity, ref.worst, ref.concentration) == (
            got.maintenance_margin, got.initial_margin, got.equity, got.worst_scenario, book.concentration_addon(a),
        ), portfolio.account  # fmt: skip
        assert ref.concentration == compute_concentration_addon(terms.coef, terms.threshold, book.exposures(a))
        charged += ref.concentration > 0
    assert charged > 60


def test_one_and_two_threads_any_order_and_updates_agree() -> None:
    portfolios = random_book(31, 400, 20)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = compute_book(MARKET, PARAMS, portfolios)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = compute_book(MARKET, PARAMS, portfolios)
    finally:
        numba.set_num_threads(previous)
    assert one == two
    order = list(range(len(portfolios)))
    random.Random(32).shuffle(order)
    shuffled = {a.account: a for a in compute_book(MARKET, PARAMS, [portfolios[k] for k in order]).accounts}
    assert tuple(shuffled[a.account] for a in one.accounts) == one.accounts
    rng = random.Random(33)
    instruments = sorted({random_instrument(rng, MARKET) for _ in range(40)})
    book = Book(MARKET, PARAMS, portfolios[:50])
    current = list(portfolios[:50])
    for _ in range(30):
        k = rng.randrange(50)
        current[k] = random_portfolio(rng, MARKET, instruments, rng.choice([2, 25]), k)
        book.update_account(k, current[k])
    assert book.result() == compute_book(MARKET, PARAMS, current)


def test_an_addon_beyond_the_int64_limit_is_reported_not_wrapped() -> None:
    steep = concentration_params(adv_btc="0.000001", impact="10")
    portfolio = Portfolio((Position(PERP, size(20_000)),), account=account(7))
    book = Book(MARKET, steep, [portfolio, Portfolio((Position(PERP, size(1)),), account=account(8))])
    with pytest.raises(AccountOverflowError):
        book.account_margin(0)
    assert book.account_margin(1).maintenance_margin > 0
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    ref = reference_account(rows, book.positions_of(0), book.scenarios, (5, 4), 0, 0, reference_terms(book))
    assert ref.status == 1
    terms = reference_terms(book)
    with pytest.raises(ConcentrationOverflowError):  # outside the kernel (isolated margin, a bidder's reserve) too
        compute_concentration_addon(terms.coef, terms.threshold, book.exposures(0))
    with pytest.raises(ConcentrationOverflowError):
        compute_bid_reserve(terms.coef, terms.threshold, book.exposures(1), book.exposures(0))


def test_isolated_margin_charges_the_gross_exposure_and_never_releases_negative_capital() -> None:
    for portfolio in random_book(41, 25, 8):
        report = compute_account_report(MARKET, PARAMS, portfolio)
        assert report.capital_released >= 0
        assert report.concentration_addon == Book(MARKET, PARAMS, [portfolio]).concentration_addon(0)
    two_longs = Portfolio((Position(PERP, size(300)), Position(FUTURE, size(300))))
    report = compute_account_report(MARKET, PARAMS, two_longs)
    assert report.concentration_addon > 0 and report.capital_released >= 0


# --- convexity -----------------------------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32), f=st.integers(1, WAD), n=st.integers(1, 10))
def test_the_addon_of_a_fraction_of_a_book_is_at_most_that_fraction_of_it(seed: int, f: int, n: int) -> None:
    """A(f x) <= f A(x) (convex, 0 at 0), up to the ceiling (1 per underlying) and the truncation of each moved size,
    which moves an exposure by less than |delta| per position."""
    rng = random.Random(seed)
    instruments = [random_instrument(rng, MARKET) for _ in range(6)]
    book = merged(random_portfolio(rng, MARKET, instruments, n, 1))
    part = fraction_of(book, f)
    engine = Book(MARKET, PARAMS, [book, part])
    whole, moved = engine.concentration_addon(0), engine.concentration_addon(1)
    slack = 0.0
    for u, q in enumerate(engine.exposures(0)):
        wiggle = sum(
            abs(int(engine.arrays.delta[i])) for i, _ in engine.positions_of(0) if engine.arrays.table.und[i] == u
        )
        reach = abs(q) + wiggle
        slack += 1 + 1.5 * float(engine.arrays.concentration_coef[u]) * math.sqrt(reach) * wiggle
    assert WAD * moved <= f * whole + WAD * (slack + 1e-9 * whole)


def test_the_bidders_reserve_covers_the_superadditive_gap() -> None:
    terms = reference_terms(Book(MARKET, PARAMS, [Portfolio((Position(PERP, 1),))]))
    q = size(100) * 10**6  # 100 BTC: 50 times the free 2 BTC
    reserve = compute_bid_reserve(terms.coef, terms.threshold, [q, 0], [q, 0])
    gap = compute_concentration_addon(terms.coef, terms.threshold, [2 * q, 0]) - 2 * compute_concentration_addon(
        terms.coef, terms.threshold, [q, 0]
    )
    assert gap > 0 and reserve >= gap
    # opposite directions, or books that stay under the threshold together: the sum of the parts already covers it
    assert compute_bid_reserve(terms.coef, terms.threshold, [q, 0], [-q, 0]) == 0
    assert compute_bid_reserve(terms.coef, terms.threshold, [size(1) * 10**6, 0], [size(1) * 10**6, 0]) == 0


def combine(a: Portfolio, b: Portfolio) -> Portfolio:
    """Return one account holding both books (one position per instrument, collateral summed)."""
    collateral = dict(a.collateral)
    for symbol, amount in b.collateral:
        collateral[symbol] = collateral.get(symbol, 0) + amount
    return merged(Portfolio(a.positions + b.positions, tuple(sorted(collateral.items())), account(4)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32), f=st.integers(1, WAD), n=st.integers(1, 6), same=st.booleans())
def test_the_bid_reserve_bounds_what_a_bidder_with_a_book_carries(seed: int, f: int, n: int, same: bool) -> None:
    """MM(y + f x) <= MM(y) + f MM(x) + reserve: the scenario part and the short-option add-on are subadditive, the
    concentration add-on's excess over the parts is the reserve; up to the size rounding of the moved part."""
    rng = random.Random(seed)
    instruments = [random_instrument(rng, MARKET) for _ in range(5)]
    account_book = merged(random_portfolio(rng, MARKET, instruments, n, 1))
    if same:  # the bidder already holds k times the same book: every exposure in the same direction
        k = rng.randint(1, 3)
        scaled = tuple(Position(p.instrument, k * p.size, cost=k * p.cost) for p in account_book.positions)
        bidder_book = Portfolio(scaled, tuple((s, k * a) for s, a in account_book.collateral), account(2))
    else:
        bidder_book = merged(random_portfolio(rng, MARKET, [PERP, ETH_PERP], n, 2))
    part = fraction_of(account_book, f)
    together = combine(bidder_book, part)
    engine = Book(MARKET, PARAMS, [bidder_book, account_book, part, together])
    coef, threshold = engine.arrays.concentration_coef.tolist(), engine.arrays.concentration_threshold.tolist()
    reserve = compute_bid_reserve(coef, threshold, engine.exposures(0), engine.exposures(1))
    mm_y, mm_x = engine.account_margin(0).maintenance_margin, engine.account_margin(1).maintenance_margin
    # the moved part against f x: the homogeneity bound (sizes truncated), its exposure off by under |delta| a row
    rows = {inst: i for i, inst in enumerate(engine.arrays.instruments)}
    epsilon = 2 + len(engine.scenarios.underlyings)
    sizes = {rows[p.instrument]: p.size for p in account_book.positions}
    sizes |= {rows[CollateralRef(s)]: a for s, a in account_book.collateral}
    for i, sz in sizes.items():
        if sz * f % WAD:
            a = engine.arrays
            epsilon += int(abs(a.r[i]).max()) + int(a.addon[i])
            u = int(a.table.und[i])
            if u >= 0:
                reach = abs(engine.exposures(3)[u]) + abs(int(a.delta[i]))
                epsilon += math.ceil(1.5 * coef[u] * math.sqrt(reach) * abs(int(a.delta[i])))
    merged_mm = engine.account_margin(3).maintenance_margin
    assert WAD * merged_mm <= WAD * (mm_y + reserve + epsilon) + f * mm_x


def test_same_direction_books_break_subadditivity_and_the_reserve_restores_the_bound() -> None:
    whale = Portfolio((Position(PERP, size(300)),), account=account(1))
    engine = Book(MARKET, PARAMS, [whale, whale, Portfolio((Position(PERP, size(600)),), account=account(2))])
    alone, together = engine.account_margin(0).maintenance_margin, engine.account_margin(2).maintenance_margin
    assert together > 2 * alone  # the sum of the attested margins the contract checks is short
    coef, threshold = engine.arrays.concentration_coef.tolist(), engine.arrays.concentration_threshold.tolist()
    reserve = compute_bid_reserve(coef, threshold, engine.exposures(0), engine.exposures(1))
    assert 2 * alone < together <= 2 * alone + reserve
