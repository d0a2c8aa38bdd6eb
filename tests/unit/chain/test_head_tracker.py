"""HeadTracker (pure core of the block watcher): new heads, reorgs of depth 1..5, gaps, deep forks, finality."""

from __future__ import annotations

import pytest

from pmoracle.chain.blocks import BlockHeader
from pmoracle.chain.watcher import HeadTracker, NewHead, Reorg, Resync
from pmoracle.errors import InputError

GENESIS_PARENT = b"\x00" * 32


def block_hash(fork: int, number: int) -> bytes:
    return bytes([fork + 1]) + number.to_bytes(31, "big")


def chain(fork: int, start: int, stop: int, *, parent_fork: int | None = None) -> list[BlockHeader]:
    """Blocks start..stop-1 of a fork; the first one's parent is on ``parent_fork`` (default: the same fork)."""
    blocks = []
    for n in range(start, stop):
        if n == 0:
            parent = GENESIS_PARENT
        elif n == start and parent_fork is not None:
            parent = block_hash(parent_fork, n - 1)
        else:
            parent = block_hash(fork, n - 1)
        blocks.append(BlockHeader(n, block_hash(fork, n), parent, 1_700_000_000 + 12 * n, 10**9))
    return blocks


def feed_with_parents(tracker: HeadTracker, head: BlockHeader, known: dict[bytes, BlockHeader]) -> list:
    """Do what the watcher shell does: fetch missing parents by hash, then hand over the segment."""
    segment = [head]
    while len(segment) < tracker.window and (parent := tracker.missing_parent(segment[0])) is not None:
        segment.insert(0, known[parent])
    return tracker.on_blocks(segment)


def test_new_heads_in_order_and_finality() -> None:
    tracker = HeadTracker(window=16, finality_depth=3)
    heads = []
    for block in chain(0, 0, 6):
        events = tracker.on_block(block)
        assert len(events) == 1 and isinstance(events[0], NewHead)
        heads.append(events[0])
    assert [h.header.number for h in heads] == list(range(6))
    assert [h.finalized_number for h in heads] == [None, None, None, 0, 1, 2]
    assert tracker.finalized_number() == 2
    assert tracker.on_block(chain(0, 0, 6)[-1]) == []  # the same head again is no news


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_reorg_of_depth_reports_the_fork_point(depth: int) -> None:
    tracker = HeadTracker(window=32, finality_depth=2)
    main = chain(0, 0, 20)
    for block in main:
        tracker.on_block(block)
    fork_point = 19 - depth
    fork = chain(1, fork_point + 1, 20, parent_fork=0)  # same height, new hashes (as anvil_reorg does)
    known = {b.hash: b for b in main + fork}
    assert tracker.missing_parent(fork[-1]) == (fork[-2].hash if depth > 1 else None)
    events = feed_with_parents(tracker, fork[-1], known)
    reorg, head = events
    assert reorg == Reorg(
        fork_point=fork_point,
        depth=depth,
        old_hashes=tuple(b.hash for b in main[fork_point + 1 :]),
        new_hashes=tuple(b.hash for b in fork),
    )
    assert head == NewHead(fork[-1], 17)
    assert tracker.header_at(fork_point) == main[fork_point]
    assert all(tracker.header_at(b.number) == b for b in fork)


def test_reorg_to_a_shorter_and_to_a_longer_chain() -> None:
    tracker = HeadTracker(window=32, finality_depth=0)
    main = chain(0, 0, 10)
    for block in main:
        tracker.on_block(block)
    shorter = chain(1, 7, 9, parent_fork=0)  # head 8' replaces 7..9
    events = feed_with_parents(tracker, shorter[-1], {b.hash: b for b in main + shorter})
    assert isinstance(events[0], Reorg) and events[0].fork_point == 6 and events[0].depth == 3
    assert tracker.tip == shorter[-1] and tracker.header_at(9) is None
    longer = chain(2, 8, 14, parent_fork=1)  # head 13'' replaces 8'
    events = feed_with_parents(tracker, longer[-1], {b.hash: b for b in shorter + longer})
    assert events[0] == Reorg(7, 1, (shorter[-1].hash,), tuple(b.hash for b in longer))
    assert events[1].header == longer[-1]


def test_gap_is_filled_by_fetching_missing_parents_without_a_reorg() -> None:
    tracker = HeadTracker(window=32, finality_depth=1)
    main = chain(0, 0, 12)
    for block in main[:5]:
        tracker.on_block(block)
    assert tracker.missing_parent(main[11]) == main[10].hash
    events = feed_with_parents(tracker, main[11], {b.hash: b for b in main})
    assert events == [NewHead(main[11], 10)]
    assert all(tracker.header_at(n) == main[n] for n in range(12))


def test_fork_deeper_than_the_window_is_a_resync() -> None:
    tracker = HeadTracker(window=4, finality_depth=1)
    main = chain(0, 0, 10)
    for block in main:
        tracker.on_block(block)
    assert tracker.header_at(5) is None and tracker.header_at(6) == main[6]  # the window keeps 4 blocks
    fork = chain(1, 3, 11, parent_fork=0)
    events = feed_with_parents(tracker, fork[-1], {b.hash: b for b in main + fork})
    assert events[0] == Resync(main[-1], fork[-1])
    assert events[1] == NewHead(fork[-1], 9)


def test_segment_must_be_a_chain() -> None:
    tracker = HeadTracker(window=8, finality_depth=1)
    a, b = chain(0, 0, 2)
    with pytest.raises(InputError):
        tracker.on_blocks([b, a])
    with pytest.raises(InputError):
        HeadTracker(window=8, finality_depth=8)
