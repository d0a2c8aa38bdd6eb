"""Read everything the risk engine needs at block B: market feeds, instruments and every account's book.

All reads are ``eth_call``s pinned to block B *by hash* (EIP-1898), so every page comes from the same state even
across fallback endpoints and a reorg during the read makes the snapshot fail rather than mix two forks.

- ``read_snapshot`` reads everything: one call for the market, one per page of instruments and one per page of
  accounts (plus two counts and the header), so proportional to the number of accounts.
- ``read_snapshot_since`` extends the snapshot of an earlier block P: the market and instruments in full, and only
  the accounts changed after P (``MarginAccounts.accountsChangedSince``, which also proves with ``blockhash(P)``
  that P's book is an ancestor of B's state); ``SnapshotReader`` chains these for a node's rounds and checks
  every ``full_every``-th against a full read (``SnapshotReader.verify``, run beside the rounds). A
  perpetual's funding payment after P changes what its holders owe without changing them: they are read again
  (the holders in P's book, and those the logs name).
- Both read up to ``workers`` pages at once (one connection each), decoding one page while the next are read.
- Both read the accounts packed: ``MarginAccountsReader`` (never deployed) runs at the ledger's address under an
  ``eth_call`` state override of its code and returns one byte string per call (``decode_packed_accounts``),
  stopping where its gas runs low; a node that refuses the override gets the ABI views above. Packed, the
  incremental read takes the changed accounts from the ledger's logs after P (``ACCOUNT_EVENTS``) and reads only
  those (``accountsOfPacked``), scanning every account only when the node refuses the logs.

An account's cash, its futures' and perpetuals' cost basis and the funding its perpetuals owe (all USD WAD) are
carried exactly into the engine's ``Portfolio.cash``, ``Position.cost`` and ``Position.funding``; the funding owed
is ``ceil(size x (cumulative - the position's index) / SIZE_SCALE)``, the ledger's own formula.

Chain data is converted to the engine's integer input types in a canonical order; anything malformed raises
``SnapshotError`` and no partial snapshot is ever returned.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, get_abi_output_types, keccak, to_checksum_address

from pmoracle.chain.blocks import BlockHeader
from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ChainError, ContractError, RpcResponseError, SnapshotError
from pmoracle.errors import InputError
from pmoracle.risk.inputs import (
    SIZE_DECIMALS,
    SIZE_SCALE,
    CollateralAsset,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    Smile,
    UnderlyingMarket,
)

DEFAULT_ACCOUNT_PAGE = 200
DEFAULT_INSTRUMENT_PAGE = 500
DEFAULT_CHANGE_SCAN_PAGE = 2_000  # accounts scanned per accountsChangedSince call (two SLOADs each)
DEFAULT_READ_WORKERS = 1  # pages in flight at once (each on its own connection)
# Packed reads (``MarginAccountsReader`` run at the ledger's address): accounts asked per call; the reader stops
# earlier when the call's gas runs low (about 20,000 gas an account, 5,000 a scanned one) and is called again.
DEFAULT_PACKED_PAGE = 20_000
DEFAULT_PACKED_SCAN_PAGE = 200_000
# accounts named per accountsOfPacked call (32 bytes of calldata each, which a gas cap charges for, and a call the
# cap ends early sends the rest again)
DEFAULT_PACKED_NAMED = 5_000
# A funding payment makes the read name every holder of the perpetual: beyond this share of the ledger's accounts
# (and one call's worth) a full read is cheaper. Read by name, an account cost 1.4x what it costs in a full read
# (100,000 named: 4.33 s, the full read 3.11 s, in one run of `pmoracle bench chain`).
FULL_READ_SHARE = 2 / 3
PACKED_READER = "MarginAccountsReader"
MAX_TOKEN_DECIMALS = 36


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """The risk engine's inputs read from the chain at one block."""

    block_number: int
    block_hash: bytes
    timestamp: int
    market: MarketSnapshot
    portfolios: tuple[Portfolio, ...]  # accounts with anything, sorted by address bytes
    instruments: tuple[tuple[int, Instrument], ...]  # (on-chain id, instrument), by id
    rpc_calls: int = 0  # requests to read it (eth_calls; an incremental read's logs and header), B's header excluded
    tokens: tuple[tuple[bytes, str, int], ...] = ()  # collateral tokens: (address, symbol, decimals), by address
    changed_accounts: int | None = None  # accounts re-read by an incremental read (None: read in full)
    funding: tuple[tuple[int, int], ...] = ()  # (perpetual id, cumulative funding USD WAD per unit), by id

    def instrument(self, instrument_id: int) -> Instrument:
        """Return the instrument of an on-chain id; raise ``InputError`` if it is unknown."""
        for iid, instrument in self.instruments:
            if iid == instrument_id:
                return instrument
        raise InputError("instrument_id", f"unknown instrument id {instrument_id}")


@dataclass(frozen=True, slots=True)
class _View:
    """One view function of a contract: its selector and output types."""

    selector: bytes
    output_types: tuple[str, ...]

    def encode(self, *args: int) -> bytes:
        return self.selector + abi_encode(["uint256"] * len(args), list(args))


@functools.cache
def _view(contract: str, name: str) -> _View:
    for entry in load_artifact(contract).abi:
        if entry.get("type") == "function" and entry.get("name") == name:
            types = [i["type"] for i in entry.get("inputs", [])]
            selector = function_signature_to_4byte_selector(f"{name}({','.join(types)})")
            return _View(selector, tuple(get_abi_output_types(entry)))  # type: ignore[arg-type]
    raise ChainError(f"{contract} artifact has no function {name!r}")


def decode_symbol(field: str, raw: bytes) -> str:
    """Return the ASCII symbol held left-aligned in a bytes32 (``b"BTC\\0..."`` -> ``"BTC"``)."""
    text = raw.rstrip(b"\0")
    if not text or b"\0" in text or not text.isascii():
        raise SnapshotError(field, "0x" + raw.hex(), "expected a left-aligned ASCII symbol")
    symbol = text.decode()
    if not symbol.isalnum() or not symbol.isupper():
        raise SnapshotError(field, symbol, "expected an upper-case alphanumeric symbol")
    return symbol


def to_size_units(amount: int, decimals: int) -> int:
    """Return a token amount in SIZE_SCALE units, rounded down."""
    scale: int = 10 ** abs(decimals - SIZE_DECIMALS)
    return amount // scale if decimals >= SIZE_DECIMALS else amount * scale


def _call(client: ChainClient, address: str, view: _View, block_hash: bytes, *args: int) -> tuple[Any, ...]:
    output = client.call_raw(address, view.encode(*args), block_hash)
    try:
        return tuple(abi_decode(list(view.output_types), output))
    except Exception as exc:  # eth_abi raises several unrelated types for malformed data
        raise SnapshotError("output", "0x" + output[:64].hex(), f"cannot decode view output: {exc}") from exc


def convert_market(
    timestamp: int, underlyings: Sequence[Any], assets: Sequence[Any]
) -> tuple[MarketSnapshot, dict[bytes, tuple[str, int]]]:
    """Return the market snapshot and the collateral tokens (address bytes -> (symbol, decimals)) of ``snapshot()``."""
    markets = []
    try:
        for symbol_raw, index, rate, updated_at, smiles in underlyings:
            symbol = decode_symbol("underlyings.symbol", symbol_raw)
            markets.append(
                UnderlyingMarket(
                    symbol=symbol,
                    index=index,
                    rate=rate,
                    smiles=tuple(Smile(e, a, b, rho, m, sigma) for e, a, b, rho, m, sigma, _ in smiles),
                    updated_at=updated_at,
                )
            )
        tokens: dict[bytes, tuple[str, int]] = {}
        collateral = []
        for token, symbol_raw, decimals, price, haircut, underlying_raw, updated_at in assets:
            symbol = decode_symbol(f"assets[{token}].symbol", symbol_raw)
            if decimals > MAX_TOKEN_DECIMALS:
                raise SnapshotError(f"assets.{symbol}.decimals", decimals, f"more than {MAX_TOKEN_DECIMALS}")
            underlying = None if underlying_raw == b"\0" * 32 else decode_symbol(f"assets.{symbol}", underlying_raw)
            collateral.append(CollateralAsset(symbol, price, haircut, underlying, updated_at))
            tokens[bytes.fromhex(token[2:])] = (symbol, decimals)
        if len({s for s, _ in tokens.values()}) != len(tokens):
            raise SnapshotError("assets.symbol", sorted(s for s, _ in tokens.values()), "two tokens share a symbol")
        market = MarketSnapshot(
            time=timestamp,
            underlyings=tuple(sorted(markets, key=lambda u: u.symbol)),
            assets=tuple(sorted(collateral, key=lambda a: a.symbol)),
        )
    except InputError as exc:
        raise SnapshotError(exc.field, None, exc.message) from exc
    return market, tokens


def convert_instrument(raw: Any) -> tuple[int, Instrument]:
    """Return (id, Instrument) of an ``InstrumentView`` tuple (its cumulative funding is read separately)."""
    iid, underlying_raw, kind, expiry, strike, _cumulative_funding = raw
    try:
        return iid, Instrument(
            decode_symbol(f"instruments[{iid}]", underlying_raw), InstrumentKind(kind), expiry, strike
        )
    except (ValueError, InputError) as exc:  # an unknown kind, or an instrument the engine rejects
        raise SnapshotError(f"instruments[{iid}]", raw, str(exc)) from exc


RawAccount = tuple[bytes, int, list[tuple[int, int, int, int]], list[tuple[bytes, int]]]
"""One ``AccountView``: (20-byte account, cash, [(instrument id, size, cost, funding index)], [(token, amount)])."""

_INT128 = 1 << 127


def decode_accounts_page(data: bytes, *, head: int = 0) -> list[RawAccount]:
    """Decode the ABI return data of ``accountsPage`` (one ``AccountView[]``), strictly.

    ``head`` is the byte offset of the array's head word among the outputs (32 for ``accountsChangedSince``,
    whose first output is a ``bytes32``).

    The snapshot's hottest decode: eth_abi's generic decoder (and its address checksumming) took ~0.2 s for
    1,000 accounts, this one ~10 ms. It accepts exactly what eth_abi's strict decoder accepts for this type
    (tests compare the two on random and malformed data): every offset inside the data, every padding bit zero,
    ``uint32``/``int128``/``int256`` words in range (sign-extended), and refuses anything else with
    ``SnapshotError``.
    """
    view = memoryview(data)
    end = len(data)

    def word(at: int) -> int:
        if at + 32 > end:
            raise SnapshotError("accountsPage", "0x" + bytes(view[:64]).hex(), f"data ends before word at {at}")
        return int.from_bytes(view[at : at + 32], "big")

    def pointer(base: int, at: int) -> int:
        target = base + word(at)
        if target + 32 > end:
            raise SnapshotError("accountsPage", at, f"offset points past the end of the data ({target} >= {end})")
        return target

    def signed(at: int) -> int:
        value = word(at)
        return value - (1 << 256) if value >> 255 else value

    def address(at: int) -> bytes:
        value = word(at)
        if value >> 160:
            raise SnapshotError("accountsPage", at, "address word has non-zero padding")
        return value.to_bytes(20, "big")

    def length(at: int, words_each: int) -> int:
        count = word(at)
        if at + 32 + count * words_each * 32 > end:
            raise SnapshotError("accountsPage", count, f"array at {at} runs past the end of the data")
        return count

    page = pointer(0, head)
    count = length(page, 1)
    base = page + 32
    accounts: list[RawAccount] = []
    for i in range(count):
        tup = pointer(base, base + 32 * i)
        account = address(tup)
        cash = signed(tup + 32)
        positions_at = pointer(tup, tup + 64)
        collateral_at = pointer(tup, tup + 96)
        positions: list[tuple[int, int, int, int]] = []
        for j in range(length(positions_at, 4)):
            at = positions_at + 32 + 128 * j
            iid, size, cost, index = word(at), signed(at + 32), signed(at + 64), signed(at + 96)
            if iid >> 32 or not -_INT128 <= size < _INT128 or not -_INT128 <= cost < _INT128:
                raise SnapshotError(
                    "accountsPage", at, "position word out of range (uint32 id, int128 size, int128 cost)"
                )
            positions.append((iid, size, cost, index))
        collateral: list[tuple[bytes, int]] = []
        for j in range(length(collateral_at, 2)):
            at = collateral_at + 32 + 64 * j
            collateral.append((address(at), word(at + 32)))
        accounts.append((account, cash, positions, collateral))
    return accounts


@dataclass(frozen=True, slots=True)
class PackedPage:
    """One output of ``MarginAccountsReader``: the accounts it read and where it stopped."""

    since_hash: bytes  # blockhash(sinceBlock) as the pinned block sees it; zero for a full read
    next_index: int  # the first account index not read
    total: int  # the ledger's number of accounts
    accounts: list[RawAccount]


_PACKED_HEAD = 96  # sinceHash, next, total
_PACKED_POSITION = 68  # id (4), the position's first slot (32: cost high, size low), funding index (32)
_PACKED_BALANCE = 52  # token (20), amount (32)


def decode_packed_accounts(data: bytes) -> PackedPage:
    """Decode the ABI return data (one ``bytes``) of ``MarginAccountsReader.accountsPacked``,
    ``accountsChangedSincePacked`` or ``accountsOfPacked``, strictly: anything truncated or left over raises
    ``SnapshotError``.

    The accounts come as the ``RawAccount`` tuples ``decode_accounts_page`` returns for the same accounts, so one
    conversion serves both reads.
    """
    if len(data) < 64 or int.from_bytes(data[:32], "big") != 32:
        raise SnapshotError("accountsPacked", "0x" + data[:64].hex(), "expected one ABI-encoded bytes")
    size = int.from_bytes(data[32:64], "big")
    if len(data) != 64 + -(-size // 32) * 32 or any(data[64 + size :]):
        raise SnapshotError("accountsPacked", size, f"bytes length does not match the {len(data)} bytes returned")
    payload = data[64 : 64 + size]
    if size < _PACKED_HEAD:
        raise SnapshotError("accountsPacked", size, "output shorter than its header")
    from_bytes = int.from_bytes
    accounts: list[RawAccount] = []
    at = _PACKED_HEAD
    while at < size:
        if at + 54 > size:
            raise SnapshotError("accountsPacked", at, "account record truncated")
        account = payload[at : at + 20]
        cash = from_bytes(payload[at + 20 : at + 52], "big", signed=True)
        count = from_bytes(payload[at + 52 : at + 54], "big")
        at += 54
        if at + count * _PACKED_POSITION + 2 > size:
            raise SnapshotError("accountsPacked", count, f"positions of account at {at} run past the output")
        positions: list[tuple[int, int, int, int]] = []
        for _ in range(count):
            positions.append((
                from_bytes(payload[at : at + 4], "big"),
                from_bytes(payload[at + 20 : at + 36], "big", signed=True),
                from_bytes(payload[at + 4 : at + 20], "big", signed=True),
                from_bytes(payload[at + 36 : at + 68], "big", signed=True),
            ))  # fmt: skip
            at += _PACKED_POSITION
        count = from_bytes(payload[at : at + 2], "big")
        at += 2
        if at + count * _PACKED_BALANCE > size:
            raise SnapshotError("accountsPacked", count, f"balances of account at {at} run past the output")
        collateral: list[tuple[bytes, int]] = []
        for _ in range(count):
            collateral.append((payload[at : at + 20], from_bytes(payload[at + 20 : at + 52], "big")))
            at += _PACKED_BALANCE
        accounts.append((account, cash, positions, collateral))
    return PackedPage(payload[:32], from_bytes(payload[32:64], "big"), from_bytes(payload[64:96], "big"), accounts)


def funding_owed(size: int, cumulative: int, index: int) -> int:
    """Return the funding a perpetual position owes (USD WAD, > 0: owes): the ledger's ``_owed``, rounded up."""
    return -(-(size * (cumulative - index)) // int(SIZE_SCALE))


def convert_account(
    raw: RawAccount,
    instruments: Mapping[int, Instrument],
    tokens: Mapping[bytes, tuple[str, int]],
    funding: Mapping[int, int],
) -> Portfolio | None:
    """Return the Portfolio of a decoded ``AccountView``, or None if it holds nothing (no position, no collateral,
    no cash); ``funding`` maps each perpetual's id to its cumulative funding."""
    # the hottest loop of a full read (once per account): no work for what an account does not hold
    account, cash, positions_raw, collateral_raw = raw
    try:
        positions = []
        for iid, size, cost, index in sorted(positions_raw) if len(positions_raw) > 1 else positions_raw:
            instrument = instruments.get(iid)
            if instrument is None:
                raise SnapshotError(f"accounts[0x{account.hex()}].positions", iid, "unknown instrument id")
            if size != 0:
                owed = funding_owed(size, funding[iid], index) if iid in funding else 0
                positions.append(Position(instrument, size, cost, owed))
        collateral: tuple[tuple[str, int], ...] = ()
        if collateral_raw:
            amounts: dict[str, int] = {}
            for token, amount in collateral_raw:
                if token not in tokens:
                    checksum = to_checksum_address(token)
                    field = f"accounts[0x{account.hex()}].collateral"
                    raise SnapshotError(field, checksum, "collateral token has no price feed")
                symbol, decimals = tokens[token]
                amounts[symbol] = amounts.get(symbol, 0) + to_size_units(amount, decimals)
            collateral = tuple(sorted((s, a) for s, a in amounts.items() if a > 0))
        if not positions and not collateral and cash == 0:
            return None
        return Portfolio(tuple(positions), collateral, account, cash)
    except InputError as exc:
        raise SnapshotError(f"accounts[0x{account.hex()}].{exc.field}", None, exc.message) from exc


def convert_accounts(
    pages: Iterable[Sequence[RawAccount]],
    instruments: Mapping[int, Instrument],
    tokens: Mapping[bytes, tuple[str, int]],
    funding: Mapping[int, int],
) -> tuple[Portfolio, ...]:
    """Return the Portfolios of every account of a full read's ``pages`` sorted by address, those holding nothing
    skipped (``convert_account``); an account listed twice raises ``SnapshotError``. Each page is converted as it
    comes, so a read holds one page of decoded accounts at a time."""
    portfolios: dict[bytes, Portfolio] = {}
    for page in pages:
        for raw in page:
            portfolio = convert_account(raw, instruments, tokens, funding)
            if portfolio is None:
                continue
            if portfolio.account in portfolios:
                raise SnapshotError("accounts", "0x" + portfolio.account.hex(), "account listed twice")
            portfolios[portfolio.account] = portfolio
    return tuple(sorted(portfolios.values(), key=_by_account))


@dataclass(frozen=True, slots=True)
class _Head:
    """What both kinds of read take in full at block B: the header, the market, tokens and instruments."""

    header: BlockHeader
    market: MarketSnapshot
    tokens: dict[bytes, tuple[str, int]]
    instruments: dict[int, Instrument]
    funding: dict[int, int]
    account_count: int
    calls: int


def _contracts(deployment: Deployment) -> tuple[str, str]:
    try:
        return deployment.contracts["MarketFeeds"], deployment.contracts["MarginAccounts"]
    except KeyError as exc:
        raise ChainError(f"deployment lacks contract {exc}") from None


def _read_head(client: ChainClient, deployment: Deployment, block_number: int, instrument_page_size: int) -> _Head:
    feeds, accounts = _contracts(deployment)
    header = client.get_block(block_number)
    pin = header.hash
    underlyings, assets = _call(client, feeds, _view("MarketFeeds", "snapshot"), pin)
    market, tokens = convert_market(header.timestamp, underlyings, assets)
    (instrument_count,) = _call(client, accounts, _view("MarginAccounts", "instrumentCount"), pin)
    calls = 2
    instruments: dict[int, Instrument] = {}
    funding: dict[int, int] = {}
    for offset in range(0, instrument_count, instrument_page_size):
        (page,) = _call(client, accounts, _view("MarginAccounts", "instrumentsPage"), pin, offset, instrument_page_size)
        calls += 1
        _check_page("instrumentsPage", offset, len(page), min(instrument_page_size, instrument_count - offset))
        for raw in page:
            iid, instrument = convert_instrument(raw)
            if iid in instruments:
                raise SnapshotError("instruments.id", iid, "duplicate instrument id")
            instruments[iid] = instrument
            if instrument.kind == InstrumentKind.PERPETUAL:
                funding[iid] = raw[5]
    (account_count,) = _call(client, accounts, _view("MarginAccounts", "accountCount"), pin)
    return _Head(header, market, tokens, instruments, funding, account_count, calls + 1)


def _fetch_pages(
    client: ChainClient, address: str, view: _View, block_hash: bytes, args: Sequence[tuple[int, ...]], workers: int
) -> Iterator[bytes]:
    """Yield the outputs of ``view(*a)`` for each ``a`` of ``args`` in order, with up to ``workers`` calls in flight.

    The caller decodes one page while the next ones are read: the node's JSON-RPC endpoint works on them (on its
    own cores) while this process decodes, and several pages in flight hide each call's round trip.
    """

    def fetch(a: tuple[int, ...]) -> bytes:
        return client.call_raw(address, view.encode(*a), block_hash)

    return _in_flight(fetch, args, workers)


_A = TypeVar("_A")
_R = TypeVar("_R")


def _in_flight(fetch: Callable[[_A], _R], args: Sequence[_A], workers: int) -> Iterator[_R]:
    """Yield ``fetch(a)`` for each ``a`` of ``args`` in order, with up to ``workers`` of them running at once."""
    if workers <= 1 or len(args) <= 1:
        for a in args:
            yield fetch(a)
        return
    # a window of 2 x workers pages: bounded memory however far the reads run ahead of the decoding
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot-page") as pool:
        window: deque[Future[_R]] = deque()
        try:
            for a in args:
                window.append(pool.submit(fetch, a))
                if len(window) >= 2 * workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:  # the caller stopped early (an error, a base it cannot extend)
                future.cancel()


def _fetch_packed(
    client: ChainClient, ledger: str, block_hash: bytes, since_block: int | None, ranges: Sequence[tuple[int, int]],
    total: int, workers: int,
) -> Iterator[list[PackedPage]]:  # fmt: skip
    """Yield, for each account range [start, end) of ``ranges`` in order, the packed pages that cover it: the
    accounts changed after ``since_block``, or every account when it is None.

    ``MarginAccountsReader`` runs at the ledger's address (a state override of its code) and stops where its gas
    runs low; the range is then read on from where it stopped. Each output is checked against the ledger's own
    ``accountCount`` (``total``): a reader whose storage layout is not the ledger's would read another slot.

    Errors:
        RpcResponseError when the node refuses the call (no state overrides); SnapshotError when an output is
        malformed, counts other than ``total`` accounts, or makes no progress.
    """
    code = load_artifact(PACKED_READER).deployed_bytecode
    if since_block is None:
        view = _view(PACKED_READER, "accountsPacked")
    else:
        view = _view(PACKED_READER, "accountsChangedSincePacked")

    def fetch(window: tuple[int, int]) -> list[PackedPage]:
        start, end = window
        pages: list[PackedPage] = []
        while True:
            args = (start, end - start) if since_block is None else (since_block, start, end - start)
            page = decode_packed_accounts(client.call_raw(ledger, view.encode(*args), block_hash, code_override=code))
            if page.total != total:
                raise SnapshotError(f"{PACKED_READER}.total", page.total, f"the ledger counts {total} accounts")
            if not start < page.next_index <= end and start < end:
                raise SnapshotError(f"{PACKED_READER}.next", page.next_index, f"no progress in [{start}, {end})")
            pages.append(page)
            start = page.next_index
            if start >= end:
                return pages

    return _in_flight(fetch, ranges, workers)


ACCOUNT_EVENTS: dict[str, tuple[int, ...]] = {
    # every event of MarginAccounts that goes with a change of an account's cash, positions or balances (`_touch`),
    # and the topics that hold the accounts it changed; `realizeFunding` of a position that owes nothing (rounded)
    # emits none, and changes only its funding index, not what a snapshot holds (it holds what the position owes)
    "AccountOpened(address,uint256)": (1,),
    "Deposited(address,address,uint256,uint256)": (1,),
    "Withdrawn(address,address,uint256,uint256,uint64)": (1,),
    "Traded(address,address,uint32,uint128,uint128,int128,int128,uint256)": (1, 2),
    "Settled(address,uint32,int128,uint256,int256)": (1,),
    "FundingRealized(address,uint32,int256)": (1,),
    "BookTransferred(address,address,uint256,int256)": (1, 2),
    "CashTransferred(address,address,uint256)": (1, 2),
}
_ACCOUNT_TOPICS = {"0x" + keccak(text=signature).hex(): topics for signature, topics in ACCOUNT_EVENTS.items()}


def _accounts_in_logs(client: ChainClient, ledger: str, since_block: int, header: BlockHeader) -> list[bytes] | None:
    """Return the accounts that the ledger's logs in blocks (``since_block``, B] name as changed, sorted; None when
    the node refuses the request, or B (``header``) is no longer canonical after it (the logs may be another
    fork's)."""
    try:
        logs = client.request(
            "eth_getLogs", [{"address": ledger, "fromBlock": hex(since_block + 1), "toBlock": hex(header.number)}]
        )
    except RpcResponseError:
        return None
    if client.get_block(header.number).hash != header.hash:
        return None
    if not isinstance(logs, list):
        raise SnapshotError("eth_getLogs", logs, "expected a list of logs")
    named: set[bytes] = set()
    for log in logs:
        topics = log.get("topics") if isinstance(log, dict) else None
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise SnapshotError("eth_getLogs", log, "a log without a list of topics")
        for at in _ACCOUNT_TOPICS.get(topics[0] if topics else "", ()):
            try:
                word = bytes.fromhex(topics[at][2:]) if at < len(topics) and topics[at][:2] == "0x" else b""
            except ValueError:
                word = b""
            if len(word) != 32 or any(word[:12]):
                raise SnapshotError(f"eth_getLogs.topics[{at}]", topics, "expected an account address")
            named.add(word[12:])
    return sorted(named)


def _fetch_packed_of(
    client: ChainClient, ledger: str, block_hash: bytes, since_block: int, chunks: Sequence[list[bytes]], total: int,
    workers: int,
) -> Iterator[list[PackedPage]]:  # fmt: skip
    """Yield, for each list of accounts of ``chunks`` in order, the packed pages of ``accountsOfPacked`` that read
    them (with ``blockhash(since_block)``), as ``_fetch_packed`` does for ranges of account indices.

    Errors:
        as ``_fetch_packed``; SnapshotError also when a page does not hold as many accounts as it says it read.
    """
    code = load_artifact(PACKED_READER).deployed_bytecode
    selector = _view(PACKED_READER, "accountsOfPacked").selector
    head = since_block.to_bytes(32, "big") + (64).to_bytes(32, "big")

    def fetch(chunk: list[bytes]) -> list[PackedPage]:
        start = 0
        pages: list[PackedPage] = []
        while True:
            rest = chunk[start:]
            data = selector + head + len(rest).to_bytes(32, "big") + b"".join(bytes(12) + a for a in rest)
            page = decode_packed_accounts(client.call_raw(ledger, data, block_hash, code_override=code))
            if page.total != total:
                raise SnapshotError(f"{PACKED_READER}.total", page.total, f"the ledger counts {total} accounts")
            if not 0 < page.next_index <= len(rest) and rest:
                raise SnapshotError(f"{PACKED_READER}.next", page.next_index, f"no progress in {len(rest)} accounts")
            if [a for a, *_ in page.accounts] != rest[: page.next_index]:
                raise SnapshotError(f"{PACKED_READER}.accounts", len(page.accounts), "not the accounts asked for")
            pages.append(page)
            start += page.next_index
            if start >= len(chunk):
                return pages

    return _in_flight(fetch, chunks, workers)


def _unless_refused(pages: Iterator[list[PackedPage]]) -> Iterator[list[PackedPage]] | None:
    """Return ``pages`` with its first item read, or None when the node refused that first call: it has no state
    overrides (a JSON-RPC error), or ignored the override and ran the ledger's code (a revert)."""
    try:
        first = next(pages)
    except StopIteration:
        return iter(())
    except (RpcResponseError, ContractError):
        return None
    return itertools.chain([first], pages)


def _read_settlements(
    client: ChainClient, deployment: Deployment, head: _Head, portfolios: Sequence[Portfolio]
) -> tuple[MarketSnapshot, int]:
    """Return the market with the settlement prices fixed for the expired instruments some book holds (one
    ``MarketFeeds.settlementPrice`` call per distinct underlying and expiry), and the number of calls made."""
    time = head.header.timestamp
    if not any(i.is_expired_at(time) for i in head.instruments.values()):
        return head.market, 0  # nothing expired: no book to look through
    held = sorted({
        (p.instrument.underlying, p.instrument.expiry)
        for book in portfolios for p in book.positions if p.instrument.is_expired_at(time)
    })  # fmt: skip
    if not held:
        return head.market, 0
    feeds, _ = _contracts(deployment)
    view = _view("MarketFeeds", "settlementPrice")
    fixed: dict[str, list[tuple[int, int]]] = {}
    for symbol, expiry in held:
        price, fixed_at = _call(client, feeds, view, head.header.hash, int.from_bytes(_symbol_word(symbol)), expiry)
        if fixed_at:
            fixed.setdefault(symbol, []).append((expiry, price))
    underlyings = tuple(
        replace(u, settlements=tuple(fixed[u.symbol])) if u.symbol in fixed else u for u in head.market.underlyings
    )
    try:
        return replace(head.market, underlyings=underlyings), len(held)
    except InputError as exc:
        raise SnapshotError(exc.field, None, exc.message) from exc


def _holders(portfolios: Sequence[Portfolio], instruments: Sequence[Instrument]) -> set[bytes]:
    """Return the accounts of ``portfolios`` that hold a position in one of ``instruments``."""
    wanted = set(instruments)
    return {p.account for p in portfolios if any(position.instrument in wanted for position in p.positions)}


def _by_account(portfolio: Portfolio) -> bytes:
    return portfolio.account


def _apply_updates(base: tuple[Portfolio, ...], updates: Mapping[bytes, Portfolio | None]) -> tuple[Portfolio, ...]:
    """Return ``base`` (sorted by account) with the books of ``updates`` replaced, added or (None) removed."""
    if not updates:
        return base
    books = [p for p in base if p.account not in updates]
    books += sorted((p for p in updates.values() if p is not None), key=_by_account)
    books.sort(key=_by_account)  # two sorted runs: one linear merge
    return tuple(books)


def _symbol_word(symbol: str) -> bytes:
    return symbol.encode().ljust(32, b"\0")


def _snapshot(
    head: _Head, market: MarketSnapshot, portfolios: tuple[Portfolio, ...], calls: int, changed: int | None
) -> ChainSnapshot:
    return ChainSnapshot(
        block_number=head.header.number,
        block_hash=head.header.hash,
        timestamp=head.header.timestamp,
        market=market,
        portfolios=portfolios,
        instruments=tuple(sorted(head.instruments.items())),
        rpc_calls=calls,
        tokens=_token_table(head.tokens),
        changed_accounts=changed,
        funding=tuple(sorted(head.funding.items())),
    )


def read_snapshot(
    client: ChainClient,
    deployment: Deployment,
    block_number: int,
    *,
    account_page_size: int = DEFAULT_ACCOUNT_PAGE,
    instrument_page_size: int = DEFAULT_INSTRUMENT_PAGE,
    workers: int = DEFAULT_READ_WORKERS,
    packed: bool = True,
    packed_page_size: int = DEFAULT_PACKED_PAGE,
) -> ChainSnapshot:
    """Read the market and every account at block ``block_number``, pinned to that block's hash.

    The accounts are read packed (``MarginAccountsReader`` run at the ledger's address under a state override)
    unless ``packed`` is False or the node refuses the override; then through ``accountsPage``. Both give the same
    snapshot (tests compare them).

    Args:
        client: the chain client.
        deployment: where MarketFeeds and MarginAccounts live (``deployment.contracts[name]``).
        block_number: the anchor block B.
        account_page_size: accounts per ``accountsPage`` call (one round trip each).
        instrument_page_size: instruments per ``instrumentsPage`` call.
        workers: account pages in flight at once (1: one after the other).
        packed: read the accounts packed when the node allows it.
        packed_page_size: accounts asked per packed call (the reader stops earlier when its gas runs low).

    Returns:
        The frozen snapshot: valuation time = block timestamp, portfolios sorted by address, empty accounts skipped.

    Errors:
        SnapshotError when chain data is malformed (a bad symbol, an unknown instrument, an unpriced token, a short
        page); ContractError / RpcError when a call fails; ChainError when the block does not exist.
    """
    if account_page_size < 1 or instrument_page_size < 1:
        raise ChainError(f"page sizes must be >= 1, got {account_page_size}, {instrument_page_size}")
    if workers < 1:
        raise ChainError(f"workers must be >= 1, got {workers}")
    if packed_page_size < 1:
        raise ChainError(f"packed_page_size must be >= 1, got {packed_page_size}")
    head = _read_head(client, deployment, block_number, instrument_page_size)
    _, ledger = _contracts(deployment)
    calls = head.calls
    count = head.account_count
    ranges = [(o, min(o + packed_page_size, count)) for o in range(0, count, packed_page_size)]
    packed_pages = None
    if packed:
        pages = _fetch_packed(client, ledger, head.header.hash, None, ranges, count, workers)
        packed_pages = _unless_refused(pages)
        calls += packed_pages is None  # the refused call

    def raw_pages() -> Iterator[list[RawAccount]]:
        nonlocal calls
        if packed_pages is not None:
            for (start, end), covering in zip(ranges, packed_pages, strict=True):
                calls += len(covering)
                _check_page(PACKED_READER, start, sum(len(p.accounts) for p in covering), end - start)
                for page in covering:
                    yield page.accounts
            return
        view = _view("MarginAccounts", "accountsPage")
        offsets = range(0, count, account_page_size)
        args = [(o, account_page_size) for o in offsets]
        pages_abi = _fetch_pages(client, ledger, view, head.header.hash, args, workers)
        for offset, data in zip(offsets, pages_abi, strict=True):
            raw_page = decode_accounts_page(data)
            calls += 1
            _check_page("accountsPage", offset, len(raw_page), min(account_page_size, count - offset))
            yield raw_page

    books = convert_accounts(raw_pages(), head.instruments, head.tokens, head.funding)
    market, settlement_calls = _read_settlements(client, deployment, head, books)
    return _snapshot(head, market, books, calls + settlement_calls, None)


def read_snapshot_since(
    client: ChainClient,
    deployment: Deployment,
    block_number: int,
    base: ChainSnapshot,
    *,
    scan_page_size: int = DEFAULT_CHANGE_SCAN_PAGE,
    instrument_page_size: int = DEFAULT_INSTRUMENT_PAGE,
    workers: int = DEFAULT_READ_WORKERS,
    packed: bool = True,
    packed_scan_page_size: int = DEFAULT_PACKED_SCAN_PAGE,
    from_logs: bool = True,
) -> ChainSnapshot | None:
    """Read block ``block_number`` as ``base`` plus the accounts that changed after ``base``'s block.

    The market, instruments and account count are read in full; of the accounts, only those whose positions or
    balances changed after ``base.block_number`` (``MarginAccounts.accountsChangedSince``, pinned to B's hash like
    every read). Each call also returns ``blockhash(base block)`` as B's state sees it: when that is not
    ``base.block_hash`` (a reorg replaced it, or it is more than 256 blocks back), or the collateral tokens or
    instruments of ``base`` are not those of B, ``base`` cannot be extended and None is returned: read in full.
    A perpetual that paid funding in between changes what its holders owe without a log naming them: the holders
    in ``base`` are read again with the accounts the logs name (``base`` cannot be extended without the logs, nor
    when they are more than ``FULL_READ_SHARE`` of more than ``DEFAULT_PACKED_NAMED`` accounts: a full read costs
    less). The result equals ``read_snapshot`` at B (tests compare them).
    ``workers`` scan pages are in flight at once. The changed accounts are read packed (``accountsChangedSincePacked``,
    ``packed_scan_page_size`` accounts scanned per call) unless ``packed`` is False or the node refuses the state
    override, as ``read_snapshot`` does. Packed, the changed accounts are those the ledger's logs after ``base``'s
    block name (``ACCOUNT_EVENTS``; ``from_logs``), so the read follows the changes, not the number of accounts;
    when the node refuses the ``eth_getLogs`` (a range or result limit) or B stopped being canonical meanwhile, every
    account is scanned for a change instead (``accountsChangedSincePacked``).

    Errors:
        as ``read_snapshot``.
    """
    if scan_page_size < 1 or instrument_page_size < 1 or packed_scan_page_size < 1:
        raise ChainError(
            f"page sizes must be >= 1, got {scan_page_size}, {instrument_page_size}, {packed_scan_page_size}"
        )
    if workers < 1:
        raise ChainError(f"workers must be >= 1, got {workers}")
    if block_number <= base.block_number:
        return None
    head = _read_head(client, deployment, block_number, instrument_page_size)
    if _token_table(head.tokens) != base.tokens or any(head.instruments.get(i) != inst for i, inst in base.instruments):
        return None  # a token's decimals or an instrument changed: the base's conversions may be stale
    # a perpetual that paid funding: its holders owe more without having changed (nor a log naming them)
    paid = [head.instruments[i] for i, cumulative in base.funding if head.funding.get(i) != cumulative]
    if paid and not (packed and from_logs):
        return None  # only the read of named accounts can add them
    _, ledger = _contracts(deployment)
    calls = head.calls
    updates: dict[bytes, Portfolio | None] = {}  # the changed accounts' books (None: it holds nothing now)

    def update(page: list[RawAccount]) -> None:
        for raw in page:
            updates[raw[0]] = convert_account(raw, head.instruments, head.tokens, head.funding)

    count = head.account_count
    packed_pages = None
    if packed:
        named = _accounts_in_logs(client, ledger, base.block_number, head.header) if from_logs else None
        if named is None and paid:
            return None
        if named is not None:
            calls += 2  # eth_getLogs, and the header that proves the logs are B's
            if paid:  # the base's holders, and those that traded since (named by their logs)
                named = sorted(set(named) | _holders(base.portfolios, paid))
                if len(named) > count * FULL_READ_SHARE and count > DEFAULT_PACKED_NAMED:
                    return None  # reading them by name would cost more than reading every account
            chunks = [named[i : i + DEFAULT_PACKED_NAMED] for i in range(0, len(named), DEFAULT_PACKED_NAMED)] or [[]]
            pages = _fetch_packed_of(client, ledger, head.header.hash, base.block_number, chunks, count, workers)
        else:
            # one call at least: it proves the base's hash
            starts = range(0, count, packed_scan_page_size)
            ranges = [(o, min(o + packed_scan_page_size, count)) for o in starts] or [(0, 0)]
            pages = _fetch_packed(client, ledger, head.header.hash, base.block_number, ranges, count, workers)
        packed_pages = _unless_refused(pages)
        calls += packed_pages is None  # the refused call
    if packed_pages is not None:
        for covering in packed_pages:
            for page in covering:
                calls += 1
                if page.since_hash != base.block_hash:
                    return None
                update(page.accounts)
    else:
        if paid:
            return None
        view = _view("MarginAccounts", "accountsChangedSince")
        scans = [(base.block_number, o, scan_page_size) for o in range(0, max(count, 1), scan_page_size)]
        for data in _fetch_pages(client, ledger, view, head.header.hash, scans, workers):
            calls += 1
            if len(data) < 64:
                raise SnapshotError("accountsChangedSince", "0x" + data.hex(), "output shorter than its two head words")
            if data[:32] != base.block_hash:
                return None
            update(decode_accounts_page(data, head=32))
    portfolios = _apply_updates(base.portfolios, updates)
    market, settlement_calls = _read_settlements(client, deployment, head, portfolios)
    return _snapshot(head, market, portfolios, calls + settlement_calls, len(updates))


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """One round's snapshot and how it was read."""

    snapshot: ChainSnapshot
    # an incremental snapshot due a check against a full read of the same block (``SnapshotReader.verify``), which
    # the node runs in the background: the round goes on with this snapshot meanwhile
    verify: bool = False
    # the full read this snapshot's book descends from (the reader numbers its full reads and failed checks): a
    # failed check condemns the reader's book only when it still descends from the same full read
    lineage: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotCheck:
    """An incremental snapshot compared with a full read of the same block."""

    block_number: int
    matched: bool  # equal in everything the round uses (the read's cost aside)
    accounts_differing: int  # accounts whose book differs, or that only one of the two holds
    head_differs: bool  # the market, instruments, tokens or funding differ


def compare_snapshots(incremental: ChainSnapshot, full: ChainSnapshot) -> SnapshotCheck:
    """Return how ``incremental`` compares with ``full``, a full read of the same block."""
    books = {p.account: p for p in incremental.portfolios}
    books_full = {p.account: p for p in full.portfolios}
    differing = sum(books.get(a) != books_full.get(a) for a in books.keys() | books_full.keys())
    head_differs = _comparable(replace(incremental, portfolios=())) != _comparable(replace(full, portfolios=()))
    matched = _comparable(incremental) == _comparable(full)
    return SnapshotCheck(full.block_number, matched, differing, head_differs)


class SnapshotReader:
    """Reads each round's snapshot as the previous one plus the accounts changed since; checks it in the background.

    A round reads every account only when there is no book to extend: the first read, a reorg that replaced the
    book's block (or more than 256 blocks back), a changed token or instrument (``read_snapshot_since`` returns
    None), or a failed check. Every ``full_every``-th incremental snapshot is
    marked ``SnapshotRead.verify``: ``verify`` reads the same block in full and compares, and a mismatch makes the
    next ``read`` a full one. ``verify`` is meant to run beside the rounds (another thread: the node's snapshot
    check service), so the round never waits on a full read it does not need. ``full_every = 1`` reads every
    account every round (nothing to check). Reads are sequential (one round at a time, from a worker thread); a
    read that raises leaves the reader as it was.
    """

    def __init__(
        self, client: ChainClient, deployment: Deployment, full_every: int, *, workers: int = DEFAULT_READ_WORKERS
    ) -> None:
        if full_every < 1:
            raise ChainError(f"full_every must be >= 1, got {full_every}")
        if workers < 1:
            raise ChainError(f"workers must be >= 1, got {workers}")
        self.client = client
        self.deployment = deployment
        self.full_every = full_every
        self.workers = workers  # pages in flight of every read
        self.base: ChainSnapshot | None = None  # the book the next read extends (None: it reads in full)
        self._lineage = 0  # full reads so far, and checks that failed (each starts a new lineage)
        self._since_check = 0  # incremental reads since the last one marked for a check
        self._lock = threading.Lock()  # ``read`` and ``verify`` run in different threads

    def read(self, block_number: int) -> SnapshotRead:
        """Return the snapshot of block ``block_number`` (later than the previous read's block).

        Errors:
            as ``read_snapshot``.
        """
        with self._lock:
            base, lineage = self.base, self._lineage
        if base is not None and self.full_every > 1:
            snapshot = read_snapshot_since(self.client, self.deployment, block_number, base, workers=self.workers)
            with self._lock:
                # a check that failed meanwhile condemned the base: read in full instead
                if snapshot is not None and self._lineage == lineage:
                    verify = self._since_check + 1 >= self.full_every
                    self.base, self._since_check = snapshot, (self._since_check + 1) % self.full_every
                    return SnapshotRead(snapshot, verify, lineage)
        full = read_snapshot(self.client, self.deployment, block_number, workers=self.workers)
        with self._lock:
            self._lineage += 1
            self.base, self._since_check = full, 0
            return SnapshotRead(full, False, self._lineage)

    def verify(self, read: SnapshotRead) -> SnapshotCheck:
        """Return ``read``'s snapshot compared with a full read of its block; on a mismatch, the next ``read`` reads
        in full (unless the book was already replaced since ``read``).

        Errors:
            SnapshotError when the block is no longer the one ``read`` read (a reorg replaced it: nothing to compare
            with); the errors of ``read_snapshot``.
        """
        snapshot = read.snapshot
        full = read_snapshot(self.client, self.deployment, snapshot.block_number, workers=self.workers)
        if full.block_hash != snapshot.block_hash:
            raise SnapshotError(
                "block_hash", "0x" + full.block_hash.hex(), f"block {snapshot.block_number} was replaced by a reorg"
            )
        check = compare_snapshots(snapshot, full)
        if not check.matched:
            with self._lock:
                if self._lineage == read.lineage:
                    self.base, self._lineage = None, self._lineage + 1
        return check


def _comparable(snapshot: ChainSnapshot) -> ChainSnapshot:
    return replace(snapshot, rpc_calls=0, changed_accounts=None)


def _token_table(tokens: Mapping[bytes, tuple[str, int]]) -> tuple[tuple[bytes, str, int], ...]:
    return tuple(sorted((address, symbol, decimals) for address, (symbol, decimals) in tokens.items()))


def _check_page(view: str, offset: int, got: int, expected: int) -> None:
    if got != expected:
        raise SnapshotError(view, got, f"page at offset {offset} has {got} entries, expected {expected}")
