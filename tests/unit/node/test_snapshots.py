"""The snapshot check service on its own (no chain): a check that cannot read counts as an error and changes
nothing, a newer request replaces one still waiting, the round's reads count by kind, and reads and checks run
with the cyclic garbage collector paused.

The service against anvil, a wrong book caught and the next round read in full, is in
tests/integration/chain/test_snapshot.py.
"""

from __future__ import annotations

import gc
import queue
import threading

import trio

from pmoracle.chain.errors import SnapshotError
from pmoracle.chain.snapshot import ChainSnapshot, SnapshotCheck, SnapshotRead
from pmoracle.node.metrics import NodeMetrics, create_node_metrics
from pmoracle.node.snapshots import RoundSnapshots
from tests.unit.risk.factories import make_market


def snapshot_at(block: int, changed: int | None) -> ChainSnapshot:
    market = make_market()
    return ChainSnapshot(block, block.to_bytes(32, "big"), market.time, market, (), (), changed_accounts=changed)


class ScriptedSource:
    """Reads every block incrementally, every second one due a check; checks wait for a permit, then fail for the
    blocks in ``unreadable`` and match otherwise."""

    def __init__(self, unreadable: set[int]) -> None:
        self.unreadable = unreadable
        self.entered: queue.Queue[int] = queue.Queue()
        self.permits = threading.Semaphore(0)

    def read(self, block_number: int) -> SnapshotRead:
        return SnapshotRead(snapshot_at(block_number, 1), verify=block_number % 2 == 0)

    def verify(self, read: SnapshotRead) -> SnapshotCheck:
        block = read.snapshot.block_number
        self.entered.put(block)
        self.permits.acquire()
        if block in self.unreadable:
            raise SnapshotError("block_hash", block, "replaced by a reorg")
        return SnapshotCheck(block, True, 0, False)

    async def next_entered(self) -> int:
        with trio.fail_after(30):
            return await trio.to_thread.run_sync(self.entered.get, abandon_on_cancel=True)  # type: ignore[call-arg]


def checks(metrics: NodeMetrics) -> dict[str, float | None]:
    get = metrics.registry.get_sample_value
    return {r: get("pmoracle_snapshot_checks_total", {"result": r}) for r in ("match", "mismatch", "error")}


def test_an_unreadable_check_is_an_error_and_a_newer_request_replaces_a_waiting_one() -> None:
    source = ScriptedSource(unreadable={2})
    metrics = create_node_metrics()
    snapshots = RoundSnapshots(source, metrics, timeout=30.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(snapshots.run_checks)
            for block in (1, 2):
                await snapshots.read(block)
            assert await source.next_entered() == 2  # the check of block 2 runs (and waits)
            for block in (3, 4, 5, 6):  # 4 waits in the slot, then 6 replaces it
                await snapshots.read(block)
            source.permits.release()  # block 2: unreadable
            assert await source.next_entered() == 6  # never 4
            assert checks(metrics) == {"match": 0, "mismatch": 0, "error": 1}
            source.permits.release()  # block 6: matches
            await snapshots.read(8)  # its check, once it starts, means the one of block 6 was counted
            assert await source.next_entered() == 8
            assert checks(metrics) == {"match": 1, "mismatch": 0, "error": 1}
            assert metrics.registry.get_sample_value("pmoracle_snapshot_mismatches_total") == 0
            get = metrics.registry.get_sample_value
            assert get("pmoracle_snapshot_reads_total", {"kind": "incremental"}) == 7
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        source.unreadable.add(8)  # the check left waiting fails at once, once let through
        source.permits.release()


class RecordingSource:
    """Reads every block due a check; records whether the collector was on in each read and check."""

    def __init__(self) -> None:
        self.collector_on: list[tuple[str, bool]] = []

    def read(self, block_number: int) -> SnapshotRead:
        self.collector_on.append(("read", gc.isenabled()))
        return SnapshotRead(snapshot_at(block_number, 1), verify=True)

    def verify(self, read: SnapshotRead) -> SnapshotCheck:
        self.collector_on.append(("verify", gc.isenabled()))
        return SnapshotCheck(read.snapshot.block_number, True, 0, False)


def test_reads_and_checks_run_with_the_collector_paused_and_restore_it() -> None:
    source = RecordingSource()
    metrics = create_node_metrics()
    snapshots = RoundSnapshots(source, metrics, timeout=30.0)
    was = gc.isenabled()
    gc.enable()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(snapshots.run_checks)
            await snapshots.read(1)
            with trio.fail_after(30):
                while checks(metrics)["match"] != 1:
                    await trio.sleep(0.01)
            assert gc.isenabled()  # the pauses ended with the read and the check
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        (gc.enable if was else gc.disable)()
    assert source.collector_on == [("read", False), ("verify", False)]
