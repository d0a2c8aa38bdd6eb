"""read_snapshot against the real MarketFeeds and MarginAccounts on anvil: values, units, order, paging, pinning."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import encode as abi_encode

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.devchain import Devchain
from pmoracle.chain.errors import ContractError, SnapshotError
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.risk.inputs import (
    WAD,
    CollateralAsset,
    Instrument,
    InstrumentKind,
    Portfolio,
    Position,
    Smile,
)

from .helpers import DEV_KEYS, contract_at

EXPIRY = 1_798_790_400  # 2027-01-01 08:00 UTC


def sym(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


@dataclass
class Protocol:
    client: ChainClient
    admin: Transmitter
    deployment: Deployment
    feeds: Any
    accounts: Any
    tokens: dict[str, Any]


def deploy_contract(tx: Transmitter, name: str, types: list[str], args: list[Any]) -> Any:
    artifact = load_artifact(name)
    receipt = tx.transact(None, artifact.bytecode + abi_encode(types, args))
    assert receipt.contract_address is not None
    return contract_at(list(artifact.abi), receipt.contract_address)


@pytest.fixture(scope="module")
def protocol(anvil: Devchain) -> Protocol:
    deployment = deploy(anvil.url, bytes.fromhex(DEV_KEYS[0][2:]), params_hash=b"\1" * 32, round_period=10,
                        finality_depth=2)  # fmt: skip
    client = ChainClient([anvil.url])
    c = deployment.contracts

    def at(name: str, address: str) -> Any:
        return contract_at(list(load_artifact(name).abi), address)

    return Protocol(
        client=client,
        admin=Transmitter(client, DEV_KEYS[0]),
        deployment=deployment,
        feeds=at("MarketFeeds", c["MarketFeeds"]),
        accounts=at("MarginAccounts", c["MarginAccounts"]),
        tokens={s: at("MockERC20", c[s]) for s in ("USDC", "WBTC", "WETH")},
    )


def setup_market_and_books(p: Protocol) -> None:
    f, a, t = p.feeds.functions, p.accounts.functions, p.tokens
    send = p.admin.transact_call
    send(f.setIndex(sym("ETH"), 3_000 * 10**8, 0))
    send(f.setIndex(sym("BTC"), 60_000 * 10**8, 5 * WAD // 100))
    send(f.setSmile(sym("BTC"), EXPIRY + 86400, WAD // 25, WAD // 10, -WAD // 2, 0, WAD // 10))
    send(f.setSmile(sym("BTC"), EXPIRY, WAD // 50, WAD // 10, -WAD // 3, WAD // 100, WAD // 5))
    send(f.setAssetPrice(t["USDC"].address, 10**8, 0, b"\0" * 32))
    send(f.setAssetPrice(t["WBTC"].address, 60_000 * 10**8, WAD // 10, sym("BTC")))
    send(f.setAssetPrice(t["WETH"].address, 3_000 * 10**8, WAD // 10, sym("ETH")))
    send(a.listInstrument(sym("BTC"), 0, 0, 0))  # 1 perpetual
    send(a.listInstrument(sym("BTC"), 2, EXPIRY, 65_000 * 10**8))  # 2 call
    send(a.listInstrument(sym("ETH"), 3, EXPIRY, 2_500 * 10**8))  # 3 put
    send(a.listInstrument(sym("BTC"), 1, EXPIRY, 0))  # 4 future
    deposits = {
        1: [("USDC", 1_000_000 * 10**6 + 123), ("WBTC", 150_000_000)],
        2: [("WETH", 3 * 10**18 + 10**13 - 1)],
        3: [("USDC", 99)],  # 0.000099 USDC: below SIZE_SCALE, rounds down to nothing
    }
    for key, items in deposits.items():
        user = Transmitter(p.client, DEV_KEYS[key])
        for symbol, amount in items:
            token = t[symbol]
            send(token.functions.mint(user.address, amount))
            user.transact_call(token.functions.approve(p.accounts.address, amount))
            user.transact_call(a.deposit(token.address, amount))
    u1, u2, u3 = (Transmitter(p.client, DEV_KEYS[k]).address for k in (1, 2, 3))
    send(a.trade(u1, u2, 1, 25_000))  # u1 long 2.5 BTC perp
    send(a.trade(u2, u1, 2, 10_000))  # u1 short 1 call
    send(a.trade(u1, u2, 3, 7))
    send(a.trade(u3, u1, 4, 500))  # u3 buys, then sells back: a flat account with dust only
    send(a.trade(u1, u3, 4, 500))


def test_snapshot_reads_market_and_accounts_in_canonical_order(protocol: Protocol) -> None:
    setup_market_and_books(protocol)
    client = protocol.client
    block = client.block_number()
    snap = read_snapshot(client, protocol.deployment, block)
    header = client.get_block(block)
    assert (snap.block_number, snap.block_hash, snap.timestamp) == (block, header.hash, header.timestamp)

    market = snap.market
    assert market.time == header.timestamp
    assert [u.symbol for u in market.underlyings] == ["BTC", "ETH"]  # sorted, not listing order
    btc = market.underlying("BTC")
    assert (btc.index, btc.rate) == (60_000 * 10**8, 5 * WAD // 100)
    assert btc.smiles == (
        Smile(EXPIRY, WAD // 50, WAD // 10, -WAD // 3, WAD // 100, WAD // 5),
        Smile(EXPIRY + 86400, WAD // 25, WAD // 10, -WAD // 2, 0, WAD // 10),
    )
    assert btc.updated_at > 0 and market.underlying("ETH").smiles == ()
    assert [(a.symbol, a.price, a.haircut, a.underlying) for a in market.assets] == [
        ("USDC", 10**8, 0, None),
        ("WBTC", 60_000 * 10**8, WAD // 10, "BTC"),
        ("WETH", 3_000 * 10**8, WAD // 10, "ETH"),
    ]
    assert all(isinstance(a, CollateralAsset) and a.updated_at > 0 for a in market.assets)

    perp = Instrument("BTC", InstrumentKind.PERPETUAL)
    call = Instrument("BTC", InstrumentKind.CALL, EXPIRY, 65_000 * 10**8)
    put = Instrument("ETH", InstrumentKind.PUT, EXPIRY, 2_500 * 10**8)
    future = Instrument("BTC", InstrumentKind.FUTURE, EXPIRY, 0)
    assert snap.instruments == ((1, perp), (2, call), (3, put), (4, future))

    u1, u2 = (bytes.fromhex(Transmitter(client, DEV_KEYS[k]).address[2:]) for k in (1, 2))
    expected = {
        u1: Portfolio(
            positions=(Position(perp, 25_000), Position(call, -10_000), Position(put, 7)),
            collateral=(("USDC", 1_000_000 * 10**4 + 1), ("WBTC", 15_000)),  # token units -> 1e-4, rounded down
            account=u1,
        ),
        u2: Portfolio(
            positions=(Position(perp, -25_000), Position(call, 10_000), Position(put, -7)),
            collateral=(("WETH", 30_000),),
            account=u2,
        ),
    }
    # u3 (flat position, dust collateral) is skipped; the rest are sorted by address bytes.
    assert snap.portfolios == tuple(expected[a] for a in sorted(expected))
    assert snap.rpc_calls == 5  # snapshot(), instrumentCount, one instrument page, accountCount, one account page


def test_paging_gives_the_same_snapshot_with_one_call_per_page(protocol: Protocol) -> None:
    client = protocol.client
    block = client.block_number()
    whole = read_snapshot(client, protocol.deployment, block)
    sent = sum(client.request_counts().values())
    paged = read_snapshot(client, protocol.deployment, block, account_page_size=1, instrument_page_size=3)
    assert sum(client.request_counts().values()) - sent == 1 + paged.rpc_calls  # the header, then the eth_calls
    assert paged == dataclasses.replace(whole, rpc_calls=paged.rpc_calls)
    accounts = 3
    assert paged.rpc_calls == 1 + 1 + 2 + 1 + accounts  # market, count, ceil(4/3) pages, count, one per account


def test_snapshot_is_pinned_to_its_block(protocol: Protocol) -> None:
    client = protocol.client
    block = client.block_number()
    before = read_snapshot(client, protocol.deployment, block)
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    protocol.admin.transact_call(protocol.accounts.functions.trade(u1, u2, 1, 1))
    protocol.admin.transact_call(protocol.feeds.functions.setIndex(sym("BTC"), 61_000 * 10**8, 0))
    assert read_snapshot(client, protocol.deployment, block) == before
    after = read_snapshot(client, protocol.deployment, client.block_number())
    assert after.market.underlying("BTC").index == 61_000 * 10**8
    assert after.portfolios[0] != before.portfolios[0] or after.portfolios[1] != before.portfolios[1]


def test_malformed_chain_data_is_a_named_error_not_a_partial_snapshot(protocol: Protocol) -> None:
    bad = deploy_contract(protocol.admin, "MockERC20", ["string", "string", "uint8"], ["bad", "usdc", 6])
    protocol.admin.transact_call(protocol.feeds.functions.setAssetPrice(bad.address, 10**8, 0, b"\0" * 32))
    with pytest.raises(SnapshotError) as info:
        read_snapshot(protocol.client, protocol.deployment, protocol.client.block_number())
    assert "symbol" in info.value.field and info.value.value == "usdc"


def test_reverts_of_the_real_contracts_decode_with_the_artifact_errors(protocol: Protocol) -> None:
    client = ChainClient([protocol.client.urls[0]])  # default decoder: every artifact's custom errors
    admin = Transmitter(client, DEV_KEYS[0])
    with pytest.raises(ContractError) as info:
        admin.send_call(protocol.accounts.functions.listInstrument(sym("BTC"), 2, EXPIRY, 0))
    assert info.value.name == "InvalidInstrument" and info.value.error_args == (2, EXPIRY, 0)
    outsider = Transmitter(client, DEV_KEYS[3])
    with pytest.raises(ContractError) as info:
        outsider.send_call(protocol.feeds.functions.setIndex(sym("BTC"), 1, 0))
    role = client.call(protocol.feeds.functions.FEEDER_ROLE())
    assert info.value.name == "AccessControlUnauthorizedAccount"
    assert info.value.error_args == (outsider.address, role)
