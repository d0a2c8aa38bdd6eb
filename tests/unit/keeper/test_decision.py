"""The keeper's pure decisions: the Liquidator's arithmetic (mirrored exactly; the integration test checks it
against the contract) and the choice of action and fraction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmoracle.errors import InputError
from pmoracle.keeper.decision import (
    TAKE_MAX,
    WAD,
    Action,
    AuctionParams,
    BidderFunds,
    Policy,
    afford,
    bidder_solvent,
    decide,
    discount_at,
    gain,
    max_fraction,
    min_fraction,
    quote,
    take_max_bound,
)

USD = 10**18
# the deployment's defaults (pmoracle.chain.deploy.LIQUIDATION_PARAMS)
PARAMS = AuctionParams(10**17, 2 * 10**16, 10**17, 300, 3_600, 2 * 10**17, 5 * 10**16)
POLICY = Policy(min_profit=10 * USD, gas_cost=USD)


def test_the_discount_schedule_is_linear_in_two_phases_then_flat() -> None:
    assert [discount_at(PARAMS, t) for t in (0, 150, 300, 300 + 1_800, 3_900, 10**9)] == [
        0,
        10**16,
        2 * 10**16,
        6 * 10**16,
        10**17,
        10**17,
    ]
    with pytest.raises(InputError, match="elapsed"):
        discount_at(PARAMS, -1)


def test_params_out_of_order_are_refused() -> None:
    with pytest.raises(InputError, match="fast_discount"):
        AuctionParams(0, 2 * 10**17, 10**17, 300, 3_600, 0, 0)
    with pytest.raises(InputError, match="phases"):
        AuctionParams(0, 0, 10**17, 0, 3_600, 0, 0)


def test_one_full_bid_leaves_the_rest_at_one_plus_buffer_times_its_margin() -> None:
    equity, mm, d = 800 * USD, 1_000 * USD, 10**17
    f = max_fraction(PARAMS, equity, mm, d)
    # f* = (1.1 x 1000 - 800) / ((1.1 - 0.1) x 1000) = 0.3
    assert f == 3 * 10**17
    q = quote(PARAMS, f, equity, mm, d)
    remaining_equity = equity - equity * f // WAD + q.payment  # E - f d M
    assert remaining_equity >= (WAD + PARAMS.buffer) * (WAD - f) * mm // WAD**2
    assert q.payment == 240 * USD - 30 * USD and q.fee == 6 * USD  # f (E - d M); 20% of f d M = 30
    assert gain(q, equity) == 24 * USD  # f d M (1 - feeShare)


def test_below_d_m_only_the_whole_book_and_the_fund_pays_an_insolvent_one() -> None:
    d = 10**17
    assert max_fraction(PARAMS, 50 * USD, 1_000 * USD, d) == min_fraction(PARAMS, 50 * USD, 1_000 * USD, d) == WAD
    q = quote(PARAMS, WAD, -200 * USD, 1_000 * USD, d)
    assert q.payment == -300 * USD  # the fund pays |E| + d M
    with pytest.raises(InputError, match="fraction"):
        quote(PARAMS, WAD // 2, -200 * USD, 1_000 * USD, d)
    assert max_fraction(PARAMS, 1_100 * USD, 1_000 * USD, d) == 0  # at (1 + b) M: nothing to take


@given(
    equity=st.integers(-(10**24), 10**24),
    mm=st.integers(1, 10**24),
    elapsed=st.integers(0, 10_000),
    cash=st.integers(0, 10**25),
)
def test_afford_returns_a_fraction_the_contract_accepts_for_this_bidder(
    equity: int, mm: int, elapsed: int, cash: int
) -> None:
    d = discount_at(PARAMS, elapsed)
    most = max_fraction(PARAMS, equity, mm, d)
    f = afford(PARAMS, BidderFunds(cash), equity, mm, d, most)
    assert 0 <= f <= most
    if f >= min_fraction(PARAMS, equity, mm, d):
        assert bidder_solvent(PARAMS, BidderFunds(cash), quote(PARAMS, f, equity, mm, d), equity, mm)


@given(
    equity=st.integers(-(10**24), 10**24),
    mm=st.integers(1, 10**24),
    elapsed=st.integers(0, 10_000),
    base=st.integers(0, 10**25),
    bidder_margin=st.integers(0, 10**25),
)
def test_a_bidder_with_a_book_carries_what_its_headroom_carries(
    equity: int, mm: int, elapsed: int, base: int, bidder_margin: int
) -> None:
    """A bidder with a book brings its equity less (1 + b) x its own margin: afford() never returns a fraction the
    contract's check (1 + b)(M_B + f M) refuses."""
    d = discount_at(PARAMS, elapsed)
    most = max_fraction(PARAMS, equity, mm, d)
    funds = BidderFunds(base, bidder_margin)
    f = afford(PARAMS, funds, equity, mm, d, most)
    if f >= min_fraction(PARAMS, equity, mm, d):
        assert bidder_solvent(PARAMS, funds, quote(PARAMS, f, equity, mm, d), equity, mm)


@given(
    equity=st.integers(-(10**22), 10**22),
    mm=st.integers(10**18, 10**22),
    elapsed=st.integers(0, 4_000),
    cash=st.integers(0, 10**23),
)
def test_a_take_max_bid_is_covered_at_every_later_discount(equity: int, mm: int, elapsed: int, cash: int) -> None:
    """take_max_bound() promises: mined at any later discount, the bid of f* leaves the bidder solvent and costs at
    most the bound (every second of the schedule is checked)."""
    if equity >= mm:
        return
    funds = BidderFunds(cash)
    d = discount_at(PARAMS, elapsed)
    bound = take_max_bound(PARAMS, funds, equity, mm, d)
    if bound is None:
        return
    for t in range(elapsed, PARAMS.plateau + 1, 7):
        later = discount_at(PARAMS, t)
        q = quote(PARAMS, max_fraction(PARAMS, equity, mm, later), equity, mm, later)
        assert bidder_solvent(PARAMS, funds, q, equity, mm)
        assert q.cost <= bound


def test_start_an_auction_on_a_breach_and_nothing_on_a_healthy_account() -> None:
    common = {"auction_started_at": None, "now": 1_000, "funds": BidderFunds(0)}
    assert decide(PARAMS, POLICY, equity=900 * USD, mm=1_000 * USD, **common).action is Action.START
    assert decide(PARAMS, POLICY, equity=1_000 * USD, mm=1_000 * USD, **common).action is Action.NONE


def test_end_an_auction_the_round_shows_restored() -> None:
    d = decide(PARAMS, POLICY, equity=1_001 * USD, mm=1_000 * USD, auction_started_at=0, now=10, funds=BidderFunds(0))
    assert d.action is Action.END


def test_wait_while_the_discount_does_not_pay_then_bid_the_whole_allowed_fraction() -> None:
    args = {"equity": 900 * USD, "mm": 1_000 * USD, "auction_started_at": 0, "funds": BidderFunds(10_000 * USD)}
    early = decide(PARAMS, POLICY, now=1, **args)
    assert early.action is Action.WAIT and early.quote is not None and "gain" in early.reason
    late = decide(PARAMS, POLICY, now=PARAMS.plateau, **args)
    assert late.action is Action.BID and late.quote is not None
    assert late.quote.fraction == late.quote.max_fraction == max_fraction(PARAMS, 900 * USD, 1_000 * USD, 10**17)
    # it can carry f* at every later discount: TAKE_MAX, limited by the worst cost
    assert late.take_max and late.bid_args[0] == TAKE_MAX and late.bid_args[1] >= late.quote.cost


def test_a_short_keeper_bids_what_it_can_carry_and_waits_on_a_whole_book() -> None:
    args = {"mm": 1_000 * USD, "auction_started_at": 0, "now": PARAMS.plateau}
    partial = decide(PARAMS, Policy(0, 0), equity=900 * USD, funds=BidderFunds(100 * USD), **args)
    assert partial.action is Action.BID and partial.quote is not None
    assert 0 < partial.quote.fraction < partial.quote.max_fraction
    assert bidder_solvent(PARAMS, BidderFunds(100 * USD), partial.quote, 900 * USD, 1_000 * USD)
    assert not partial.take_max and partial.bid_args == (partial.quote.fraction, partial.quote.cost)
    whole = decide(PARAMS, Policy(0, 0), equity=-100 * USD, funds=BidderFunds(100 * USD), **args)
    assert whole.action is Action.WAIT and "cannot carry" in whole.reason
    rich = decide(PARAMS, Policy(0, 0), equity=-100 * USD, funds=BidderFunds(10_000 * USD), **args)
    assert rich.action is Action.BID and rich.quote is not None and rich.quote.fraction == WAD
    assert rich.quote.cost < 0  # the fund subsidizes the bidder


def test_a_patient_keeper_waits_for_the_plateau_where_one_bid_restores_whenever_it_lands() -> None:
    patient = Policy(min_profit=0, gas_cost=0, wait_for_plateau=True)
    args = {"equity": 900 * USD, "mm": 1_000 * USD, "auction_started_at": 0, "funds": BidderFunds(10_000 * USD)}
    early = decide(PARAMS, patient, now=PARAMS.plateau - 1, **args)
    assert early.action is Action.WAIT and "moving" in early.reason
    assert decide(PARAMS, POLICY, now=PARAMS.plateau - 1, **args).action is Action.BID  # an eager one bids
    on = decide(PARAMS, patient, now=PARAMS.plateau, **args)
    later = decide(PARAMS, patient, now=PARAMS.plateau + 3_600, **args)
    assert on.action is later.action is Action.BID and on.quote == later.quote


def test_a_book_worth_less_at_current_marks_than_attested_waits() -> None:
    args = {
        "equity": 900 * USD,
        "mm": 1_000 * USD,
        "auction_started_at": 0,
        "now": PARAMS.plateau,
        "funds": BidderFunds(10**22),
    }
    attested = decide(PARAMS, POLICY, **args)
    assert attested.action is Action.BID and attested.quote is not None
    # f = 0.2 of the book; 110 USD less equity at current marks costs the bidder 22 USD of its 16 USD gain
    fell = decide(PARAMS, POLICY, equity_now=790 * USD, **args)
    assert fell.action is Action.WAIT and fell.quote == attested.quote
    rose = decide(PARAMS, POLICY, equity_now=2_000 * USD, **args)  # the attested value bounds the gain from above
    assert rose == attested


@given(
    equity=st.integers(10**18, 10**22),
    mm=st.integers(10**18, 10**22),
    elapsed=st.integers(0, 4_000),
    base=st.integers(0, 10**23),
    bidder_margin=st.integers(0, 10**22),
    reserve=st.integers(0, 10**22),
)
def test_a_concentration_reserve_counts_as_margin_and_is_never_looser_than_the_contract(
    equity: int, mm: int, elapsed: int, base: int, bidder_margin: int, reserve: int
) -> None:
    """The keeper's reserve (the superadditive part of a convex add-on, which the contract cannot see) is judged as
    margin: the keeper decides exactly as a bidder whose margin were M_B + reserve, and whatever it bids the
    contract's own check (without the reserve) accepts."""
    held = BidderFunds(base, bidder_margin, reserve)
    as_margin = BidderFunds(base, bidder_margin + reserve)
    now = 1_000 + elapsed
    kept = decide(PARAMS, POLICY, equity=equity, mm=mm, auction_started_at=1_000, now=now, funds=held)
    assert kept == decide(PARAMS, POLICY, equity=equity, mm=mm, auction_started_at=1_000, now=now, funds=as_margin)
    assert held.headroom(PARAMS) == as_margin.headroom(PARAMS)
    if kept.action is Action.BID:
        assert kept.quote is not None
        assert bidder_solvent(PARAMS, BidderFunds(base, bidder_margin), kept.quote, equity, mm)
