"""One member's FROST signing in the round: the pure signing machine (``consensus/frost_round.py``) behind a thin
shell that carries out its effects through narrow interfaces.

- the share signer (production: :class:`~pmoracle.node.frost_signer.FrostSigner`) issues commitments recorded as
  issued and releases a share only after its nonce is recorded used;
- ``publish`` gossips signed commitments and shares (production: :meth:`ReportGossip.publish_frost`);
- ``transmit`` posts the FROST signature or the ECDSA fallback (production: the chain port);
- ``archive`` keeps the evidence of invalid shares.

Messages are signed with the member's report-signing key. Time is trio's clock. The protocol simulation
(tests/unit/consensus/test_frost_round_simulation.py) and the peer demo over real libp2p
(:mod:`pmoracle.testing.peer_demo`, ``--frost``) run this class, and so does the daemon, through
:mod:`pmoracle.node.frost_service` (docs/frost.md).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, assert_never

import trio

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.rounds import RoundKey
from pmoracle.errors import InputError, PmoracleError
from pmoracle.p2p.codec import FrostCommitmentMessage, FrostShareMessage, NetworkId

log = logging.getLogger("pmoracle.node")

FrostMessage = FrostCommitmentMessage | FrostShareMessage
Transmission = fr.TransmitFrost | fr.TransmitEcdsa


class ShareSigner(Protocol):
    """The nonce discipline (production: :class:`~pmoracle.node.frost_signer.FrostSigner`)."""

    def commit(self, round_key: RoundKey) -> frost.SigningCommitment:
        """Return a fresh commitment bound to ``round_key``, recorded as issued."""
        ...

    def sign(
        self, round_key: RoundKey, message: bytes, commitments: Sequence[frost.SigningCommitment]
    ) -> frost.SignatureShare | None:
        """Return the share after recording its nonce as used (None: nothing to release)."""
        ...

    def forget_through(self, block_number: int) -> int:
        """Delete the secret nonces of rounds at or below ``block_number``."""
        ...


class FrostParticipant:
    """Feeds one member's signing machine and carries out its effects."""

    def __init__(
        self,
        context: fr.FrostRoundContext,
        network: NetworkId,
        signing_key: bytes,
        signer: ShareSigner,
        *,
        publish: Callable[[FrostMessage], Awaitable[None]],
        transmit: Callable[[Transmission], Awaitable[None]] | None = None,
        archive: Callable[[fr.InvalidFrostShare], None] | None = None,
        on_signature: Callable[[fr.FrostSignatureFormed], None] | None = None,
        head: int = 0,
    ) -> None:
        """Args:
        context: the member's signing context (``me`` set: a watcher has nothing to sign).
        network: the gossip network messages are stamped with.
        signing_key: the report-signing key of ``context.me`` (signs the envelopes).
        signer: the share signer holding the member's key share and nonces.
        publish: gossips one signed commitment or share.
        transmit: posts a FROST signature or the ECDSA certificate (None: this member never transmits).
        archive: keeps evidence of an invalid share (None: logged only).
        on_signature: told when the shares of a set aggregate (metrics, latency).
        head: the chain head to start at.

        Errors:
            InputError: ``context.me`` is None.
        """
        if context.me is None:
            raise InputError("context.me", "a FROST participant needs the member's identifier")
        self.network = network
        self.signing_key = signing_key
        self.signer = signer
        self.publish = publish
        self.transmit = transmit
        self.archive = archive
        self.on_signature = on_signature
        self.state = fr.init_frost_state(context, head)
        self.rejected: Counter[str] = Counter()  # dropped inputs by reason, and refused signing requests
        self.shares: Counter[str] = Counter()  # own shares released: "report" (with the report) or "certificate"

    # --- inputs -------------------------------------------------------------------------------------------------

    async def open_round(self, block_number: int) -> None:
        """Commit to round ``block_number`` (now, or one period ahead of the head)."""
        await self.apply(fr.on_round_opened(self.state, block_number, trio.current_time()))

    async def report_signed(self, block_number: int, digest: bytes) -> None:
        """Note this member's own report of round ``block_number`` (recorded by slashing protection; the caller
        publishes it next): a member of attempt 0's settled set signs and publishes its share of ``digest`` now, so
        the share leaves with the report (docs/frost.md)."""
        await self.apply(fr.on_own_report(self.state, block_number, digest, trio.current_time()))

    async def certify(self, certificate: QuorumCertificate) -> None:
        """Start signing the collector's quorum certificate."""
        await self.apply(fr.on_certificate(self.state, certificate, trio.current_time()))

    async def receive(self, message: FrostMessage) -> None:
        """Feed a commitment or share from gossip (the topic validator checked its envelope)."""
        if message.network != self.network:
            self.rejected["wrong_network"] += 1
            return
        if isinstance(message, FrostCommitmentMessage):
            await self.apply(fr.on_commitment(self.state, message.signed, trio.current_time()))
        else:
            await self.apply(fr.on_share(self.state, message.signed, trio.current_time()))

    async def tick(self) -> None:
        """Move attempts and transmissions on."""
        await self.apply(fr.on_tick(self.state, trio.current_time()))

    async def new_head(self, head: int) -> None:
        """Follow a new chain head (rounds that fell out of the window are forgotten)."""
        await self.apply(fr.on_new_head(self.state, head))

    async def attested(self, round_key: RoundKey) -> None:
        """Close ``round_key`` and older rounds and delete their secret nonces."""
        await self.apply(fr.on_round_attested(self.state, round_key))
        self.signer.forget_through(round_key[1])

    # --- effects ------------------------------------------------------------------------------------------------

    async def apply(self, transition: fr.Transition) -> None:
        """Adopt the machine's new state and carry out its effects in order."""
        self.state, effects = transition
        for effect in effects:
            await self.execute(effect)

    async def execute(self, effect: fr.Effect) -> None:
        """Carry out one effect of the signing machine."""
        domain = self.state.context.domain
        match effect:
            case fr.IssueCommitments(round_key=round_key, attempts=attempts):
                for attempt in range(attempts):
                    commitment = self.signer.commit(round_key)  # recorded as issued before it leaves
                    signed = fr.sign_frost_commitment(domain, round_key, attempt, commitment, self.signing_key)
                    await self.apply(fr.on_own_commitment(self.state, signed, trio.current_time()))
            case fr.BroadcastCommitment(signed=signed):
                await self.publish(FrostCommitmentMessage(self.network, signed))
            case fr.SignShare():
                await self._sign(effect)
            case fr.BroadcastShare(signed=share):
                await self.publish(FrostShareMessage(self.network, share))
            case fr.ArchiveFrostEvidence(evidence=evidence):
                bad = evidence.share
                log.warning("round %d: invalid FROST share from 0x%s (attempt %d), evidence archived",
                            bad.block_number, bad.signer.hex(), bad.attempt)  # fmt: skip
                if self.archive is not None:
                    self.archive(evidence)
            case fr.FrostSignatureFormed() as formed:
                if self.on_signature is not None:
                    self.on_signature(formed)
            case fr.TransmitFrost() | fr.TransmitEcdsa():
                if self.transmit is not None:
                    await self.transmit(effect)
            case fr.Rejected(reason=reason):
                self.rejected[reason.value] += 1
            case _:
                assert_never(effect)

    async def _sign(self, request: fr.SignShare) -> None:
        try:
            # the signer records the nonce as used (fsync'd) before it returns the share
            share = self.signer.sign(request.round_key, request.message, request.commitments)
        except PmoracleError as exc:  # FrostNonceError, NonceReuseError, NotSignedReportError, FrostError
            log.error("round %d: refusing to sign FROST attempt %d: %s", request.round_key[1], request.attempt, exc)
            self.rejected["sign_refused"] += 1
            return
        if share is None:
            return
        signed = fr.sign_frost_share(
            self.state.context.domain, request.round_key, request.attempt, request.message, request.signers, share,
            self.signing_key,
        )  # fmt: skip
        self.shares["report" if request.with_report else "certificate"] += 1
        await self.apply(fr.on_own_share(self.state, signed, trio.current_time()))
