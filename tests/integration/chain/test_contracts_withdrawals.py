"""Withdrawals cannot outrun the oracle: each attack of issue 12 item 4 against MarginAccounts on a real anvil.

Every test states the safety property and the attack that breaks it on a ledger without the rule: withdrawing the
same equity twice across rounds, withdrawing on the margin of an anchor before a trade, withdrawing collateral
whose price fell since the anchor, an initial margin that an unchecked cast turns negative, and an account locked
out by the instrument cap after closing positions. Values are USD with 18 decimals; USDC has no haircut here so
that the figures read directly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.chain.deploy import open_transmitter, transact_fn
from pmoracle.devnet.devchain import Devchain
from tests.integration.chain.contracts_support import (
    BTC,
    ETH,
    USD,
    USDC,
    WAD,
    WETH,
    System,
    attest,
    deploy_system,
    deposit,
    dev_key,
    funded,
    margin_of,
    revert_of,
    withdraw_args,
)
from tests.integration.chain.trading import Desk, check_conservation

MAX_HELD = 256
TRADE_GAS = 1_000_000


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    s = deploy_system(anvil, n=4, history_blocks=4096, max_round_age=2048)
    feeds = s.contract("MarketFeeds").functions
    for call in (
        feeds.setIndex(ETH, 3_500 * 10**8, 0),
        feeds.setIndex(BTC, 95_000 * 10**8, 0),
        feeds.setAssetPrice(s.deployment.contracts["USDC"], 10**8, 0, bytes(32)),
        feeds.setAssetPrice(s.deployment.contracts["WETH"], 3_500 * 10**8, 10 * WAD // 100, ETH),
    ):
        transact_fn(s.owner, call, label="feeds")
    accounts = s.contract("MarginAccounts").functions
    transact_fn(s.owner, accounts.listInstrument(ETH, 0, 0, 0), label="list")  # instrument 1: ETH perpetual
    return s


@pytest.fixture(scope="module")
def desk(system: System) -> Desk:
    return Desk(system.deployment, system.owner, system.w3)


def test_a_round_anchored_before_a_withdrawal_does_not_reset_it(system: System) -> None:
    """Attack 1: withdraw against round R1, then round R2 (anchored before the withdrawal) resets the ledger."""
    alice = funded(system, 10, usdc=40_000 * USDC)
    r1 = system.anchor()
    tree1 = attest(system, r1, [(alice.address, 2_000 * USD, 1_000 * USD, 20_000 * USD)])
    r2 = system.anchor()  # the state of r2 still holds the 18,000 USDC withdrawn below
    transact_fn(alice, withdraw_args(system, tree1, alice, "USDC", 18_000 * USDC), label="withdraw")
    tree2 = attest(system, r2, [(alice.address, 2_000 * USD, 1_000 * USD, 20_000 * USD)])
    name, args = revert_of(withdraw_args(system, tree2, alice, "USDC", 18_000 * USDC), alice.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (alice.address, -16_000 * USD, 2_000 * USD))
    # a round anchored after the withdrawal absorbs it: its equity already lacks the 18,000
    r3 = system.anchor()
    tree3 = attest(system, r3, [(alice.address, 2_000 * USD, 1_000 * USD, 3_000 * USD)])
    transact_fn(alice, withdraw_args(system, tree3, alice, "USDC", 1_000 * USDC), label="withdraw")
    name, args = revert_of(withdraw_args(system, tree3, alice, "USDC", 1 * USDC), alice.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (alice.address, 1_999 * USD, 2_000 * USD))


def test_withdrawals_stay_counted_until_a_round_anchored_after_them(system: System) -> None:
    """Two buckets per token: exact while the unseen withdrawals span two blocks, conservative beyond."""
    bob = funded(system, 11, usdc=40_000 * USDC)
    r1 = system.anchor()
    tree1 = attest(system, r1, [(bob.address, 1_000 * USD, 500 * USD, 20_000 * USD)])
    transact_fn(bob, withdraw_args(system, tree1, bob, "USDC", 5_000 * USDC), label="w1")
    r2 = system.anchor()
    transact_fn(bob, withdraw_args(system, tree1, bob, "USDC", 4_000 * USDC), label="w2")
    # round r2 saw w1, not w2: 15,000 - 4,000 - 10,001 = 999 < 1,000
    tree2 = attest(system, r2, [(bob.address, 1_000 * USD, 500 * USD, 15_000 * USD)])
    name, args = revert_of(withdraw_args(system, tree2, bob, "USDC", 10_001 * USDC), bob.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (bob.address, 999 * USD, 1_000 * USD))
    transact_fn(bob, withdraw_args(system, tree2, bob, "USDC", 3_000 * USDC), label="w3")
    r3 = system.anchor()
    transact_fn(bob, withdraw_args(system, tree2, bob, "USDC", 1_000 * USDC), label="w4")
    transact_fn(bob, withdraw_args(system, tree2, bob, "USDC", 1_000 * USDC), label="w5")
    # r3 saw w1..w3 (equity 8,000), not w4, w5; but w2..w4 share the older bucket (up to w4's block > r3), so
    # w2 and w3 still count: 8,000 - (4,000 + 3,000 + 1,000) - 1,000 - 1 instead of the exact 8,000 - 2,001
    tree3 = attest(system, r3, [(bob.address, 1_000 * USD, 500 * USD, 8_000 * USD)])
    name, args = revert_of(withdraw_args(system, tree3, bob, "USDC", 1 * USDC), bob.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (bob.address, -1_001 * USD, 1_000 * USD))
    # a round anchored after every withdrawal has seen them all
    r4 = system.anchor()
    tree4 = attest(system, r4, [(bob.address, 1_000 * USD, 500 * USD, 6_000 * USD)])
    transact_fn(bob, withdraw_args(system, tree4, bob, "USDC", 5_000 * USDC), label="w6")
    assert system.contract("MarginAccounts").functions.withdrawableEquity(bob.address, 6_000 * USD, r4).call() == (
        1_000 * USD
    )


def test_no_withdrawal_after_a_trade_until_a_later_round(system: System, desk: Desk) -> None:
    """Attack 2: a trade after the anchor changes the margin the withdrawal is judged on."""
    carol, dave = funded(system, 12, usdc=20_000 * USDC), funded(system, 13, usdc=20_000 * USDC)
    house = funded(system, 8)
    desk.add(dev_key(12)), desk.add(dev_key(8))
    accounts = system.contract("MarginAccounts").functions
    r1 = system.anchor()
    leaves = [(carol.address, 2_000 * USD, 1_000 * USD, 20_000 * USD), (dave.address, 0, 0, 20_000 * USD)]
    tree1 = attest(system, r1, leaves)
    receipt = desk.trade(carol.address, house.address, 1, 100_000, 3_500 * 10**8)
    trade_block = receipt.block_number
    name, args = revert_of(withdraw_args(system, tree1, carol, "USDC", 1_000 * USDC), carol.address)
    assert (name, args) == ("TradedSinceRound", (carol.address, trade_block, r1))
    assert accounts.tradedAt(carol.address).call() == trade_block
    # a deposit only adds collateral: it blocks nothing (and is not credited before a round sees it)
    deposit(system, dave, "USDC", 1_000 * USDC)
    transact_fn(dave, withdraw_args(system, tree1, dave, "USDC", 500 * USDC), label="withdraw")
    assert accounts.withdrawableEquity(dave.address, 20_000 * USD, r1).call() == 19_500 * USD
    # a round anchored at or after the trade judges it
    r2 = system.anchor()
    tree2 = attest(system, r2, [(carol.address, 9_000 * USD, 5_000 * USD, 20_000 * USD)])
    transact_fn(carol, withdraw_args(system, tree2, carol, "USDC", 11_000 * USDC), label="withdraw")


def test_collateral_is_valued_conservatively_after_a_price_fall(system: System) -> None:
    """Attack 3: WETH falls from 3,500 to 2,000 after the anchor; the attested equity still counts 3,500."""
    erin = funded(system, 14, weth=10 * WETH)
    feeds = system.contract("MarketFeeds").functions
    weth = system.deployment.contracts["WETH"]
    r1 = system.anchor()
    # 10 WETH x 3,500 x (1 - 10%) = 31,500
    tree = attest(system, r1, [(erin.address, 2_000 * USD, 1_000 * USD, 31_500 * USD)])
    transact_fn(system.owner, feeds.setAssetPrice(weth, 2_000 * 10**8, 10 * WAD // 100, ETH), label="price")
    # 1 WETH left is worth 1,800 < IM 2,000: refused; the bound is the true equity (31,500 - 9 x 3,150 - 1 x 1,350)
    name, args = revert_of(withdraw_args(system, tree, erin, "WETH", 9 * WETH), erin.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (erin.address, 1_800 * USD, 2_000 * USD))
    # 2 WETH left are worth 3,600 >= 2,000: allowed
    transact_fn(erin, withdraw_args(system, tree, erin, "WETH", 8 * WETH), label="withdraw")
    assert feeds.collateralPriceAt(weth, r1).call()[1:] == [1_800 * 10**8 * WAD, 3_150 * 10**8 * WAD]
    accounts = system.contract("MarginAccounts").functions
    assert accounts.withdrawableEquity(erin.address, 31_500 * USD, r1).call() == 3_600 * USD
    transact_fn(system.owner, feeds.setAssetPrice(weth, 3_500 * 10**8, 10 * WAD // 100, ETH), label="price")


def test_a_fall_of_kept_collateral_is_charged_and_a_rise_is_not_credited(system: System) -> None:
    """Withdrawing USDC while the WETH kept fell since the anchor; withdrawing WETH after it rose."""
    judy = funded(system, 7, usdc=30_000 * USDC, weth=10 * WETH)
    feeds = system.contract("MarketFeeds").functions
    weth = system.deployment.contracts["WETH"]
    r1 = system.anchor()
    # 30,000 + 10 x 3,150 = 61,500; WETH falls to 2,000 (1,800 counted): the truth is 48,000
    tree1 = attest(system, r1, [(judy.address, 20_000 * USD, 10_000 * USD, 61_500 * USD)])
    transact_fn(system.owner, feeds.setAssetPrice(weth, 2_000 * 10**8, 10 * WAD // 100, ETH), label="price")
    name, args = revert_of(withdraw_args(system, tree1, judy, "USDC", 28_001 * USDC), judy.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (judy.address, 19_999 * USD, 20_000 * USD))
    transact_fn(judy, withdraw_args(system, tree1, judy, "USDC", 28_000 * USDC), label="withdraw")
    # WETH rises to 5,000 (4,500 counted) after the next anchor: the rise waits for a round to be credited
    r2 = system.anchor()
    tree2 = attest(system, r2, [(judy.address, 20_000 * USD, 10_000 * USD, 20_000 * USD)])
    transact_fn(system.owner, feeds.setAssetPrice(weth, 5_000 * 10**8, 10 * WAD // 100, ETH), label="price")
    # 1e-18 WETH leaves at the anchor's 1,800 (1,800 units of 1e-18 USD), not at 4,500
    name, args = revert_of(withdraw_args(system, tree2, judy, "WETH", 1), judy.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (judy.address, 20_000 * USD - 1_800, 20_000 * USD))
    transact_fn(system.owner, feeds.setAssetPrice(weth, 3_500 * 10**8, 10 * WAD // 100, ETH), label="price")


def test_attested_margins_are_cast_safely(system: System) -> None:
    """Attack 4: an initial margin >= 2^255 wrapped to a negative int256 let any withdrawal through."""
    frank = funded(system, 15, usdc=1_000 * USDC)
    huge = 2**255
    r1 = system.anchor()
    tree = attest(system, r1, [(frank.address, huge, huge, 0)])
    name, args = revert_of(withdraw_args(system, tree, frank, "USDC", 1_000 * USDC), frank.address)
    assert (name, args) == ("SafeCastOverflowedUintToInt", (huge,))
    margin, proof = margin_of(tree, frank.address)
    accounts = system.contract("MarginAccounts").functions
    name, args = revert_of(accounts.flagLiquidatable(frank.address, margin, proof), frank.address)
    assert (name, args) == ("SafeCastOverflowedUintToInt", (huge,))


def test_the_instrument_cap_counts_open_positions_only(system: System, desk: Desk) -> None:
    """Attack 5: an account that opened and closed MAX_HELD instruments could never open another one."""
    grace, heidi = funded(system, 16, usdc=10_000 * USDC), funded(system, 17, usdc=10_000 * USDC)
    desk.add(dev_key(16)), desk.add(dev_key(17))
    accounts = system.contract("MarginAccounts").functions
    first = accounts.instrumentCount().call() + 1
    pending = [
        system.owner.send_call(accounts.listInstrument(BTC, 1, 1_900_000_000 + i, 0), gas=TRADE_GAS)
        for i in range(MAX_HELD + 2)
    ]
    ids = list(range(first, first + MAX_HELD + 2))
    price = 95_000 * 10**8
    pending.append(system.owner.send_call(desk.exchange.functions.setMarks(ids, [price] * len(ids)), gas=15_000_000))

    def match(buyer: str, seller: str, i: int, size: int) -> Any:
        buy, sell = desk.order(buyer, i, True, size, price), desk.order(seller, i, False, size, price)
        return desk.match_call(buy, desk.sign(buy), sell, desk.sign(sell), size, price)

    for i in ids[:-1]:  # open, then close
        pending.append(system.owner.send_call(match(grace.address, heidi.address, i, 1), gas=TRADE_GAS))
        pending.append(system.owner.send_call(match(heidi.address, grace.address, i, 1), gas=TRADE_GAS))
    assert all(system.owner.wait(p, timeout=60).status == 1 for p in pending)
    assert accounts.accountsPage(0, 100).call()  # the page view still works
    last = ids[-1]
    transact_fn(system.owner, match(grace.address, heidi.address, last, 3), label="trade")
    assert accounts.positionOf(grace.address, last).call() == 3
    assert accounts.openPositionCount(grace.address).call() == 1
    # the cap still bounds open positions
    pending = [
        system.owner.send_call(match(grace.address, heidi.address, i, 1), gas=TRADE_GAS)
        for i in range(first, first + MAX_HELD - 1)
    ]
    assert all(system.owner.wait(p, timeout=60).status == 1 for p in pending)
    name, args = revert_of(match(grace.address, heidi.address, first + MAX_HELD - 1, 1), system.owner.address)
    assert (name, args) == ("TooManyInstruments", (grace.address, MAX_HELD))


OPS = st.lists(
    st.tuples(st.sampled_from(("deposit", "withdraw")), st.integers(0, 2), st.sampled_from(("USDC", "WETH")),
              st.integers(1, 5_000)),
    min_size=1,
    max_size=12,
)  # fmt: skip


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_money_is_conserved_over_deposits_and_withdrawals(system: System, ops: list[tuple[str, int, str, int]]) -> None:
    """The tokens the ledger holds equal the sum of its account balances and cash after any deposits and
    withdrawals."""
    traders = [open_transmitter(system.chain.url, dev_key(i)) for i in (18, 19, 9)]
    unit = {"USDC": USDC, "WETH": WETH // 1000}
    r = system.anchor()
    tree = attest(system, r, [(t.address, 0, 0, 10**12 * USD) for t in traders])
    accounts = system.contract("MarginAccounts")
    for kind, who, token, amount in ops:
        trader, units = traders[who], amount * unit[token]
        if kind == "deposit":
            deposit(system, trader, token, units)
            continue
        fn = withdraw_args(system, tree, trader, token, units)
        if token == "USDC":
            short = accounts.functions.cashOf(trader.address).call() < units * 10**12
            expected = "InsufficientCash"
        else:
            short = accounts.functions.balanceOf(trader.address, system.deployment.contracts[token]).call() < units
            expected = "InsufficientBalance"
        if short:
            assert revert_of(fn, trader.address)[0] == expected
        else:
            transact_fn(trader, fn, label="withdraw")
    check_conservation(system.w3, system.deployment)
