"""The devnet-only DevnetSeeder on a real anvil: only its admin drives it, accounts keep no code, errors are named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from pmoracle.devnet.devchain import Devchain, devchain
from pmoracle.devnet.ledger_audit import audit_cash
from pmoracle.devnet.world import MATCHER_ROLE, SEED_BATCH, World, WorldError, encode_call
from tests.integration.devnet.seeding import seed_world


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[Devchain, World]]:
    """A fresh anvil with 20 accounts seeded."""
    with devchain(prune_history=1024) as chain:
        yield chain, seed_world(chain, 20)


@pytest.fixture
def chain(seeded: tuple[Devchain, World]) -> Devchain:
    return seeded[0]


@pytest.fixture
def world(seeded: tuple[Devchain, World]) -> World:
    return seeded[1]


def _call(world: World, sender: str, to: str, data: str) -> str | None:
    tx = ("eth_sendTransaction", [{"from": sender, "to": to, "data": data}])
    return world.simulate([tx])[0]


def test_seeded_accounts_keep_no_code_and_the_seeder_holds_only_the_matcher_role(world: World) -> None:
    codes = world.batch([("eth_getCode", [a, "latest"]) for a in [world.house, *world.accounts]])
    assert set(codes) == {"0x"}  # the depositor code was removed: their orders are checked by ECDSA
    exchange = world.deployment.contracts["Exchange"]
    has_role = encode_call("Exchange", "hasRole", MATCHER_ROLE, world.seeder)
    assert int(world.rpc("eth_call", [{"to": exchange, "data": has_role}, "latest"]), 16) == 1
    ledger = world.deployment.contracts["MarginAccounts"]
    exchange_role = encode_call("MarginAccounts", "hasRole", Web3.keccak(text="EXCHANGE_ROLE"), world.seeder)
    assert int(world.rpc("eth_call", [{"to": ledger, "data": exchange_role}, "latest"]), 16) == 0


def test_only_the_admin_drives_the_seeder_and_only_the_seeder_the_depositor(world: World) -> None:
    usdc = world.deployment.contracts["USDC"]
    deposit = encode_call("DevnetSeeder", "deposit", [(world.accounts[0], usdc, 1)])
    assert _call(world, world.accounts[1], world.seeder, deposit) == "NotSeederAdmin"
    depositor = "0x" + world.rpc("eth_call", [{"to": world.seeder, "data": encode_call("DevnetSeeder", "depositor")},
                                              "latest"])[-40:]  # fmt: skip
    ledger = world.deployment.contracts["MarginAccounts"]
    direct = encode_call("DevnetDepositor", "deposit", ledger, usdc, 1)
    assert _call(world, world.admin, depositor, direct) == "NotSeeder"


def test_a_failing_match_in_a_seeder_batch_is_named(world: World) -> None:
    inst = world.instruments[0]
    buy, _, sell, sell_sig, units, price = world._match(world.accounts[0], inst, 1.0)
    forged = (buy, sell_sig, sell, sell_sig, units, price)  # the seller's signature on the buy order
    with pytest.raises(WorldError, match="InvalidOrderSignature"):
        world.send_all(world._match_txs([forged]))


def test_random_trades_go_through_the_seeder_and_keep_the_cash_identity(chain: Devchain, world: World) -> None:
    before = world.trades
    head = int(world.rpc("eth_blockNumber", []), 16)
    world.trade_randomly(SEED_BATCH + 10)
    assert world.trades == before + SEED_BATCH + 10
    blocks = [world.rpc("eth_getBlockByNumber", [hex(b), True]) for b in range(head + 1, head + 3)]
    seeder_txs = [tx for b in blocks if b for tx in b["transactions"] if tx["to"] == world.seeder.lower()]
    assert len(seeder_txs) == 2  # SEED_BATCH matches a transaction
    assert audit_cash(Web3(Web3.HTTPProvider(chain.url)), world.deployment).ok
