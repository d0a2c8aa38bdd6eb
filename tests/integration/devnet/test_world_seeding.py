"""The devnet world's fast seeding (batched sends, log-confirmed, local encoding and signing) on a real anvil."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from web3 import Web3

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.orders import Order, sign_order
from pmoracle.devnet.devchain import Devchain, start_devchain
from pmoracle.devnet.ledger_audit import audit_cash
from pmoracle.devnet.world import World, WorldError, encode_call
from tests.integration.devnet.seeding import book_digest, seed_world

# The book seeded for 60 accounts (seed 1, chain time pinned) by the world before fast seeding (main at b7c022e):
# one transaction per action, each confirmed by its receipt, calldata from web3, orders signed by chain.orders.
BOOK_60_BEFORE = "30797164006724b3e2800409d29c128c323a3f7518d463ace826c23751365c93"


@pytest.fixture(scope="module")
def chain() -> Iterator[Devchain]:
    """A fresh anvil for the module (the world needs a block gas limit and automine of its own)."""
    devchain = start_devchain(prune_history=1024)
    try:
        yield devchain
    finally:
        devchain.stop()


@pytest.fixture(scope="module")
def world(chain: Devchain) -> World:
    """The world seeded with 60 accounts at the pinned chain time."""
    return seed_world(chain, 60)


def test_fast_seeding_opens_the_same_book_as_before(chain: Devchain, world: World) -> None:
    assert len(world.accounts) == 60
    assert world.trades == 96
    assert book_digest(chain, world) == BOOK_60_BEFORE


def test_funded_tokens_are_all_in_the_ledger_and_the_cash_identity_holds(chain: Devchain, world: World) -> None:
    w3 = Web3(Web3.HTTPProvider(chain.url))
    ledger = world.deployment.contracts["MarginAccounts"]
    for token in ("USDC", "WBTC", "WETH"):
        erc20 = w3.eth.contract(address=world.deployment.contracts[token], abi=load_artifact("MockERC20").abi)
        supply = erc20.functions.totalSupply().call()
        assert supply > 0
        assert erc20.functions.balanceOf(ledger).call() == supply  # every unit minted was deposited
        for account in world.accounts[:5]:
            assert erc20.functions.balanceOf(account).call() == 0
            assert erc20.functions.allowance(account, ledger).call() == 0  # approved exactly what was deposited
    assert audit_cash(w3, world.deployment).ok


def test_local_order_signatures_equal_chain_orders_signatures(world: World) -> None:
    rng = random.Random(7)
    exchange = world.deployment.contracts["Exchange"]
    for account in rng.sample(world.accounts, 10):
        order = Order(
            Web3.to_bytes(hexstr=account), rng.randrange(1, 2**32), rng.random() < 0.5, rng.randrange(1, 2**128),
            rng.randrange(1, 2**128), rng.randrange(2**64), rng.randrange(2**64),
        )  # fmt: skip
        assert world.sign_order(order) == sign_order(world.deployment.chain_id, exchange, order, world.keys[account])


def test_local_calldata_equals_web3_encoding() -> None:
    rng = random.Random(3)
    address = Web3.to_checksum_address(rng.randbytes(20))
    cases = [
        ("MarketFeeds", "setIndex", [b"BTC".ljust(32, b"\0"), rng.randrange(2**128), -rng.randrange(2**100)]),
        ("MockERC20", "approve", [address, 2**256 - 1]),
        ("MarginAccounts", "deposit", [address, 0]),
        ("MarginAccounts", "listInstrument", [b"ETH".ljust(32, b"\0"), 2, 2**64 - 1, 3_000 * 10**8]),
        ("Exchange", "setMarks", [[1, 2, 3], [4, 5, 6]]),  # dynamic arguments: eth_abi's path
    ]
    for contract, name, args in cases:
        expected = Web3().eth.contract(abi=load_artifact(contract).abi).encode_abi(name, args=args)
        assert encode_call(contract, name, *args) == expected


def test_out_of_range_arguments_are_refused_by_name() -> None:
    with pytest.raises(WorldError, match="is not a uint8"):
        encode_call("MarginAccounts", "listInstrument", b"ETH", 2**32, 0, 0)  # kind is uint8: out of range
    with pytest.raises(WorldError, match="20-byte address"):
        encode_call("MockERC20", "approve", "0x1234", 1)
    with pytest.raises(WorldError, match="20-byte address"):
        encode_call("MockERC20", "approve", "0xzz" + "00" * 19, 1)


def test_a_reverting_transaction_in_a_batch_is_named(world: World) -> None:
    usdc = world.deployment.contracts["USDC"]
    ok = world._tx(world.accounts[0], "USDC", "mint", world.accounts[0], 1)
    bad = world._tx(world.accounts[1], "MarginAccounts", "deposit", usdc, 0)  # ZeroAmount
    with pytest.raises(WorldError, match=r"1 simulated transactions reverted.*ZeroAmount"):
        world.send_all([ok, bad])
