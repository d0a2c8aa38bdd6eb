"""The round's chain snapshot, and the background check that keeps the incremental book honest.

Each round reads its anchor block's snapshot as the previous round's book plus the accounts changed since
(:class:`~pmoracle.chain.snapshot.SnapshotReader`); every ``chain.full_snapshot_every``-th of these is due a check
against a full read of the same block. The round hands that check to :meth:`RoundSnapshots.run_checks` through a
memory channel of one slot and goes on: at most one check runs at a time, and a newer request replaces one still
waiting, so the round never waits on a full read it does not need (a full read of 100,000 accounts takes seconds).
A check that differs makes the next round read every account. Reads and checks run with the cyclic garbage
collector paused (:mod:`pmoracle.node.gcpause`): a full read builds an object per account and position.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from pmoracle.chain.client import run_sync
from pmoracle.chain.snapshot import SnapshotCheck, SnapshotRead
from pmoracle.errors import PmoracleError
from pmoracle.node.gcpause import with_gc_paused
from pmoracle.node.metrics import NodeMetrics
from pmoracle.trio_types import TaskStatus

log = logging.getLogger("pmoracle.node")


class SnapshotSource(Protocol):
    """Where the round's snapshots come from (production: :class:`~pmoracle.chain.snapshot.SnapshotReader`)."""

    def read(self, block_number: int) -> SnapshotRead:
        """Return the snapshot of ``block_number`` (blocking: run it in a thread)."""
        ...

    def verify(self, read: SnapshotRead) -> SnapshotCheck:
        """Return ``read`` compared with a full read of its block (blocking: run it in a thread)."""
        ...


class RoundSnapshots:
    """The round worker's snapshot stage and the snapshot check service behind it."""

    def __init__(self, source: SnapshotSource, metrics: NodeMetrics, *, timeout: float) -> None:
        """Args:
        source: the snapshot reader.
        metrics: counts reads (``pmoracle_snapshot_reads_total``) and checks (``pmoracle_snapshot_checks_total``).
        timeout: seconds a read or a check may take before it is abandoned.
        """
        self.source = source
        self.metrics = metrics
        self.timeout = timeout
        self._checks_send, self._checks_recv = trio.open_memory_channel[SnapshotRead](1)

    async def read(self, block_number: int) -> SnapshotRead:
        """Return the round's snapshot of ``block_number``, and request its check when one is due (without
        waiting for it).

        Errors:
            as ``SnapshotReader.read``; ChainCallTimeoutError after ``timeout`` seconds.
        """
        read = await run_sync(with_gc_paused(self.source.read), block_number, timeout=self.timeout)
        kind = "full" if read.snapshot.changed_accounts is None else "incremental"
        self.metrics.snapshot_reads.labels(kind=kind).inc()
        if read.verify:
            self.request_check(read)
        return read

    def request_check(self, read: SnapshotRead) -> None:
        """Queue ``read`` for the check service; one still waiting is dropped for it (the newer book is what the
        next rounds extend)."""
        try:
            self._checks_send.send_nowait(read)
        except trio.WouldBlock:
            dropped = self._checks_recv.receive_nowait()  # the slot is full: the service is busy with another
            log.info("snapshot check of block %d dropped for block %d (a check is still running)",
                     dropped.snapshot.block_number, read.snapshot.block_number)  # fmt: skip
            self._checks_send.send_nowait(read)

    async def run_checks(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check each requested snapshot against a full read of its block, in a worker thread, one at a time."""
        task_status.started()
        async for read in self._checks_recv:
            block = read.snapshot.block_number
            try:
                check = await run_sync(with_gc_paused(self.source.verify), read, timeout=self.timeout)
            except PmoracleError as exc:  # ChainCallTimeoutError included
                self.metrics.snapshot_checks.labels(result="error").inc()
                log.warning("round %d: the snapshot check could not read the block in full: %s", block, exc)
                continue
            if check.matched:
                self.metrics.snapshot_checks.labels(result="match").inc()
                log.info("round %d: the incremental snapshot equals a full read", block)
                continue
            self.metrics.snapshot_checks.labels(result="mismatch").inc()
            self.metrics.snapshot_mismatches.inc()
            log.error("round %d: the incremental snapshot differs from a full read of the block (%d accounts%s); "
                      "the next round reads every account", block, check.accounts_differing,
                      ", the market or instruments" if check.head_differs else "")  # fmt: skip
