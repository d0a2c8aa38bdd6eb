"""The on-chain index history: ``MarketFeeds`` ``IndexSet`` (and ``SmileSet``) logs in chain order, read with paged
``eth_getLogs``.

The adaptive margin policy (docs/policy.md) samples each underlying's index from these logs, and with
``[policy.vol]`` its reference-tenor implied vol from the smiles; every node and the dispute tool read the same logs
up to a block and so derive the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import event_topic
from pmoracle.chain.errors import SnapshotError
from pmoracle.chain.snapshot import decode_symbol
from pmoracle.errors import InputError
from pmoracle.risk.policy import SmileQuote

INDEX_SET_TOPIC = event_topic("MarketFeeds", "IndexSet")
SMILE_SET_TOPIC = event_topic("MarketFeeds", "SmileSet")
LOG_PAGE_BLOCKS = 5_000  # blocks per eth_getLogs request (public endpoints cap ranges around 10,000)


@dataclass(frozen=True, slots=True)
class IndexUpdate:
    """One ``IndexSet`` log: an underlying's index price written at a block."""

    block_number: int
    log_index: int
    underlying: str
    time: int  # updatedAt: the writing block's timestamp (unix seconds)
    price: int  # USD with 8 decimals (the engine's PRICE_SCALE)


def symbol_topic(symbol: str) -> str:
    """Return the indexed ``underlying`` topic of a symbol (left-aligned ASCII in a bytes32)."""
    return "0x" + symbol.encode().ljust(32, b"\0").hex()


def decode_index_update(log: dict[str, Any]) -> IndexUpdate:
    """Return the update an ``IndexSet`` log (JSON-RPC form) carries; raise ``SnapshotError`` naming a bad field."""
    topics = log.get("topics") or []
    if len(topics) != 2 or bytes.fromhex(topics[0][2:]) != INDEX_SET_TOPIC:
        raise SnapshotError("IndexSet.topics", topics, "not an IndexSet log")
    try:
        price, _rate, updated_at = abi_decode(["uint256", "int256", "uint64"], bytes.fromhex(log["data"][2:]))
    except Exception as exc:  # eth_abi raises several unrelated types for malformed data
        raise SnapshotError("IndexSet.data", log.get("data"), f"cannot decode: {exc}") from None
    return IndexUpdate(
        block_number=int(log["blockNumber"], 16),
        log_index=int(log["logIndex"], 16),
        underlying=decode_symbol("IndexSet.underlying", bytes.fromhex(topics[1][2:])),
        time=int(updated_at),
        price=int(price),
    )


def read_index_updates(
    client: ChainClient,
    feeds: str,
    to_block: int,
    *,
    from_block: int = 0,
    underlying: str | None = None,
    page_blocks: int = LOG_PAGE_BLOCKS,
) -> list[IndexUpdate]:
    """Return the ``IndexSet`` logs of ``feeds`` in blocks ``from_block..to_block``, in chain order.

    Args:
        client: the JSON-RPC client.
        feeds: the MarketFeeds address.
        to_block: the last block read (inclusive); a round reads up to its anchor block.
        from_block: the first block read (inclusive).
        underlying: only this symbol's logs; None reads every underlying's.
        page_blocks: blocks per ``eth_getLogs`` request.

    Returns:
        The updates ordered by (block, log index).

    Errors:
        SnapshotError for a malformed or removed (reorged) log, or one from another address; ChainError when the
        endpoint fails.
    """
    logs = read_logs(client, feeds, "IndexSet", INDEX_SET_TOPIC, to_block, from_block, underlying, page_blocks)
    return [decode_index_update(log) for log in logs]


@dataclass(frozen=True, slots=True)
class SmileUpdate:
    """One ``SmileSet`` log: an expiry's SVI smile written at a block."""

    block_number: int
    log_index: int
    underlying: str
    quote: SmileQuote  # its time is the writing block's timestamp (the event carries none: read from the block)


def decode_smile_update(log: dict[str, Any], time: int) -> SmileUpdate:
    """Return the smile a ``SmileSet`` log (JSON-RPC form) carries, written at ``time``; raise ``SnapshotError``."""
    topics = log.get("topics") or []
    if len(topics) != 3 or bytes.fromhex(topics[0][2:]) != SMILE_SET_TOPIC:
        raise SnapshotError("SmileSet.topics", topics, "not a SmileSet log")
    try:
        (expiry,) = abi_decode(["uint64"], bytes.fromhex(topics[2][2:]))
        a, b, rho, m, sigma = abi_decode(["int256"] * 5, bytes.fromhex(log["data"][2:]))
    except Exception as exc:  # eth_abi raises several unrelated types for malformed data
        raise SnapshotError("SmileSet.data", log.get("data"), f"cannot decode: {exc}") from None
    return SmileUpdate(
        block_number=int(log["blockNumber"], 16),
        log_index=int(log["logIndex"], 16),
        underlying=decode_symbol("SmileSet.underlying", bytes.fromhex(topics[1][2:])),
        quote=SmileQuote(int(expiry), int(a), int(b), int(rho), int(m), int(sigma), time),
    )


def read_smile_updates(
    client: ChainClient,
    feeds: str,
    to_block: int,
    *,
    from_block: int = 0,
    underlying: str | None = None,
    page_blocks: int = LOG_PAGE_BLOCKS,
) -> list[SmileUpdate]:
    """Return the ``SmileSet`` logs of ``feeds`` in blocks ``from_block..to_block``, in chain order, each with its
    block's timestamp (one ``eth_getBlockByNumber`` per block holding such logs).

    Args and errors: as :func:`read_index_updates`.
    """
    logs = read_logs(client, feeds, "SmileSet", SMILE_SET_TOPIC, to_block, from_block, underlying, page_blocks)
    times: dict[int, int] = {}
    updates = []
    for log in logs:
        block = int(log["blockNumber"], 16)
        if block not in times:
            times[block] = client.get_block(block).timestamp
        updates.append(decode_smile_update(log, times[block]))
    return updates


def read_logs(
    client: ChainClient,
    feeds: str,
    event: str,
    topic: bytes,
    to_block: int,
    from_block: int,
    underlying: str | None,
    page_blocks: int,
) -> list[dict[str, Any]]:
    """Return the logs of one ``feeds`` event (optionally of one underlying) in blocks ``from_block..to_block``,
    ordered by (block, log index); raise ``SnapshotError`` for a removed log or one from another address."""
    if page_blocks < 1:
        raise InputError("page_blocks", f"must be >= 1, got {page_blocks}")
    topics: list[Any] = ["0x" + topic.hex()]
    if underlying is not None:
        topics.append(symbol_topic(underlying))
    out: list[dict[str, Any]] = []
    for start in range(from_block, to_block + 1, page_blocks):
        end = min(to_block, start + page_blocks - 1)
        logs = client.request(
            "eth_getLogs", [{"address": feeds, "fromBlock": hex(start), "toBlock": hex(end), "topics": topics}]
        )
        for log in logs:
            if log.get("removed"):  # a range read below the head can still race a reorg: refuse, never guess
                raise SnapshotError(f"{event}.removed", log.get("blockNumber"), "a log of the range was reorged out")
            if str(log.get("address", "")).lower() != feeds.lower():
                raise SnapshotError(f"{event}.address", log.get("address"), f"expected {feeds}")
            out.append(log)
    out.sort(key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))
    return out
