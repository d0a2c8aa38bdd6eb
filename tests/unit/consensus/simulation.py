"""A protocol simulation harness: n collector nodes on the in-memory gossip network, under trio's virtual clock.

Each node runs the pure collector and carries its effects out for real where the effect is local (a real SQLite
slashing-protection file per node, real signatures); the "chain" is :class:`SimChain`, a record of attested rounds
that verifies certificates and accepts only newer rounds (a test tool, not the product chain).
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from dataclasses import dataclass, field

import trio

from pmoracle.consensus.certificate import QuorumCertificate, is_valid_certificate
from pmoracle.consensus.collector import (
    ArchiveSignedReport,
    Broadcast,
    CertificateFormed,
    CollectorContext,
    Effect,
    Rejected,
    SignReport,
    SubmitEvidence,
    Transmit,
    init_collector_state,
    on_local_report,
    on_new_head,
    on_own_signed_report,
    on_round_attested,
    on_signed_report,
    on_tick,
)
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Evidence, decode_signed_report, encode_signed_report
from pmoracle.consensus.report import SignedReport, compute_report_digest, sign_report
from pmoracle.consensus.rounds import compute_latest_ready_anchor
from pmoracle.errors import InputError
from pmoracle.p2p.memory import MemoryNetwork
from pmoracle.storage.protection_db import ProtectionDB
from tests.unit.consensus.factories import DEPTH, DOMAIN, make_committee, make_key, make_report

GENESIS = 102  # chain head at virtual time 0: round 100 is ready at once, round 110 ten seconds later
BLOCK_TIME = 1.0  # one block per virtual second: one round every PERIOD seconds
TICK = 0.25
STAGE_DELAY = 2.0
REBROADCAST = 1.0
TX_DELAY = 0.5  # virtual seconds between sending a transmission and its inclusion
SLOW_DELAY = 3.0  # how late a slow node computes its report


@dataclass(frozen=True)
class Partition:
    """Cut the network into ``groups`` (committee indices) from ``start`` to ``end`` (virtual seconds)."""

    start: float
    end: float
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Scenario:
    """One simulation: committee size, misbehaving members, network conditions, faults."""

    n: int
    seed: int
    behaviours: dict[int, str] = field(default_factory=dict)  # index -> wrong | equivocate | silent | slow
    loss: float = 0.0
    min_delay: float = 0.05
    max_delay: float = 0.3
    partition: Partition | None = None
    crash_first_transmitter: bool = False
    duration: float = 60.0


@dataclass(frozen=True)
class Attestation:
    """One round accepted by the simulated chain."""

    block: int
    digest: bytes
    transmitter: int
    at: float


@dataclass
class SimChain:
    """The attested-rounds record: accepts a valid certificate for a round newer than the latest."""

    committee: CommitteeConfig
    attestations: list[Attestation] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def latest(self) -> int:
        return self.attestations[-1].block if self.attestations else -1

    def attested(self) -> dict[int, bytes]:
        return {a.block: a.digest for a in self.attestations}

    def submit(self, certificate: QuorumCertificate, transmitter: int, at: float) -> None:
        if not is_valid_certificate(DOMAIN, self.committee, certificate):
            self.refused["invalid"] += 1
            return
        if certificate.report.block_number <= self.latest:
            self.refused["not-newer"] += 1
            return
        digest = compute_report_digest(DOMAIN, certificate.report)
        self.attestations.append(Attestation(certificate.report.block_number, digest, transmitter, at))


@dataclass(frozen=True)
class FormedCertificate:
    node: int
    at: float
    certificate: QuorumCertificate
    digest: bytes


@dataclass
class SimResult:
    """What happened: the chain, every certificate every node formed, evidence, crashes, counters."""

    scenario: Scenario
    committee: CommitteeConfig
    start: float
    chain: SimChain
    formed: list[FormedCertificate] = field(default_factory=list)
    evidence: list[tuple[int, Evidence]] = field(default_factory=list)
    crashed: list[tuple[int, float, int]] = field(default_factory=list)  # node, when, round it was transmitting
    rejections: Counter[str] = field(default_factory=Counter)
    archived: Counter[int] = field(default_factory=Counter)  # valid signed reports each node would archive
    network_stats: Counter[str] = field(default_factory=Counter)

    def ready_time(self, block: int) -> float:
        """Return the virtual time (since start) at which round ``block`` became ready."""
        return max(0.0, (block + DEPTH - GENESIS) * BLOCK_TIME)

    def honest_digest(self, block: int) -> bytes:
        return compute_report_digest(DOMAIN, make_report(self.committee, block))


def head_at(elapsed: float) -> int:
    return GENESIS + int(elapsed / BLOCK_TIME)


class SimNode:
    """One committee member: the pure collector plus the shell that carries out its effects."""

    def __init__(self, sim: Simulation, index: int, behaviour: str, db_path: pathlib.Path) -> None:
        self.sim = sim
        self.index = index
        self.behaviour = behaviour
        self.key = make_key(index)
        committee = sim.committee
        context = CollectorContext.create(
            DOMAIN,
            committee,
            committee.members[index],
            stage_delay=STAGE_DELAY,
            rebroadcast_interval=REBROADCAST,
            window_rounds=8,
        )
        self.state = init_collector_state(context, head_at(0.0))
        self.endpoint = sim.net.create_endpoint(f"node-{index}")
        self.db = ProtectionDB(db_path)
        self.seen_attested: set[int] = set()
        self.computed: set[int] = set()
        self.cancel_scope = trio.CancelScope()

    async def run(self) -> None:
        with self.cancel_scope:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._receive)
                nursery.start_soon(self._tick)

    def crash(self, block: int) -> None:
        self.sim.result.crashed.append((self.index, self.sim.elapsed(), block))
        self.sim.net.crash(self.endpoint.peer_id)
        self.cancel_scope.cancel()

    async def _receive(self) -> None:
        async for received in self.endpoint.messages():
            try:
                signed = decode_signed_report(json.loads(received.payload))
            except (InputError, ValueError):
                self.sim.result.rejections["codec"] += 1
                continue
            self.state, effects = on_signed_report(self.state, signed, trio.current_time())
            await self._apply(effects)

    async def _tick(self) -> None:
        committee = self.sim.committee
        while True:
            now = trio.current_time()
            head = head_at(self.sim.elapsed())
            self.state, _ = on_new_head(self.state, head)
            for block, digest in sorted(self.sim.chain.attested().items()):
                if block not in self.seen_attested:
                    self.seen_attested.add(block)
                    self.state, effects = on_round_attested(self.state, (committee.digest(), block), digest)
                    await self._apply(effects)
            anchor = compute_latest_ready_anchor(head, committee)
            if anchor is not None and anchor not in self.computed:
                late = SLOW_DELAY if self.behaviour == "slow" else 0.0
                if self.sim.elapsed() >= self.sim.result.ready_time(anchor) + late:
                    self.computed.add(anchor)
                    await self._compute(anchor, now)
            self.state, effects = on_tick(self.state, now)
            await self._apply(effects)
            await trio.sleep(TICK)

    async def _compute(self, block: int, now: float) -> None:
        if self.behaviour == "equivocate":
            # a Byzantine member ignores its protection store and publishes two reports for one round
            for variant in (0, 1):
                await self._publish(sign_report(DOMAIN, make_report(self.sim.committee, block, variant), self.key))
            return
        variant = 1 if self.behaviour == "wrong" else 0
        self.state, effects = on_local_report(self.state, make_report(self.sim.committee, block, variant), now)
        await self._apply(effects)

    async def _publish(self, signed: SignedReport) -> None:
        await self.endpoint.publish(json.dumps(encode_signed_report(signed)).encode())

    async def _apply(self, effects: tuple[Effect, ...]) -> None:
        result = self.sim.result
        for effect in effects:
            if isinstance(effect, Broadcast):
                await self._publish(effect.signed)
            elif isinstance(effect, SignReport):
                # the durable record comes first; it raises SlashingProtectionError on a conflict
                self.db.record_and_check(effect.round_key, effect.digest)
                signed = sign_report(DOMAIN, effect.report, self.key)
                self.state, more = on_own_signed_report(self.state, signed, trio.current_time())
                await self._apply(more)
            elif isinstance(effect, Transmit):
                if self.sim.scenario.crash_first_transmitter and not result.crashed:
                    # the scheduled transmitter dies before its transaction lands
                    self.crash(effect.certificate.report.block_number)
                    await trio.lowlevel.checkpoint()
                self.nursery.start_soon(self._transmit, effect.certificate)
            elif isinstance(effect, CertificateFormed):
                result.formed.append(
                    FormedCertificate(self.index, self.sim.elapsed(), effect.certificate, effect.digest)
                )
            elif isinstance(effect, SubmitEvidence):
                result.evidence.append((self.index, effect.evidence))
            elif isinstance(effect, Rejected):
                result.rejections[effect.reason.value] += 1
            elif isinstance(effect, ArchiveSignedReport):
                result.archived[self.index] += 1  # the SQLite archive has its own tests

    async def _transmit(self, certificate: QuorumCertificate) -> None:
        await trio.sleep(TX_DELAY)
        self.sim.chain.submit(certificate, self.index, self.sim.elapsed())


class Simulation:
    def __init__(self, scenario: Scenario, net: MemoryNetwork, tmp_path: pathlib.Path) -> None:
        self.scenario = scenario
        self.committee = make_committee(scenario.n)
        self.net = net
        self.chain = SimChain(self.committee)
        self.start = trio.current_time()
        self.result = SimResult(scenario, self.committee, self.start, self.chain)
        self.nodes = [
            SimNode(self, i, scenario.behaviours.get(i, "honest"), tmp_path / f"protection-{i}.db")
            for i in range(scenario.n)
        ]

    def elapsed(self) -> float:
        return trio.current_time() - self.start

    async def _partition(self, partition: Partition) -> None:
        await trio.sleep(partition.start)
        self.net.partition([[f"node-{i}" for i in group] for group in partition.groups])
        await trio.sleep(partition.end - partition.start)
        self.net.heal()


async def run_simulation(scenario: Scenario, tmp_path: pathlib.Path) -> SimResult:
    """Run ``scenario`` for its duration of virtual time and return what happened."""
    async with MemoryNetwork(
        scenario.seed, loss=scenario.loss, min_delay=scenario.min_delay, max_delay=scenario.max_delay
    ) as net:
        sim = Simulation(scenario, net, tmp_path)
        with trio.move_on_after(scenario.duration):
            async with trio.open_nursery() as nursery:
                if scenario.partition is not None:
                    nursery.start_soon(sim._partition, scenario.partition)
                for node in sim.nodes:
                    if node.behaviour != "silent":
                        nursery.start_soon(node.run)
        for node in sim.nodes:
            node.db.close()
        sim.result.network_stats.update(net.stats)
        return sim.result
