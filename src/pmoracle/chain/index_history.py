"""The on-chain index history: ``MarketFeeds`` ``IndexSet`` logs in chain order, read with paged ``eth_getLogs``.

The adaptive margin policy (docs/policy.md) samples each underlying's index from these logs; every node and the
dispute tool read the same logs up to a block and so derive the same samples.
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

INDEX_SET_TOPIC = event_topic("MarketFeeds", "IndexSet")
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
    if page_blocks < 1:
        raise InputError("page_blocks", f"must be >= 1, got {page_blocks}")
    topics: list[Any] = ["0x" + INDEX_SET_TOPIC.hex()]
    if underlying is not None:
        topics.append(symbol_topic(underlying))
    updates: list[IndexUpdate] = []
    for start in range(from_block, to_block + 1, page_blocks):
        end = min(to_block, start + page_blocks - 1)
        logs = client.request(
            "eth_getLogs", [{"address": feeds, "fromBlock": hex(start), "toBlock": hex(end), "topics": topics}]
        )
        for log in logs:
            if log.get("removed"):  # a range read below the head can still race a reorg: refuse, never guess
                raise SnapshotError("IndexSet.removed", log.get("blockNumber"), "a log of the range was reorged out")
            if str(log.get("address", "")).lower() != feeds.lower():
                raise SnapshotError("IndexSet.address", log.get("address"), f"expected {feeds}")
            updates.append(decode_index_update(log))
    updates.sort(key=lambda u: (u.block_number, u.log_index))
    return updates
