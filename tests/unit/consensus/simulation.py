"""A protocol simulation harness: n production protocol executors on the in-memory network, under trio's virtual clock.

Each member is the node's own :class:`~pmoracle.node.executor.ProtocolExecutor` (the class the daemon runs) with
:class:`~pmoracle.p2p.reports.ReportGossip` (production re-publication schedule and catch-up), the production msgpack
codec, the committee's :class:`~pmoracle.p2p.validator.ReportValidator` on every in-memory endpoint, a real SQLite
slashing-protection file and real signatures. Only the world around it is simulated: the chain is
:class:`MemoryChain` (a record of attested rounds that verifies certificates and accepts only newer rounds, reached
through :class:`MemoryChainPort`), heads advance one block per virtual second, and each member's "risk engine" is
:func:`~tests.unit.consensus.factories.make_report`. Misbehaviour uses the test-only fault injector's wrappers
(:mod:`pmoracle.devnet.faults`) where it has one.

With ``Scenario(frost=True)`` the committee carries the group key of a DKG among its members (threshold = quorum) and
every member runs the daemon's :class:`~pmoracle.node.frost_service.FrostRoundService` beside its executor, with a
:class:`~pmoracle.node.frost_signer.FrostSigner` whose nonce store is the member's protection file; the chain then
accepts a FROST signature of the report under the group key (``attestFrost``) as well as an ECDSA certificate.

With ``Scenario(reconfigure=Reconfiguration(...))`` the chain installs a new committee version at a virtual time
(members left out, a group key added); each member notices it at its next head, as the daemon does, and installs
it in its executor (``ProtocolExecutor.install_committee``) with a FROST service when the new version has a group
key and the member is in it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.certificate import QuorumCertificate, is_valid_certificate
from pmoracle.consensus.collector import CollectorContext
from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum
from pmoracle.consensus.evidence import Evidence
from pmoracle.consensus.frost_dkg import DkgResult
from pmoracle.consensus.frost_evm import EvmGroupKey, EvmSignature, is_valid_evm_signature
from pmoracle.consensus.report import SignedReport, address_of, compute_report_digest
from pmoracle.consensus.rounds import RoundKey
from pmoracle.devnet.faults import DelayedRelease, EquivocatingRelease, SelfSparingChain, WithholdingRelease
from pmoracle.node.abc import AttestedRound, ChainPort, ReleaseNow, SignatureRelease
from pmoracle.node.daemon import WINDOW_ROUNDS
from pmoracle.node.executor import ProtocolExecutor
from pmoracle.node.frost_service import FrostRoundService
from pmoracle.node.frost_signer import FrostSigner
from pmoracle.node.metrics import create_node_metrics
from pmoracle.p2p.codec import NetworkId
from pmoracle.p2p.memory import MemoryEndpoint, MemoryNetwork
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator
from pmoracle.storage.archive import ArchivedReport
from pmoracle.storage.frost_nonces import FrostNonceDB
from pmoracle.storage.protection_db import ProtectionDB
from pmoracle.testing.frost import run_test_dkg
from tests.unit.consensus.factories import DEPTH, DOMAIN, make_committee, make_key, make_report

GENESIS = 102  # chain head at virtual time 0: round 100 is ready at once, round 110 ten seconds later
BLOCK_TIME = 1.0  # one block per virtual second: one round every PERIOD seconds
TICK = 0.25  # the executor's tick and the head poll
STAGE_DELAY = 2.0
TX_DELAY = 0.5  # virtual seconds between sending a transmission and its inclusion
SLOW_DELAY = 3.0  # how late a slow node releases its signature
NETWORK = NetworkId.from_domain(DOMAIN)

# Behaviours: honest; wrong (signs a wrong root through protection); equivocate (a second report bypassing
# protection, faults.EquivocatingRelease); withhold (runs, never releases a signature, faults.WithholdingRelease);
# slow (releases SLOW_DELAY late, faults.DelayedRelease); silent (never starts: a crash from the beginning);
# frost-withhold (with FROST: signs its ECDSA report, records its FROST share's nonce as used, never releases it).
# frost-tamper (with FROST: releases a share that does not verify, after recording the true one).
BEHAVIOURS = ("honest", "wrong", "equivocate", "withhold", "slow", "silent", "frost-withhold", "frost-tamper")


@dataclass(frozen=True)
class Partition:
    """Cut the network into ``groups`` (committee indices) from ``start`` to ``end`` (virtual seconds)."""

    start: float
    end: float
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Reconfiguration:
    """A new committee version installed on the simulated chain during the run."""

    at: float  # virtual seconds after the start
    drop: tuple[int, ...] = ()  # members (indices of the first committee) left out of the new version
    frost: bool = False  # the new version carries the group key of a DKG among its members
    lag: dict[int, float] = field(default_factory=dict)  # member index -> seconds it notices the new version late


@dataclass(frozen=True)
class Scenario:
    """One simulation: committee size, misbehaving members, network conditions, faults."""

    n: int
    seed: int
    behaviours: dict[int, str] = field(default_factory=dict)  # index -> one of BEHAVIOURS
    loss: float = 0.0
    min_delay: float = 0.05
    max_delay: float = 0.3
    partition: Partition | None = None
    crash_first_transmitter: bool = False
    duration: float = 60.0
    frost: bool = False  # the committee has a group key and every member signs with FROST too
    reconfigure: Reconfiguration | None = None


@dataclass(frozen=True)
class Attestation:
    """One round accepted by the simulated chain."""

    block: int
    digest: bytes
    block_hash: bytes
    transmitter: int
    at: float
    scheme: str = "ecdsa"  # "frost": attestFrost with a signature under the group key
    config_digest: bytes = b""  # the configuration the round was attested under


@dataclass
class MemoryChain:
    """The attested-rounds record: accepts a valid certificate for a round newer than the latest."""

    committee: CommitteeConfig
    attestations: list[Attestation] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def latest(self) -> int:
        """Return the newest attested block (-1 before the first)."""
        return self.attestations[-1].block if self.attestations else -1

    def submit(
        self, certificate: QuorumCertificate, transmitter: int, at: float, frost_signature: EvmSignature | None = None
    ) -> None:
        """Attest ``certificate`` if it is valid (with ``frost_signature``: that signature of its report under the
        group key, the contract's rule) and newer than the latest round, else count the refusal."""
        if frost_signature is not None:
            group_key = self.committee.group_key
            digest = compute_report_digest(DOMAIN, certificate.report)
            if group_key is None or not is_valid_evm_signature(group_key, digest, frost_signature):
                self.refused["invalid-frost"] += 1
                return
        elif not is_valid_certificate(DOMAIN, self.committee, certificate):
            self.refused["invalid"] += 1
            return
        if certificate.report.block_number <= self.latest:
            self.refused["not-newer"] += 1
            return
        digest = compute_report_digest(DOMAIN, certificate.report)
        report = certificate.report
        scheme = "ecdsa" if frost_signature is None else "frost"
        self.attestations.append(Attestation(report.block_number, digest, report.block_hash, transmitter, at, scheme,
                                             report.config_digest))  # fmt: skip


@dataclass(frozen=True)
class FormedCertificate:
    """A certificate one node formed, as its collector holds it at the end of the run."""

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
    chain: MemoryChain
    formed: list[FormedCertificate] = field(default_factory=list)
    formed_counts: Counter[int] = field(default_factory=Counter)  # CertificateFormed effects carried out per node
    evidence: list[tuple[int, Evidence]] = field(default_factory=list)
    crashed: list[tuple[int, float, int]] = field(default_factory=list)  # node, when, round it was transmitting
    rejections: Counter[str] = field(default_factory=Counter)  # by the topic validators, by reason
    archived: Counter[int] = field(default_factory=Counter)  # valid signed reports each node archived
    network_stats: Counter[str] = field(default_factory=Counter)
    gossip_stats: Counter[str] = field(default_factory=Counter)  # ReportGossip counters summed over nodes
    # with FROST, per node: its signing context, evidence archived, FROST inputs dropped by reason
    frost_contexts: dict[int, fr.FrostRoundContext] = field(default_factory=dict)
    frost_evidence: Counter[int] = field(default_factory=Counter)
    frost_rejected: dict[int, Counter[str]] = field(default_factory=dict)
    frost_shares: dict[int, Counter[str]] = field(default_factory=dict)  # own shares released, by path
    signers: dict[bytes, set[bytes]] = field(default_factory=dict)  # config digest -> signers any node archived
    installed: dict[int, list[tuple[float, int]]] = field(default_factory=dict)  # node -> (when, version) installed

    def ready_time(self, block: int) -> float:
        """Return the virtual time (since start) at which round ``block`` became ready."""
        return max(0.0, (block + DEPTH - GENESIS) * BLOCK_TIME)

    def honest_digest(self, block: int) -> bytes:
        """Return the digest of the honest report of round ``block``."""
        return compute_report_digest(DOMAIN, make_report(self.committee, block))


def head_at(elapsed: float) -> int:
    """Return the simulated chain head ``elapsed`` virtual seconds after the start."""
    return GENESIS + int(elapsed / BLOCK_TIME)


class MemoryArchive:
    """The report archive in memory (the SQLite archive has its own tests)."""

    def __init__(self) -> None:
        self.reports: dict[tuple[bytes, RoundKey, bytes], ArchivedReport] = {}

    def add(self, signed: SignedReport, digest: bytes, seen_at: float) -> bool:
        """Keep ``signed``; return False if it was already kept."""
        key = (signed.signer, signed.report.round_key, digest)
        if key in self.reports:
            return False
        self.reports[key] = ArchivedReport(signed, digest, seen_at)
        return True

    def get_by_signer(self, signer: bytes, key: RoundKey | None = None) -> list[ArchivedReport]:
        """Return what ``signer`` signed (for round ``key`` only when given)."""
        return [a for (s, k, _), a in self.reports.items() if s == signer and (key is None or k == key)]


class MemoryChainPort(ChainPort):
    """One member's view of :class:`MemoryChain`: transmissions land TX_DELAY later; evidence is recorded."""

    def __init__(self, sim: Simulation, index: int) -> None:
        self.sim = sim
        self.index = index

    async def transmit(self, certificate: QuorumCertificate, frost_signature: EvmSignature | None = None) -> None:
        """Land ``certificate`` (``attestFrost`` with ``frost_signature``) after TX_DELAY (or crash here, if the
        scenario crashes the first transmitter)."""
        if self.sim.scenario.crash_first_transmitter and not self.sim.result.crashed:
            # the scheduled transmitter dies before its transaction lands
            self.sim.crash(self.index, certificate.report.block_number)
            await trio.lowlevel.checkpoint()
            return
        await trio.sleep(TX_DELAY)
        self.sim.chain.submit(certificate, self.index, self.sim.elapsed(), frost_signature)

    async def submit_evidence(self, evidence: Evidence) -> None:
        """Record ``evidence`` as submitted by this member."""
        self.sim.result.evidence.append((self.index, evidence))
        await trio.lowlevel.checkpoint()

    async def read_latest_attested(self) -> AttestedRound | None:
        """Return the newest attestation on the simulated chain."""
        await trio.lowlevel.checkpoint()
        if not self.sim.chain.attestations:
            return None
        latest = self.sim.chain.attestations[-1]
        root = b""  # the simulated chain keeps digests only; the executor needs the root for logs
        version = next(c.version for c in self.sim.committees if c.digest() == latest.config_digest)
        return AttestedRound(latest.block, root, latest.digest, latest.config_digest, version, 0, 0,
                             latest.block_hash)  # fmt: skip

    async def read_ejected_members(self) -> tuple[bytes, int] | None:
        """Return the simulated oracle's ejections: none (the simulation slashes nobody)."""
        await trio.lowlevel.checkpoint()
        return self.sim.committee.digest(), 0


class SimMember:
    """One committee member: the production executor over an in-memory endpoint, driven by the simulated chain."""

    def __init__(self, sim: Simulation, index: int, behaviour: str, db_path: pathlib.Path) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self.sim = sim
        self.index = index
        self.behaviour = behaviour
        committee = sim.committee
        self.validator = ReportValidator(NETWORK, committee)
        self.endpoint: MemoryEndpoint = sim.net.create_endpoint(f"node-{index}", self.validator)
        self.reports = ReportGossip(self.endpoint, NETWORK)  # the production re-publication schedule
        self.protection = ProtectionDB(db_path)
        self.archive = MemoryArchive()
        self.metrics = create_node_metrics()
        self.services: list[DelayedRelease | EquivocatingRelease] = []
        release: SignatureRelease = ReleaseNow()
        if behaviour == "equivocate":
            equivocating = EquivocatingRelease(NETWORK, make_key(index), self.endpoint.publish)
            self.services.append(equivocating)
            release = equivocating
        elif behaviour == "withhold":
            release = WithholdingRelease()
        elif behaviour == "slow":
            slow = DelayedRelease(SLOW_DELAY)
            self.services.append(slow)
            release = slow
        chain: ChainPort = MemoryChainPort(sim, index)
        if behaviour != "honest":
            chain = SelfSparingChain(chain, committee.members[index])
        context = CollectorContext.create(DOMAIN, committee, committee.members[index], stage_delay=STAGE_DELAY,
                                          window_rounds=WINDOW_ROUNDS)  # fmt: skip
        self.db_path = db_path
        self.nonces: FrostNonceDB | None = None
        self.frost = None if sim.frost_keys is None else self._create_frost(committee, sim.frost_keys)
        self.installed: list[tuple[float, int]] = []  # (virtual time, committee version) of each installation
        self.executor = ProtocolExecutor(
            context, make_key(index), reports=self.reports, chain=chain, protection=self.protection,
            archive=self.archive, release=release, metrics=self.metrics, tick=TICK, wall_clock=trio.current_time,
            frost_service=self.frost,
        )  # fmt: skip
        self.cancel_scope = trio.CancelScope()

    def _create_frost(self, committee: CommitteeConfig, keys: dict[int, DkgResult]) -> FrostRoundService | None:
        me = committee.index_of(address_of(make_key(self.index)))
        if me is None:
            return None
        key = keys[me + 1]
        if self.nonces is None:
            self.nonces = FrostNonceDB(self.db_path)  # the nonce table of the protection file, as in the daemon
        signer_class = {"frost-withhold": WithholdingFrostSigner, "frost-tamper": TamperingFrostSigner}.get(
            self.behaviour, FrostSigner)  # fmt: skip
        signer = signer_class(
            key, self.nonces, random_bytes=random.Random(f"{self.sim.scenario.seed}/{self.index}").randbytes
        )
        frost_context = fr.FrostRoundContext.create(
            DOMAIN, committee, key.group_public_key, key.verification_shares, key.parameters.threshold, me + 1,
            stage_delay=STAGE_DELAY, window_rounds=WINDOW_ROUNDS,
        )  # fmt: skip
        return FrostRoundService(frost_context, NETWORK, make_key(self.index), signer, self.reports, self.metrics,
                                 evidence_dir=self.db_path.parent / f"evidence-{self.index}")  # fmt: skip

    async def install(self, committee: CommitteeConfig) -> None:
        """Install the chain's new committee version, as the daemon does when it notices one at a head."""
        address = address_of(make_key(self.index))
        me = address if committee.index_of(address) is not None else None
        keys = self.sim.frost_keys if committee.group_key is not None else None
        self.frost = None if keys is None else self._create_frost(committee, keys)
        self.validator.set_committee(committee)
        context = CollectorContext.create(DOMAIN, committee, me, stage_delay=STAGE_DELAY, window_rounds=WINDOW_ROUNDS)
        await self.executor.install_committee(context, self.frost)
        self.installed.append((self.sim.elapsed(), committee.version))

    async def run(self) -> None:
        """Run the member until the simulation ends or it crashes."""
        with self.cancel_scope:
            async with trio.open_nursery() as nursery:
                for service in self.services:
                    await nursery.start(service.run)
                await nursery.start(self.executor.run)
                await self._follow_chain(nursery)

    def crash(self) -> None:
        """Stop the member at once (its endpoint goes down with it)."""
        self.sim.net.crash(self.endpoint.peer_id)
        self.cancel_scope.cancel()

    async def _follow_chain(self, nursery: trio.Nursery) -> None:
        while True:
            if self._sees_new_version():
                await self.install(self.sim.committee)
            anchor = await self.executor.on_new_head(head_at(self.sim.elapsed()))
            if anchor is not None and self.executor.is_member:
                nursery.start_soon(self._compute, anchor)
            await trio.sleep(TICK)

    def _sees_new_version(self) -> bool:
        """Check if the chain holds a committee version this member has not installed and has noticed at this head
        (a member with a ``lag`` notices it that many seconds after the change)."""
        if self.sim.committee.digest() == self.executor.committee.digest():
            return False
        change = self.sim.scenario.reconfigure
        lag = 0.0 if change is None else change.lag.get(self.index, 0.0)
        return change is None or self.sim.elapsed() >= change.at + lag

    async def _compute(self, block: int) -> None:
        variant = 1 if self.behaviour == "wrong" else 0
        await self.executor.on_local_report(make_report(self.executor.committee, block, variant))


class WithholdingFrostSigner(FrostSigner):
    """Records its share's nonce as used, then keeps the share (the participant releases nothing)."""

    def sign(  # type: ignore[override]  # None: the participant releases nothing (ShareSigner allows it)
        self, round_key: RoundKey, message: bytes, commitments: Sequence[frost.SigningCommitment]
    ) -> frost.SignatureShare | None:
        super().sign(round_key, message, commitments)
        return None


class TamperingFrostSigner(FrostSigner):
    """Records the true share's nonce as used, then releases a share that does not verify."""

    def sign(
        self, round_key: RoundKey, message: bytes, commitments: Sequence[frost.SigningCommitment]
    ) -> frost.SignatureShare:
        share = super().sign(round_key, message, commitments)
        return frost.SignatureShare(share.identifier, (share.share + 1) % frost.ORDER)


class Simulation:
    """The members, the network and the chain of one scenario."""

    def __init__(self, scenario: Scenario, net: MemoryNetwork, tmp_path: pathlib.Path) -> None:
        self.scenario = scenario
        self.committee = make_committee(scenario.n)
        self.frost_keys: dict[int, DkgResult] | None = None
        if scenario.frost:  # a t-of-n group key, t the quorum, registered with the committee
            self.frost_keys = run_test_dkg(self.committee.quorum, scenario.n, f"sim/{scenario.seed}".encode())
            group_key = EvmGroupKey.from_compressed(self.frost_keys[1].group_public_key)
            self.committee = dataclasses.replace(self.committee, group_key=group_key)
        self.committees = [self.committee]  # every version installed, oldest first
        self.net = net
        self.chain = MemoryChain(self.committee)
        self.start = trio.current_time()
        self.result = SimResult(scenario, self.committee, self.start, self.chain)
        self.members = [
            SimMember(self, i, scenario.behaviours.get(i, "honest"), tmp_path / f"protection-{i}.db")
            for i in range(scenario.n)
        ]

    def elapsed(self) -> float:
        """Return the virtual seconds since the start."""
        return trio.current_time() - self.start

    async def reconfigure(self, change: Reconfiguration) -> None:
        """Install the next committee version on the chain at ``change.at`` (members notice it at their next head)."""
        await trio.sleep(change.at)
        first = self.committees[0]
        members = tuple(m for i, m in enumerate(first.members) if i not in change.drop)
        committee = dataclasses.replace(first, version=self.committee.version + 1, members=members,
                                        quorum=compute_byzantine_quorum(len(members)), group_key=None)  # fmt: skip
        if change.frost:
            # the new members' DKG, identifiers = index + 1 in the new committee (run by the nodes themselves in
            # production: docs/frost.md)
            keys = run_test_dkg(committee.quorum, len(members), f"sim/{self.scenario.seed}/v2".encode())
            self.frost_keys = keys
            committee = dataclasses.replace(committee, group_key=EvmGroupKey.from_compressed(keys[1].group_public_key))
        self.committee = committee
        self.committees.append(committee)
        self.chain.committee = committee

    def crash(self, index: int, block: int) -> None:
        """Crash member ``index`` while it transmits round ``block``."""
        self.result.crashed.append((index, self.elapsed(), block))
        self.members[index].crash()

    async def partition(self, partition: Partition) -> None:
        """Cut the network as ``partition`` says for its time span."""
        await trio.sleep(partition.start)
        self.net.partition([[f"node-{i}" for i in group] for group in partition.groups])
        await trio.sleep(partition.end - partition.start)
        self.net.heal()

    def collect(self) -> SimResult:
        """Return the result with what every member's collector and gossip layer hold at the end."""
        result = self.result
        for member in self.members:
            state = member.executor.state
            if state.forgotten_through >= GENESIS - DEPTH:
                raise AssertionError(f"node {member.index} forgot rounds: widen the window to see every certificate")
            for _, rnd in sorted(state.rounds.items()):
                if rnd.certificate is not None and rnd.certified_at is not None:
                    digest = compute_report_digest(DOMAIN, rnd.certificate.report)
                    formed = FormedCertificate(member.index, rnd.certified_at - self.start, rnd.certificate, digest)
                    result.formed.append(formed)
            formed_total = member.metrics.registry.get_sample_value("pmoracle_certificates_formed_total")
            result.formed_counts[member.index] = int(formed_total or 0)
            result.archived[member.index] = len(member.archive.reports)
            for signer, (config_digest, _), _ in member.archive.reports:
                result.signers.setdefault(config_digest, set()).add(signer)
            result.installed[member.index] = member.installed
            result.rejections.update(member.endpoint.rejections)
            result.gossip_stats.update(member.reports.stats)
            member.protection.close()
            if member.nonces is not None:
                member.nonces.close()
            if member.frost is not None:
                result.frost_contexts[member.index] = member.frost.context
                evidence = member.metrics.registry.get_sample_value("pmoracle_frost_evidence_total")
                result.frost_evidence[member.index] = int(evidence or 0)
                result.frost_rejected[member.index] = Counter(member.frost.participant.rejected)
                result.frost_shares[member.index] = Counter(member.frost.participant.shares)
        result.network_stats.update(self.net.stats)
        return result


async def run_simulation(scenario: Scenario, tmp_path: pathlib.Path) -> SimResult:
    """Run ``scenario`` for its duration of virtual time and return what happened."""
    async with MemoryNetwork(
        scenario.seed, loss=scenario.loss, min_delay=scenario.min_delay, max_delay=scenario.max_delay
    ) as net:
        sim = Simulation(scenario, net, tmp_path)
        with trio.move_on_after(scenario.duration):
            async with trio.open_nursery() as nursery:
                if scenario.partition is not None:
                    nursery.start_soon(sim.partition, scenario.partition)
                if scenario.reconfigure is not None:
                    nursery.start_soon(sim.reconfigure, scenario.reconfigure)
                for member in sim.members:
                    if member.behaviour != "silent":
                        nursery.start_soon(member.run)
        return sim.collect()
