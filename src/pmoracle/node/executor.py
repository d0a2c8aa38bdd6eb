"""The protocol executor: feeds the pure collector its inputs and carries out the effects it returns.

It reaches the world only through interfaces (:mod:`pmoracle.node.abc`): :class:`~pmoracle.p2p.reports.ReportGossip`
over a :class:`~pmoracle.p2p.abc.GossipEndpoint`, a :class:`~pmoracle.node.abc.ChainPort`, the slashing-protection
store, the report archive, a :class:`~pmoracle.node.abc.SignatureRelease`, and trio's clock. The daemon
(:class:`~pmoracle.node.daemon.SolverNode`) runs it over libp2p and the oracle contract; the protocol simulation
(tests/unit/consensus/simulation.py) runs this same class over the in-memory network and an in-memory chain.

Inputs, each through one collector handler::

    on_new_head(head)        -> collector.on_new_head, attested-round poll, the round to compute (if any)
    on_local_report(report)  -> collector.on_local_report, catch-up request for the round
    gossip (ReportGossip)    -> collector.on_signed_report
    tick (every ``tick`` s)  -> collector.on_tick (the transmission schedule)
    attested round (chain)   -> collector.on_round_attested

With a FROST signing service (a committee with a group key and this node's key share, node/frost_service.py), the
executor also hands it the head, each round it starts, the collector's certificates, its own signed reports and the
attested rounds; the collector's ``Transmit`` then stands aside and the service decides what is posted
(``attestFrost``, or the ECDSA certificate one stage later).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, assert_never

import trio

from pmoracle.consensus import collector as col
from pmoracle.consensus import frost
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.frost_evm import EvmSignature
from pmoracle.consensus.report import Report, SignedReport, sign_report
from pmoracle.consensus.rounds import compute_latest_ready_anchor, compute_round_key
from pmoracle.errors import InputError
from pmoracle.node.abc import (
    AttestedRound,
    ChainPort,
    ProtectionStore,
    ReleaseNow,
    SignatureRelease,
    SignedReportArchive,
)
from pmoracle.node.metrics import NodeMetrics, create_node_metrics
from pmoracle.p2p.reports import ReportGossip
from pmoracle.storage.protection_db import SlashingProtectionError
from pmoracle.trio_types import TaskStatus

if TYPE_CHECKING:
    from pmoracle.node.frost_service import FrostRoundService

log = logging.getLogger("pmoracle.node")

TICK_SECONDS = 0.2
TRIGGERS_KEPT_ROUNDS = 64  # rounds whose trigger time is kept for the round-latency histogram


class ProtocolExecutor:
    """One committee member's protocol: the collector state, its inputs and the execution of its effects."""

    def __init__(
        self,
        context: col.CollectorContext,
        signing_key: bytes,
        *,
        reports: ReportGossip,
        chain: ChainPort,
        protection: ProtectionStore,
        archive: SignedReportArchive,
        release: SignatureRelease | None = None,
        metrics: NodeMetrics | None = None,
        resume_block: int | None = None,
        tick: float = TICK_SECONDS,
        wall_clock: Callable[[], float] = time.time,
        frost_service: FrostRoundService | None = None,
    ) -> None:
        """Args:
        context: the collector's context (domain, committee, own signing address, timing); ``me`` must be set.
        signing_key: the report-signing key of ``context.me``.
        reports: the signed-report gossip layer (dedupe, re-publication with back-off, catch-up).
        chain: transmission of certificates and evidence, the newest attested round.
        protection: the durable slashing-protection store, written before any signature exists.
        archive: where every valid signed report seen is kept for disputes.
        release: what happens to a fresh signature (production: :class:`ReleaseNow`).
        metrics: counters and gauges (a private registry when None).
        resume_block: a round processed before a restart, re-entered with its archived own report at the first head.
        tick: seconds between two ``on_tick`` inputs.
        wall_clock: the wall-clock time stamped on archived reports.
        frost_service: FROST signing in the round (None: ECDSA certificates only, the collector's schedule).

        Errors:
            InputError: ``context.me`` is None (a watcher has no key, so nothing to execute).
        """
        if context.me is None:
            raise InputError("context.me", "a protocol executor needs the node's signing address")
        self.me: bytes = context.me
        self.committee = context.committee
        self.domain = context.domain
        self.state = col.init_collector_state(context, head=0)
        self.signing_key = signing_key
        self.reports = reports
        self.chain = chain
        self.protection = protection
        self.archive = archive
        self.release = release or ReleaseNow()
        self.metrics = metrics or create_node_metrics()
        self.tick = tick
        self.wall_clock = wall_clock
        self.head: int | None = None
        self.last_attested: AttestedRound | None = None
        self.last_computed: int | None = None
        self._resume_block = resume_block
        self._transmitting: set[int] = set()
        self._triggered_at: dict[int, float] = {}  # anchor block -> when it became ready here (round latency)
        self._nursery: trio.Nursery | None = None
        self._frost_scope: trio.CancelScope | None = None
        self.frost = frost_service
        if frost_service is not None:
            frost_service.transmit_certificate = self._transmit_frost_decision

    # --- the service --------------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run gossip, the consumer of received reports and the ticker until cancelled; ready when gossip is."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.reports.run)
            if self.frost is not None:
                await nursery.start(self._run_frost, self.frost)
            nursery.start_soon(self._consume_reports)
            nursery.start_soon(self._tick)
            task_status.started()

    async def _run_frost(self, service: FrostRoundService, *, task_status: TaskStatus[None]) -> None:
        with trio.CancelScope() as scope:  # cancelled alone when another committee is installed
            self._frost_scope = scope
            await service.run(task_status=task_status)

    async def install_committee(self, context: col.CollectorContext, frost_service: FrostRoundService | None) -> None:
        """Switch to another committee configuration at a round boundary: the collector starts afresh under its
        digest (the rounds of the old configuration can no longer be attested), and the FROST service of the old
        one stops and ``frost_service`` (None: ECDSA certificates only) starts.

        Args:
            context: the collector's context of the new configuration; ``context.me`` None when this node is not a
                member of it (it then collects without signing).
            frost_service: FROST signing under the new configuration's group key, or None.
        """
        self.committee = context.committee
        self.state = col.init_collector_state(context, head=self.head or 0)
        self._resume_block = None  # a round signed before a restart belongs to the old configuration
        if self._frost_scope is not None:
            self._frost_scope.cancel()
            self._frost_scope = None
        self.frost = frost_service
        if frost_service is not None:
            frost_service.transmit_certificate = self._transmit_frost_decision
            await self._nursery_or_raise().start(self._run_frost, frost_service)
        if self.head is not None:  # the collector's window, from the current head
            await self.apply(col.on_new_head(self.state, self.head))
            if frost_service is not None:
                await frost_service.on_head(self.head)
                if self.last_computed is not None and self.is_member:  # a round triggered just before the change
                    await frost_service.on_round_triggered(self.last_computed)

    @property
    def is_member(self) -> bool:
        """Check if this node signs under the installed configuration (False: it collects only)."""
        return self.state.context.me is not None

    async def _consume_reports(self) -> None:
        async for signed in self.reports.reports():
            self.metrics.gossip_messages_in.inc()
            await self.apply(col.on_signed_report(self.state, signed, trio.current_time()))

    async def _tick(self) -> None:
        while True:
            await trio.sleep(self.tick)
            await self.apply(col.on_tick(self.state, trio.current_time()))

    # --- inputs -------------------------------------------------------------------------------------------------

    async def on_new_head(self, head: int) -> int | None:
        """Follow a new final-depth head: window, resume, attested round; return the anchor to compute, if any.

        Returns:
            The newest ready anchor block when it is new here and not attested yet; None otherwise.
        """
        self.head = head
        await self.apply(col.on_new_head(self.state, head))
        if self.frost is not None:
            await self.frost.on_head(head)
        if self._resume_block is not None:
            block, self._resume_block = self._resume_block, None
            await self._resume(block)
        await self.poll_attested()
        await self.poll_ejected()
        anchor = compute_latest_ready_anchor(head, self.committee)
        if anchor is None or (self.last_computed is not None and anchor <= self.last_computed):
            return None
        if self.last_attested is not None and anchor <= self.last_attested.block_number:
            return None
        self.last_computed = anchor
        self._triggered_at[anchor] = trio.current_time()
        for old in [b for b in self._triggered_at if b < anchor - TRIGGERS_KEPT_ROUNDS * self.committee.round_period]:
            del self._triggered_at[old]
        if self.frost is not None:  # nonce commitments go out while the round computes
            await self.frost.on_round_triggered(anchor)
        return anchor

    async def on_local_report(self, report: Report) -> None:
        """Offer the report this node computed for its round (signed if slashing protection allows)."""
        await self.apply(col.on_local_report(self.state, report, trio.current_time()))
        # ask for the reports we may have missed (a restarted or late node)
        await self.reports.request_catch_up(report.round_key)

    async def poll_attested(self) -> None:
        """Read the newest attested round and, when it is new, close it and older rounds in the collector."""
        attested = await self.chain.read_latest_attested()
        if attested is None or attested.block_number == 0:
            return
        if self.last_attested is not None and attested.block_number <= self.last_attested.block_number:
            return
        block = attested.block_number
        self.last_attested = attested
        self.metrics.rounds_attested.inc()
        self.metrics.last_attested_round.set(block)
        triggered = self._triggered_at.pop(block, None)
        if triggered is not None:  # anchor block final here -> attestation seen on chain
            self.metrics.round_latency.observe(trio.current_time() - triggered)
        log.info("round %d attested on chain (root %s)", block, attested.accounts_root.hex()[:16])
        if attested.config_digest != self.committee.digest():
            return  # another configuration's round: not ours to close
        key = compute_round_key(attested.config_digest, block)
        self.reports.mark_attested(key)
        await self.apply(col.on_round_attested(self.state, key, attested.report_digest, attested.block_hash))
        if self.frost is not None:
            await self.frost.on_attested(key)

    async def poll_ejected(self) -> None:
        """Read the members the oracle refuses (slashed below the minimum stake) and keep them out of certificates."""
        read = await self.chain.read_ejected_members()
        if read is None or read[0] != self.committee.digest():
            return  # unreadable now, or another configuration's members
        bitmap = read[1]
        ejected = frozenset(m for i, m in enumerate(self.committee.members) if bitmap >> i & 1)
        if ejected != self.state.ejected:
            log.warning("members ejected on chain (their signatures are refused): %s",
                        ", ".join("0x" + m.hex() for m in sorted(ejected)))  # fmt: skip
            await self.apply(col.on_members_ejected(self.state, ejected, trio.current_time()))

    async def _resume(self, block: int) -> None:
        """Re-enter round ``block`` (processed before a restart) with the report this node signed for it."""
        self.last_computed = max(self.last_computed or 0, block)
        own = self.archive.get_by_signer(self.me, compute_round_key(self.committee.digest(), block))
        if len(own) != 1:  # nothing signed (or, impossibly, two digests: protection would refuse the second)
            return
        log.info("round %d: resuming with the report signed before the restart", block)
        # the collector asks to sign it again; the protection store allows only this same digest
        await self.apply(col.on_local_report(self.state, own[0].signed.report, trio.current_time()))

    # --- the collector and its effects --------------------------------------------------------------------------

    async def apply(self, transition: col.Transition) -> None:
        """Adopt the collector's new state and carry out its effects in order."""
        self.state, effects = transition
        for effect in effects:
            await self.execute(effect)

    async def execute(self, effect: col.Effect) -> None:
        """Carry out one effect of the collector."""
        match effect:
            case col.SignReport():
                await self._sign(effect)
            case col.Broadcast(signed=signed):
                # once per own signed report: ReportGossip re-publishes it with back-off until the round is attested
                await self.reports.publish_own(signed)
                self.metrics.gossip_messages_out.inc()
            case col.ArchiveSignedReport(signed=signed, digest=digest):
                self.archive.add(signed, digest, seen_at=self.wall_clock())
            case col.CertificateFormed(certificate=certificate, digest=digest):
                self.metrics.certificates_formed.inc()
                log.info("round %d: quorum certificate formed (digest %s)", certificate.report.block_number,
                         digest.hex()[:16])  # fmt: skip
                if self.frost is not None:
                    await self.frost.on_certificate(certificate)
            case col.Transmit(certificate=certificate):
                if self.frost is None:  # with FROST, the signing machine decides what is posted and when
                    self._spawn_transmit(certificate)
            case col.SubmitEvidence(evidence=evidence):
                self._nursery_or_raise().start_soon(self.chain.submit_evidence, evidence)
            case col.Rejected(reason=reason):
                self.metrics.gossip_messages_rejected.labels(reason=reason.value).inc()
            case _:
                assert_never(effect)

    async def _sign(self, effect: col.SignReport) -> None:
        # Slashing protection first: the (round key -> digest) record is durable before a signature exists.
        try:
            # On the event loop: one fsync'd SQLite write per round (a few ms), and the connection stays in its thread.
            self.protection.record_and_check(effect.round_key, effect.digest)
        except SlashingProtectionError as exc:
            log.error("refusing to sign round %d: %s", effect.round_key[1], exc)
            return
        await self.release.release(sign_report(self.domain, effect.report, self.signing_key), self.deliver_own)

    async def deliver_own(self, signed: SignedReport) -> None:
        """Hand this node's signature (already recorded by slashing protection) to the collector for gossip."""
        self.metrics.rounds_signed.inc()
        log.info("round %d: signed report root %s (%d accounts)", signed.report.block_number,
                 signed.report.accounts_root.hex()[:16], signed.report.account_count)  # fmt: skip
        # before the collector: the FROST share (if this node is in the first signing set) goes out just ahead of
        # the report, and a certificate this signature completes finds it noted
        if self.frost is not None:
            await self.frost.on_own_signed(signed)
        await self.apply(col.on_own_signed_report(self.state, signed, trio.current_time()))
        if self.frost is not None:  # behind the report: the next round's nonce commitments
            await self.frost.on_own_published(signed)

    async def _transmit_frost_decision(self, certificate: QuorumCertificate, signature: frost.Signature | None) -> None:
        """Post what the FROST signing machine decided: ``attestFrost`` with ``signature``, or ``attest``."""
        self._spawn_transmit(certificate, None if signature is None else EvmSignature.from_signature(signature))

    def _spawn_transmit(self, certificate: QuorumCertificate, frost_signature: EvmSignature | None = None) -> None:
        block = certificate.report.block_number
        if block in self._transmitting or (self.last_attested is not None and block <= self.last_attested.block_number):
            return
        self._transmitting.add(block)
        self._nursery_or_raise().start_soon(self._transmit, certificate, frost_signature)

    async def _transmit(self, certificate: QuorumCertificate, frost_signature: EvmSignature | None = None) -> None:
        try:
            if frost_signature is None:
                await self.chain.transmit(certificate)
            else:
                await self.chain.transmit(certificate, frost_signature)
        finally:
            self._transmitting.discard(certificate.report.block_number)

    def _nursery_or_raise(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the protocol executor is not running")
        return self._nursery
