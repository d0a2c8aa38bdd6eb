"""The cascade stress test: its properties (zero impact, monotone shortfall, empty book, thread count), the impact
law, the shock and the errors that name their field."""

from __future__ import annotations

import random
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params, default_params_text
from pmoracle.errors import InputError
from pmoracle.keeper.decision import AuctionParams
from pmoracle.risk.inputs import SIZE_SCALE, WAD, Instrument, InstrumentKind, Portfolio, Position
from pmoracle.risk.margin import Book, compute_accounts
from pmoracle.risk.params import StressParams, parse_params
from pmoracle.risk.scenarios import compute_atm_vol
from pmoracle.risk.stress import (
    MAX_MOVE,
    LiquidationModel,
    Shock,
    compute_impact,
    compute_moved,
    run_cascade,
    run_cascade_on_layout,
    run_standard_stress,
    shock_market,
)
from tests.unit.risk.factories import account, make_market, random_instrument, random_portfolio

MARKET = make_market()
PARAMS = default_params()
AUCTION = AuctionParams(10**17, 2 * 10**16, 10**17, 300, 3_600, 2 * 10**17, 5 * 10**16)  # the devnet's
MODEL = LiquidationModel(AUCTION, discount=AUCTION.max_discount, insurance_fund=10**5 * WAD)
PERP = Instrument("BTC", InstrumentKind.PERPETUAL)


def stress(impact: Fraction = Fraction(1), btc_adv: Fraction = Fraction(200), depth: int = 10) -> StressParams:
    """Return a [stress] section: BTC trades ``btc_adv`` a day, ETH 300,000."""
    return StressParams(impact, depth, (("BTC", btc_adv), ("ETH", Fraction(300_000))), (), ())


def leveraged_longs(n: int = 40) -> list[Portfolio]:
    """Return ``n`` long BTC perpetual books bought at the index, equity from 18% to 18 + n% of the notional."""
    books = []
    for i in range(n):
        units = 1 + i % 7
        notional = units * 95_000 * WAD
        cash = notional * (18 + i) // 100
        books.append(Portfolio((Position(PERP, units * SIZE_SCALE, cost=notional),), account=account(i + 1), cash=cash))
    return books


def drop(move: str, vol: str = "0") -> Shock:
    return Shock((("BTC", Fraction(move)),), Fraction(vol))


def random_book(seed: int, n: int) -> list[Portfolio]:
    rng = random.Random(seed)
    instruments = [random_instrument(rng, MARKET) for _ in range(12)]
    return [random_portfolio(rng, MARKET, instruments, 6, i + 1) for i in range(n)]


def test_a_crash_cascades_through_price_impact() -> None:
    result = run_cascade(MARKET, PARAMS, leveraged_longs(), drop("-0.30"), stress(), MODEL)
    first = result.steps[0]
    assert result.cascade_depth >= 2  # forced sales breach accounts the shock alone left standing
    assert first.accounts_breached > 0 and first.notional_liquidated > 0
    assert dict(first.forced_volume)["BTC"] > 0  # the liquidators sell the long books they received
    assert dict(first.price_moves)["BTC"] < 0 and dict(first.price_moves)["ETH"] == 0
    btc = dict(result.price_path)["BTC"]
    assert btc[:2] == (95_000 * 10**8, 66_500 * 10**8) and list(btc) == sorted(btc, reverse=True)
    assert len(btc) == 2 + len(result.steps)
    assert 0 < result.cover1 <= result.cover2 <= result.shortfall == sum(s.shortfall for s in result.steps)
    assert result.cover2 == sum(x for _, x in result.account_shortfall[:2])
    assert result.fund_after == result.insurance_fund + result.fees - result.shortfall


def test_an_empty_book_stresses_to_nothing() -> None:
    result = run_cascade(MARKET, PARAMS, [], drop("-0.5", "0.5"), stress(), MODEL)
    assert (result.steps, result.shortfall, result.fees, result.cascade_depth, result.cover2) == ((), 0, 0, 0, 0)
    assert dict(result.price_path)["BTC"] == (95_000 * 10**8, 47_500 * 10**8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), move=st.sampled_from(["-0.6", "-0.3", "-0.1", "0.2", "0.5"]))
def test_with_zero_impact_no_second_step_liquidates(seed: int, move: str) -> None:
    book = random_book(seed, 30) + leveraged_longs(10)
    result = run_cascade(MARKET, PARAMS, book, drop(move, "0.3"), stress(impact=Fraction(0)), MODEL)
    assert len(result.steps) <= 1
    assert all(m == 0 for s in result.steps for _, m in s.price_moves)
    assert all(len(set(p[1:])) == 1 for _, p in result.price_path)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    small=st.integers(1, 60),
    extra=st.integers(0, 30),
    adv=st.sampled_from([Fraction(50), Fraction(200), Fraction(5_000)]),
    discount=st.sampled_from([0, 5 * 10**16, 10**17]),
)
def test_shortfall_never_decreases_as_the_shock_grows(small: int, extra: int, adv: Fraction, discount: int) -> None:
    model = LiquidationModel(AUCTION, discount=discount, insurance_fund=0)
    book = leveraged_longs(60)
    lo = run_cascade(MARKET, PARAMS, book, drop(str(Fraction(-small, 100))), stress(btc_adv=adv), model)
    hi = run_cascade(MARKET, PARAMS, book, drop(str(Fraction(-small - extra, 100))), stress(btc_adv=adv), model)
    assert hi.shortfall >= lo.shortfall


def test_the_result_is_bit_identical_on_one_and_two_threads() -> None:
    book = random_book(7, 300) + leveraged_longs()
    shock = Shock((("BTC", Fraction("-0.25")), ("ETH", Fraction("-0.3"))), Fraction("0.5"))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_cascade(MARKET, PARAMS, book, shock, stress(), MODEL)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = run_cascade(MARKET, PARAMS, book, shock, stress(), MODEL)
    finally:
        numba.set_num_threads(before)
    assert one == two and one.steps


def test_the_square_root_law() -> None:
    sigma = 3 * WAD // 100
    adv = Fraction(20_000)
    assert compute_impact(20_000 * SIZE_SCALE, adv, sigma, Fraction(1)) == -sigma  # a day's volume: one sigma
    assert compute_impact(5_000 * SIZE_SCALE, adv, sigma, Fraction(1)) == -sigma // 2
    assert compute_impact(-5_000 * SIZE_SCALE, adv, sigma, Fraction(2)) == sigma  # buying pushes up
    assert compute_impact(0, adv, sigma, Fraction(1)) == compute_impact(10, adv, sigma, Fraction(0)) == 0
    assert compute_impact(10**9 * SIZE_SCALE, Fraction(1), sigma, Fraction(10)) == -MAX_MOVE


def test_the_shock_moves_prices_and_vols_exactly() -> None:
    shocked = shock_market(MARKET, Shock((("ETH", Fraction("-0.3")),), Fraction("0.5")))
    eth, btc = shocked.underlying("ETH"), shocked.underlying("BTC")
    assert eth.index == 2_100 * 10**8 and btc.index == MARKET.underlying("BTC").index
    assert eth.forwards[0][1] == MARKET.underlying("ETH").forwards[0][1] * 7 // 10
    assert shocked.asset("ETH").price == 2_100 * 10**8 and shocked.asset("USDC").price == 10**8
    ratio = compute_atm_vol(shocked, btc) / compute_atm_vol(MARKET, MARKET.underlying("BTC"))
    assert ratio == pytest.approx(1.5, rel=1e-9)


@pytest.mark.parametrize(
    ("shock", "field"),
    [
        (Shock((("XRP", Fraction("-0.1")),)), "shock.XRP"),
        (Shock((("BTC", Fraction(-1)),)), "shock.BTC"),
        (Shock((), Fraction(-1)), "vol_shock"),
        (Shock((), Fraction(50)), "vol_shock"),  # beyond the SVI bounds
    ],
)
def test_a_bad_shock_names_its_field(shock: Shock, field: str) -> None:
    with pytest.raises(InputError) as info:
        run_cascade(MARKET, PARAMS, leveraged_longs(3), shock, stress(), MODEL)
    assert info.value.field == field


def test_forced_sales_without_a_volume_name_the_missing_field() -> None:
    section = StressParams(Fraction(1), 10, (("ETH", Fraction(1)),), (), ())
    with pytest.raises(InputError) as info:
        run_cascade(MARKET, PARAMS, leveraged_longs(), drop("-0.3"), section, MODEL)
    assert info.value.field == "stress.adv.BTC"


def test_a_discount_above_the_auctions_maximum_is_refused() -> None:
    with pytest.raises(InputError) as info:
        LiquidationModel(AUCTION, discount=AUCTION.max_discount + 1, insurance_fund=0)
    assert info.value.field == "discount"


STRESS_SECTION = """
[stress]
impact = "1/2"
max_depth = 5
[stress.adv]
BTC = "20000"
[stress.scenarios.standard]
moves = { BTC = "-0.3" }
vol_shock = "0.5"
"""


def test_the_stress_section_is_hashed_and_its_absence_keeps_the_hash() -> None:
    text = default_params_text()
    with_stress = parse_params(text + STRESS_SECTION)
    assert parse_params(text).params_hash == PARAMS.params_hash and PARAMS.stress is None
    assert with_stress.params_hash != PARAMS.params_hash
    assert with_stress.stress is not None and with_stress.stress.impact == Fraction(1, 2)
    standard = with_stress.stress.scenario("standard")
    assert standard is not None and Shock.of(standard) == drop("-0.3", "0.5")


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ('BTC = "20000"', 'BTC = "-5"'),
        ('BTC = "20000"', 'BTC = "0"'),
        ('moves = { BTC = "-0.3" }', 'moves = { BTC = "-1" }'),
        ("max_depth = 5", "max_depth = 0"),
    ],
)
def test_a_bad_stress_section_names_its_field(replace: str, field: str) -> None:
    from pmoracle.risk.errors import ParamsError

    with pytest.raises(ParamsError) as info:
        parse_params(default_params_text() + STRESS_SECTION.replace(replace, field))
    name = {"BTC": "stress.adv.BTC", "moves": "stress.scenarios.standard.moves.BTC", "max_depth": "stress.max_depth"}
    assert any(p.startswith(name[field.split(" ")[0]]) for p in info.value.problems), info.value.problems


@settings(max_examples=200, deadline=None)
@given(
    amounts=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=20),
    fraction=st.one_of(st.integers(0, WAD), st.sampled_from([0, 1, WAD - 1, WAD])),
)
def test_moved_amounts_are_the_exact_truncated_products(amounts: list[int], fraction: int) -> None:
    moved = compute_moved(np.array(amounts, dtype=np.int64), np.full(len(amounts), fraction, dtype=np.int64))
    expected = [(abs(x) * fraction // WAD) * (1 if x >= 0 else -1) for x in amounts]
    assert moved.tolist() == expected


def test_the_standard_stress_of_the_document() -> None:
    params = parse_params(default_params_text() + STRESS_SECTION)
    assert run_standard_stress(MARKET, PARAMS, leveraged_longs(), AUCTION, 0) is None  # no [stress]: nothing
    result = run_standard_stress(MARKET, params, leveraged_longs(), AUCTION, 10**6 * WAD)
    section = params.stress
    assert section is not None and result is not None
    expected = run_cascade(MARKET, params, leveraged_longs(), drop("-0.3", "0.5"), section, MODEL)
    assert result.steps == expected.steps and result.insurance_fund == 10**6 * WAD


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(move=st.integers(5, 60), n=st.integers(5, 60))
def test_with_zero_impact_the_liquidated_books_are_restored_at_the_same_prices(move: int, n: int) -> None:
    """The reason no second step liquidates without impact: re-margined at unchanged prices, every account the first
    step sold in part is back above maintenance margin (and a whole book is empty)."""
    shock = drop(str(Fraction(-move, 100)))
    shocked = shock_market(MARKET, shock)
    book = Book(shocked, PARAMS, leveraged_longs(n))
    layout = book.layout()
    accounts = tuple(p.account for p in book.portfolios)
    before = compute_accounts(book.arrays, PARAMS, *book.layout())
    result = run_cascade_on_layout(MARKET, PARAMS, book.arrays.instruments, layout, accounts, shock,
                                   stress(impact=Fraction(0)), MODEL)  # fmt: skip
    after = compute_accounts(book.arrays, PARAMS, *layout)  # the same prices: the book's arrays are the shocked ones
    breached = (before.equity < before.maintenance_margin).sum()
    assert result.steps[0].accounts_breached == breached if breached else result.steps == ()
    assert (after.equity >= after.maintenance_margin).all()
