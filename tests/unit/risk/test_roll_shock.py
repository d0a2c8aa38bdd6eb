"""Deribit's roll shock (``[roll_shock]``): a charge on the net delta per expiry, kernel == reference, Deribit's
published figures, and documents without the section unchanged."""

from __future__ import annotations

import dataclasses
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params_text
from pmoracle.risk.detscalar import det_exp
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.inputs import (
    MONEY_SCALE,
    PRICE_SCALE,
    SIZE_SCALE,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    UnderlyingMarket,
)
from pmoracle.risk.margin import Book, compute_account_report
from pmoracle.risk.params import RiskParams, parse_params
from pmoracle.risk.reference import ReferenceRoll, reference_account, reference_cash, reference_row

from .factories import EXPIRIES, T0, account, make_market, option, random_instrument, random_portfolio
from .test_homogeneity import MARKET, WAD, fraction_of, merged

ROLL = '\n[roll_shock.min_move]\nBTC = "0.01"\nETH = "0.005"\n\n[roll_shock.annual_move]\nBTC = "0.075"\nETH = "0.05"\n'
PARAMS = parse_params(default_params_text() + ROLL)
PLAIN = parse_params(default_params_text())


def roll_of(market: MarketSnapshot, positions: list[Position], params: RiskParams = PARAMS) -> int:
    """Return the roll shock (MONEY) of one account: its MM with the section less its MM without."""
    book = Portfolio(positions=tuple(positions), account=account(1))
    with_roll = Book(market, params, [book]).account_margin(0).maintenance_margin
    plain = dataclasses.replace(params, roll_shock=None)
    return with_roll - Book(market, plain, [book]).account_margin(0).maintenance_margin


def future(expiry: int, underlying: str = "BTC") -> Instrument:
    return Instrument(underlying, InstrumentKind.FUTURE, expiry=expiry)


PERP = Instrument("BTC", InstrumentKind.PERPETUAL)


def test_a_document_without_the_section_keeps_its_hash_and_pays_nothing() -> None:
    assert PLAIN.roll_shock is None and b"roll_shock" not in PLAIN.canonical_bytes
    assert PARAMS.params_hash != PLAIN.params_hash
    assert b'"roll_shock":{"annual_move":[["BTC","3/40"],["ETH","1/20"]]' in PARAMS.canonical_bytes
    market = make_market()
    positions = [Position(PERP, 2 * SIZE_SCALE), Position(future(EXPIRIES[3]), -SIZE_SCALE)]
    assert roll_of(market, positions, PLAIN) == 0


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('\n[roll_shock.min_move]\nBTC = "0.01"\n', "roll_shock.annual_move: missing"),
        ('\n[roll_shock.min_move]\nBTC = "0.01"\n[roll_shock.annual_move]\nETH = "0.05"\n',
         "roll_shock.annual_move.BTC: missing (roll_shock.min_move.BTC is set)"),
        ('\n[roll_shock.min_move]\nBTC = "2"\n[roll_shock.annual_move]\nBTC = "0.05"\n',
         "roll_shock.min_move.BTC: '2' is outside [0, 1]"),
        ('\n[roll_shock.min_move]\nBTC = "0.01"\n[roll_shock.annual_move]\nBTC = 0.05\n',
         "roll_shock.annual_move.BTC: expected an exact rational"),
        ('\n[roll_shock.min_move]\nbtc = "0.01"\n[roll_shock.annual_move]\nbtc = "0.05"\n',
         "roll_shock.min_move.btc: not an upper-case symbol"),
        ('\n[roll_shock]\nmin_move = {}\nannual_move = {}\nextra = 1\n', "roll_shock.extra: unknown field"),
    ],
)  # fmt: skip
def test_bad_sections_are_refused_naming_the_field(section: str, problem: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(default_params_text() + section)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def _deribit_market(index: str, time: int) -> MarketSnapshot:
    """Return a BTC market (no smile: the book holds no option) at ``time``."""
    return MarketSnapshot(time=time, underlyings=(UnderlyingMarket("BTC", int(Fraction(index) * PRICE_SCALE)),))


def test_deribits_published_roll_shock_for_a_perpetual_and_a_future() -> None:
    """Deribit's API documentation (private/pme/simulate, response example, 17 Jun 2024): BTC-PERPETUAL 0.314538364,
    BTC-28JUN24 -0.001187534, BTC index 65666.19, min_annualised_move 0.01, annualised_move_risk 0.075: roll_shock
    0.00315725898 BTC. The 28JUN24 future is 11 days away, so its rate is the minimum."""
    perp, fut = Fraction("0.314538364"), Fraction("-0.001187534")
    assert Fraction("0.01") * (abs(perp) + abs(fut)) == Fraction("0.00315725898")  # the rule, on Deribit's sizes
    # and a captured ETH response (15 Feb 2026): ETH-PERPETUAL -0.999487053, min_annualised_move 0.005
    assert Fraction("0.005") * Fraction("0.999487053") == Fraction("0.004997435265")
    time, expiry = 1718619740, 1719561600  # 2024-06-17T10:22:20Z, 2024-06-28T08:00Z
    market = _deribit_market("65666.19", time)
    years = (expiry - time) / (365 * 86400)
    assert det_exp(0.075 * years) - 1 < 0.01
    sizes = (Fraction(3145, SIZE_SCALE), Fraction(-12, SIZE_SCALE))  # the engine's 4-decimal sizes
    positions = [Position(PERP, int(sizes[0] * SIZE_SCALE)), Position(future(expiry), int(sizes[1] * SIZE_SCALE))]
    charged = Fraction(roll_of(market, positions), MONEY_SCALE)  # USD
    expected = Fraction("65666.19") * Fraction("0.01") * (abs(sizes[0]) + abs(sizes[1]))  # BTC x index
    assert abs(charged - expected) <= Fraction(2, MONEY_SCALE)  # one ceiling per bucket


def test_a_far_expiry_charges_the_annualised_move() -> None:
    market = make_market(btc=100_000.0)
    expiry = EXPIRIES[4]  # ten years away
    years = (expiry - T0) / (365 * 86400)
    rate = det_exp(0.075 * years) - 1
    assert rate > 0.01 and abs(rate - math.expm1(0.075 * years)) < 1e-13
    charged = roll_of(market, [Position(future(expiry), -3 * SIZE_SCALE)])
    assert abs(charged - 3 * 100_000 * rate * MONEY_SCALE) <= 1
    # the perpetual always pays the minimum
    assert roll_of(market, [Position(PERP, 3 * SIZE_SCALE)]) == 3 * 100_000 * MONEY_SCALE // 100


def test_net_delta_per_expiry() -> None:
    market = make_market(btc=100_000.0)
    near, far = future(EXPIRIES[1]), future(EXPIRIES[3])
    one = SIZE_SCALE
    assert roll_of(market, [Position(near, one), Position(near, -one)]) == 0  # one expiry nets
    spread = roll_of(market, [Position(near, one), Position(far, -one)])  # a calendar spread pays on both
    assert spread == roll_of(market, [Position(near, one)]) + roll_of(market, [Position(far, -one)])
    hedge = roll_of(market, [Position(PERP, one), Position(far, -one)])  # perpetual and future: separate buckets
    assert hedge == roll_of(market, [Position(PERP, one)]) + roll_of(market, [Position(far, -one)])
    # an option counts by its delta in its expiry's bucket: a long call against a short future partly nets
    call = option("BTC", EXPIRIES[3], 100_000.0, call=True)
    alone = roll_of(market, [Position(call, one)])
    both = roll_of(market, [Position(call, one), Position(far, -one)])
    assert alone > 0 and both < roll_of(market, [Position(far, -one)])
    # collateral never rolls
    book = Portfolio(collateral=(("ETH", 10 * SIZE_SCALE),), account=account(1))
    assert Book(market, PARAMS, [book]).account_margin(0) == Book(market, PLAIN, [book]).account_margin(0)


def _random_books(seed: int, accounts: int) -> tuple[MarketSnapshot, list[Portfolio]]:
    rng = random.Random(seed)
    market = make_market(btc=rng.uniform(20_000, 200_000), eth=rng.uniform(500, 10_000), vol=rng.uniform(0.2, 2))
    instruments = sorted({random_instrument(rng, market) for _ in range(120)})
    return market, [random_portfolio(rng, market, instruments, 20, a) for a in range(accounts)]


def _reference_roll(book: Book) -> ReferenceRoll:
    return ReferenceRoll(tuple(book.arrays.roll_bucket.tolist()), tuple(book.arrays.roll_coef.tolist()))


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_the_kernel_equals_the_reference_on_random_books(seed: int) -> None:
    market, portfolios = _random_books(seed, 150)
    book = Book(market, PARAMS, portfolios)
    plain = Book(market, PLAIN, portfolios)
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    im = (PARAMS.im_multiplier.numerator, PARAMS.im_multiplier.denominator)
    charged = 0
    for a, portfolio in enumerate(portfolios):
        held = portfolio.positions
        cash = reference_cash(portfolio.cash, [p.cost for p in held], [p.funding for p in held])
        ref = reference_account(
            rows, book.positions_of(a), book.scenarios, im, PARAMS.im_min_buffer, cash, None, _reference_roll(book)
        )
        got = book.account_margin(a)
        assert (ref.maintenance_margin, ref.initial_margin, ref.equity, ref.worst) == (
            got.maintenance_margin, got.initial_margin, got.equity, got.worst_scenario,
        )  # fmt: skip
        added = got.maintenance_margin - plain.account_margin(a).maintenance_margin
        assert added >= 0
        charged += added > 0
    assert charged >= 100  # most random books hold something that rolls


def test_incremental_updates_with_new_expiries_equal_a_full_recompute() -> None:
    rng = random.Random(31)
    market, portfolios = _random_books(31, 60)
    book = Book(market, PARAMS, portfolios[:30])
    fresh = [future(e) for e in EXPIRIES[:3]] + [option("ETH", e, 3_000.0, call=False) for e in EXPIRIES[2:]]
    for step in range(25):
        k = rng.randrange(30)
        pool = fresh if step % 2 else [p.instrument for p in portfolios[30 + step].positions] or fresh
        portfolios[k] = random_portfolio(rng, market, pool, 6, k)
        book.update_account(k, portfolios[k])
    assert book.result() == Book(market, PARAMS, portfolios[:30]).result()


def test_portfolio_margin_stays_at_or_below_isolated_margin_and_the_report_shows_the_shock() -> None:
    market, portfolios = _random_books(41, 40)
    for portfolio in portfolios:
        report = compute_account_report(market, PARAMS, portfolio)
        assert report.isolated_margin >= report.maintenance_margin
        assert report.roll_shock == roll_of(market, list(portfolio.positions))  # collateral never rolls
        assert compute_account_report(market, PLAIN, portfolio).roll_shock is None


@settings(max_examples=120, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32), f=st.integers(1, WAD), n=st.integers(1, 12))
def test_the_shock_of_a_fraction_of_a_book_is_the_fraction_of_its_shock(seed: int, f: int, n: int) -> None:
    """Positively homogeneous up to rounding (the fractional liquidation's premise, docs/liquidation.md): a moved
    size is off by less than one size unit, each bucket's ceiling by less than 1 MONEY."""
    rng = random.Random(seed)
    instruments = [random_instrument(rng, MARKET) for _ in range(8)]
    book = merged(random_portfolio(rng, MARKET, instruments, n, 1))
    part = fraction_of(book, f)
    engine = Book(MARKET, PARAMS, [book, part])
    arrays = engine.arrays
    rows = {inst: i for i, inst in enumerate(arrays.instruments)}
    bound = float(arrays.roll_coef.size)  # one ceiling per bucket
    for p in book.positions:
        i = rows[p.instrument]
        if p.size * f % WAD and arrays.roll_bucket[i] >= 0:
            bound += float(arrays.roll_coef[arrays.roll_bucket[i]]) * abs(int(arrays.delta[i]))
    whole, moved = engine.roll_shock(0), engine.roll_shock(1)
    assert abs(WAD * moved - f * whole) < WAD * (bound + 1e-6 * whole + 1)
