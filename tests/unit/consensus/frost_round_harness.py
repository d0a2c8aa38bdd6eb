"""An in-process harness for the FROST signing machine: every member's pure state, effects carried out at once
(nonces in memory), messages delivered in an order the test chooses. For unit and property tests; the simulation
over the in-memory network with the real nonce store is ``test_frost_round_simulation.py``."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.certificate import QuorumCertificate, build_certificate
from pmoracle.consensus.report import Report, compute_report_digest, sign_report
from pmoracle.testing.frost import FrostTestCommittee

BLOCK = 100
HEAD = 102
STAGE = 2.0

# honest; withhold (commits, never releases a share); bad (releases a share that does not verify);
# silent (neither commits nor signs); minority (its own report has another digest, the only one it signs)
BEHAVIOURS = ("honest", "withhold", "bad", "silent", "minority")


def make_certificate(
    fc: FrostTestCommittee, block: int = BLOCK, signers: tuple[int, ...] | None = None
) -> QuorumCertificate:
    """Return the honest report of ``block`` certified by ``signers`` (committee indices; default the first q)."""
    config = fc.committee.config
    report = fc.committee.report(block)
    chosen = signers if signers is not None else tuple(range(config.quorum))
    signatures = {
        config.members[i]: sign_report(fc.committee.network.domain, report, fc.committee.signing_keys[i]).signature
        for i in chosen
    }
    return build_certificate(config, report, signatures)


def report_digest(fc: FrostTestCommittee, report: Report) -> bytes:
    """Return the EIP-712 digest of ``report`` on the committee's network."""
    return compute_report_digest(fc.committee.network.domain, report)


@dataclass
class Member:
    """One member: its machine, its nonces (in memory), what it asked to sign and what it saw."""

    identifier: int
    behaviour: str
    state: fr.FrostState
    nonces: dict[tuple[bytes, bytes], frost.SigningNonces] = field(default_factory=dict)
    own_commitments: dict[tuple[bytes, bytes], int] = field(default_factory=dict)  # (D, E) -> attempt
    signed_with: dict[tuple[bytes, bytes], tuple[bytes, tuple[frost.SigningCommitment, ...]]] = field(
        default_factory=dict
    )
    sign_requests: list[fr.SignShare] = field(default_factory=list)
    reported: bytes | None = None  # the digest of its own ECDSA report (the nonce store signs only that one)
    evidence: list[fr.InvalidFrostShare] = field(default_factory=list)
    signatures: list[fr.FrostSignatureFormed] = field(default_factory=list)
    transmissions: list[tuple[float, fr.TransmitFrost | fr.TransmitEcdsa]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


Outgoing = fr.SignedFrostCommitment | fr.SignedFrostShare


class Cluster:
    """n members of a FROST test committee driven in one process."""

    def __init__(
        self,
        fc: FrostTestCommittee,
        behaviours: dict[int, str] | None = None,
        *,
        seed: int = 0,
        stage_delay: float = STAGE,
        watcher: bool = False,
    ) -> None:
        self.fc = fc
        self.random = random.Random(seed)
        behaviours = behaviours or {}
        n = fc.committee.config.n
        self.members = {
            i: Member(i, behaviours.get(i, "honest"), fr.init_frost_state(fc.context(i, stage_delay=stage_delay), HEAD))
            for i in range(1, n + 1)
        }
        self.watcher = (
            Member(0, "honest", fr.init_frost_state(fc.context(None, stage_delay=stage_delay), HEAD))
            if watcher
            else None
        )
        self.in_flight: list[tuple[int, Outgoing]] = []  # (recipient, message)

    def everyone(self) -> list[Member]:
        """Return the members (and the watcher, if any)."""
        return [*self.members.values(), *([self.watcher] if self.watcher is not None else [])]

    # --- inputs ------------------------------------------------------------------------------------------------

    def open_round(self, block: int = BLOCK, now: float = 0.0) -> None:
        """Every non-silent member opens the round (issues and broadcasts its commitments)."""
        for member in self.members.values():
            if member.behaviour != "silent":
                self.apply(member, fr.on_round_opened(member.state, block, now), now)

    def certify(self, member: Member, certificate: QuorumCertificate, now: float) -> None:
        """Give ``member`` the collector's certificate at ``now``."""
        self.apply(member, fr.on_certificate(member.state, certificate, now), now)

    def report(self, member: Member, digest: bytes, now: float, block: int = BLOCK) -> None:
        """``member`` signs its own ECDSA report of ``block`` with ``digest`` at ``now`` (an early share may follow)."""
        member.reported = digest
        self.apply(member, fr.on_own_report(member.state, block, digest, now), now)

    def tick(self, now: float) -> None:
        """Tick every member at ``now``."""
        for member in self.everyone():
            self.apply(member, fr.on_tick(member.state, now), now)

    def deliver_one(self, index: int, now: float) -> None:
        """Deliver the in-flight message at ``index``."""
        recipient, message = self.in_flight.pop(index)
        member = self.watcher if recipient == 0 and self.watcher is not None else self.members[recipient]
        if isinstance(message, fr.SignedFrostCommitment):
            self.apply(member, fr.on_commitment(member.state, message, now), now)
        else:
            self.apply(member, fr.on_share(member.state, message, now), now)

    def deliver_all(self, now: float, shuffle: bool = False) -> None:
        """Deliver every in-flight message (and those they cause), in order or shuffled by the seeded random."""
        while self.in_flight:
            self.deliver_one(self.random.randrange(len(self.in_flight)) if shuffle else 0, now)

    # --- effects -----------------------------------------------------------------------------------------------

    def apply(self, member: Member, transition: fr.Transition, now: float) -> None:
        """Store the new state and carry out the effects (a rejection must leave the very same state)."""
        before = member.state
        member.state, effects = transition
        if any(isinstance(e, fr.Rejected) for e in effects) and (member.state is not before or len(effects) != 1):
            raise AssertionError(f"a rejection changed the state or came with other effects: {effects}")
        for effect in effects:
            self._carry_out(member, effect, now)

    def _broadcast(self, member: Member, message: Outgoing) -> None:
        for other in self.everyone():
            if other.identifier != member.identifier:
                self.in_flight.append((other.identifier, message))

    def _carry_out(self, member: Member, effect: fr.Effect, now: float) -> None:
        fc, domain = self.fc, self.fc.committee.network.domain
        key = fc.committee.signing_keys[member.identifier - 1]
        match effect:
            case fr.IssueCommitments(round_key=round_key, attempts=attempts):
                for attempt in range(attempts):
                    result = fc.results[member.identifier]
                    nonces, commitment = frost.commit(
                        member.identifier, result.signing_share, self.random.randbytes(32), self.random.randbytes(32)
                    )
                    points = (commitment.hiding, commitment.binding)
                    member.nonces[points] = nonces
                    member.own_commitments[points] = attempt
                    signed = fr.sign_frost_commitment(domain, round_key, attempt, commitment, key)
                    self.apply(member, fr.on_own_commitment(member.state, signed, now), now)
            case fr.BroadcastCommitment(signed=signed):
                self._broadcast(member, signed)
            case fr.SignShare() as request:
                member.sign_requests.append(request)
                own = next(c for c in request.commitments if c.identifier == member.identifier)
                points = (own.hiding, own.binding)
                # the nonce store's rule: a commitment signs one (message, list) once
                if points in member.signed_with:
                    raise AssertionError(f"member {member.identifier} asked to sign twice with one commitment")
                member.signed_with[points] = (request.message, request.commitments)
                # the nonce store's other rule: only the digest of the member's own report (once it has one)
                if member.behaviour == "withhold" or member.reported not in (None, request.message):
                    return
                result = fc.results[member.identifier]
                share = frost.sign(
                    member.identifier, result.signing_share, fc.group_public_key, member.nonces.pop(points),
                    request.message, request.commitments,
                )  # fmt: skip
                if member.behaviour == "bad":
                    share = frost.SignatureShare(share.identifier, (share.share + 1) % frost.ORDER)
                signed_share = fr.sign_frost_share(
                    domain, request.round_key, request.attempt, request.message, request.signers, share, key
                )
                self.apply(member, fr.on_own_share(member.state, signed_share, now), now)
            case fr.BroadcastShare(signed=signed_share):
                self._broadcast(member, signed_share)
            case fr.ArchiveFrostEvidence(evidence=evidence):
                member.evidence.append(evidence)
            case fr.FrostSignatureFormed() as formed:
                member.signatures.append(formed)
            case fr.TransmitFrost() | fr.TransmitEcdsa():
                member.transmissions.append((now, effect))
            case fr.Rejected(reason=reason):
                member.rejected[reason.value] += 1
