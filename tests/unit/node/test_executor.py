"""The protocol executor over in-memory ports: signing after protection, round triggers, transmission, resume."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.collector import CollectorContext
from pmoracle.consensus.evidence import Evidence
from pmoracle.consensus.report import compute_report_digest
from pmoracle.errors import InputError
from pmoracle.node.abc import AttestedRound, ChainPort
from pmoracle.node.executor import ProtocolExecutor
from pmoracle.p2p.codec import CatchUpRequest, NetworkId, SignedReportMessage, decode_message
from pmoracle.p2p.memory import MemoryNetwork
from pmoracle.p2p.reports import ReportGossip
from pmoracle.storage.protection_db import ProtectionDB
from tests.unit.consensus.factories import DOMAIN, PERIOD, make_committee, make_key, make_report, make_signed
from tests.unit.consensus.simulation import MemoryArchive

N = 4
NETWORK = NetworkId.from_domain(DOMAIN)
COMMITTEE = make_committee(N)


class RecordingChain(ChainPort):
    """A chain port that records what it is asked and serves a settable attested round."""

    def __init__(self) -> None:
        self.transmitted: list[QuorumCertificate] = []
        self.evidence: list[Evidence] = []
        self.attested: AttestedRound | None = None
        self.ejected: tuple[bytes, int] | None = None
        self.tx_time = 5.0

    async def transmit(self, certificate: QuorumCertificate) -> None:
        self.transmitted.append(certificate)
        await trio.sleep(self.tx_time)

    async def submit_evidence(self, evidence: Evidence) -> None:
        self.evidence.append(evidence)
        await trio.lowlevel.checkpoint()

    async def read_latest_attested(self) -> AttestedRound | None:
        await trio.lowlevel.checkpoint()
        return self.attested

    async def read_ejected_members(self) -> tuple[bytes, int] | None:
        await trio.lowlevel.checkpoint()
        return self.ejected


@asynccontextmanager
async def running_executor(
    tmp_path: pathlib.Path, *, archive: MemoryArchive | None = None, resume_block: int | None = None
) -> AsyncIterator[tuple[ProtocolExecutor, RecordingChain, MemoryNetwork]]:
    async with MemoryNetwork(seed=1) as net, trio.open_nursery() as nursery:
        chain = RecordingChain()
        context = CollectorContext.create(DOMAIN, COMMITTEE, COMMITTEE.members[0], stage_delay=1.0)
        executor = ProtocolExecutor(
            context, make_key(0), reports=ReportGossip(net.create_endpoint("node-0"), NETWORK), chain=chain,
            protection=ProtectionDB(tmp_path / "protection.db"), archive=archive or MemoryArchive(),
            resume_block=resume_block,
        )  # fmt: skip
        await nursery.start(executor.run)
        yield executor, chain, net
        nursery.cancel_scope.cancel()


async def test_new_heads_trigger_each_ready_anchor_once(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_executor(tmp_path) as (executor, chain, _):
        depth = COMMITTEE.finality_depth
        assert await executor.on_new_head(depth - 1) is None  # nothing final yet
        assert await executor.on_new_head(5 * PERIOD + depth) == 5 * PERIOD
        assert await executor.on_new_head(5 * PERIOD + depth + 1) is None  # same anchor
        chain.attested = AttestedRound(6 * PERIOD, b"\x01" * 32, b"\x02" * 32, COMMITTEE.digest(), 1, 0, 0,
                                       make_report(COMMITTEE, 6 * PERIOD).block_hash)  # fmt: skip
        assert await executor.on_new_head(6 * PERIOD + depth) is None  # already attested by others
        assert executor.last_attested == chain.attested
        assert await executor.on_new_head(7 * PERIOD + depth) == 7 * PERIOD


async def test_members_ejected_on_chain_are_read_each_head_for_this_config_only(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_executor(tmp_path) as (executor, chain, _):
        chain.ejected = (b"\x07" * 32, 0b1000)  # another configuration's bitmap
        await executor.on_new_head(5 * PERIOD)
        assert executor.state.ejected == frozenset()
        chain.ejected = (COMMITTEE.digest(), 0b1010)
        await executor.on_new_head(5 * PERIOD + 1)
        assert executor.state.ejected == frozenset({COMMITTEE.members[1], COMMITTEE.members[3]})


async def test_own_report_is_signed_after_protection_and_published(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_executor(tmp_path) as (executor, _, net):
        peer = net.create_endpoint("peer")
        block = 5 * PERIOD
        await executor.on_new_head(block + COMMITTEE.finality_depth)
        report = make_report(COMMITTEE, block)
        await executor.on_local_report(report)
        digest = compute_report_digest(DOMAIN, report)
        assert executor.protection.get_digest(report.round_key) == digest  # type: ignore[attr-defined]
        rnd = executor.state.rounds[block]
        assert rnd.own is not None and rnd.own.signer == COMMITTEE.members[0]
        first, second = (decode_message(peer.messages().receive_nowait().payload) for _ in range(2))
        assert first == SignedReportMessage(NETWORK, rnd.own)  # published once, by the executor
        assert isinstance(second, CatchUpRequest) and second.round_key == report.round_key


async def test_protection_refusal_withholds_the_signature(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_executor(tmp_path) as (executor, _, _):
        block = 5 * PERIOD
        await executor.on_new_head(block + COMMITTEE.finality_depth)
        other = make_report(COMMITTEE, block, variant=1)
        executor.protection.record_and_check(other.round_key, compute_report_digest(DOMAIN, other))
        await executor.on_local_report(make_report(COMMITTEE, block))
        assert executor.state.rounds[block].own is None
        assert executor.metrics.registry.get_sample_value("pmoracle_rounds_signed_total") == 0


async def test_a_certificate_is_transmitted_once_at_a_time_and_never_after_attestation(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_executor(tmp_path) as (executor, chain, net):
        block = 5 * PERIOD
        await executor.on_new_head(block + COMMITTEE.finality_depth)
        peers = [net.create_endpoint(f"peer-{i}") for i in range(1, N)]
        reports = [ReportGossip(p, NETWORK) for p in peers]
        for index, gossip in enumerate(reports, start=1):
            await gossip.publish_own(make_signed(N, index, block))
        # the whole schedule passes twice while the first transaction is still pending: one transmission only
        chain.tx_time = 1_000.0
        await trio.sleep(3 * N * executor.state.context.stage_delay + 1.0)
        assert len(chain.transmitted) == 1
        assert chain.transmitted[0].report == make_report(COMMITTEE, block)
        digest = compute_report_digest(DOMAIN, chain.transmitted[0].report)
        chain.attested = AttestedRound(block, b"\x01" * 32, digest, COMMITTEE.digest(), 1, 0, 0,
                                       make_report(COMMITTEE, block).block_hash)  # fmt: skip
        await executor.on_new_head(block + COMMITTEE.finality_depth + 1)
        await trio.sleep(10 * N * executor.state.context.stage_delay)
        assert len(chain.transmitted) == 1


async def test_restart_resumes_the_archived_round_with_the_same_digest(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    block = 5 * PERIOD
    archive = MemoryArchive()
    signed = make_signed(N, 0, block)
    archive.add(signed, compute_report_digest(DOMAIN, signed.report), seen_at=0.0)
    async with running_executor(tmp_path, archive=archive, resume_block=block) as (executor, _, _):
        await executor.on_new_head(block + COMMITTEE.finality_depth)
        assert executor.state.rounds[block].own == signed
        assert executor.last_computed == block


def test_a_watcher_context_is_refused(tmp_path: pathlib.Path) -> None:
    context = CollectorContext.create(DOMAIN, COMMITTEE, None)
    with pytest.raises(InputError, match="signing address"):
        ProtocolExecutor(context, make_key(0), reports=None, chain=RecordingChain(),  # type: ignore[arg-type]
                         protection=None, archive=MemoryArchive())  # type: ignore[arg-type]  # fmt: skip
