"""read_snapshot against the real MarketFeeds and MarginAccounts on anvil: values, units, order, paging, pinning."""

from __future__ import annotations

import dataclasses
import queue
import random
import threading
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from eth_abi import encode as abi_encode
from web3 import Web3

from pmoracle.chain import snapshot
from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.errors import ChainError, ContractError, RpcResponseError, SnapshotError
from pmoracle.chain.snapshot import (
    ChainSnapshot,
    SnapshotCheck,
    SnapshotRead,
    SnapshotReader,
    decode_packed_accounts,
    read_snapshot,
    read_snapshot_since,
)
from pmoracle.chain.transmitter import Transmitter
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.metrics import create_node_metrics
from pmoracle.node.snapshots import RoundSnapshots
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
from .trading import Desk

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
    desk: Desk


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

    admin = Transmitter(client, DEV_KEYS[0])
    return Protocol(
        client=client,
        admin=admin,
        deployment=deployment,
        feeds=at("MarketFeeds", c["MarketFeeds"]),
        accounts=at("MarginAccounts", c["MarginAccounts"]),
        tokens={s: at("MockERC20", c[s]) for s in ("USDC", "WBTC", "WETH")},
        desk=Desk(deployment, admin, keys={
            Transmitter(client, k).address: bytes.fromhex(k[2:]) for k in DEV_KEYS[1:]
        }),
    )  # fmt: skip


PRICES = {1: 60_000 * 10**8, 2: 1_000 * 10**8, 3: 100 * 10**8, 4: 60_000 * 10**8}  # the instruments' marks


def reader_call(reader: Any, name: str, *args: int) -> bytes:
    """Return the calldata of one of ``MarginAccountsReader``'s functions."""
    return bytes.fromhex(contract_at(list(reader.abi), "0x" + "00" * 20).encode_abi(name, list(args))[2:])


def trade(p: Protocol, buyer: str, seller: str, instrument_id: int, size: int) -> None:
    """Trade ``size`` at the instrument's mark with orders both sides signed."""
    p.desk.trade(buyer, seller, instrument_id, size, PRICES[instrument_id])


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
    trade(p, u1, u2, 1, 25_000)  # u1 long 2.5 BTC perp at 60,000: cost 150,000
    trade(p, u2, u1, 2, 10_000)  # u1 short 1 call: 1,000 premium
    trade(p, u1, u2, 3, 7)  # 7e-4 puts at 100: 0.07 premium
    trade(p, u3, u1, 4, 500)  # u3 buys, then sells back: a flat account with dust cash only
    trade(p, u1, u3, 4, 500)


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

    u1, u2, u3 = (bytes.fromhex(Transmitter(client, DEV_KEYS[k]).address[2:]) for k in (1, 2, 3))
    usd = 10**18
    expected = {
        u1: Portfolio(
            positions=(Position(perp, 25_000, cost=150_000 * usd), Position(call, -10_000), Position(put, 7)),
            collateral=(("WBTC", 15_000),),  # token units -> 1e-4, rounded down
            account=u1,
            cash=(1_000_000 * 10**6 + 123) * 10**12 + 1_000 * usd - 7 * usd // 100,  # USDC is cash, exactly
        ),
        u2: Portfolio(
            positions=(Position(perp, -25_000, cost=-150_000 * usd), Position(call, 10_000), Position(put, -7)),
            collateral=(("WETH", 30_000),),
            account=u2,
            cash=-1_000 * usd + 7 * usd // 100,
        ),
        u3: Portfolio(account=u3, cash=99 * 10**12),  # flat, 0.000099 USDC of cash: still an account
    }
    # sorted by address bytes
    assert snap.portfolios == tuple(expected[a] for a in sorted(expected))
    assert snap.rpc_calls == 5  # snapshot(), instrumentCount, one instrument page, accountCount, one account page


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "abi"])
def test_paging_gives_the_same_snapshot_with_one_call_per_page(protocol: Protocol, packed: bool) -> None:
    client = protocol.client
    block = client.block_number()
    whole = read_snapshot(client, protocol.deployment, block)
    sent = sum(client.request_counts().values())
    paged = read_snapshot(client, protocol.deployment, block, account_page_size=1, instrument_page_size=3,
                          packed=packed, packed_page_size=1)  # fmt: skip
    assert sum(client.request_counts().values()) - sent == 1 + paged.rpc_calls  # the header, then the eth_calls
    assert paged == dataclasses.replace(whole, rpc_calls=paged.rpc_calls)
    accounts = 3
    assert paged.rpc_calls == 1 + 1 + 2 + 1 + accounts  # market, count, ceil(4/3) pages, count, one per account


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "abi"])
def test_pages_in_flight_give_the_same_snapshot_and_calls(protocol: Protocol, packed: bool) -> None:
    client = protocol.client
    block = client.block_number()
    one_by_one = read_snapshot(client, protocol.deployment, block, account_page_size=1, packed=packed,
                               packed_page_size=1)  # fmt: skip
    for workers in (2, 3, 8):  # fewer, as many as and more pages in flight than the 4 pages
        parallel = read_snapshot(client, protocol.deployment, block, account_page_size=1, workers=workers,
                                 packed=packed, packed_page_size=1)  # fmt: skip
        assert parallel == one_by_one


def test_packed_read_resumes_where_the_call_gas_ran_out(protocol: Protocol) -> None:
    """A node's eth_call gas cap ends a packed call early; the read goes on from where the reader stopped."""
    client, deployment = protocol.client, protocol.deployment
    block = client.block_number()
    whole = read_snapshot(client, deployment, block)
    ledger = deployment.contracts["MarginAccounts"]
    reader = load_artifact("MarginAccountsReader")
    call = reader_call(reader, "accountsPacked", 0, 10)
    capped = bytes.fromhex(client.request("eth_call", [
        {"to": ledger, "data": "0x" + call.hex(), "gas": hex(2_010_000)}, {"blockHash": "0x" + whole.block_hash.hex()},
        {ledger: {"code": "0x" + reader.deployed_bytecode.hex()}},
    ])[2:])  # fmt: skip
    page = decode_packed_accounts(capped)
    assert (page.next_index, page.total, len(page.accounts)) == (1, 3, 1)  # one account, then under ACCOUNT_GAS
    # anvil gives an eth_call its block gas limit: one account a call under a limit of 2.03M gas
    client.request("evm_setBlockGasLimit", [hex(2_030_000)])
    try:
        resumed = read_snapshot(client, deployment, block)
    finally:
        client.request("evm_setBlockGasLimit", [hex(30_000_000)])
    assert resumed.rpc_calls == 4 + 3  # the head's four calls, then one call per account
    assert resumed.portfolios == whole.portfolios


class _NoStateOverrides(ChainClient):
    """A node without eth_call state overrides: it refuses them, or (``ignore``) runs the ledger's own code."""

    def __init__(self, url: str, *, ignore: bool) -> None:
        super().__init__([url])
        self.ignore = ignore

    def call_raw(self, to: str, data: bytes, block: Any = "latest", **kwargs: Any) -> bytes:
        if kwargs.get("code_override") is not None:
            if not self.ignore:
                raise RpcResponseError(self.urls[0], "eth_call", -32602, "invalid argument 2: state override")
            kwargs["code_override"] = None
        return super().call_raw(to, data, block, **kwargs)


class _NoLogs(ChainClient):
    """A node that refuses every ``eth_getLogs`` (as providers do past a range or result limit)."""

    def request(self, method: str, params: Any = ()) -> Any:
        if method == "eth_getLogs":
            raise RpcResponseError(self.urls[0], method, -32005, "query returned more than 10000 results")
        return super().request(method, params)


def test_an_incremental_read_without_logs_scans_every_account(protocol: Protocol) -> None:
    client = _NoLogs([protocol.client.urls[0]])
    deployment = protocol.deployment
    base = read_snapshot(client, deployment, client.block_number())
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    trade(protocol, u1, u2, 1, 1)
    head = client.block_number()
    scanned = read_snapshot_since(client, deployment, head, base)
    from_logs = read_snapshot_since(protocol.client, deployment, head, base)
    assert scanned is not None and from_logs is not None
    assert scanned == dataclasses.replace(from_logs, rpc_calls=scanned.rpc_calls)
    assert scanned.changed_accounts == 2
    assert (scanned.rpc_calls, from_logs.rpc_calls) == (4 + 1, 4 + 2 + 1)  # one scan / logs, header, one read


def test_accounts_named_by_logs_are_read_in_chunks_alike(protocol: Protocol, monkeypatch: pytest.MonkeyPatch) -> None:
    client, deployment = protocol.client, protocol.deployment
    base = read_snapshot(client, deployment, client.block_number())
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    trade(protocol, u1, u2, 1, 1)
    head = client.block_number()
    whole = read_snapshot_since(client, deployment, head, base)
    assert whole is not None and whole.changed_accounts == 2
    monkeypatch.setattr(snapshot, "DEFAULT_PACKED_NAMED", 1)  # one account a call
    for workers in (1, 3):
        chunked = read_snapshot_since(client, deployment, head, base, workers=workers)
        assert chunked == dataclasses.replace(whole, rpc_calls=4 + 2 + 2)


@pytest.mark.parametrize("ignore", [False, True], ids=["refused", "ignored"])
def test_a_node_without_state_overrides_gets_the_abi_reads(protocol: Protocol, ignore: bool) -> None:
    client = _NoStateOverrides(protocol.client.urls[0], ignore=ignore)
    deployment = protocol.deployment
    base = read_snapshot(protocol.client, deployment, client.block_number())
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    trade(protocol, u1, u2, 1, 1)
    head = client.block_number()
    full = read_snapshot(client, deployment, head)
    assert full == dataclasses.replace(read_snapshot(protocol.client, deployment, head), rpc_calls=full.rpc_calls)
    assert full.rpc_calls == 5 + 1  # the refused packed call, then the ABI page
    incremental = read_snapshot_since(client, deployment, head, base)
    assert incremental is not None and incremental == _full_equivalent(incremental, full)
    assert incremental.changed_accounts == 2


def test_zero_workers_is_refused_by_name(protocol: Protocol) -> None:
    block = protocol.client.block_number()
    with pytest.raises(ChainError, match="workers must be >= 1, got 0"):
        read_snapshot(protocol.client, protocol.deployment, block, workers=0)


def test_snapshot_is_pinned_to_its_block(protocol: Protocol) -> None:
    client = protocol.client
    block = client.block_number()
    before = read_snapshot(client, protocol.deployment, block)
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    trade(protocol, u1, u2, 1, 1)
    protocol.admin.transact_call(protocol.feeds.functions.setIndex(sym("BTC"), 61_000 * 10**8, 0))
    assert read_snapshot(client, protocol.deployment, block) == before
    after = read_snapshot(client, protocol.deployment, client.block_number())
    assert after.market.underlying("BTC").index == 61_000 * 10**8
    assert after.portfolios[0] != before.portfolios[0] or after.portfolios[1] != before.portfolios[1]


def _full_equivalent(incremental: ChainSnapshot, full: ChainSnapshot) -> ChainSnapshot:
    return dataclasses.replace(full, rpc_calls=incremental.rpc_calls, changed_accounts=incremental.changed_accounts)


def test_incremental_reads_equal_full_reads_through_random_changes(protocol: Protocol) -> None:
    client, deployment = protocol.client, protocol.deployment
    f, a, t = protocol.feeds.functions, protocol.accounts.functions, protocol.tokens
    users = [Transmitter(client, DEV_KEYS[k]) for k in (1, 2, 3, 4, 5)]
    rng = random.Random(7)
    base = read_snapshot(client, deployment, client.block_number())
    paged_base = base
    for step in range(12):
        touched: set[str] = set()
        for _ in range(rng.randint(0, 3)):  # trades, a new account's deposit, a market move: any mix per block range
            kind = rng.choice(("trade", "trade", "deposit", "market"))
            if kind == "trade":
                buyer, seller = rng.sample(users, 2)
                size = rng.randint(1, 9)
                trade(protocol, buyer.address, seller.address, rng.randint(1, 4), size)
                touched |= {buyer.address, seller.address}
            elif kind == "deposit":
                user = rng.choice(users[3:])  # accounts 4 and 5 open with their first deposit
                protocol.admin.transact_call(t["USDC"].functions.mint(user.address, 10**6))
                user.transact_call(t["USDC"].functions.approve(protocol.accounts.address, 10**6))
                user.transact_call(a.deposit(t["USDC"].address, 10**6))
                touched.add(user.address)
            else:
                protocol.admin.transact_call(f.setIndex(sym("BTC"), (60_000 + rng.randint(-900, 900)) * 10**8, 0))
        client.request("evm_mine")
        block = client.block_number()
        full = read_snapshot(client, deployment, block)
        assert full == dataclasses.replace(read_snapshot(client, deployment, block, packed=False), rpc_calls=5)
        incremental = read_snapshot_since(client, deployment, block, base)
        assert incremental is not None, f"step {step}: the base should extend"
        assert incremental == _full_equivalent(incremental, full), f"step {step}"
        assert incremental.changed_accounts == len(touched)  # only what changed was re-read
        abi = read_snapshot_since(client, deployment, block, base, packed=False)
        assert abi is not None and abi == _full_equivalent(abi, full), f"step {step}"
        scanned = read_snapshot_since(client, deployment, block, base, from_logs=False)  # every account scanned
        assert scanned is not None and scanned == _full_equivalent(scanned, full), f"step {step}"
        assert scanned.changed_accounts == len(touched)
        paged = read_snapshot_since(client, deployment, block, paged_base, scan_page_size=1, workers=1 + step % 3,
                                    packed=step % 2 == 0, packed_scan_page_size=1, from_logs=False)  # fmt: skip
        assert paged is not None and paged == _full_equivalent(paged, full)
        base, paged_base = incremental, paged


def test_incremental_read_refuses_a_base_it_cannot_extend(protocol: Protocol, anvil: Devchain) -> None:
    client, deployment = protocol.client, protocol.deployment
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    base = read_snapshot(client, deployment, client.block_number())
    client.request("evm_mine")
    head = client.block_number()
    assert read_snapshot_since(client, deployment, head, base) is not None
    assert read_snapshot_since(client, deployment, base.block_number, base) is None  # not a later block
    assert read_snapshot_since(client, deployment, head, dataclasses.replace(base, block_hash=b"\1" * 32)) is None
    assert read_snapshot_since(client, deployment, head, dataclasses.replace(base, tokens=())) is None
    # a reorg replaces the base's block (and the trade in it): the base is on a dead fork
    trade(protocol, u1, u2, 1, 3)
    on_fork = read_snapshot(client, deployment, client.block_number())
    anvil.rpc("anvil_reorg", 2, [])  # drops the mark and the match: the admin's next nonce is lower again
    protocol.admin = protocol.desk.matcher = Transmitter(client, DEV_KEYS[0])
    client.request("evm_mine")
    head = client.block_number()
    assert read_snapshot_since(client, deployment, head, on_fork) is None
    assert read_snapshot(client, deployment, head).portfolios != on_fork.portfolios  # the trade is gone
    # more than 256 blocks back: blockhash() no longer knows the base
    base = read_snapshot(client, deployment, head)
    anvil.rpc("anvil_mine", hex(300))
    assert read_snapshot_since(client, deployment, client.block_number(), base) is None


def test_reader_reads_incrementally_and_marks_every_nth_snapshot_for_a_check(protocol: Protocol) -> None:
    client, deployment = protocol.client, protocol.deployment
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    reader = SnapshotReader(client, deployment, full_every=3)
    kinds, due = [], []
    for _ in range(7):
        trade(protocol, u1, u2, 1, 2)
        read = reader.read(client.block_number())
        assert read.snapshot == _full_equivalent(
            read.snapshot, read_snapshot(client, deployment, read.snapshot.block_number)
        )
        kinds.append("full" if read.snapshot.changed_accounts is None else "inc")
        due.append(read.verify)
        if read.verify:  # the check reads the block in full: equal, nothing invalidated
            sent = sum(client.request_counts().values())
            check = reader.verify(read)
            assert check == SnapshotCheck(read.snapshot.block_number, True, 0, False)
            assert (
                sum(client.request_counts().values()) - sent
                == 1 + read_snapshot(client, deployment, read.snapshot.block_number).rpc_calls
            )  # one full read (its calls and the header)
            assert reader.base is read.snapshot
    # only the first read is full: the round never waits on a full read it does not need
    assert kinds == ["full"] + ["inc"] * 6
    assert due == [False, False, False, True, False, False, True]


def test_a_wrong_book_fails_its_check_and_the_next_read_is_full(protocol: Protocol) -> None:
    client, deployment = protocol.client, protocol.deployment
    reader = SnapshotReader(client, deployment, full_every=2)
    client.request("evm_mine")
    first = reader.read(client.block_number())
    assert first.snapshot.changed_accounts is None and not first.verify
    # a book that went wrong (as a bug in the incremental path would make it) is carried by the incremental reads
    reader.base = dataclasses.replace(first.snapshot, portfolios=first.snapshot.portfolios[1:])
    reads = []
    for _ in range(2):
        client.request("evm_mine")
        reads.append(reader.read(client.block_number()))
    assert [r.verify for r in reads] == [False, True]
    wrong = reads[-1]
    assert wrong.snapshot.changed_accounts == 0
    assert wrong.snapshot.portfolios != read_snapshot(client, deployment, wrong.snapshot.block_number).portfolios
    check = reader.verify(wrong)
    assert check == SnapshotCheck(wrong.snapshot.block_number, False, 1, False)
    assert reader.base is None  # the book is condemned: the next read is full, and right
    client.request("evm_mine")
    after = reader.read(client.block_number())
    assert after.snapshot.changed_accounts is None and not after.verify
    assert after.snapshot == read_snapshot(client, deployment, after.snapshot.block_number)
    # a late check of the condemned book (a request still queued) leaves the new book alone
    assert not reader.verify(reads[0]).matched
    assert reader.base is after.snapshot


def test_a_check_of_a_block_a_reorg_replaced_is_an_error_not_a_mismatch(protocol: Protocol, anvil: Devchain) -> None:
    client, deployment = protocol.client, protocol.deployment
    u1, u2 = (Transmitter(client, DEV_KEYS[k]).address for k in (1, 2))
    reader = SnapshotReader(client, deployment, full_every=2)
    client.request("evm_mine")
    reader.read(client.block_number())
    client.request("evm_mine")
    reader.read(client.block_number())
    trade(protocol, u1, u2, 1, 3)
    due = reader.read(client.block_number())
    assert due.verify
    anvil.rpc("anvil_reorg", 2, [])  # drops the mark and the match (the admin's next nonce is lower again)
    protocol.admin = protocol.desk.matcher = Transmitter(client, DEV_KEYS[0])
    with pytest.raises(SnapshotError, match="replaced by a reorg"):
        reader.verify(due)
    assert reader.base is due.snapshot  # nothing condemned: the next read finds its base gone by itself
    client.request("evm_mine")
    assert reader.read(client.block_number()).snapshot.changed_accounts is None


class GatedChecks:
    """A snapshot source whose checks wait for a permit: the check service is busy while the test lets rounds run."""

    def __init__(self, reader: SnapshotReader) -> None:
        self.reader = reader
        self.entered: queue.Queue[int] = queue.Queue()  # the block of each check that started
        self.permits = threading.Semaphore(0)
        self.closed = False  # a check let through after the test: it reads nothing (its thread outlives the test)

    def read(self, block_number: int) -> SnapshotRead:
        return self.reader.read(block_number)

    def verify(self, read: SnapshotRead) -> SnapshotCheck:
        self.entered.put(read.snapshot.block_number)
        self.permits.acquire()
        if self.closed:
            raise ChainError("the test is over")
        return self.reader.verify(read)

    async def next_entered(self) -> int:
        with trio.fail_after(60):
            return await trio.to_thread.run_sync(self.entered.get, abandon_on_cancel=True)  # type: ignore[call-arg]


def test_rounds_go_on_while_a_check_runs_and_a_failed_check_makes_the_next_round_full(protocol: Protocol) -> None:
    client, deployment = protocol.client, protocol.deployment
    reader = SnapshotReader(client, deployment, full_every=2)
    gate = GatedChecks(reader)
    metrics = create_node_metrics()
    snapshots = RoundSnapshots(gate, metrics, timeout=60.0)

    def counts() -> dict[str, float | None]:
        get = metrics.registry.get_sample_value
        return {r: get("pmoracle_snapshot_checks_total", {"result": r}) for r in ("match", "mismatch", "error")}

    async def next_round() -> SnapshotRead:
        client.request("evm_mine")
        return await snapshots.read(client.block_number())

    async def rounds() -> None:
        # a round that waited on a check would wait for a permit never given: fail, do not hang
        with trio.fail_after(120):
            await run_rounds()

    async def run_rounds() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(snapshots.run_checks)
            first = await next_round()
            assert first.snapshot.changed_accounts is None
            assert counts() == {"match": 0, "mismatch": 0, "error": 0}  # exported from the start
            reader.base = dataclasses.replace(first.snapshot, portfolios=first.snapshot.portfolios[1:])
            checked = [await next_round() for _ in range(2)][-1]
            assert checked.verify
            assert await gate.next_entered() == checked.snapshot.block_number  # the check runs, and waits
            # four rounds complete while the check cannot: two more checks fall due, the newer replaces the older
            later = [await next_round() for _ in range(4)]
            assert [r.verify for r in later] == [False, True, False, True]
            assert all(r.snapshot.changed_accounts == 0 for r in later)  # the wrong book carried on meanwhile
            gate.permits.release()
            # the next check to start is the newest: its start means the first one's result is counted
            assert await gate.next_entered() == later[-1].snapshot.block_number
            assert counts() == {"match": 0, "mismatch": 1, "error": 0}
            assert metrics.registry.get_sample_value("pmoracle_snapshot_mismatches_total") == 1
            full = await next_round()  # the failed check condemned the book
            assert full.snapshot.changed_accounts is None
            assert full.snapshot == read_snapshot(client, deployment, full.snapshot.block_number)
            gate.permits.release()  # the queued check of the old book fails too, and condemns nothing
            assert (await next_round()).snapshot.changed_accounts == 0
            good = await next_round()
            assert good.verify and good.snapshot.changed_accounts == 0
            assert await gate.next_entered() == good.snapshot.block_number
            assert counts() == {"match": 0, "mismatch": 2, "error": 0}
            gate.permits.release()
            snapshots.request_check(good)  # once more, to know the previous check was counted
            assert await gate.next_entered() == good.snapshot.block_number
            assert counts() == {"match": 1, "mismatch": 2, "error": 0}
            reads = {
                k: metrics.registry.get_sample_value("pmoracle_snapshot_reads_total", {"kind": k})
                for k in ("full", "incremental")
            }
            assert reads == {"full": 2, "incremental": 8}
            nursery.cancel_scope.cancel()

    try:
        trio.run(rounds)
    finally:
        gate.closed = True
        gate.permits.release()


def test_reader_with_full_every_one_reads_everything_every_time(protocol: Protocol) -> None:
    client = protocol.client
    reader = SnapshotReader(client, protocol.deployment, full_every=1)
    for _ in range(2):
        client.request("evm_mine")
        block = client.block_number()
        sent = sum(client.request_counts().values())
        read = reader.read(block)
        assert read.snapshot.changed_accounts is None and not read.verify
        assert sum(client.request_counts().values()) - sent == 1 + read.snapshot.rpc_calls  # no second, check read


def test_a_funding_payment_is_owed_by_the_holders_who_are_read_again(
    protocol: Protocol, anvil: Devchain, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, deployment = protocol.client, protocol.deployment
    ledger = protocol.accounts.functions
    protocol.admin.transact_call(ledger.setFundingRate(1, 3 * WAD // 1_000))  # 0.3% of the index a day
    anvil.rpc("evm_increaseTime", 3_600)
    client.request("evm_mine")
    base = read_snapshot(client, deployment, client.block_number())
    perpetual = base.instrument(1)
    held = {p.account for p in base.portfolios if any(pos.instrument == perpetual for pos in p.positions)}
    u3, u4 = (Transmitter(client, DEV_KEYS[k]).address for k in (3, 4))
    trade(protocol, u3, u4, 1, 2)  # after the base: their logs name them
    protocol.admin.transact_call(ledger.payFunding(1))
    head = client.block_number()
    snap = read_snapshot(client, deployment, head)
    # no log names the holders, yet they owe more: the base's holders are read again with the traders, nobody else
    incremental = read_snapshot_since(client, deployment, head, base)
    traders = {bytes.fromhex(u[2:]) for u in (u3, u4)}
    assert len(held) >= 2 and incremental is not None and incremental.changed_accounts == len(held | traders)
    assert incremental == _full_equivalent(incremental, snap)
    # without the logs (a scan finds only the accounts that changed) or the packed reads, the base cannot be extended
    assert read_snapshot_since(client, deployment, head, base, from_logs=False) is None
    assert read_snapshot_since(client, deployment, head, base, packed=False) is None
    # holders that are most of a ledger larger than one call's worth: a full read costs less than naming them
    monkeypatch.setattr(snapshot, "DEFAULT_PACKED_NAMED", 1)
    share = len(held | traders) / client.call(ledger.accountCount(), head)
    monkeypatch.setattr(snapshot, "FULL_READ_SHARE", share * 1.01)
    assert read_snapshot_since(client, deployment, head, base) is not None  # under the share: still by name
    monkeypatch.setattr(snapshot, "FULL_READ_SHARE", share * 0.99)
    assert read_snapshot_since(client, deployment, head, base) is None
    (_, cumulative), *_ = snap.funding
    assert cumulative > dict(base.funding)[1]
    assert snap == dataclasses.replace(read_snapshot(client, deployment, head, packed=False), rpc_calls=5)
    view = deployment.contract(Web3(Web3.HTTPProvider(anvil.url)), "MarginAccounts").functions
    holders = [(p.account, pos) for p in snap.portfolios for pos in p.positions if pos.instrument.kind == 0]
    assert len(holders) >= 2
    for account, pos in holders:  # the snapshot's funding owed is the ledger's, to the wei
        size, cost, owed = view.positionState(Web3.to_checksum_address(account), 1).call()
        assert (pos.size, pos.cost, pos.funding) == (size, cost, owed) and owed != 0


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
