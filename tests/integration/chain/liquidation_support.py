"""What the liquidation tests share on a real anvil: the seeded protocol (BTC and ETH indices, WETH collateral, a
listed BTC perpetual), funded traders, rounds attested from the engine's own leaves, the auction's calls and the
schedule's figures computed here.

A test module deploys its own protocol with ``deploy_liquidation_system`` in a module-scoped fixture."""

from __future__ import annotations

import itertools
from typing import Any

from eth_utils import keccak, to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import LIQUIDATION_PARAMS, open_transmitter, transact_fn
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.config.params import default_params
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.devnet.devchain import Devchain
from pmoracle.risk.margin import compute_book
from tests.integration.chain.contracts_support import (
    BTC,
    ETH,
    PRICE,
    USDC,
    WAD,
    System,
    address_of,
    attest,
    deploy_system,
    deposit,
    dev_key,
    margin_of,
)
from tests.integration.chain.trading import Desk

MONEY_TO_LEAF = 10**10
PERP = 1
BUFFER, FAST_DISCOUNT, MAX_DISCOUNT, FAST_PHASE, SLOW_PHASE, FEE_SHARE, MIN_FRACTION = LIQUIDATION_PARAMS
BID_GAS = 3_000_000
_seeds = itertools.count()


def deploy_liquidation_system(anvil: Devchain) -> System:
    """Return the protocol on ``anvil`` with the BTC index at 100,000, ETH and WETH posted and the BTC perpetual
    listed, with room for a long history of rounds."""
    s = deploy_system(anvil, n=4, history_blocks=4096, max_round_age=2048)
    transact_fn(s.owner, s.contract("MarketFeeds").functions.setIndex(BTC, 100_000 * PRICE, 0), label="index")
    post_eth(s)
    transact_fn(s.owner, s.contract("MarginAccounts").functions.listInstrument(BTC, 0, 0, 0), label="list")
    return s


def trader(system: System, desk: Desk, usdc: int = 0) -> Transmitter:
    """Return a fresh funded account (ether for gas, ``usdc`` USDC deposited as cash) whose orders the desk signs."""
    key = keccak(text=f"pmoracle-liquidation-test-{next(_seeds)}")
    address = desk.add(key)
    system.chain.rpc("anvil_setBalance", address, hex(10**21))
    t = open_transmitter(system.chain.url, key)
    if usdc:
        deposit(system, t, "USDC", usdc * USDC)
    return t


def dev_address(index: int) -> str:
    return address_of(dev_key(index))


def set_index(system: System, price: int) -> None:
    transact_fn(system.owner, system.contract("MarketFeeds").functions.setIndex(BTC, price * PRICE, 0), label="index")


def post_eth(system: System) -> None:
    """Post the ETH index (3,500) and the WETH collateral price (3,500, haircut 10%)."""
    feeds = system.contract("MarketFeeds").functions
    transact_fn(system.owner, feeds.setIndex(ETH, 3_500 * PRICE, 0), label="index")
    weth = system.deployment.contracts["WETH"]
    transact_fn(system.owner, feeds.setAssetPrice(weth, 3_500 * PRICE, WAD // 10, ETH), label="price")


def refresh_index(system: System) -> None:
    """Post the feeds again at their levels (after a warp they would be too old for the engine)."""
    set_index(system, system.contract("MarketFeeds").functions.indexOf(BTC).call()[0] // PRICE)
    post_eth(system)


def engine(system: System, block: int | None = None) -> dict[str, tuple[int, int, int]]:
    """Return every account's (IM, MM, equity) in USD WAD, computed by the engine from the chain at ``block``
    (default: the latest, after posting the index again)."""
    if block is None:
        refresh_index(system)
    client = ChainClient([system.chain.url])
    snapshot = read_snapshot(client, system.deployment, client.block_number() if block is None else block)
    book = compute_book(snapshot.market, default_params(), snapshot.portfolios)
    return {
        to_checksum_address(a.account): (
            a.initial_margin * MONEY_TO_LEAF,
            a.maintenance_margin * MONEY_TO_LEAF,
            a.equity * MONEY_TO_LEAF,
        )
        for a in book.accounts
        if not a.is_empty
    }


def attest_round(system: System) -> tuple[int, MerkleTree, dict[str, tuple[int, int, int]]]:
    """Anchor a round at the latest block, attest the engine's leaves for it; return (anchor, tree, values)."""
    refresh_index(system)
    anchor = system.anchor()
    values = engine(system, anchor)
    tree = attest(system, anchor, [(a, *v) for a, v in values.items()])
    return anchor, tree, values


def breach(system: System, desk: Desk, maker: Transmitter, cash: int, size: int, drop_to: int) -> Transmitter:
    """Return an account with ``cash`` USDC long ``size`` perpetual units bought at 100,000; the index then drops."""
    victim = trader(system, desk, usdc=cash)
    set_index(system, 100_000)
    desk.trade(victim.address, maker.address, PERP, size, 100_000 * PRICE)
    set_index(system, drop_to)
    return victim


def liquidator(system: System) -> Any:
    return system.contract("Liquidator").functions


def ledger(system: System) -> Any:
    return system.contract("MarginAccounts").functions


def start(system: System, account: str, tree: MerkleTree, sender: Transmitter) -> Any:
    margin, proof = margin_of(tree, account)
    return transact_fn(sender, liquidator(system).startAuction(account, margin, proof), label="startAuction")


NO_LEAF: tuple[tuple[int, int, int], list[bytes]] = ((0, 0, 0), [])  # a cash-only bidder proves nothing
TAKE_MAX = 2**256 - 1


def bid_call(
    system: System,
    account: str,
    tree: MerkleTree,
    fraction: int,
    max_payment: int = 2**255 - 1,
    bidder: str | None = None,
) -> Any:
    """Return a bid call; ``bidder``: a bidder with a book, proving its own leaf in ``tree``."""
    margin, proof = margin_of(tree, account)
    bidder_margin, bidder_proof = NO_LEAF if bidder is None else margin_of(tree, bidder)
    return liquidator(system).bid(account, fraction, max_payment, margin, proof, bidder_margin, bidder_proof)


def truncated_div(a: int, b: int) -> int:
    """Integer division rounded toward zero, as Solidity's."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def chain_now(system: System) -> int:
    return int(system.w3.eth.get_block("latest")["timestamp"])


def warp(system: System, seconds: int) -> None:
    system.chain.rpc("evm_increaseTime", seconds)
    system.chain.rpc("evm_mine")


def quote(system: System, account: str, fraction: int, equity: int, mm: int, at: int) -> dict[str, int]:
    """Return a bid's figures at time ``at``, computed here from the schedule: the discount d, the largest fraction,
    the payment f (E - d M) rounded up and the fee (the fund's share of f d M, rounded up)."""
    started = liquidator(system).auctions(account).call()[0]
    discount = liquidator(system).discountAt(at - started).call()
    max_fraction = liquidator(system).maxFraction(equity, mm, discount).call()
    payment = -(-fraction * (equity * WAD - discount * mm) // WAD**2)
    fee = -(-fraction * discount * mm * FEE_SHARE // WAD**3)
    return {"max_fraction": max_fraction, "discount": discount, "payment": payment, "fee": fee}


def send_bid(system: System, bidder: Transmitter, call: Any, at: int | None = None) -> Any:
    """Send a bid mined at time ``at`` (default: the next second)."""
    system.chain.rpc("evm_setNextBlockTimestamp", chain_now(system) + 1 if at is None else at)
    return transact_fn(bidder, call, label="bid")


PLATEAU = FAST_PHASE + SLOW_PHASE  # from here on the discount is d_max, whatever the block's time
