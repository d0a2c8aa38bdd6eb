"""FROST signing in the round: a pure state machine from an ECDSA quorum certificate to one FROST signature, or to
the ECDSA certificate as fallback after one stage. PURE.

The ECDSA reports stay: they decide the quorum (the collector, ``collector.py``) and are the slashing evidence.
This machine starts where the collector's ``CertificateFormed`` ends. Like the collector, every handler takes the
state (and the time ``now`` as an argument) and returns ``(state, effects)``; a rejected input returns the *same*
state object and one :class:`Rejected` effect naming the reason (for metrics); the shell carries the effects out.

Identifiers are committee index + 1 (the DKG's). Nonce commitments are issued when a round opens (members commit
one round ahead), ``attempts`` per round (one per signing attempt), and gossiped ahead of the quorum. A member of
attempt 0's set signs its share when it signs its own ECDSA report, so the share travels with the report
and the certificate, when it forms, finds the shares there: no message after the quorum. Every
gossiped commitment and share carries its member's ECDSA signature (the report-signing key) over a
domain-separated digest, so an invalid share is attributable evidence. Protocol, per round key K, member p_i::

    upon round K opened:           emit IssueCommitments(K, attempts)   -- the shell records each as issued first
    upon round K opened again:     emit BroadcastCommitment of each own commitment, once  -- K starts after its
                                                                                         commitments went ahead
    upon own signed commitment:    emit BroadcastCommitment; deliver to self
    upon signed commitment c_j,a:  C[K][a][j] := c_j,a (the first one; a different second one is dropped)
    upon own report of K signed with digest m' (slashing protection first), before the certificate:
        if C[K][0][1..t] are all known: S_0 := {1..t}; if i in S_0: emit SignShare(K, 0, m', C[K][0][S_0])
        -- the early share: every fuller view chooses the same S_0; a share of an m' never certified never aggregates
    upon certificate for K with digest m (from the collector) at now:  cert[K] := ...; t_K := now; attempt := 0
    attempt a starts at t_K + a * stageDelay / attempts; when attempt a + 1 starts without a signature:
        E := E + {j in S_a : no valid share of j in attempt a}     -- withholders leave the later attempts
    S_a := the first t identifiers, ascending, of {j : C[K][a][j] known, j not in E as attempt a started}, chosen
           once: when every such member has committed, or half an attempt after the attempt started (|.| >= t)
    if i in S_a and not yet asked for a: emit SignShare(K, a, m, C[K][a][S_a])   -- the shell records the nonce as
                                                                                   used, then signs
    upon own signed share:         emit BroadcastShare; deliver to self
    upon signed share z_j for (a, S, m) with every C[K][a][S] known:
        if verify_signature_share(package(C[K][a][S], m), z_j, Y_j): keep it
        else: E := E + {j}; emit ArchiveFrostEvidence(InvalidFrostShare(z_j, C[K][a][S]))
        upon valid shares of every member of some S for (a, m = digest(cert[K])): sig[K] := aggregate
    upon tick at now, p = own position in the round's transmission schedule:
        if sig[K] and now >= t_K + p * stageDelay:                  emit TransmitFrost(cert[K], sig[K])
        if no sig[K] and now >= t_K + (p + 1) * stageDelay:         emit TransmitEcdsa(cert[K])   -- the fallback
        (a transmission not attested after n * stageDelay is sent again, as the collector does)
    upon K attested:               forget every K' with B' <= B (the shell forgets their nonces)

Shares name their signing set, so members whose views differ (a late commitment, a late share) never mix packages:
any complete set aggregates. A member signs at most one package per attempt (one commitment each); the nonce store
refuses everything else (docs/frost.md, "Nonce safety").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from eth_utils import keccak

from pmoracle.consensus import frost
from pmoracle.consensus.certificate import QuorumCertificate, compute_bitmap_indices
from pmoracle.consensus.collector import get_committee_position
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.consensus.report import Domain, compute_report_digest, recover_signer, sign_digest
from pmoracle.consensus.rounds import (
    RoundKey,
    compute_transmit_delay,
    compute_window_floor,
    is_after_attested,
    is_anchor_block,
    is_in_round_window,
)
from pmoracle.errors import InputError

DEFAULT_ATTEMPTS = 2  # signing sets tried per round: the first t committed members, then without the silent ones
MAX_ATTEMPTS = 255  # the wire carries the attempt as a uint8
COMMITMENT_TAG = b"pmoracle-frost-commitment-v1"
SHARE_TAG = b"pmoracle-frost-share-v1"


# --- messages ----------------------------------------------------------------------------------------------------


def _check_envelope(config_digest: bytes, block_number: int, attempt: int, signer: bytes, signature: bytes) -> None:
    if not isinstance(config_digest, bytes) or len(config_digest) != 32:
        raise InputError("config_digest", f"expected 32 bytes, got {config_digest!r}")
    if type(block_number) is not int or not 0 <= block_number < 2**64:
        raise InputError("block_number", f"must fit uint64, got {block_number!r}")
    if type(attempt) is not int or not 0 <= attempt < MAX_ATTEMPTS:
        raise InputError("attempt", f"must be in [0, {MAX_ATTEMPTS}), got {attempt!r}")
    if not isinstance(signer, bytes) or len(signer) != 20:
        raise InputError("signer", f"expected a 20-byte address, got {signer!r}")
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise InputError("signature", f"expected 65 bytes, got {signature!r}")


@dataclass(frozen=True, slots=True)
class SignedFrostCommitment:
    """A member's nonce commitment for one signing attempt of one round, signed with its report-signing key."""

    config_digest: bytes
    block_number: int
    attempt: int
    commitment: frost.SigningCommitment
    signer: bytes  # 20-byte report-signing address of committee member ``commitment.identifier - 1``
    signature: bytes  # 65 bytes over compute_commitment_digest

    def __post_init__(self) -> None:
        _check_envelope(self.config_digest, self.block_number, self.attempt, self.signer, self.signature)
        if not isinstance(self.commitment, frost.SigningCommitment):
            raise InputError("commitment", f"expected a SigningCommitment, got {self.commitment!r}")

    @property
    def round_key(self) -> RoundKey:
        """Return the round key the commitment is bound to."""
        return (self.config_digest, self.block_number)


@dataclass(frozen=True, slots=True)
class SignedFrostShare:
    """A member's signature share of ``message`` for the signing set ``signers`` of one attempt, signed like a
    commitment."""

    config_digest: bytes
    block_number: int
    attempt: int
    message: bytes  # the 32-byte report digest signed
    signers: int  # bitmap over committee indices (identifier - 1) of the signing set
    share: frost.SignatureShare
    signer: bytes
    signature: bytes  # 65 bytes over compute_share_digest

    def __post_init__(self) -> None:
        _check_envelope(self.config_digest, self.block_number, self.attempt, self.signer, self.signature)
        if not isinstance(self.message, bytes) or len(self.message) != 32:
            raise InputError("message", f"expected 32 bytes, got {self.message!r}")
        if type(self.signers) is not int or not 0 < self.signers < 2**64:
            raise InputError("signers", f"must be a non-empty uint64 bitmap, got {self.signers!r}")
        if not isinstance(self.share, frost.SignatureShare):
            raise InputError("share", f"expected a SignatureShare, got {self.share!r}")

    @property
    def round_key(self) -> RoundKey:
        """Return the round key of the share."""
        return (self.config_digest, self.block_number)

    @property
    def identifiers(self) -> tuple[int, ...]:
        """Return the signing set's identifiers, ascending."""
        return compute_bitmap_identifiers(self.signers)


def compute_bitmap_identifiers(bitmap: int) -> tuple[int, ...]:
    """Return the FROST identifiers (committee index + 1) of a signer bitmap, ascending."""
    return tuple(i + 1 for i in compute_bitmap_indices(bitmap))


def compute_identifiers_bitmap(identifiers: tuple[int, ...]) -> int:
    """Return the signer bitmap of FROST identifiers."""
    bitmap = 0
    for identifier in identifiers:
        bitmap |= 1 << (identifier - 1)
    return bitmap


def compute_commitment_digest(
    domain: Domain, round_key: RoundKey, attempt: int, commitment: frost.SigningCommitment
) -> bytes:
    """Return keccak256(tag || domainSeparator || configDigest || uint64 B || uint8 attempt || encode(commitment))."""
    config_digest, block = round_key
    return keccak(
        COMMITMENT_TAG
        + domain.separator()
        + config_digest
        + block.to_bytes(8, "big")
        + attempt.to_bytes(1, "big")
        + commitment.encode()
    )


def compute_share_digest(
    domain: Domain, round_key: RoundKey, attempt: int, message: bytes, signers: int, share: frost.SignatureShare
) -> bytes:
    """Return keccak256(tag || domainSeparator || configDigest || uint64 B || uint8 attempt || message
    || uint64 signers || ser(identifier) || ser(z))."""
    config_digest, block = round_key
    return keccak(
        SHARE_TAG
        + domain.separator()
        + config_digest
        + block.to_bytes(8, "big")
        + attempt.to_bytes(1, "big")
        + message
        + signers.to_bytes(8, "big")
        + frost.serialize_scalar(share.identifier)
        + frost.serialize_scalar(share.share)
    )


def sign_frost_commitment(
    domain: Domain, round_key: RoundKey, attempt: int, commitment: frost.SigningCommitment, private_key: bytes
) -> SignedFrostCommitment:
    """Return ``commitment`` signed with a member's report-signing key."""
    digest = compute_commitment_digest(domain, round_key, attempt, commitment)
    signer = recover_signer(digest, signature := sign_digest(digest, private_key))
    if signer is None:
        raise InputError("private_key", "produced an unrecoverable signature")
    return SignedFrostCommitment(round_key[0], round_key[1], attempt, commitment, signer, signature)


def sign_frost_share(
    domain: Domain,
    round_key: RoundKey,
    attempt: int,
    message: bytes,
    signers: int,
    share: frost.SignatureShare,
    private_key: bytes,
) -> SignedFrostShare:
    """Return ``share`` signed with a member's report-signing key."""
    digest = compute_share_digest(domain, round_key, attempt, message, signers, share)
    signer = recover_signer(digest, signature := sign_digest(digest, private_key))
    if signer is None:
        raise InputError("private_key", "produced an unrecoverable signature")
    return SignedFrostShare(round_key[0], round_key[1], attempt, message, signers, share, signer, signature)


def is_valid_commitment_signature(domain: Domain, msg: SignedFrostCommitment) -> bool:
    """Check if ``msg.signature`` is ``msg.signer``'s signature of the commitment."""
    digest = compute_commitment_digest(domain, msg.round_key, msg.attempt, msg.commitment)
    return recover_signer(digest, msg.signature) == msg.signer


def is_valid_share_signature(domain: Domain, msg: SignedFrostShare) -> bool:
    """Check if ``msg.signature`` is ``msg.signer``'s signature of the share."""
    digest = compute_share_digest(domain, msg.round_key, msg.attempt, msg.message, msg.signers, msg.share)
    return recover_signer(digest, msg.signature) == msg.signer


def get_member_identifier(committee: CommitteeConfig, signer: bytes) -> int | None:
    """Return the FROST identifier (committee index + 1) of ``signer``, or None if it is not a member."""
    index = committee.index_of(signer)
    return None if index is None else index + 1


# --- context -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrostRoundContext:
    """What a signing machine needs and never changes: domain, committee, the DKG's public result, own identity."""

    domain: Domain
    committee: CommitteeConfig
    config_digest: bytes  # committee.digest(), cached
    group_public_key: bytes  # 33-byte compressed; the committee's registered group key
    verification_shares: Mapping[int, bytes]  # identifier -> Y_i for every member
    threshold: int  # t of the DKG; at least the quorum, so a FROST signature implies a quorum signed the digest
    me: int | None  # own identifier; None for a watcher that only aggregates
    stage_delay: float  # seconds: the FROST stage, and the distance between two transmitters
    window_rounds: int
    attempts: int

    def __post_init__(self) -> None:
        committee = self.committee
        if self.config_digest != committee.digest():
            raise InputError("config_digest", "does not match the committee")
        if committee.group_key is None:
            raise InputError("committee", "has no FROST group key")
        if EvmGroupKey.from_compressed(self.group_public_key) != committee.group_key:
            raise InputError("group_public_key", f"0x{self.group_public_key.hex()} is not the committee's group key")
        # t >= q: two FROST signatures of different digests would need two intersecting quorums of honest signers
        if not committee.quorum <= self.threshold <= committee.n:
            raise InputError("threshold", f"{self.threshold} outside [{committee.quorum}, {committee.n}]")
        if sorted(self.verification_shares) != list(range(1, committee.n + 1)):
            raise InputError("verification_shares", f"must name identifiers 1..{committee.n}")
        for identifier, share in self.verification_shares.items():
            frost.deserialize_element(share, f"verification_shares[{identifier}]")
        if self.me is not None and not 1 <= self.me <= committee.n:
            raise InputError("me", f"identifier {self.me} is not in 1..{committee.n}")
        if not self.stage_delay > 0:
            raise InputError("stage_delay", f"must be > 0, got {self.stage_delay}")
        if self.window_rounds < 1:
            raise InputError("window_rounds", f"must be >= 1, got {self.window_rounds}")
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise InputError("attempts", f"must be in [1, {MAX_ATTEMPTS}], got {self.attempts}")

    @classmethod
    def create(
        cls,
        domain: Domain,
        committee: CommitteeConfig,
        group_public_key: bytes,
        verification_shares: Mapping[int, bytes],
        threshold: int,
        me: int | None,
        *,
        stage_delay: float = 10.0,
        window_rounds: int = 16,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> FrostRoundContext:
        """Return a context for ``committee`` with the config digest computed."""
        return cls(
            domain, committee, committee.digest(), group_public_key, dict(verification_shares), threshold, me,
            stage_delay, window_rounds, attempts,
        )  # fmt: skip

    @property
    def me_address(self) -> bytes | None:
        """Return the own report-signing address, or None for a watcher."""
        return None if self.me is None else self.committee.members[self.me - 1]

    @property
    def attempt_delay(self) -> float:
        """Return the time one signing attempt gets: the stage split evenly between the attempts."""
        return self.stage_delay / self.attempts


# --- state -------------------------------------------------------------------------------------------------------

Slot = tuple[int, int]  # (attempt, identifier)


@dataclass(frozen=True, slots=True)
class FrostRoundState:
    """What the signing machine knows about one round."""

    block_number: int
    commitments: Mapping[Slot, SignedFrostCommitment] = field(default_factory=dict)
    shares: Mapping[Slot, SignedFrostShare] = field(default_factory=dict)  # valid shares, one per member per attempt
    pending: Mapping[Slot, SignedFrostShare] = field(default_factory=dict)  # shares waiting for a commitment
    opened: bool = False  # own commitments requested
    restated: bool = False  # own commitments broadcast a second time, as the round started
    certificate: QuorumCertificate | None = None
    message: bytes | None = None  # the certified report digest
    certified_at: float | None = None
    transmit_position: int | None = None
    attempt: int = 0  # the current attempt (meaningful once certified)
    signing_sets: Mapping[int, int] = field(default_factory=dict)  # attempt -> own chosen signers bitmap
    requested: Mapping[int, bytes] = field(default_factory=dict)  # attempt -> digest this node asked to sign
    reported: bytes | None = None  # the digest of this node's own signed ECDSA report of the round
    excluded: frozenset[int] = frozenset()  # identifiers to leave out of the next attempts' signing sets
    choice_excluded: frozenset[int] = frozenset()  # ``excluded`` as the current attempt started: what S_a leaves out
    accused: frozenset[int] = frozenset()  # identifiers whose invalid share was archived as evidence
    signature: frost.Signature | None = None
    transmitted_at: float | None = None


@dataclass(frozen=True, slots=True)
class FrostState:
    """The signing machine: context, chain view and the rounds in the window."""

    context: FrostRoundContext
    head: int
    latest_attested: int | None = None
    forgotten_through: int = -1
    rounds: Mapping[int, FrostRoundState] = field(default_factory=dict)

    def get_round(self, block_number: int) -> FrostRoundState | None:
        """Return the state of round ``block_number`` or None if it is not kept."""
        return self.rounds.get(block_number)


def init_frost_state(context: FrostRoundContext, head: int) -> FrostState:
    """Return an empty signing machine at chain head ``head``."""
    if head < 0:
        raise InputError("head", f"must be >= 0, got {head}")
    return FrostState(context=context, head=head)


# --- evidence ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvalidFrostShare:
    """A member's signed share that fails ``verify_signature_share`` for the package its signed commitments make."""

    share: SignedFrostShare
    commitments: tuple[SignedFrostCommitment, ...]  # the signing set's commitments, ascending identifier


def is_invalid_frost_share(context: FrostRoundContext, evidence: InvalidFrostShare) -> bool:
    """Check if ``evidence`` proves that its share's signer sent an invalid share (anyone can re-check it)."""
    share = evidence.share
    committee = context.committee
    identifier = get_member_identifier(committee, share.signer)
    # the share is a member's, signed by it, for this configuration
    if identifier is None or identifier != share.share.identifier or share.config_digest != context.config_digest:
        return False
    if not is_valid_share_signature(context.domain, share):
        return False
    # the commitments are exactly the signing set's, each signed by its member for this round and attempt
    if tuple(c.commitment.identifier for c in evidence.commitments) != share.identifiers:
        return False
    for c in evidence.commitments:
        if c.round_key != share.round_key or c.attempt != share.attempt:
            return False
        if get_member_identifier(committee, c.signer) != c.commitment.identifier:
            return False
        if not is_valid_commitment_signature(context.domain, c):
            return False
    package = frost.compute_signing_package(
        context.group_public_key, [c.commitment for c in evidence.commitments], share.message
    )
    return not frost.is_valid_signature_share(package, share.share, context.verification_shares[identifier])


# --- effects -----------------------------------------------------------------------------------------------------


class RejectReason(enum.Enum):
    """Why an input was dropped (a metrics label)."""

    WRONG_CONFIG_DIGEST = "wrong_config_digest"
    NOT_A_MEMBER = "not_a_member"
    WRONG_IDENTIFIER = "wrong_identifier"
    NOT_ANCHOR_BLOCK = "not_anchor_block"
    OUTSIDE_WINDOW = "outside_window"
    ROUND_CLOSED = "round_closed"
    BAD_ATTEMPT = "bad_attempt"
    BAD_SIGNERS = "bad_signers"
    DUPLICATE = "duplicate"
    CONFLICTING_COMMITMENT = "conflicting_commitment"
    CONFLICTING_CERTIFICATE = "conflicting_certificate"
    CONFLICTING_REPORT = "conflicting_report"
    BAD_SIGNATURE = "bad_signature"
    ACCUSED = "accused"
    NOT_OWN = "not_own"
    NOT_REQUESTED = "not_requested"


@dataclass(frozen=True, slots=True)
class IssueCommitments:
    """Draw ``attempts`` fresh nonce pairs for ``round_key`` (attempts 0 .. attempts - 1), record each as issued,
    sign each and feed it back through :func:`on_own_commitment`."""

    round_key: RoundKey
    attempts: int


@dataclass(frozen=True, slots=True)
class BroadcastCommitment:
    """Gossip this signed commitment to the committee."""

    signed: SignedFrostCommitment


@dataclass(frozen=True, slots=True)
class SignShare:
    """Record the own commitment of ``commitments`` as used for (message, list) durably, then sign the share, sign
    the envelope and feed it back through :func:`on_own_share`. Never release the share if the store refuses."""

    round_key: RoundKey
    attempt: int
    message: bytes
    signers: int
    commitments: tuple[frost.SigningCommitment, ...]
    with_report: bool = False  # asked for with the own report, before the certificate (the early share)


@dataclass(frozen=True, slots=True)
class BroadcastShare:
    """Gossip this signed share to the committee."""

    signed: SignedFrostShare


@dataclass(frozen=True, slots=True)
class ArchiveFrostEvidence:
    """Keep this proof of an invalid share in the dispute archive and count it (its signer is left out of later
    attempts and not heard again in the round)."""

    evidence: InvalidFrostShare


@dataclass(frozen=True, slots=True)
class FrostSignatureFormed:
    """The shares of a signing set aggregated to a valid signature of the certified digest (informational)."""

    round_key: RoundKey
    attempt: int
    signers: int
    signature: frost.Signature


@dataclass(frozen=True, slots=True)
class TransmitFrost:
    """Post the certificate's report with the FROST signature (``attestFrost``)."""

    certificate: QuorumCertificate
    signature: frost.Signature


@dataclass(frozen=True, slots=True)
class TransmitEcdsa:
    """Post the ECDSA certificate (``attest``): FROST signing did not finish within a stage."""

    certificate: QuorumCertificate


@dataclass(frozen=True, slots=True)
class Rejected:
    """The input was dropped and the state left unchanged; count it under ``reason``."""

    reason: RejectReason


Effect = (
    IssueCommitments
    | BroadcastCommitment
    | SignShare
    | BroadcastShare
    | ArchiveFrostEvidence
    | FrostSignatureFormed
    | TransmitFrost
    | TransmitEcdsa
    | Rejected
)
Transition = tuple[FrostState, tuple[Effect, ...]]


def _reject(state: FrostState, reason: RejectReason) -> Transition:
    return state, (Rejected(reason),)


# --- predicates --------------------------------------------------------------------------------------------------


def is_in_window(state: FrostState, block_number: int) -> bool:
    """Check if round ``block_number`` is neither forgotten nor more than one period ahead of the head."""
    ctx = state.context
    return is_in_round_window(
        block_number, state.head, state.forgotten_through, ctx.window_rounds, ctx.committee.round_period
    )


def is_round_open(state: FrostState, block_number: int) -> bool:
    """Check if round ``block_number`` can still be attested (no newer or equal round is attested)."""
    return is_after_attested(block_number, state.latest_attested)


def compute_signing_set(context: FrostRoundContext, rnd: FrostRoundState, attempt: int) -> int | None:
    """Return attempt ``attempt``'s signing set: the first t identifiers, ascending, with a known commitment for it
    and not excluded when the attempt started (every member sees the same; an exclusion learnt during the attempt
    waits for the next); None while fewer than t are known."""
    candidates = sorted(
        i for (a, i) in rnd.commitments if a == attempt and i not in rnd.choice_excluded
    )  # fmt: skip
    if len(candidates) < context.threshold:
        return None
    return compute_identifiers_bitmap(tuple(candidates[: context.threshold]))


def compute_early_signing_set(context: FrostRoundContext, rnd: FrostRoundState) -> int | None:
    """Return attempt 0's signing set if it is settled before the certificate: the attempt-0 commitments of
    identifiers 1 .. t are all known, so every member that chooses S_0 later, from any fuller view, chooses these
    same t (the first t, ascending); None otherwise (the member signs after the certificate, as before)."""
    settled = tuple(range(1, context.threshold + 1))
    if not all((0, i) in rnd.commitments for i in settled):
        return None
    return compute_identifiers_bitmap(settled)


def is_in_commitment_window(state: FrostState, block_number: int) -> bool:
    """Check if a commitment for round ``block_number`` is kept: inside the window, or up to two periods ahead of
    the head (members commit one round ahead, and a receiver's head may lag the sender's by a block)."""
    period = state.context.committee.round_period
    return is_in_window(state, block_number) or is_in_window(state, block_number - period)


def _check_round_input(
    state: FrostState, config_digest: bytes, block: int, attempt: int, *, commitment: bool = False
) -> RejectReason | None:
    ctx = state.context
    # for this configuration
    if config_digest != ctx.config_digest:
        return RejectReason.WRONG_CONFIG_DIGEST
    # rounds start at anchor blocks only
    if not is_anchor_block(block, ctx.committee.round_period):
        return RejectReason.NOT_ANCHOR_BLOCK
    # memory is bounded: only rounds inside the window are kept (commitments: one more period ahead)
    if not (is_in_commitment_window(state, block) if commitment else is_in_window(state, block)):
        return RejectReason.OUTSIDE_WINDOW
    # an attested round needs no signature
    if not is_round_open(state, block):
        return RejectReason.ROUND_CLOSED
    # one of the attempts this committee runs
    if not 0 <= attempt < ctx.attempts:
        return RejectReason.BAD_ATTEMPT
    return None


def _check_own_round(state: FrostState, block_number: int) -> RejectReason | None:
    """Return why this node cannot act in round ``block_number`` itself (commit, sign), or None."""
    # a watcher has no key share
    if state.context.me is None:
        return RejectReason.NOT_OWN
    return _check_round_input(state, state.context.config_digest, block_number, 0)


def _check_sender(
    state: FrostState,
    config_digest: bytes,
    block: int,
    attempt: int,
    signer: bytes,
    claimed: int,
    *,
    commitment: bool = False,
) -> RejectReason | int:
    """Return why a gossiped message is dropped, or its signer's identifier."""
    reason = _check_round_input(state, config_digest, block, attempt, commitment=commitment)
    if reason is not None:
        return reason
    identifier = get_member_identifier(state.context.committee, signer)
    # from a committee member
    if identifier is None:
        return RejectReason.NOT_A_MEMBER
    # about its own nonces or share
    if claimed != identifier:
        return RejectReason.WRONG_IDENTIFIER
    return identifier


# --- handlers ----------------------------------------------------------------------------------------------------


def on_round_opened(state: FrostState, block_number: int, now: float) -> Transition:
    """Return the transition for a round this node starts (or a coming round it commits to ahead): ask the shell
    for the own nonce commitments, once per round; when the round starts after they went out ahead, broadcast them
    once more (a member that installed the committee after they went out dropped them)."""
    ctx = state.context
    reason = _check_own_round(state, block_number)
    if reason is not None:
        return _reject(state, reason)
    rnd = state.rounds.get(block_number) or FrostRoundState(block_number=block_number)
    if not rnd.opened:  # commitments are issued once per round
        rnd = replace(rnd, opened=True)
        return _with_round(state, rnd), (IssueCommitments((ctx.config_digest, block_number), ctx.attempts),)
    # opened again, as the round starts after its commitments went out ahead: say them once more, for the members
    # that dropped them then (a member that installed this committee late, a lost message); the others see dupes
    own = tuple(c for (_, j), c in sorted(rnd.commitments.items()) if j == ctx.me)
    if rnd.restated or not own:
        return state, ()
    return _with_round(state, replace(rnd, restated=True)), tuple(BroadcastCommitment(c) for c in own)


def on_commitment(state: FrostState, msg: SignedFrostCommitment, now: float) -> Transition:
    """Return the transition for a signed commitment received from the network."""
    ctx = state.context
    checked = _check_sender(
        state, msg.config_digest, msg.block_number, msg.attempt, msg.signer, msg.commitment.identifier,
        commitment=True,
    )  # fmt: skip
    if isinstance(checked, RejectReason):
        return _reject(state, checked)
    identifier = checked
    rnd = state.rounds.get(msg.block_number) or FrostRoundState(block_number=msg.block_number)
    known = rnd.commitments.get((msg.attempt, identifier))
    # one commitment per member and attempt: the first one counts
    if known is not None:
        same = known.commitment == msg.commitment
        return _reject(state, RejectReason.DUPLICATE if same else RejectReason.CONFLICTING_COMMITMENT)
    # signed by that member
    if not is_valid_commitment_signature(ctx.domain, msg):
        return _reject(state, RejectReason.BAD_SIGNATURE)
    commitments = dict(rnd.commitments)
    commitments[(msg.attempt, identifier)] = msg
    rnd = replace(rnd, commitments=commitments)
    # shares that waited for this commitment can be checked now
    effects: tuple[Effect, ...] = ()
    for slot, waiting in sorted(rnd.pending.items()):
        if all((waiting.attempt, j) in rnd.commitments for j in waiting.identifiers):
            pending = dict(rnd.pending)
            del pending[slot]
            rnd, more = _process_share(ctx, replace(rnd, pending=pending), waiting)
            effects += more
    rnd, more = _advance(state, rnd, now)
    return _with_round(state, rnd), effects + more


def on_own_commitment(state: FrostState, msg: SignedFrostCommitment, now: float) -> Transition:
    """Return the transition for this node's own commitment, recorded as issued by the shell: broadcast it."""
    ctx = state.context
    # it is this node's
    if ctx.me is None or msg.signer != ctx.me_address:
        return _reject(state, RejectReason.NOT_OWN)
    rnd = state.rounds.get(msg.block_number)
    # asked for by on_round_opened
    if rnd is None or not rnd.opened:
        return _reject(state, RejectReason.NOT_REQUESTED)
    after, effects = on_commitment(state, msg, now)
    if after is state:
        return after, effects
    return after, (BroadcastCommitment(msg), *effects)


def on_own_report(state: FrostState, block_number: int, digest: bytes, now: float) -> Transition:
    """Return the transition for this node's own ECDSA report of round ``block_number``, signed (recorded by
    slashing protection) with EIP-712 digest ``digest``: sign attempt 0's share of ``digest`` at once if its set is
    settled, so that it travels with the report and the certificate finds the shares already there."""
    ctx = state.context
    reason = _check_own_round(state, block_number)
    if reason is not None or ctx.me is None:
        return _reject(state, reason or RejectReason.NOT_OWN)
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise InputError("digest", f"expected 32 bytes, got {digest!r}")
    rnd = state.rounds.get(block_number) or FrostRoundState(block_number=block_number)
    # one report per round (slashing protection refuses a second digest)
    if rnd.reported is not None:
        return _reject(state, RejectReason.DUPLICATE if rnd.reported == digest else RejectReason.CONFLICTING_REPORT)
    rnd = replace(rnd, reported=digest)
    signers = compute_early_signing_set(ctx, rnd)
    # before the certificate only (after it, attempt 0 runs as before), once, and only as a member of S_0
    if rnd.message is not None or 0 in rnd.requested or signers is None or not signers >> (ctx.me - 1) & 1:
        return _with_round(state, rnd), ()
    rnd = replace(rnd, signing_sets={**rnd.signing_sets, 0: signers})
    rnd, effects = _request_share(ctx, rnd, 0, digest, signers)
    return _with_round(state, rnd), effects


def on_certificate(state: FrostState, certificate: QuorumCertificate, now: float) -> Transition:
    """Return the transition for the quorum certificate the collector formed: signing starts."""
    ctx = state.context
    report = certificate.report
    reason = _check_round_input(state, report.config_digest, report.block_number, 0)
    if reason is not None:
        return _reject(state, reason)
    rnd = state.rounds.get(report.block_number) or FrostRoundState(block_number=report.block_number)
    digest = compute_report_digest(ctx.domain, report)
    if rnd.message is not None:
        # at most one digest per round has a quorum; a rebuilt certificate (ejected signers) keeps the timing
        if rnd.message != digest:
            return _reject(state, RejectReason.CONFLICTING_CERTIFICATE)
        if rnd.certificate == certificate:
            return _reject(state, RejectReason.DUPLICATE)
        return _with_round(state, replace(rnd, certificate=certificate)), ()
    position = None
    if ctx.me_address is not None:
        position = get_committee_position(ctx.committee, (ctx.config_digest, report.block_number), ctx.me_address)
    rnd = replace(rnd, certificate=certificate, message=digest, certified_at=now, transmit_position=position)
    rnd, effects = _advance(state, rnd, now)
    return _with_round(state, rnd), effects


def on_share(state: FrostState, msg: SignedFrostShare, now: float) -> Transition:
    """Return the transition for a signed share received from the network."""
    ctx = state.context
    checked = _check_sender(state, msg.config_digest, msg.block_number, msg.attempt, msg.signer, msg.share.identifier)
    if isinstance(checked, RejectReason):
        return _reject(state, checked)
    identifier = checked
    # a signing set of t members of this committee that includes the signer
    if msg.signers >> ctx.committee.n or bin(msg.signers).count("1") != ctx.threshold:
        return _reject(state, RejectReason.BAD_SIGNERS)
    if not msg.signers >> (identifier - 1) & 1:
        return _reject(state, RejectReason.BAD_SIGNERS)
    rnd = state.rounds.get(msg.block_number) or FrostRoundState(block_number=msg.block_number)
    slot = (msg.attempt, identifier)
    # one share per member and attempt (one commitment signs once)
    if slot in rnd.shares or slot in rnd.pending:
        return _reject(state, RejectReason.DUPLICATE)
    # a member already proven to cheat is not heard again in this round
    if identifier in rnd.accused:
        return _reject(state, RejectReason.ACCUSED)
    # signed by that member
    if not is_valid_share_signature(ctx.domain, msg):
        return _reject(state, RejectReason.BAD_SIGNATURE)
    # the package needs every commitment of the set: wait for the missing ones (one share per slot)
    if not all((msg.attempt, j) in rnd.commitments for j in msg.identifiers):
        pending = dict(rnd.pending)
        pending[slot] = msg
        return _with_round(state, replace(rnd, pending=pending)), ()
    rnd, effects = _process_share(ctx, rnd, msg)
    rnd, more = _advance(state, rnd, now)
    return _with_round(state, rnd), effects + more


def on_own_share(state: FrostState, msg: SignedFrostShare, now: float) -> Transition:
    """Return the transition for this node's own share, released by the shell after its nonce was recorded used."""
    ctx = state.context
    # it is this node's
    if ctx.me is None or msg.signer != ctx.me_address:
        return _reject(state, RejectReason.NOT_OWN)
    rnd = state.rounds.get(msg.block_number)
    # of a package this node asked to sign
    asked = rnd is not None and rnd.signing_sets.get(msg.attempt) == msg.signers
    if rnd is None or not asked or rnd.requested.get(msg.attempt) != msg.message:
        return _reject(state, RejectReason.NOT_REQUESTED)
    after, effects = on_share(state, msg, now)
    if after is state:
        return after, effects
    return after, (BroadcastShare(msg), *effects)


def on_tick(state: FrostState, now: float) -> Transition:
    """Return the transition at time ``now``: attempts that time out, signatures to ask for, transmissions due."""
    effects: tuple[Effect, ...] = ()
    rounds = dict(state.rounds)
    changed = False
    for block in sorted(state.rounds):
        rnd = state.rounds[block]
        if not is_round_open(state, block):
            continue
        rnd, more = _advance(state, rnd, now)
        effects += more
        if rnd is not state.rounds[block]:
            rounds[block] = rnd
            changed = True
    if not changed:
        return state, effects
    return replace(state, rounds=rounds), effects


def on_new_head(state: FrostState, head: int) -> Transition:
    """Return the transition for a new chain head: rounds that fell out of the window are forgotten."""
    if head < 0:
        return _reject(state, RejectReason.OUTSIDE_WINDOW)
    ctx = state.context
    floor = compute_window_floor(head, state.forgotten_through, ctx.window_rounds, ctx.committee.round_period)
    rounds = {b: r for b, r in state.rounds.items() if b > floor}
    return replace(state, head=head, forgotten_through=floor, rounds=rounds), ()


def on_round_attested(state: FrostState, key: RoundKey) -> Transition:
    """Return the transition for a round attested on-chain: it and every older round close and are forgotten."""
    config_digest, block = key
    # the attested round belongs to this configuration
    if config_digest != state.context.config_digest:
        return _reject(state, RejectReason.WRONG_CONFIG_DIGEST)
    latest = block if state.latest_attested is None else max(state.latest_attested, block)
    rounds = {b: r for b, r in state.rounds.items() if b > latest}
    return replace(state, latest_attested=latest, rounds=rounds), ()


# --- state transitions -------------------------------------------------------------------------------------------


def _with_round(state: FrostState, rnd: FrostRoundState) -> FrostState:
    rounds = dict(state.rounds)
    rounds[rnd.block_number] = rnd
    return replace(state, rounds=rounds)


def _get_package_commitments(rnd: FrostRoundState, attempt: int, signers: int) -> tuple[SignedFrostCommitment, ...]:
    return tuple(rnd.commitments[(attempt, j)] for j in compute_bitmap_identifiers(signers))


def _compute_package(
    ctx: FrostRoundContext, commitments: tuple[SignedFrostCommitment, ...], message: bytes
) -> frost.SigningPackage | None:
    """Return the signing package of the commitments, or None if its group commitment is the identity."""
    try:
        return frost.compute_signing_package(ctx.group_public_key, [c.commitment for c in commitments], message)
    except frost.FrostError:
        return None


def _process_share(
    ctx: FrostRoundContext, rnd: FrostRoundState, msg: SignedFrostShare
) -> tuple[FrostRoundState, tuple[Effect, ...]]:
    """Return the round with a share whose commitments are all known checked: kept if valid, else its signer
    accused and excluded, with the evidence to archive."""
    identifier = msg.share.identifier
    commitments = _get_package_commitments(rnd, msg.attempt, msg.signers)
    package = _compute_package(ctx, commitments, msg.message)
    if package is None:  # a package nobody can sign (R at infinity): nobody to blame, nothing to keep
        return rnd, ()
    if frost.is_valid_signature_share(package, msg.share, ctx.verification_shares[identifier]):
        shares = dict(rnd.shares)
        shares[(msg.attempt, identifier)] = msg
        return replace(rnd, shares=shares), ()
    evidence = InvalidFrostShare(msg, commitments)
    rnd = replace(rnd, accused=rnd.accused | {identifier}, excluded=rnd.excluded | {identifier})
    return rnd, (ArchiveFrostEvidence(evidence),)


def _advance(state: FrostState, rnd: FrostRoundState, now: float) -> tuple[FrostRoundState, tuple[Effect, ...]]:
    """Return the certified round moved on at ``now``: attempts, own share, aggregation, transmission."""
    ctx = state.context
    message = rnd.message
    if rnd.certified_at is None or message is None or not is_round_open(state, rnd.block_number):
        return rnd, ()
    effects: tuple[Effect, ...] = ()
    # upon attempt a + 1 starting without a signature: the members of S_a that sent no valid share leave
    while (
        rnd.signature is None
        and rnd.attempt + 1 < ctx.attempts
        and now - rnd.certified_at >= (rnd.attempt + 1) * ctx.attempt_delay
    ):
        chosen = rnd.signing_sets.get(rnd.attempt)
        silent: frozenset[int] = frozenset()
        if chosen is not None:
            # silent: chosen, and no valid share for the digest in this attempt (for any set: views may differ)
            responsive = {i for (a, i), s in rnd.shares.items() if a == rnd.attempt and s.message == message}
            silent = frozenset(compute_bitmap_identifiers(chosen)) - responsive
        excluded = rnd.excluded | silent
        rnd = replace(rnd, attempt=rnd.attempt + 1, excluded=excluded, choice_excluded=excluded)
    # S_a: chosen once, when every member still in the running has committed, or half an attempt in
    # (commitments are gossiped ahead, so members normally choose at once, from the same view)
    if rnd.signature is None and rnd.attempt not in rnd.signing_sets and _is_time_to_choose(ctx, rnd, now):
        chosen = compute_signing_set(ctx, rnd, rnd.attempt)
        if chosen is not None:
            rnd = replace(rnd, signing_sets={**rnd.signing_sets, rnd.attempt: chosen})
    # if i in S_a: sign (once per attempt)
    chosen = rnd.signing_sets.get(rnd.attempt)
    if (
        rnd.signature is None
        and chosen is not None
        and ctx.me is not None
        and chosen >> (ctx.me - 1) & 1
        and rnd.attempt not in rnd.requested
    ):
        rnd, more = _request_share(ctx, rnd, rnd.attempt, message, chosen)
        effects += more
    # upon valid shares of every member of a set for the certified digest: aggregate
    if rnd.signature is None:
        rnd, more = _aggregate(ctx, rnd)
        effects += more
    rnd, more = _transmit(ctx, rnd, now)
    return rnd, effects + more


def _request_share(
    ctx: FrostRoundContext, rnd: FrostRoundState, attempt: int, message: bytes, signers: int
) -> tuple[FrostRoundState, tuple[Effect, ...]]:
    """Return the round with attempt ``attempt``'s own share asked for: (message, set) recorded, once per attempt."""
    package = tuple(c.commitment for c in _get_package_commitments(rnd, attempt, signers))
    with_report = rnd.message is None
    rnd = replace(rnd, requested={**rnd.requested, attempt: message})
    return rnd, (SignShare((ctx.config_digest, rnd.block_number), attempt, message, signers, package, with_report),)


def _is_time_to_choose(ctx: FrostRoundContext, rnd: FrostRoundState, now: float) -> bool:
    """Check if attempt ``rnd.attempt``'s signing set can be chosen: all commitments are in, or the grace is over."""
    started = (rnd.certified_at or 0.0) + rnd.attempt * ctx.attempt_delay
    if now - started >= ctx.attempt_delay / 2:
        return True
    waiting = set(range(1, ctx.committee.n + 1)) - rnd.choice_excluded
    return all((rnd.attempt, i) in rnd.commitments for i in waiting)


def _has_share(rnd: FrostRoundState, attempt: int, identifier: int, signers: int) -> bool:
    share = rnd.shares.get((attempt, identifier))
    return share is not None and share.signers == signers and share.message == rnd.message


def _aggregate(ctx: FrostRoundContext, rnd: FrostRoundState) -> tuple[FrostRoundState, tuple[Effect, ...]]:
    complete = sorted(
        {(s.attempt, s.signers) for s in rnd.shares.values() if s.message == rnd.message}
    )  # fmt: skip
    for attempt, signers in complete:
        identifiers = compute_bitmap_identifiers(signers)
        if not all(_has_share(rnd, attempt, j, signers) for j in identifiers):
            continue
        package = _compute_package(ctx, _get_package_commitments(rnd, attempt, signers), rnd.message or b"")
        if package is None:
            continue
        shares = [rnd.shares[(attempt, j)].share for j in identifiers]
        try:
            # every share was checked on arrival, so this holds; a failure must still never crash the node
            signature = frost.aggregate_verified(package, shares, ctx.verification_shares)
        except frost.FrostError:
            continue
        rnd = replace(rnd, signature=signature)
        return rnd, (FrostSignatureFormed((ctx.config_digest, rnd.block_number), attempt, signers, signature),)
    return rnd, ()


def _transmit(ctx: FrostRoundContext, rnd: FrostRoundState, now: float) -> tuple[FrostRoundState, tuple[Effect, ...]]:
    """Return the round and its transmission if this node's turn has come (FROST, or ECDSA one stage later)."""
    certificate, certified_at, position = rnd.certificate, rnd.certified_at, rnd.transmit_position
    if certificate is None or certified_at is None or position is None:
        return rnd, ()
    if rnd.transmitted_at is not None:
        # a lost transaction is retried once the whole schedule has had its turn
        if now - rnd.transmitted_at < ctx.committee.n * ctx.stage_delay:
            return rnd, ()
    elif rnd.signature is not None:
        # position p transmits p * stageDelay after the certificate formed, as with ECDSA
        if now - certified_at < compute_transmit_delay(position, ctx.stage_delay):
            return rnd, ()
    # without a signature, position p falls back to ECDSA one stage later than it would transmit
    elif now - certified_at < compute_transmit_delay(position + 1, ctx.stage_delay):
        return rnd, ()
    effect: Effect = TransmitEcdsa(certificate)
    if rnd.signature is not None:
        effect = TransmitFrost(certificate, rnd.signature)
    return replace(rnd, transmitted_at=now), (effect,)
