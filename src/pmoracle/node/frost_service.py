"""The daemon's FROST signing in the round: a :class:`~pmoracle.node.frost_participant.FrostParticipant` fed by the
protocol executor (docs/frost.md, "Signing in the round").

A node runs it when the installed committee has a group key and the node holds its key share for that committee
(``keys.frost_share``, :mod:`pmoracle.node.frost_keys`). The executor then hands it, in order:

- the chain head (``on_head``) and each round it starts computing (``on_round_triggered``: the nonce commitments
  go out, unless they went out a round ahead);
- its own signed reports (``on_own_signed``, before the collector publishes them): a member of attempt 0's settled
  signing set signs its share of its own report's digest at once, so the share leaves with the report; and, once
  the report is out (``on_own_published``), the node commits to the next round, so those commitments are known
  everywhere before its next reports are signed;
- the collector's quorum certificates (``on_certificate``), held until this node's own report of the round is
  signed (a FROST share is only produced for a digest the node signed with ECDSA itself) or until half an attempt
  has passed (then the node still aggregates and transmits, and a refused share costs the set one attempt);
- the attested rounds (``on_attested``).

The executor's own ``Transmit`` stands aside: this machine decides the transmission (``attestFrost`` at the node's
schedule position, or the ECDSA certificate one stage later), which the executor posts. Received commitments and
shares come from :meth:`ReportGossip.frost_messages`; anything the machine drops is counted by reason
(``pmoracle_frost_rejected{reason}``), never raised. Evidence of an invalid share is archived as JSON in
``<data_dir>/frost/evidence/``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.frost_dkg import DkgResult
from pmoracle.consensus.report import SignedReport, compute_report_digest
from pmoracle.consensus.rounds import RoundKey
from pmoracle.errors import PmoracleError
from pmoracle.node.frost_participant import FrostParticipant, Transmission
from pmoracle.node.frost_signer import FrostSigner
from pmoracle.node.metrics import NodeMetrics
from pmoracle.p2p.codec import FrostCommitmentMessage, FrostShareMessage, NetworkId, encode_message
from pmoracle.p2p.reports import ReportGossip
from pmoracle.storage.frost_nonces import FrostNonceDB
from pmoracle.trio_types import TaskStatus

log = logging.getLogger("pmoracle.node")

TICK_SECONDS = 0.05  # the signing machine's clock: attempts are half a stage, transmissions whole stages

# Posts a certificate: with the FROST signature (attestFrost) or without (attest). The executor's.
TransmitCertificate = Callable[[QuorumCertificate, frost.Signature | None], Awaitable[None]]


def frost_evidence_dir(data_dir: Path) -> Path:
    """Return the directory of archived FROST evidence inside ``data_dir``."""
    return Path(data_dir) / "frost" / "evidence"


def encode_frost_evidence(network: NetworkId, evidence: fr.InvalidFrostShare) -> dict[str, object]:
    """Return ``evidence`` as JSON: the signed share and the set's signed commitments as their gossip encodings
    (``p2p.codec``), so that anyone re-checks it with :func:`~pmoracle.consensus.frost_round.is_invalid_frost_share`.
    """
    share = evidence.share
    return {
        "kind": "invalid-frost-share",
        "block": share.block_number,
        "attempt": share.attempt,
        "signer": "0x" + share.signer.hex(),
        "identifier": share.share.identifier,
        "share": "0x" + encode_message(FrostShareMessage(network, share)).hex(),
        "commitments": ["0x" + encode_message(FrostCommitmentMessage(network, c)).hex() for c in evidence.commitments],
    }


class FrostRoundService:
    """One member's FROST signing beside the protocol executor: participant, share signer, gossip, evidence."""

    def __init__(
        self,
        context: fr.FrostRoundContext,
        network: NetworkId,
        signing_key: bytes,
        signer: FrostSigner,
        reports: ReportGossip,
        metrics: NodeMetrics,
        *,
        evidence_dir: Path,
        tick: float = TICK_SECONDS,
    ) -> None:
        """Args:
        context: the member's signing context (``me`` set; committee with its group key).
        network: the gossip network messages are stamped with.
        signing_key: the member's report-signing key (signs the envelopes).
        signer: the member's share signer (its key share and the nonce store).
        reports: the node's signed-report gossip (FROST messages travel on it).
        metrics: the node's metrics.
        evidence_dir: where evidence of invalid shares is written.
        tick: seconds between two ticks of the signing machine.
        """
        self.context = context
        self.network = network
        self.reports = reports
        self.metrics = metrics
        self.evidence_dir = evidence_dir
        self.tick = tick
        self.signer = signer
        self.participant = FrostParticipant(
            context, network, signing_key, signer, publish=reports.publish_frost, transmit=self._transmit,
            archive=self._archive, on_signature=self._on_signature,
        )  # fmt: skip
        self.transmit_certificate: TransmitCertificate | None = None  # set by the executor
        self._held: dict[int, tuple[QuorumCertificate, float]] = {}  # block -> certificate waiting for own report
        self._signed: set[RoundKey] = set()  # rounds whose own report this node signed
        self._counted: dict[str, int] = {}
        self._counted_shares: dict[str, int] = {}

    @property
    def member_identifier(self) -> int:
        """Return this member's FROST identifier (committee index + 1)."""
        return self.signer.identifier

    # --- the service --------------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Feed received FROST messages and ticks to the participant until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ticker)
            task_status.started()
            async for message in self.reports.frost_messages():
                await self._guarded(self.participant.receive(message))

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick)
            await self._release_held()
            await self._guarded(self.participant.tick())

    async def _guarded(self, step: Awaitable[None]) -> None:
        """Run one input of the machine; an error is logged and counted, never raised (the node keeps running)."""
        try:
            await step
        except PmoracleError as exc:
            log.error("FROST signing: input dropped: %s", exc)
            self.participant.rejected["error"] += 1
        self._export_counts()

    def _export_counts(self) -> None:
        for reason, count in self.participant.rejected.items():
            delta = count - self._counted.get(reason, 0)
            if delta > 0:
                self.metrics.frost_rejected.labels(reason=reason).inc(delta)
                self._counted[reason] = count
        for path, count in self.participant.shares.items():
            delta = count - self._counted_shares.get(path, 0)
            if delta > 0:
                self.metrics.frost_shares.labels(path=path).inc(delta)
                self._counted_shares[path] = count

    # --- inputs from the executor -------------------------------------------------------------------------------

    async def on_head(self, head: int) -> None:
        """Follow the final-depth head the collector follows."""
        await self._guarded(self.participant.new_head(head))

    async def on_round_triggered(self, block: int) -> None:
        """Commit to round ``block`` as this node starts computing it, unless it committed ahead (below)."""
        await self._guarded(self.participant.open_round(block))

    async def on_certificate(self, certificate: QuorumCertificate) -> None:
        """Start signing the collector's certificate once this node's own report of the round is signed."""
        if certificate.report.round_key in self._signed:
            await self._guarded(self.participant.certify(certificate))
            return
        block = certificate.report.block_number
        held = self._held.get(block)
        self._held[block] = (certificate, held[1] if held is not None else trio.current_time())

    async def on_own_signed(self, signed: SignedReport) -> None:
        """Note that this node signed its report of a round (recorded by slashing protection first; the collector
        publishes it next): a member of the first signing set signs its share now, so it leaves with the report."""
        key = signed.report.round_key
        self._signed.add(key)
        block = signed.report.block_number
        digest = compute_report_digest(self.context.domain, signed.report)
        await self._guarded(self.participant.report_signed(block, digest))
        held = self._held.pop(block, None)
        if held is not None:
            await self._guarded(self.participant.certify(held[0]))

    async def on_own_published(self, signed: SignedReport) -> None:
        """Commit to the round after ``signed``'s, now that its report and share are out: the commitments are then
        known everywhere when the members sign their next reports, so the first set signs with them."""
        next_block = signed.report.block_number + self.context.committee.round_period
        await self._guarded(self.participant.open_round(next_block))

    async def on_attested(self, key: RoundKey) -> None:
        """Close ``key`` and older rounds; their secret nonces are deleted."""
        await self._guarded(self.participant.attested(key))
        block = key[1]
        self._held = {b: h for b, h in self._held.items() if b > block}
        self._signed = {k for k in self._signed if k[1] > block}

    async def _release_held(self) -> None:
        """Certify the certificates held longer than half an attempt: the node aggregates and transmits without
        its own share (its own report is late, or differs)."""
        now = trio.current_time()
        for block, (certificate, since) in sorted(self._held.items()):
            if now - since >= self.context.attempt_delay / 2:
                del self._held[block]
                await self._guarded(self.participant.certify(certificate))

    # --- effects ------------------------------------------------------------------------------------------------

    async def _transmit(self, effect: Transmission) -> None:
        if self.transmit_certificate is None:
            return
        signature = effect.signature if isinstance(effect, fr.TransmitFrost) else None
        await self.transmit_certificate(effect.certificate, signature)

    def _on_signature(self, formed: fr.FrostSignatureFormed) -> None:
        self.metrics.frost_signatures.inc()
        log.info("round %d: FROST signature aggregated (attempt %d, signers %s)", formed.round_key[1], formed.attempt,
                 fr.compute_bitmap_identifiers(formed.signers))  # fmt: skip

    def _archive(self, evidence: fr.InvalidFrostShare) -> None:
        self.metrics.frost_evidence.inc()
        share = evidence.share
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        path = self.evidence_dir / f"{share.block_number}-{share.attempt}-{share.share.identifier}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # one piece of evidence per member, round and attempt is enough
        with os.fdopen(fd, "w") as out:
            json.dump(encode_frost_evidence(self.network, evidence), out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())


def create_frost_service(
    context: fr.FrostRoundContext,
    network: NetworkId,
    signing_key: bytes,
    key: DkgResult,
    nonces: FrostNonceDB,
    reports: ReportGossip,
    metrics: NodeMetrics,
    data_dir: Path,
) -> FrostRoundService:
    """Return the service for member ``key.identifier`` with its nonces in ``nonces`` (the protection file)."""
    return FrostRoundService(context, network, signing_key, FrostSigner(key, nonces), reports, metrics,
                             evidence_dir=frost_evidence_dir(data_dir))  # fmt: skip
