"""The protocol's lifecycle on a real anvil: signed orders, cash flows, funding, expiry settlement, conservation.

Figures are exact: USD with 18 decimals (WAD), sizes in 1e-4 units, prices USD 1e8. Every test ends with the
ledger's money identity (pmoracle.devnet.ledger_audit) checked from chain state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_utils import to_canonical_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import transact_fn
from pmoracle.chain.orders import sign_order
from pmoracle.chain.snapshot import read_snapshot, read_snapshot_since
from pmoracle.config.params import default_params
from pmoracle.devnet.devchain import Devchain
from pmoracle.risk.margin import compute_book
from tests.integration.chain.contracts_support import (
    BTC,
    PRICE,
    UNIT,
    USD,
    USDC,
    WAD,
    System,
    attest,
    deploy_system,
    dev_key,
    funded,
    revert_of,
    withdraw_args,
)
from tests.integration.chain.trading import Desk, check_conservation

DAY = 86_400
HOUR = 3_600
PERP, FUTURE, CALL, PUT = 1, 2, 3, 4


def now(system: System) -> int:
    return int(system.w3.eth.get_block("latest")["timestamp"])


def warp(system: System, seconds: int) -> None:
    """Move chain time ``seconds`` ahead and mine a block."""
    system.chain.rpc("evm_increaseTime", seconds)
    system.chain.rpc("evm_mine")


def next_expiry(system: System, days: int) -> int:
    """Return 08:00 UTC ``days`` days after the chain's current day."""
    return (now(system) // DAY + days) * DAY + 8 * HOUR


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    s = deploy_system(anvil, n=4, history_blocks=4096, max_round_age=2048)
    feeds = s.contract("MarketFeeds").functions
    transact_fn(s.owner, feeds.setIndex(BTC, 95_000 * PRICE, 0), label="index")
    return s


@pytest.fixture(scope="module")
def desk(system: System) -> Desk:
    desk = Desk(system.deployment, system.owner, system.w3)
    for i in (10, 11, 12):
        funded(system, i, usdc=1_000_000 * USDC)
        desk.add(dev_key(i))
    return desk


@pytest.fixture(scope="module")
def listed(system: System) -> int:
    """List the perpetual, a future, a call and a put expiring in two days; return the expiry."""
    expiry = next_expiry(system, 2)
    ledger = system.contract("MarginAccounts").functions
    for args in (
        (BTC, 0, 0, 0),
        (BTC, 1, expiry, 0),
        (BTC, 2, expiry, 100_000 * PRICE),
        (BTC, 3, expiry, 90_000 * PRICE),
    ):
        transact_fn(system.owner, ledger.listInstrument(*args), label="list")
    return expiry


def names(desk: Desk) -> tuple[str, str, str]:
    alice, bob, carol = desk.keys
    return alice, bob, carol


def position(system: System, account: str, instrument_id: int) -> tuple[int, int, int]:
    return tuple(system.contract("MarginAccounts").functions.positionState(account, instrument_id).call())


def flatten(system: System, desk: Desk, account: str, instrument_id: int, price: int) -> None:
    """Close ``account``'s position in an instrument against another desk account."""
    size = position(system, account, instrument_id)[0]
    other = next(a for a in desk.keys if a != account)
    if size > 0:
        desk.trade(other, account, instrument_id, size, price)
    elif size < 0:
        desk.trade(account, other, instrument_id, -size, price)


def cash(system: System, account: str) -> int:
    return int(system.contract("MarginAccounts").functions.cashOf(account).call())


def test_orders_are_checked_and_bad_ones_named(system: System, desk: Desk, listed: int) -> None:
    alice, bob, _ = names(desk)
    owner = system.owner.address
    price = 95_000 * PRICE
    desk.mark(PERP, price)
    buy, sell = desk.order(alice, PERP, True, UNIT, price), desk.order(bob, PERP, False, UNIT, price)
    buy_sig, sell_sig = desk.sign(buy), desk.sign(sell)
    digest = system.contract("Exchange").functions.orderDigest(buy.as_tuple()).call()
    # the digest the traders sign in Python is the contract's
    from pmoracle.chain.orders import order_digest

    assert order_digest(system.deployment.chain_id, system.deployment.contracts["Exchange"], buy) == digest
    # a signature by anyone but the order's account: the matcher cannot trade for alice
    forged = desk.sign(buy, dev_key(11))
    assert revert_of(desk.match_call(buy, forged, sell, sell_sig, UNIT, price), owner) == (
        "InvalidOrderSignature",
        (alice, digest),
    )
    # a signature for another chain (or another Exchange) does not verify here
    elsewhere = sign_order(system.deployment.chain_id + 1, desk.exchange.address, buy, dev_key(10))
    assert revert_of(desk.match_call(buy, elsewhere, sell, sell_sig, UNIT, price), owner)[0] == "InvalidOrderSignature"
    # limits, band, sides
    assert revert_of(desk.match_call(buy, buy_sig, sell, sell_sig, UNIT, price + 1), owner) == (
        "PriceBeyondLimit",
        (digest, price, price + 1),
    )
    rich_buy = desk.order(alice, PERP, True, UNIT, 200_000 * PRICE)
    far = 100_000 * PRICE  # the band is 5% of the mark: 95,000 +- 4,750
    name, args = revert_of(desk.match_call(rich_buy, desk.sign(rich_buy), sell, sell_sig, UNIT, far), owner)
    assert (name, args) == ("PriceOutsideBand", (PERP, far, price, 4_750 * PRICE))
    assert revert_of(desk.match_call(sell, sell_sig, sell, sell_sig, UNIT, price), owner) == (
        "OrderSides",
        (False, False),
    )
    put_buy, put_sell = desk.order(alice, PUT, True, UNIT, PRICE), desk.order(bob, PUT, False, UNIT, PRICE)
    name, args = revert_of(
        desk.match_call(put_buy, desk.sign(put_buy), put_sell, desk.sign(put_sell), UNIT, PRICE), owner
    )
    assert (name, args) == ("StaleMark", (PUT, 0))  # no mark posted for the put
    # an expired order
    late = desk.order(alice, PERP, True, UNIT, price, expiry=now(system) - 1)
    name, args = revert_of(desk.match_call(late, desk.sign(late), sell, sell_sig, UNIT, price), owner)
    assert name == "OrderExpired" and args[1] == late.expiry
    # partial fills up to the size, then a replay of the filled order is refused
    half = UNIT // 2
    transact_fn(system.owner, desk.match_call(buy, buy_sig, sell, sell_sig, half, price), label="fill 1")
    transact_fn(system.owner, desk.match_call(buy, buy_sig, sell, sell_sig, half, price), label="fill 2")
    assert revert_of(desk.match_call(buy, buy_sig, sell, sell_sig, 1, price), owner) == (
        "OrderOverfilled",
        (digest, 0, 1),
    )
    assert position(system, alice, PERP)[0] == UNIT
    # cancellation: one order, or every order below a nonce
    exchange = system.contract("Exchange").functions
    alice_tx = funded(system, 10)
    open_buy, open_sell = desk.order(alice, PERP, True, UNIT, price), desk.order(bob, PERP, False, UNIT, price)
    transact_fn(alice_tx, exchange.cancel(open_buy.as_tuple()), label="cancel")
    name, args = revert_of(
        desk.match_call(open_buy, desk.sign(open_buy), open_sell, desk.sign(open_sell), UNIT, price), owner
    )
    assert name == "OrderOverfilled" and args[1:] == (0, UNIT)
    assert revert_of(exchange.cancel(open_sell.as_tuple()), alice) == ("NotOrderAccount", (alice, bob))
    fresh = desk.order(alice, PERP, True, UNIT, price)
    transact_fn(alice_tx, exchange.cancelUpTo(fresh.nonce + 1), label="cancelUpTo")
    name, args = revert_of(
        desk.match_call(fresh, desk.sign(fresh), open_sell, desk.sign(open_sell), UNIT, price), owner
    )
    assert (name, args) == ("OrderNonceCancelled", (alice, fresh.nonce, fresh.nonce + 1))
    # close alice's position again for the next tests
    desk.trade(bob, alice, PERP, UNIT, price)
    check_conservation(system.w3, system.deployment)


def test_premiums_entry_prices_realized_pnl_and_fees_move_cash_exactly(system: System, desk: Desk, listed: int) -> None:
    alice, bob, carol = names(desk)
    before = {a: cash(system, a) for a in (alice, bob, carol)}
    # an option's premium moves in cash: alice buys 1 call at 2,000
    desk.trade(alice, bob, CALL, UNIT, 2_000 * PRICE)
    assert cash(system, alice) == before[alice] - 2_000 * USD and cash(system, bob) == before[bob] + 2_000 * USD
    assert position(system, alice, CALL) == (UNIT, 0, 0)
    # a future records its cost basis: alice buys 2 at 95,000 from bob
    desk.trade(alice, bob, FUTURE, 2 * UNIT, 95_000 * PRICE)
    assert position(system, alice, FUTURE) == (2 * UNIT, 190_000 * USD, 0)
    assert position(system, bob, FUTURE) == (-2 * UNIT, -190_000 * USD, 0)
    assert cash(system, alice) == before[alice] - 2_000 * USD  # no cash moves when a position opens
    # reducing realizes P&L pro rata: alice sells 0.5 to carol at 97,000, +1,000
    desk.trade(carol, alice, FUTURE, UNIT // 2, 97_000 * PRICE)
    assert position(system, alice, FUTURE) == (3 * UNIT // 2, 142_500 * USD, 0)
    assert cash(system, alice) == before[alice] - 2_000 * USD + 1_000 * USD
    # flipping realizes the whole old position and opens the rest at the trade's price
    desk.trade(bob, carol, FUTURE, 3 * UNIT, 96_000 * PRICE)
    assert position(system, bob, FUTURE) == (UNIT, 96_000 * USD, 0)  # short 2 at 95,000 bought back at 96,000
    assert cash(system, bob) == before[bob] + 2_000 * USD - 2_000 * USD
    assert position(system, carol, FUTURE) == (-5 * UNIT // 2, -240_000 * USD, 0)  # long 0.5 at 97,000 sold at 96,000
    assert cash(system, carol) == before[carol] - 500 * USD
    # fees: 5 bps of the traded value from each side
    ledger = system.contract("MarginAccounts").functions
    transact_fn(system.owner, ledger.setFeeRate(5 * WAD // 10_000), label="fee")
    fees = ledger.feesCollected().call()
    alice_cash = cash(system, alice)
    desk.trade(alice, carol, PERP, UNIT, 95_000 * PRICE)  # value 95,000: fee 47.5 each
    assert cash(system, alice) == alice_cash - 47_500 * USD // 1_000
    assert ledger.feesCollected().call() == fees + 95 * USD
    assert revert_of(ledger.setFeeRate(WAD // 50), system.owner.address) == ("InvalidFeeRate", (WAD // 50,))
    check_conservation(system.w3, system.deployment)
    usdc = system.contract("USDC").functions
    held = usdc.balanceOf(system.owner.address).call()
    transact_fn(system.owner, ledger.withdrawFees(system.owner.address, 95 * USDC), label="fees")
    assert usdc.balanceOf(system.owner.address).call() == held + 95 * USDC
    assert revert_of(ledger.withdrawFees(system.owner.address, USDC), system.owner.address)[0] == "InsufficientFees"
    transact_fn(system.owner, ledger.setFeeRate(0), label="fee")
    check_conservation(system.w3, system.deployment)


def test_perpetual_funding_is_paid_by_longs_to_shorts_through_the_pool(system: System, desk: Desk, listed: int) -> None:
    alice, bob, carol = names(desk)
    ledger = system.contract("MarginAccounts").functions
    for account in (alice, bob, carol):  # start flat in the perpetual
        flatten(system, desk, account, PERP, 95_000 * PRICE)
    desk.trade(alice, bob, PERP, UNIT, 95_000 * PRICE)
    assert revert_of(ledger.setFundingRate(PERP, WAD // 50), system.owner.address) == (
        "InvalidFundingRate",
        (WAD // 50,),
    )
    transact_fn(system.owner, ledger.setFundingRate(PERP, WAD // 1_000), label="rate")  # 0.1% a day
    _, cumulative, paid_at, _ = ledger.fundingOf(PERP).call()
    warp(system, DAY - (now(system) - paid_at))
    transact_fn(system.owner, ledger.payFunding(PERP), label="funding")
    _, after, paid_at, paid_block = ledger.fundingOf(PERP).call()
    elapsed_share = 95_000 * USD // 1_000  # 0.1% of 95,000 for one day (elapsed is 1 day +- a second)
    assert abs((after - cumulative) - elapsed_share) <= elapsed_share // DAY * 2
    per_unit = after - cumulative
    assert position(system, alice, PERP)[2] == per_unit and position(system, bob, PERP)[2] == -per_unit
    assert revert_of(ledger.payFunding(PERP), system.owner.address) == ("FundingTooSoon", (PERP, paid_at + HOUR))
    # a withdrawal judged on a round anchored before the payment is refused: equity moved unseen
    r = system.anchor() - 3
    tree = attest(system, r, [(alice, 0, 0, 10**9 * USD)])
    alice_tx = funded(system, 10)
    name, args = revert_of(withdraw_args(system, tree, alice_tx, "USDC", USDC), alice)
    assert (name, args) == ("FundingSinceRound", (alice, PERP, paid_block, r))
    # realizing moves the amount between cash and the pool; the short receives it when it trades
    alice_cash, bob_cash = cash(system, alice), cash(system, bob)
    transact_fn(system.owner, ledger.realizeFunding(alice, [PERP]), label="realize")
    assert cash(system, alice) == alice_cash - per_unit
    assert ledger.fundingPool().call() == per_unit
    desk.trade(bob, alice, PERP, UNIT, 95_000 * PRICE)  # both close
    assert cash(system, bob) == bob_cash + per_unit
    assert ledger.fundingPool().call() == 0
    check_conservation(system.w3, system.deployment)
    transact_fn(system.owner, ledger.setFundingRate(PERP, 0), label="rate")


def test_expired_instruments_settle_into_cash_at_the_posted_price(system: System, desk: Desk, listed: int) -> None:
    alice, bob, carol = names(desk)
    ledger = system.contract("MarginAccounts").functions
    feeds = system.contract("MarketFeeds").functions
    owner = system.owner.address
    expiry = listed
    desk.trade(bob, alice, PUT, UNIT, 1_500 * PRICE, mark=1_500 * PRICE)
    # before the expiry: no settlement price, no settlement
    name, args = revert_of(feeds.setSettlementPrice(BTC, expiry, 104_000 * PRICE), owner)
    assert name == "SettlementBeforeExpiry" and args[:2] == (BTC, expiry)
    assert revert_of(ledger.settle(CALL, [alice]), owner) == ("InstrumentNotExpired", (CALL, expiry))
    assert revert_of(ledger.settle(PERP, [alice]), owner) == ("InstrumentNotExpired", (PERP, 0))
    warp(system, expiry - now(system) + 60)
    transact_fn(system.owner, feeds.setIndex(BTC, 95_000 * PRICE, 0), label="index")  # a fresh feed after the jump
    # expired instruments no longer trade
    buy, sell = desk.order(alice, CALL, True, UNIT, 2_000 * PRICE), desk.order(bob, CALL, False, UNIT, 2_000 * PRICE)
    desk.mark(CALL, 2_000 * PRICE)
    name, args = revert_of(desk.match_call(buy, desk.sign(buy), sell, desk.sign(sell), UNIT, 2_000 * PRICE), owner)
    assert (name, args) == ("InstrumentExpired", (CALL, expiry))
    assert revert_of(ledger.settle(CALL, [alice]), owner) == ("SettlementPriceMissing", (BTC, expiry))
    transact_fn(system.owner, feeds.setSettlementPrice(BTC, expiry, 104_000 * PRICE), label="settlement price")
    assert revert_of(feeds.setSettlementPrice(BTC, expiry, 1), owner) == (
        "SettlementAlreadyFixed",
        (BTC, expiry, 104_000 * PRICE),
    )
    holders = [alice, bob, carol]
    expected = {}
    for account in holders:
        call_size = position(system, account, CALL)[0]
        put_size = position(system, account, PUT)[0]
        future_size, future_cost, _ = position(system, account, FUTURE)
        expected[account] = (
            cash(system, account)
            + call_size * 4_000 * PRICE * 10**6  # intrinsic 104,000 - 100,000
            + put_size * 0  # the 90,000 put expires worthless
            + future_size * 104_000 * PRICE * 10**6
            - future_cost
        )
    # the engine values the expired positions at the fixed price now: their equity and margin are the settled books'
    client = ChainClient([system.chain.url])
    fixed = read_snapshot(client, system.deployment, client.block_number())
    assert fixed == read_snapshot(client, system.deployment, fixed.block_number, packed=False)  # expired books
    assert fixed.market.underlying("BTC").settlement(expiry) == 104_000 * PRICE
    params = default_params()
    before = {m.account: m for m in compute_book(fixed.market, params, fixed.portfolios).accounts}
    # settle the call for alice only: conservation holds mid-settlement (the rest is still owed by the shorts)
    transact_fn(system.owner, ledger.settle(CALL, [alice]), label="settle")
    check_conservation(system.w3, system.deployment)
    for iid in (CALL, PUT, FUTURE):
        transact_fn(system.owner, ledger.settle(iid, holders), label="settle")
    transact_fn(system.owner, ledger.settle(CALL, holders), label="settle again")  # nothing left: a no-op
    for account in holders:
        assert cash(system, account) == expected[account]
        assert all(position(system, account, iid) == (0, 0, 0) for iid in (CALL, PUT, FUTURE))
    check_conservation(system.w3, system.deployment)
    settled = read_snapshot(client, system.deployment, client.block_number())
    assert settled == read_snapshot(client, system.deployment, settled.block_number, packed=False)
    for from_logs in (True, False):  # the settlements named by their logs, or found by a scan
        since = read_snapshot_since(client, system.deployment, settled.block_number, fixed, from_logs=from_logs)
        assert since is not None
        assert since == dataclasses.replace(settled, rpc_calls=since.rpc_calls, changed_accounts=since.changed_accounts)
        assert since.changed_accounts == len(holders)
    after = {m.account: m for m in compute_book(settled.market, params, settled.portfolios).accounts}
    for account in holders:
        key = to_canonical_address(account)
        b, a = before[key], after[key]
        assert (b.equity, b.initial_margin, b.maintenance_margin) == (a.equity, a.initial_margin, a.maintenance_margin)


def test_an_expiry_without_a_feeder_price_settles_at_the_index_after_the_window(system: System) -> None:
    feeds = system.contract("MarketFeeds").functions
    owner = system.owner.address
    expiry = next_expiry(system, 1)
    transact_fn(system.owner, feeds.setSmile(BTC, expiry, WAD // 25, WAD // 10, 0, 0, WAD // 10), label="smile")
    assert revert_of(feeds.removeSmile(BTC, expiry), owner) == ("NotSettled", (BTC, expiry))
    warp(system, expiry - now(system) + 10)
    window = feeds.settlementWindow().call()
    name, args = revert_of(feeds.fixSettlementPrice(BTC, expiry), owner)
    assert (name, args) == ("SettlementWindowOpen", (BTC, expiry, expiry + window))
    warp(system, window)
    name, args = revert_of(feeds.setSettlementPrice(BTC, expiry, 96_000 * PRICE), owner)
    assert (name, args) == ("SettlementWindowClosed", (BTC, expiry, expiry + window))
    updated_at = feeds.indexOf(BTC).call()[1]
    assert revert_of(feeds.fixSettlementPrice(BTC, expiry), owner) == ("StaleIndex", (BTC, updated_at, expiry))
    transact_fn(system.owner, feeds.setIndex(BTC, 96_500 * PRICE, 0), label="index")  # the feed lives on
    transact_fn(funded(system, 12), feeds.fixSettlementPrice(BTC, expiry), label="fix")  # anyone
    price, fixed_at = feeds.settlementPrice(BTC, expiry).call()
    assert price == 96_500 * PRICE and fixed_at > expiry + window
    transact_fn(system.owner, feeds.removeSmile(BTC, expiry), label="remove smile")
    underlyings, _ = feeds.snapshot().call()
    assert expiry not in [smile[0] for smile in underlyings[0][4]]


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("trade"), st.integers(0, 2), st.integers(0, 2), st.sampled_from(("perp", "future", "call")),
                  st.integers(1, 30_000), st.integers(-40, 40)),
        st.tuples(st.just("deposit"), st.integers(0, 2), st.integers(1, 50_000)),
        st.tuples(st.just("withdraw"), st.integers(0, 2), st.integers(1, 50_000)),
        st.tuples(st.just("funding"), st.integers(-10, 10)),
    ),
    min_size=1,
    max_size=10,
)  # fmt: skip


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_money_is_conserved_over_orders_funding_settlements_and_withdrawals(
    system: System, desk: Desk, ops: list[tuple[Any, ...]]
) -> None:
    """Any sequence of signed trades, deposits, withdrawals and funding, then expiry and settlement of everything
    dated: the ledger's identity holds after each step and the tokens held match every account's balance."""
    accounts = names(desk)
    ledger = system.contract("MarginAccounts").functions
    feeds = system.contract("MarketFeeds").functions
    expiry = next_expiry(system, 1)
    first = ledger.instrumentCount().call() + 1
    transact_fn(system.owner, ledger.listInstrument(BTC, 1, expiry, 0), label="list")
    transact_fn(system.owner, ledger.listInstrument(BTC, 2, expiry, 95_000 * PRICE), label="list")
    ids = {"perp": PERP, "future": first, "call": first + 1}
    marks = {"perp": 95_000 * PRICE, "future": 95_100 * PRICE, "call": 3_000 * PRICE}
    for op in ops:
        if op[0] == "trade":
            _, b, s, kind, size, bps = op
            if b == s:
                continue
            price = marks[kind] + marks[kind] * bps // 1_000  # within the 5% band
            desk.trade(accounts[b], accounts[s], ids[kind], size, price, mark=marks[kind])
        elif op[0] == "deposit":
            funded(system, 10 + op[1], usdc=op[2] * USDC)
        elif op[0] == "withdraw":
            trader = funded(system, 10 + op[1])
            r = system.anchor()
            tree = attest(system, r, [(a, 0, 0, 10**12 * USD) for a in accounts])
            call = withdraw_args(system, tree, trader, "USDC", op[2] * USDC)
            if cash(system, trader.address) < op[2] * USD:
                assert revert_of(call, trader.address)[0] == "InsufficientCash"
            else:
                transact_fn(trader, call, label="withdraw")
        else:
            transact_fn(system.owner, ledger.setFundingRate(PERP, op[1] * WAD // 10_000), label="rate")
            warp(system, HOUR)
            transact_fn(system.owner, ledger.payFunding(PERP), label="funding")
        check_conservation(system.w3, system.deployment)
    warp(system, expiry - now(system) + 1)
    transact_fn(system.owner, feeds.setSettlementPrice(BTC, expiry, 97_000 * PRICE), label="settlement price")
    for iid in (ids["future"], ids["call"]):
        transact_fn(system.owner, ledger.settle(iid, list(accounts)), label="settle")
        check_conservation(system.w3, system.deployment)
    transact_fn(system.owner, ledger.realizeFunding(accounts[0], [PERP]), label="realize")
    check_conservation(system.w3, system.deployment)
