"""One-step liquidation on a real anvil: the fractional auction of `Liquidator`, the fund, the socialized loss.

Every account is valued by the real engine (read_snapshot + compute_book at the round's anchor) and its leaf
attested as a node would; after each bid the ledger is read again and recomputed, so "restored" means what the next
round will attest. The ledger's money identity (pmoracle.devnet.ledger_audit) is checked after every bid.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import LIQUIDATION_PARAMS, Deployment, transact_fn
from pmoracle.chain.transmitter import Transmitter
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.daemon import InsuranceFund, read_insurance_fund
from tests.integration.chain.contracts_support import (
    UNIT,
    USD,
    WETH,
    System,
    attest,
    deposit,
    margin_of,
    revert_of,
)
from tests.integration.chain.liquidation_support import (
    BID_GAS,
    BTC,
    BUFFER,
    FAST_DISCOUNT,
    FAST_PHASE,
    MAX_DISCOUNT,
    MIN_FRACTION,
    NO_LEAF,
    PERP,
    PLATEAU,
    PRICE,
    SLOW_PHASE,
    TAKE_MAX,
    USDC,
    WAD,
    attest_round,
    bid_call,
    breach,
    chain_now,
    deploy_liquidation_system,
    dev_address,
    engine,
    ledger,
    liquidator,
    quote,
    send_bid,
    set_index,
    start,
    trader,
    truncated_div,
    warp,
)
from tests.integration.chain.trading import Desk, check_conservation


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    return deploy_liquidation_system(anvil)


@pytest.fixture(scope="module")
def desk(system: System) -> Desk:
    return Desk(system.deployment, system.owner, system.w3)


@pytest.fixture(scope="module")
def maker(system: System, desk: Desk) -> Transmitter:
    """A rich counterparty for every trade."""
    return trader(system, desk, usdc=100_000_000)


def test_a_healthy_account_cannot_be_auctioned(system: System, desk: Desk, maker: Transmitter) -> None:
    healthy = breach(system, desk, maker, cash=50_000, size=UNIT, drop_to=99_000)
    _, tree, values = attest_round(system)
    _, mm, equity = values[healthy.address]
    assert equity >= mm
    margin, proof = margin_of(tree, healthy.address)
    keeper = trader(system, desk)
    assert revert_of(liquidator(system).startAuction(healthy.address, margin, proof), keeper.address) == (
        "NotLiquidatable",
        (healthy.address, equity, mm),
    )
    assert revert_of(bid_call(system, healthy.address, tree, WAD // 10), keeper.address) == (
        "NoAuction",
        (healthy.address,),
    )
    name, _ = revert_of(
        liquidator(system).startAuction(system.deployment.contracts["Liquidator"], margin, proof), keeper.address
    )
    assert name == "FundNotLiquidatable"
    assert liquidator(system).maxFraction(equity, mm, MAX_DISCOUNT).call() == 0  # above (1 + b) M: nothing


def test_the_discount_schedule_and_its_bounds(system: System) -> None:
    schedule = liquidator(system).discountAt
    assert [schedule(t).call() for t in (0, FAST_PHASE // 2, FAST_PHASE, FAST_PHASE + SLOW_PHASE // 2)] == [
        0,
        FAST_DISCOUNT // 2,
        FAST_DISCOUNT,
        (FAST_DISCOUNT + MAX_DISCOUNT) // 2,
    ]
    assert schedule(FAST_PHASE + SLOW_PHASE).call() == schedule(10**9).call() == MAX_DISCOUNT
    owner = system.owner.address
    params = list(LIQUIDATION_PARAMS)
    for index, name, value in (
        (0, "buffer", WAD + 1),
        (2, "maxDiscount", WAD // 2 + 1),
        (1, "fastDiscount", MAX_DISCOUNT + 1),
        (3, "fastPhase", 0),
        (4, "slowPhase", 7 * 86_400 + 1),
        (5, "feeShare", WAD + 1),
        (6, "minFraction", WAD + 1),
    ):
        bad = params.copy()
        bad[index] = value
        assert revert_of(liquidator(system).setParams(tuple(bad)), owner) == ("InvalidParameter", (name, value))
    stranger = dev_address(7)
    name, _ = revert_of(liquidator(system).setParams(tuple(params)), stranger)
    assert name == "AccessControlUnauthorizedAccount"
    # only the Liquidator moves books and cash, pauses withdrawals and freezes accounts
    accounts = ledger(system)
    for call in (
        accounts.transferBook(owner, stranger, WAD),
        accounts.transferCash(owner, stranger, 1),
        accounts.setWithdrawalsPaused(True),
        accounts.setFrozen(stranger, True),
    ):
        assert revert_of(call, owner)[0] == "AccessControlUnauthorizedAccount"
    set_index(system, 100_000)


def test_a_stale_round_or_a_changed_account_cannot_be_used(system: System, desk: Desk, maker: Transmitter) -> None:
    victim = breach(system, desk, maker, cash=5_000, size=UNIT, drop_to=96_000)
    keeper = trader(system, desk, usdc=100_000)
    first, tree, values = attest_round(system)
    assert values[victim.address][2] < values[victim.address][1]
    # a deposit or realized funding after the anchor only adds: the round still judges the account
    deposit(system, victim, "USDC", USDC)
    transact_fn(keeper, ledger(system).realizeFunding(victim.address, [PERP]), label="realize")
    margin, proof = margin_of(tree, victim.address)
    liquidator(system).startAuction(victim.address, margin, proof).call({"from": keeper.address})
    # a trade after the anchor: its round no longer describes the positions
    desk.trade(victim.address, maker.address, PERP, 1, 96_000 * PRICE)
    traded = ledger(system).tradedAt(victim.address).call()
    assert revert_of(liquidator(system).startAuction(victim.address, margin, proof), keeper.address) == (
        "AccountChangedSinceRound",
        (victim.address, traded, first),
    )
    # a perpetual it holds pays funding after the anchor: its equity moved unseen
    _, tree, _ = attest_round(system)
    rate_setter = ledger(system)
    transact_fn(system.owner, rate_setter.setFundingRate(PERP, WAD // 1_000), label="rate")
    warp(system, 3_600)
    set_index(system, 96_000)
    transact_fn(system.owner, rate_setter.payFunding(PERP), label="funding")
    paid_block = rate_setter.fundingOf(PERP).call()[3]
    margin, proof = margin_of(tree, victim.address)
    name, args = revert_of(liquidator(system).startAuction(victim.address, margin, proof), keeper.address)
    assert name == "FundingSinceRound" and args[:3] == (victim.address, PERP, paid_block)
    transact_fn(system.owner, rate_setter.setFundingRate(PERP, 0), label="rate")
    # a fresh round starts the auction; the stale round's proof is refused at the bid
    _, fresh, values = attest_round(system)
    start(system, victim.address, fresh, keeper)
    stale_margin, stale_proof = margin_of(tree, victim.address)
    name, _ = revert_of(
        liquidator(system).bid(victim.address, WAD // 10, 2**255 - 1, stale_margin, stale_proof, *NO_LEAF),
        keeper.address,
    )
    assert name == "InvalidMarginProof"
    assert (
        revert_of(liquidator(system).startAuction(victim.address, *margin_of(fresh, victim.address)), keeper.address)[0]
        == "AuctionOpen"
    )
    # a later round attests it healthy (it deposited): the auction ends and bids are refused
    deposit(system, victim, "USDC", 50_000 * USDC)
    _, healthy, values = attest_round(system)
    margin, proof = margin_of(healthy, victim.address)
    assert revert_of(bid_call(system, victim.address, healthy, WAD // 10), keeper.address)[0] == "NotLiquidatable"
    transact_fn(keeper, liquidator(system).endAuction(victim.address, margin, proof), label="end")
    assert liquidator(system).auctions(victim.address).call()[0] == 0
    desk.trade(victim.address, maker.address, PERP, 1, 96_000 * PRICE)  # the account trades again
    assert revert_of(bid_call(system, victim.address, healthy, WAD // 10), keeper.address) == (
        "NoAuction",
        (victim.address,),
    )
    set_index(system, 100_000)


def test_one_bid_restores_a_solvent_account(system: System, desk: Desk, maker: Transmitter) -> None:
    victim = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    assert 0 < equity < mm
    bidder = trader(system, desk, usdc=20_000)
    start(system, victim.address, tree, bidder)
    warp(system, PLATEAU)
    at = chain_now(system) + 1
    q = quote(system, victim.address, WAD, equity, mm, at)
    discount, f = q["discount"], q["max_fraction"]
    assert discount == MAX_DISCOUNT and equity * WAD >= discount * mm
    # f* = ((1 + b) M - E) / ((1 + b - d) M), rounded up
    exact_num, exact_den = (WAD + BUFFER) * mm - equity * WAD, (WAD + BUFFER - discount) * mm
    assert f == -(-exact_num * WAD // exact_den) < WAD
    owner = bidder.address
    # bad bids: more than f*, nothing, a price above the limit, a bidder with a position, under water, itself
    assert revert_of(bid_call(system, victim.address, tree, f + 1), owner) == ("FractionAboveMax", (f + 1, f))
    assert revert_of(bid_call(system, victim.address, tree, 0), owner) == ("FractionBelowMin", (0, MIN_FRACTION))
    q = quote(system, victim.address, f, equity, mm, at)
    cost = q["payment"] + q["fee"]
    assert revert_of(bid_call(system, victim.address, tree, f, cost - 1), owner) == (
        "PaymentAboveLimit",
        (cost, cost - 1),
    )
    holder = trader(system, desk, usdc=100_000)  # a bidder with a book the round does not know: no leaf proves it
    desk.trade(holder.address, maker.address, PERP, 1, 96_500 * PRICE)
    assert revert_of(bid_call(system, victim.address, tree, f), holder.address)[0] == "InvalidMarginProof"
    poor = trader(system, desk, usdc=10)
    assert revert_of(bid_call(system, victim.address, tree, f), poor.address)[0] == "BidderUnderMargin"
    assert revert_of(bid_call(system, victim.address, tree, f), victim.address) == (
        "SelfLiquidation",
        (victim.address,),
    )
    # the account cannot trade while its auction is open (a trade would make every bid wait for a new round)
    desk.mark(PERP, 96_500 * PRICE)
    sell = desk.order(victim.address, PERP, False, UNIT, 96_500 * PRICE)
    buy = desk.order(maker.address, PERP, True, UNIT, 96_500 * PRICE)
    trade = desk.match_call(buy, desk.sign(buy), sell, desk.sign(sell), UNIT, 96_500 * PRICE)
    assert revert_of(trade, system.owner.address) == ("AccountInLiquidation", (victim.address,))
    # the contract's own quote agrees with the figures computed here
    at = chain_now(system) + 1
    system.chain.rpc("evm_setNextBlockTimestamp", at)
    system.chain.rpc("evm_mine")
    q = quote(system, victim.address, f, equity, mm, at)
    assert tuple(liquidator(system).quote(victim.address, f, equity, mm).call()) == (
        f, q["max_fraction"], q["discount"], q["payment"], q["fee"]
    )  # fmt: skip
    # the bid: the bidder pays f (E - d M) to the account and the fee to the fund, and takes f of the book
    fund = system.deployment.contracts["Liquidator"]
    before = {a: ledger(system).cashOf(a).call() for a in (victim.address, owner, fund)}
    send_bid(system, bidder, bid_call(system, victim.address, tree, f, q["payment"] + q["fee"]))
    assert q["payment"] > 0
    assert ledger(system).cashOf(fund).call() == before[fund] + q["fee"]
    assert liquidator(system).auctions(victim.address).call()[0] == 0  # restored: the auction closed
    assert ledger(system).withdrawalsPaused().call() is False
    check_conservation(system.w3, system.deployment)
    # the next round shows it: E' >= MM', E' ~ E - f d M, MM' ~ (1 - f) M (docs/liquidation.md, "Rounding")
    after = engine(system)
    _, mm_after, equity_after = after[victim.address]
    assert equity_after >= mm_after
    assert abs(equity_after - (equity - f * discount * mm // WAD**2)) <= 10 * USD
    assert abs(mm_after - (WAD - f) * mm // WAD) <= 10 * USD
    _, mm_bidder, equity_bidder = after[owner]
    assert equity_bidder >= mm_bidder
    _, restored, values = attest_round(system)
    assert values[victim.address][2] >= values[victim.address][1]
    assert revert_of(bid_call(system, victim.address, restored, f), owner) == ("NoAuction", (victim.address,))
    desk.trade(victim.address, maker.address, PERP, 1, 96_500 * PRICE)  # released with the auction
    set_index(system, 100_000)


def test_a_bidder_with_a_book_bids_on_its_own_leaf(system: System, desk: Desk, maker: Transmitter) -> None:
    """A market maker holding the other side bids from its book: its own leaf in the same round proves it stays
    (1 + b) above M_B + f M; the moved position nets against its own (profit or loss realized into cash)."""
    victim = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
    other = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
    holder = trader(system, desk, usdc=200_000)
    thin = trader(system, desk, usdc=10)
    set_index(system, 100_000)
    desk.trade(maker.address, holder.address, PERP, 2 * UNIT, 100_000 * PRICE)  # the holder is short 2 BTC
    desk.trade(thin.address, maker.address, PERP, 1, 100_000 * PRICE)
    set_index(system, 96_500)
    _, tree, values = attest_round(system)
    for account in (victim, other):
        start(system, account.address, tree, holder)
    warp(system, PLATEAU)
    # a bidder with a book must prove its leaf: without it the oracle refuses
    assert revert_of(bid_call(system, victim.address, tree, TAKE_MAX), holder.address)[0] == "InvalidMarginProof"
    # a bidder whose own account is under auction cannot bid
    assert revert_of(bid_call(system, victim.address, tree, TAKE_MAX, bidder=other.address), other.address) == (
        "BidderInAuction",
        (other.address,),
    )
    # a thin book: its leaf proves too little equity for M_B + f M
    name, _ = revert_of(bid_call(system, victim.address, tree, TAKE_MAX, bidder=thin.address), thin.address)
    assert name == "BidderUnderMargin"
    # TAKE_MAX takes f* at the bid's block and restores the account in one bid
    _, mm, equity = values[victim.address]
    at = chain_now(system) + 1
    q = quote(system, victim.address, WAD, equity, mm, at)
    f = q["max_fraction"]
    cash_before = ledger(system).cashOf(holder.address).call()
    victim_cash = ledger(system).cashOf(victim.address).call()
    send_bid(system, holder, bid_call(system, victim.address, tree, TAKE_MAX, bidder=holder.address), at)
    assert liquidator(system).auctions(victim.address).call()[0] == 0
    moved = UNIT * f // WAD
    assert ledger(system).positionOf(holder.address, PERP).call() == -2 * UNIT + moved
    # the moved long (cost 100,000 per BTC) shrinks the short sold at 100,000: its cost pro rata (toward zero),
    # nothing realized, so the holder's cash moves by f of the account's cash and the bid's cost (up to a wei)
    size, cost, _ = ledger(system).positionState(holder.address, PERP).call()
    short_cost = -2 * 100_000 * USD
    assert cost == truncated_div(short_cost * size, -2 * UNIT)
    q = quote(system, victim.address, f, equity, mm, at)
    moved_cash = truncated_div(victim_cash * f, WAD)
    change = ledger(system).cashOf(holder.address).call() - cash_before
    assert abs(change - moved_cash + q["payment"] + q["fee"]) <= 1
    check_conservation(system.w3, system.deployment)
    after = engine(system)
    assert after[victim.address][2] >= after[victim.address][1]
    assert after[holder.address][2] >= after[holder.address][1]
    # its book changed after the round: its leaf no longer proves anything until the next round
    name, args = revert_of(bid_call(system, other.address, tree, TAKE_MAX, bidder=holder.address), holder.address)
    assert name == "AccountChangedSinceRound" and args[0] == holder.address
    _, fresh, _ = attest_round(system)
    send_bid(system, holder, bid_call(system, other.address, fresh, TAKE_MAX, bidder=holder.address))
    assert liquidator(system).auctions(other.address).call()[0] == 0
    check_conservation(system.w3, system.deployment)
    set_index(system, 100_000)


def test_a_bid_takes_the_fraction_of_every_collateral_balance(system: System, desk: Desk, maker: Transmitter) -> None:
    victim = trader(system, desk, usdc=2_000)
    deposit(system, victim, "WETH", 2 * WETH + 7)  # 7 wei: the moved amount rounds down, the account keeps the rest
    set_index(system, 100_000)
    desk.trade(victim.address, maker.address, PERP, UNIT, 100_000 * PRICE)
    set_index(system, 96_500)
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    assert MAX_DISCOUNT * mm <= equity * WAD < mm * WAD
    bidder = trader(system, desk, usdc=20_000)
    start(system, victim.address, tree, bidder)
    warp(system, PLATEAU)
    at = chain_now(system) + 1
    f = quote(system, victim.address, WAD, equity, mm, at)["max_fraction"]
    weth = system.deployment.contracts["WETH"]
    cash_before = ledger(system).cashOf(victim.address).call()
    q = quote(system, victim.address, f, equity, mm, at)
    send_bid(system, bidder, bid_call(system, victim.address, tree, f), at)
    moved = (2 * WETH + 7) * f // WAD
    assert ledger(system).balanceOf(bidder.address, weth).call() == moved
    assert ledger(system).balanceOf(victim.address, weth).call() == 2 * WETH + 7 - moved
    assert ledger(system).positionOf(bidder.address, PERP).call() == UNIT * f // WAD
    # the account keeps its cash less the moved fraction (toward zero), plus the payment f (E - d M)
    moved_cash = abs(cash_before) * f // WAD * (1 if cash_before >= 0 else -1)
    assert ledger(system).cashOf(victim.address).call() == cash_before - moved_cash + q["payment"]
    audit = check_conservation(system.w3, system.deployment)
    assert audit.collateral_ok
    after = engine(system)
    assert after[victim.address][2] >= after[victim.address][1]
    assert after[bidder.address][2] >= after[bidder.address][1]
    set_index(system, 100_000)


def test_self_liquidation_gains_nothing(system: System, desk: Desk, maker: Transmitter) -> None:
    """The owner of a breached account bids on it from a second account: together they lose the fee."""
    victim = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
    twin = trader(system, desk, usdc=20_000)
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    twin_equity = values[twin.address][2]
    start(system, victim.address, tree, twin)
    warp(system, PLATEAU)  # the largest discount
    at = chain_now(system) + 1
    f = quote(system, victim.address, WAD, equity, mm, at)["max_fraction"]
    q = quote(system, victim.address, f, equity, mm, at)
    send_bid(system, twin, bid_call(system, victim.address, tree, f), at)
    after = engine(system)
    together_before = equity + twin_equity
    together_after = after[victim.address][2] + after[twin.address][2]
    # the pair's equity falls by the fee (the rounding of the moved size aside: within a dollar)
    assert together_before - q["fee"] - USD <= together_after <= together_before - q["fee"] + USD
    check_conservation(system.w3, system.deployment)
    set_index(system, 100_000)


def test_an_insolvent_account_goes_whole_with_a_subsidy_and_the_rest_is_socialized(
    system: System, desk: Desk, maker: Transmitter
) -> None:
    bystander = trader(system, desk, usdc=1_000)
    victim = breach(system, desk, maker, cash=2_000, size=UNIT, drop_to=95_000)  # E ~ 2,000 - 5,000 < 0
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    assert equity < 0
    bidder = trader(system, desk, usdc=20_000)
    fund = system.deployment.contracts["Liquidator"]
    fund_before = liquidator(system).fundBalance().call()
    # the fund has less than the shortfall: starting the auction pauses withdrawals
    start(system, victim.address, tree, bidder)
    assert liquidator(system).totalShortfall().call() == -equity > fund_before
    assert ledger(system).withdrawalsPaused().call() is True
    margin, proof = margin_of(tree, bystander.address)
    withdraw = ledger(system).withdraw(system.deployment.contracts["USDC"], USDC, margin, proof)
    assert revert_of(withdraw, bystander.address) == ("WithdrawalsPaused", ())
    # only the whole book
    warp(system, PLATEAU)
    at = chain_now(system) + 1
    q = quote(system, victim.address, WAD, equity, mm, at)
    assert q["max_fraction"] == WAD
    assert revert_of(bid_call(system, victim.address, tree, WAD // 2), bidder.address) == (
        "FractionBelowMin",
        (WAD // 2, WAD),
    )
    # the fund pays |E| + d M, rounded toward the fund, and gets the fee on d M; it goes negative
    assert q["payment"] == -(-(equity * WAD - MAX_DISCOUNT * mm) // WAD) < 0
    send_bid(system, bidder, bid_call(system, victim.address, tree, WAD, q["payment"] + q["fee"]), at)
    subsidy = -q["payment"]
    assert liquidator(system).insurancePaid().call() >= subsidy
    balance = liquidator(system).fundBalance().call()
    assert balance == fund_before - subsidy + q["fee"] < 0
    assert liquidator(system).socializedLoss().call() == -balance
    assert check_conservation(system.w3, system.deployment).insurance_fund == balance
    # what a node's metrics show (pmoracle_insurance_fund_usd, pmoracle_insurance_paid_usd)
    fund_view = read_insurance_fund(ChainClient([system.chain.url]), system.deployment)
    assert fund_view == InsuranceFund(balance, liquidator(system).insurancePaid().call(), -balance)
    without = Deployment(system.deployment.chain_id, 0, {k: v for k, v in system.deployment.contracts.items()
                                                         if k != "Liquidator"})  # fmt: skip
    assert read_insurance_fund(ChainClient([system.chain.url]), without) is None
    assert liquidator(system).totalShortfall().call() == 0
    assert ledger(system).withdrawalsPaused().call() is True  # the fund owes: the loss is everybody's
    check_conservation(system.w3, system.deployment)
    # the victim is empty; the bidder holds the book with the subsidy and is solvent
    after = engine(system)
    assert victim.address not in after
    assert after[bidder.address][2] >= after[bidder.address][1]
    # paying the loss back into the fund resumes withdrawals
    usdc = system.contract("USDC").functions
    amount = -balance // 10**12 + 1
    transact_fn(system.owner, usdc.mint(system.owner.address, amount), label="mint")
    transact_fn(system.owner, usdc.approve(fund, amount), label="approve")
    transact_fn(system.owner, liquidator(system).depositFund(amount), label="fund")
    assert liquidator(system).socializedLoss().call() == 0
    assert ledger(system).withdrawalsPaused().call() is False
    check_conservation(system.w3, system.deployment)
    set_index(system, 100_000)


def test_a_partial_bid_waits_for_the_next_round(system: System, desk: Desk, maker: Transmitter) -> None:
    victim = breach(system, desk, maker, cash=20_000, size=2 * UNIT, drop_to=96_500)
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    assert 0 < equity < mm
    bidder = trader(system, desk, usdc=50_000)
    start(system, victim.address, tree, bidder)
    warp(system, PLATEAU)
    at = chain_now(system) + 1
    f = quote(system, victim.address, WAD, equity, mm, at)["max_fraction"]
    partial = max(MIN_FRACTION, f // 2)
    assert partial < f < WAD
    send_bid(system, bidder, bid_call(system, victim.address, tree, partial), at)
    assert liquidator(system).auctions(victim.address).call()[0] != 0  # not restored: still open
    second = trader(system, desk, usdc=50_000)
    traded = ledger(system).tradedAt(victim.address).call()
    name, args = revert_of(bid_call(system, victim.address, tree, MIN_FRACTION), second.address)
    assert name == "AccountChangedSinceRound" and args[1] == traded
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    assert equity < mm
    at = chain_now(system) + 1
    f = quote(system, victim.address, WAD, equity, mm, at)["max_fraction"]
    send_bid(system, second, bid_call(system, victim.address, tree, f), at)
    assert liquidator(system).auctions(victim.address).call()[0] == 0
    after = engine(system)
    assert after[victim.address][2] >= after[victim.address][1]
    check_conservation(system.w3, system.deployment)
    set_index(system, 100_000)


BOOKS = st.tuples(
    st.integers(2_000, 30_000),  # cash, USD
    st.integers(1, 4),  # perpetual units long
    st.integers(-3, 3),  # future units (negative: short)
    st.integers(1, 60),  # index drop, permille
    st.integers(1, 2_000),  # fraction of the allowed maximum, permille (from 1,000 on: the maximum)
    st.integers(0, PLATEAU),  # seconds into the auction
)


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(book=BOOKS)
def test_bids_on_random_books_keep_both_sides_solvent(
    system: System, desk: Desk, maker: Transmitter, book: tuple[int, int, int, int, int, int]
) -> None:
    """Random books, times and fractions: a bid never leaves the bidder under its margin, the account loses at most
    f d M (and the rounding), a bid of f* restores it (as the engine recomputes it), and money is conserved."""
    cash, perp, futures, drop, share, elapsed = book
    future = future_id(system)
    victim = trader(system, desk, usdc=cash)
    set_index(system, 100_000)
    desk.trade(victim.address, maker.address, PERP, perp * UNIT, 100_000 * PRICE)
    if futures > 0:
        desk.trade(victim.address, maker.address, future, futures * UNIT, 100_000 * PRICE)
    elif futures < 0:
        desk.trade(maker.address, victim.address, future, -futures * UNIT, 100_000 * PRICE)
    set_index(system, 100_000 - 100 * drop)
    _, tree, values = attest_round(system)
    _, mm, equity = values[victim.address]
    if equity >= mm:
        set_index(system, 100_000)
        return
    bidder = trader(system, desk, usdc=10_000_000)
    start(system, victim.address, tree, bidder)
    at = liquidator(system).auctions(victim.address).call()[0] + max(elapsed, 1)
    f_max = quote(system, victim.address, WAD, equity, mm, at)["max_fraction"]
    q = quote(system, victim.address, f_max, equity, mm, at)
    whole = equity * WAD < q["discount"] * mm
    f = f_max if whole else max(min(MIN_FRACTION, f_max), min(f_max, f_max * share // 1_000))
    q = quote(system, victim.address, f, equity, mm, at)
    send_bid(system, bidder, bid_call(system, victim.address, tree, f), at)
    check_conservation(system.w3, system.deployment)
    after = engine(system)
    _, mm_bidder, equity_bidder = after[bidder.address]
    assert equity_bidder >= mm_bidder
    _, mm_after, equity_after = after.get(victim.address, (0, 0, 0))
    assert equity_after >= min(equity, 0) + max(0, equity) - f * q["discount"] * mm // WAD**2 - 10 * USD
    if f == f_max:
        assert equity_after >= mm_after
        assert liquidator(system).auctions(victim.address).call()[0] == 0
    set_index(system, 100_000)


def future_id(system: System) -> int:
    """Return a future on BTC expiring in 60 days (listed once)."""
    accounts = ledger(system)
    count = accounts.instrumentCount().call()
    for iid in range(1, count + 1):
        if accounts.instrument(iid).call()[2] == 1:
            return iid
    expiry = (chain_now(system) // 86_400 + 60) * 86_400 + 8 * 3_600
    transact_fn(system.owner, accounts.listInstrument(BTC, 1, expiry, 0), label="list")
    return count + 1


def test_gas_of_a_bid_on_twenty_positions(system: System, desk: Desk, maker: Transmitter) -> None:
    """A bid taking 20 perpetual and future positions, into a fresh bidder (its storage is created position by
    position) and into a bidder already holding the 20 instruments (every position is an update)."""
    accounts = ledger(system)
    expiry0 = (chain_now(system) // 86_400 + 40) * 86_400 + 8 * 3_600
    first = accounts.instrumentCount().call() + 1
    for k in range(19):
        transact_fn(system.owner, accounts.listInstrument(BTC, 1, expiry0 + k * 86_400, 0), label="list")
    ids = [PERP, *range(first, first + 19)]
    victims = [trader(system, desk, usdc=50_000) for _ in range(2)]
    for victim, iid in itertools.product(victims, ids):
        desk.trade(victim.address, maker.address, iid, UNIT // 10, 100_000 * PRICE)
    assert accounts.openPositionCount(victims[0].address).call() == 20
    # leaves under maintenance margin (the gas does not depend on the values)
    anchor = system.anchor()
    tree = attest(system, anchor, [(v.address, 3_000 * USD, 2_000 * USD, 1_900 * USD) for v in victims])
    bidder = trader(system, desk, usdc=100_000)
    for victim in victims:
        start(system, victim.address, tree, bidder)
    warp(system, PLATEAU)
    receipt = send_bid(system, bidder, bid_call(system, victims[0].address, tree, TAKE_MAX))
    assert accounts.openPositionCount(bidder.address).call() == 20
    print(f"bid gas, 20 positions into a fresh bidder: {receipt.gas_used}")
    assert receipt.gas_used < BID_GAS
    check_conservation(system.w3, system.deployment)
    anchor = system.anchor()
    leaves = [(victims[1].address, 3_000 * USD, 2_000 * USD, 1_900 * USD), (bidder.address, 0, 0, 100_000 * USD)]
    tree = attest(system, anchor, leaves)
    receipt = send_bid(system, bidder, bid_call(system, victims[1].address, tree, TAKE_MAX, bidder=bidder.address))
    assert accounts.openPositionCount(bidder.address).call() == 20
    print(f"bid gas, 20 positions into a bidder holding them: {receipt.gas_used}")
    check_conservation(system.w3, system.deployment)
    # closing the received positions in any order leaves the open list consistent
    random.Random(13).shuffle(ids)
    for iid in ids:
        size = accounts.positionOf(bidder.address, iid).call()
        desk.trade(maker.address, bidder.address, iid, size, 100_000 * PRICE)
        assert accounts.positionOf(bidder.address, iid).call() == 0
    assert accounts.openPositionCount(bidder.address).call() == 0
    views = {view[0]: view for view in accounts.accountsPage(0, 10**6).call()}
    assert views[bidder.address][2] == []  # the account view lists no position
    check_conservation(system.w3, system.deployment)
