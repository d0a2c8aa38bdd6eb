"""Follows the chain head: a pure ``HeadTracker`` core and the trio service ``run_block_watcher`` around it.

A reorg is detected from hashes alone: a new block whose parent hash differs from the hash the tracker holds at
that height (``anvil_reorg`` and many nodes emit no removed logs, so hashes are the only reliable signal). The
shell fetches the missing ancestors of a new head by hash (by number would mix forks) until the segment links to a
block the tracker knows, then hands the whole segment to the core, which reports the fork point in one event.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from pmoracle.chain.blocks import BlockHeader
from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.errors import ChainError
from pmoracle.errors import InputError
from pmoracle.trio_types import TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewHead:
    """The canonical head moved to ``header``; blocks up to ``finalized_number`` are final (None: none yet)."""

    header: BlockHeader
    finalized_number: int | None


@dataclass(frozen=True, slots=True)
class Reorg:
    """Blocks above ``fork_point`` (the last common block) were replaced: ``depth`` old blocks removed."""

    fork_point: int
    depth: int
    old_hashes: tuple[bytes, ...]  # removed blocks, fork_point + 1 upwards
    new_hashes: tuple[bytes, ...]  # their replacements known so far, fork_point + 1 upwards


@dataclass(frozen=True, slots=True)
class Resync:
    """The new head could not be linked to any block in the window (a gap or a reorg deeper than the window)."""

    old_tip: BlockHeader
    new_tip: BlockHeader


HeadEvent = NewHead | Reorg | Resync


class HeadTracker:
    """Keeps the recent canonical chain (number -> header) within a window and turns new blocks into events."""

    def __init__(self, *, window: int = 128, finality_depth: int = 12) -> None:
        if window < 2:
            raise InputError("window", f"must be >= 2, got {window}")
        if not 0 <= finality_depth < window:
            raise InputError("finality_depth", f"must be in [0, window={window}), got {finality_depth}")
        self.window = window
        self.finality_depth = finality_depth
        self._blocks: dict[int, BlockHeader] = {}
        self._tip: BlockHeader | None = None

    @property
    def tip(self) -> BlockHeader | None:
        """Return the current canonical head or None before the first block."""
        return self._tip

    def header_at(self, number: int) -> BlockHeader | None:
        """Return the canonical header at ``number`` if it is within the window."""
        return self._blocks.get(number)

    def finalized_number(self, head_number: int | None = None) -> int | None:
        """Return ``head - finality_depth`` (the highest final block), or None while the chain is shorter."""
        if head_number is None:
            if self._tip is None:
                return None
            head_number = self._tip.number
        number = head_number - self.finality_depth
        return number if number >= 0 else None

    def missing_parent(self, header: BlockHeader) -> bytes | None:
        """Return the parent hash to fetch before ``header`` links to the window, or None if it links (or can't)."""
        if self._tip is None or header.number == 0:
            return None
        parent_number = header.number - 1
        if parent_number < min(self._blocks):
            return None  # below the window: cannot be linked, on_blocks reports a Resync
        known = self._blocks.get(parent_number)
        if known is not None and known.hash == header.parent_hash:
            return None
        return header.parent_hash

    def on_blocks(self, segment: Sequence[BlockHeader]) -> list[HeadEvent]:
        """Return the events of a new canonical segment (ascending, each the parent of the next) ending at the head.

        The segment should link to the window (see ``missing_parent``); one that does not is a ``Resync``.
        """
        if not segment:
            return []
        for prev, block in itertools.pairwise(segment):
            if block.number != prev.number + 1 or block.parent_hash != prev.hash:
                raise InputError("segment", f"block {block.number} does not follow block {prev.number}")
        tip = self._tip
        if tip is None:
            self._store(segment)
            return [NewHead(segment[-1], self.finalized_number())]
        # Blocks already held with the same hash are not news.
        fresh = [b for b in segment if (k := self._blocks.get(b.number)) is None or k.hash != b.hash]
        if not fresh:
            return []
        first = fresh[0]
        parent = self._blocks.get(first.number - 1)
        events: list[HeadEvent] = []
        if parent is None or parent.hash != first.parent_hash:
            self._blocks.clear()
            events.append(Resync(tip, fresh[-1]))
        elif parent.number < tip.number:
            old = tuple(self._blocks[n].hash for n in range(parent.number + 1, tip.number + 1))
            for n in range(parent.number + 1, tip.number + 1):
                del self._blocks[n]
            events.append(Reorg(parent.number, len(old), old, tuple(b.hash for b in fresh)))
        self._store(fresh)
        events.append(NewHead(fresh[-1], self.finalized_number()))
        return events

    def on_block(self, header: BlockHeader) -> list[HeadEvent]:
        """Return the events of one new block (a segment of one)."""
        return self.on_blocks([header])

    def _store(self, segment: Sequence[BlockHeader]) -> None:
        for block in segment:
            self._blocks[block.number] = block
        self._tip = segment[-1]
        for n in [n for n in self._blocks if n <= self._tip.number - self.window or n > self._tip.number]:
            del self._blocks[n]


async def fetch_linked_segment(
    client: ChainClient, tracker: HeadTracker, head: BlockHeader, *, call_timeout: float
) -> list[BlockHeader]:
    """Return ``head`` preceded by the ancestors (fetched by hash) that link it to the window (or fill it).

    Errors:
        ChainError / RpcError when a block cannot be read.
    """
    segment = [head]
    if tracker.tip is None:
        # First head: backfill the window so a reorg right after start still finds its fork point.
        while len(segment) < tracker.window and segment[0].number > 0:
            segment.insert(0, await run_sync(client.get_block, segment[0].parent_hash, timeout=call_timeout))
        return segment
    while len(segment) < tracker.window and (parent := tracker.missing_parent(segment[0])) is not None:
        segment.insert(0, await run_sync(client.get_block, parent, timeout=call_timeout))
    return segment


async def run_block_watcher(
    client: ChainClient,
    *,
    poll_interval: float,
    finality_depth: int,
    send_channel: trio.MemorySendChannel[HeadEvent],
    window: int = 128,
    call_timeout: float = 10.0,
    task_status: TaskStatus[HeadTracker] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Poll the chain head and send ``NewHead`` / ``Reorg`` / ``Resync`` events until cancelled.

    Args:
        client: the chain client (called in worker threads).
        poll_interval: seconds between head polls.
        finality_depth: blocks below the head that count as final.
        send_channel: where events go, in order.
        window: how many recent blocks are kept to find fork points.
        call_timeout: seconds for one RPC call.
        task_status: ``started(tracker)`` after the first poll.

    Errors:
        None: RPC failures are logged and the next poll retries.
    """
    tracker = HeadTracker(window=window, finality_depth=finality_depth)
    started = False
    while True:
        try:
            head = await run_sync(client.get_block, "latest", timeout=call_timeout)
            if tracker.tip is None or head.hash != tracker.tip.hash:
                segment = await fetch_linked_segment(client, tracker, head, call_timeout=call_timeout)
                for event in tracker.on_blocks(segment):
                    if isinstance(event, Reorg | Resync):
                        log.warning("chain head event: %s", event)
                    await send_channel.send(event)
        except ChainError as exc:
            log.warning("block watcher poll failed: %s", exc)
        if not started:
            task_status.started(tracker)
            started = True
        await trio.sleep(poll_interval)
