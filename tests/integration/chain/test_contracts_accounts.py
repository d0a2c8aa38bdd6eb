"""MarketFeeds and MarginAccounts on a real anvil: feeds, instruments, trades, views, and attested-margin checks."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import to_canonical_address

from pmoracle.chain.deploy import open_transmitter, transact_fn
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.devnet.devchain import Devchain
from tests.integration.chain.contracts_support import (
    BTC,
    ETH,
    USD,
    USDC,
    WAD,
    WETH,
    System,
    address_of,
    deploy_system,
    dev_key,
    revert_of,
)
from tests.integration.chain.trading import Desk

MAX_ROUND_AGE = 20
EXPIRY_1, EXPIRY_2 = 1_830_000_000 - 1_830_000_000 % 86400 + 8 * 3600, 1_840_000_000 - 1_840_000_000 % 86400 + 8 * 3600


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    s = deploy_system(anvil, n=4, max_round_age=MAX_ROUND_AGE)
    feeds = s.contract("MarketFeeds").functions
    for call in (
        feeds.setIndex(BTC, 95_000 * 10**8, 4 * WAD // 100),
        feeds.setIndex(ETH, 3_500 * 10**8, 4 * WAD // 100),
        feeds.setSmile(BTC, EXPIRY_2, WAD // 25, WAD // 10, -WAD // 5, 0, WAD // 10),
        feeds.setSmile(BTC, EXPIRY_1, WAD // 30, WAD // 10, -WAD // 4, 0, WAD // 10),
        feeds.setAssetPrice(s.deployment.contracts["USDC"], 10**8, 2 * WAD // 100, bytes(32)),
        feeds.setAssetPrice(s.deployment.contracts["WETH"], 3_500 * 10**8, 10 * WAD // 100, ETH),
    ):
        transact_fn(s.owner, call, label="feeds")
    return s


@pytest.fixture(scope="module")
def traders(system: System) -> tuple[Transmitter, Transmitter]:
    alice, bob = open_transmitter(system.chain.url, dev_key(10)), open_transmitter(system.chain.url, dev_key(11))
    accounts = system.deployment.contracts["MarginAccounts"]
    for trader in (alice, bob):
        for token, amount in (("USDC", 20_000 * USDC), ("WETH", 2 * WETH)):
            erc20 = system.contract(token).functions
            transact_fn(trader, erc20.mint(trader.address, amount), label="mint")
            transact_fn(trader, erc20.approve(accounts, amount), label="approve")
            transact_fn(trader, system.contract("MarginAccounts").functions.deposit(
                system.deployment.contracts[token], amount), label="deposit")  # fmt: skip
    return alice, bob


def test_feeds_snapshot_returns_the_market(system: System) -> None:
    underlyings, assets = system.contract("MarketFeeds").functions.snapshot().call()
    assert [u[0] for u in underlyings] == [BTC, ETH]
    btc = underlyings[0]
    assert btc[1] == 95_000 * 10**8 and btc[2] == 4 * WAD // 100
    assert [smile[0] for smile in btc[4]] == [EXPIRY_1, EXPIRY_2]  # sorted by expiry
    assert tuple(btc[4][0][1:6]) == (WAD // 30, WAD // 10, -WAD // 4, 0, WAD // 10)
    assert [(a[1].rstrip(b"\x00"), a[2], a[3]) for a in assets] == [(b"USDC", 6, 10**8), (b"WETH", 18, 3_500 * 10**8)]
    feeds = system.contract("MarketFeeds").functions
    name, args = revert_of(feeds.setSmile(ETH, EXPIRY_1, 0, WAD, WAD, 0, 1), system.owner.address)
    assert (name, args) == ("InvalidSmile", ("rho", WAD))
    assert revert_of(feeds.setIndex(BTC, 1, 0), address_of(dev_key(9)))[0] == "AccessControlUnauthorizedAccount"


def test_instruments_are_listed_with_compact_ids(system: System) -> None:
    accounts = system.contract("MarginAccounts").functions
    for args in ((BTC, 0, 0, 0), (BTC, 1, EXPIRY_1, 0), (BTC, 2, EXPIRY_1, 100_000 * 10**8)):
        transact_fn(system.owner, accounts.listInstrument(*args), label="list")
    assert accounts.instrumentCount().call() == 3
    page = accounts.instrumentsPage(1, 10).call()
    assert [tuple(i) for i in page] == [(2, BTC, 1, EXPIRY_1, 0, 0), (3, BTC, 2, EXPIRY_1, 100_000 * 10**8, 0)]
    owner = system.owner.address
    assert revert_of(accounts.listInstrument(BTC, 0, EXPIRY_1, 0), owner) == ("InvalidInstrument", (0, EXPIRY_1, 0))
    assert revert_of(accounts.listInstrument(BTC, 2, EXPIRY_1, 0), owner)[0] == "InvalidInstrument"
    assert revert_of(accounts.listInstrument(BTC, 4, EXPIRY_1, 1), owner)[0] == "InvalidInstrument"


def test_trades_move_positions_and_pages_show_them(system: System, traders: tuple[Transmitter, Transmitter]) -> None:
    alice, bob = traders
    desk = Desk(system.deployment, system.owner, system.w3)
    desk.add(dev_key(10)), desk.add(dev_key(11))
    accounts = system.contract("MarginAccounts").functions
    desk.trade(alice.address, bob.address, 3, 5_000, 1_200 * 10**8)  # 0.5 call at 1,200: 600 premium
    desk.trade(bob.address, alice.address, 1, 20_000, 95_000 * 10**8)  # 2 BTC perpetual: cost 190,000
    assert accounts.positionOf(alice.address, 3).call() == 5_000
    assert accounts.positionOf(bob.address, 3).call() == -5_000
    assert accounts.accountCount().call() == 2
    page = accounts.accountsPage(0, 10).call()
    assert page[0][0] == alice.address
    assert page[0][1] == (20_000 - 600) * USD  # the premium left alice's cash
    assert [tuple(p) for p in page[0][2]] == [(3, 5_000, 0, 0), (1, -20_000, -190_000 * USD, 0)]
    weth = system.deployment.contracts["WETH"]
    assert page[1][1] == (20_000 + 600) * USD
    assert [tuple(c) for c in page[1][3]] == [(weth, 2 * WETH)]  # USDC is cash, not a collateral balance
    # the Exchange is the only way in: nobody else (not even the admin) applies a trade
    name, _ = revert_of(accounts.applyTrade(alice.address, bob.address, 1, 1, 1), system.owner.address)
    assert name == "AccessControlUnauthorizedAccount"
    buy, sell = desk.order(alice.address, 9, True, 1, 1), desk.order(bob.address, 9, False, 1, 1)
    desk.mark(9, 1)
    call = desk.match_call(buy, desk.sign(buy), sell, desk.sign(sell), 1, 1)
    assert revert_of(call, system.owner.address) == ("UnknownInstrument", (9,))


def attest_book(system: System, alice: str, bob: str) -> tuple[MerkleTree, int]:
    """Attest alice: equity 10,000, IM 2,000, MM 1,000; bob: equity 500, IM 1,200, MM 800 (liquidatable)."""
    tree = MerkleTree([
        AccountLeaf(to_canonical_address(alice), 2_000 * USD, 1_000 * USD, 10_000 * USD),
        AccountLeaf(to_canonical_address(bob), 1_200 * USD, 800 * USD, 500 * USD),
    ])  # fmt: skip
    block = system.anchor()
    transact_fn(
        system.owner,
        system.oracle.functions.attest(*system.certificate(system.report(block, tree), (1, 2, 3))),
        label="attest",
    )
    return tree, block


def margin_of(tree: MerkleTree, account: str) -> tuple[Any, list[bytes]]:
    leaf = tree.leaf_of(to_canonical_address(account))
    return (leaf.initial_margin, leaf.maintenance_margin, leaf.equity), tree.proof(leaf.account)


def test_withdrawal_allowed_then_refused_on_attested_margin(
    system: System, traders: tuple[Transmitter, Transmitter]
) -> None:
    alice, bob = traders
    tree, _ = attest_book(system, alice.address, bob.address)
    accounts = system.contract("MarginAccounts").functions
    usdc, weth = system.deployment.contracts["USDC"], system.deployment.contracts["WETH"]
    margin, proof = margin_of(tree, alice.address)
    # cash leaves at par: 10,000 - 5,000 >= 2,000
    before = system.contract("USDC").functions.balanceOf(alice.address).call()
    cash = accounts.cashOf(alice.address).call()
    transact_fn(alice, accounts.withdraw(usdc, 5_000 * USDC, margin, proof), label="withdraw")
    assert system.contract("USDC").functions.balanceOf(alice.address).call() == before + 5_000 * USDC
    assert accounts.cashOf(alice.address).call() == cash - 5_000 * USD
    # collateral leaves at its price less the haircut: 1 WETH x 3,500 x 90% = 3,150; 10,000 - 5,000 - 3,150 < 2,000
    assert accounts.collateralValue(weth, WETH).call() == 3_150 * USD
    name, args = revert_of(accounts.withdraw(weth, WETH, margin, proof), alice.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (alice.address, 1_850 * USD, 2_000 * USD))
    # the same attestation cannot be spent twice: 5,000 + 4,000 > 10,000 - 2,000
    name, args = revert_of(accounts.withdraw(usdc, 4_000 * USDC, margin, proof), alice.address)
    assert (name, args) == ("WithdrawalExceedsMargin", (alice.address, 1_000 * USD, 2_000 * USD))
    # bob's equity is below his initial margin already
    bob_margin, bob_proof = margin_of(tree, bob.address)
    name, _ = revert_of(accounts.withdraw(usdc, 1 * USDC, bob_margin, bob_proof), bob.address)
    assert name == "WithdrawalExceedsMargin"
    # alice cannot use bob's leaf, nor claim more equity than attested
    assert revert_of(accounts.withdraw(usdc, USDC, bob_margin, bob_proof), alice.address)[0] == "InvalidMarginProof"
    inflated = (margin[0], margin[1], margin[2] * 2)
    assert revert_of(accounts.withdraw(usdc, USDC, inflated, proof), alice.address)[0] == "InvalidMarginProof"
    assert revert_of(accounts.withdraw(usdc, 10**12 * USDC, margin, proof), alice.address)[0] == "InsufficientCash"
    assert revert_of(accounts.withdraw(weth, 10**3 * WETH, margin, proof), alice.address)[0] == "InsufficientBalance"


def test_liquidation_flag_follows_attested_maintenance_margin(
    system: System, traders: tuple[Transmitter, Transmitter]
) -> None:
    alice, bob = traders
    tree, block = attest_book(system, alice.address, bob.address)
    accounts = system.contract("MarginAccounts").functions
    keeper = open_transmitter(system.chain.url, dev_key(12))
    margin, proof = margin_of(tree, alice.address)
    assert revert_of(accounts.flagLiquidatable(alice.address, margin, proof), keeper.address) == (
        "NotLiquidatable",
        (alice.address, 10_000 * USD, 1_000 * USD),
    )
    bob_margin, bob_proof = margin_of(tree, bob.address)
    receipt = transact_fn(keeper, accounts.flagLiquidatable(bob.address, bob_margin, bob_proof), label="flag")
    assert accounts.liquidatableAt(bob.address).call() == block
    (event,) = (
        system.contract("MarginAccounts")
        .events.LiquidatableFlagged()
        .process_receipt(system.w3.eth.get_transaction_receipt(receipt.tx_hash))
    )
    assert event["args"]["account"] == bob.address and event["args"]["equity"] == 500 * USD
    assert revert_of(accounts.clearLiquidatable(bob.address, bob_margin, bob_proof), keeper.address)[0] == "NotFlagged"
    # a stale round cannot be used for a flag or a withdrawal
    system.chain.rpc("anvil_mine", hex(MAX_ROUND_AGE + 1))
    name, args = revert_of(accounts.flagLiquidatable(bob.address, bob_margin, bob_proof), keeper.address)
    assert name == "RoundTooOld" and args[0] == block
    usdc = system.deployment.contracts["USDC"]
    assert revert_of(accounts.withdraw(usdc, USDC, margin, proof), alice.address)[0] == "RoundTooOld"
