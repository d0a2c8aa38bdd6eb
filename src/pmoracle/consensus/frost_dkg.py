"""Distributed key generation for FROST: Pedersen's DKG with proofs of knowledge (FROST paper, KeyGen). PURE.

Every participant of a committee epoch runs one :class:`DkgState`. Handlers take the state and one message and
return ``(state, effects)``; a rejected message returns the *same* state object with a :class:`DkgRejected` naming
the reason, except that a dealer whose proof of knowledge fails is disqualified (recorded in the state). Messages
may arrive in any order: a share that comes before its dealer's package waits for it (one per dealer). Randomness
is an argument: :func:`start_dkg` derives the secret polynomial and the proof nonce from a seed the shell draws.

Protocol (Komlo and Goldberg, "FROST", section 5.1, Figure 1), for participant P_i with identifiers I, threshold t
and context string Phi (the committee epoch's digest)::

    round 1, P_i:   a_i0 .. a_i(t-1) random; C_ik = a_ik G; proof (R_i, mu_i) with k random, R_i = k G,
                    c_i = H(Phi, i, C_i0, R_i), mu_i = k + a_i0 c_i; broadcast (C_i, R_i, mu_i)
    upon (C_j, R_j, mu_j) from P_j:  if R_j != mu_j G - c_j C_j0: disqualify P_j
    round 2, P_i:   send f_i(l) = sum_k a_ik l^k privately to each P_l
    upon f_j(i) from P_j:  if f_j(i) G != sum_k C_jk i^k: complain against P_j (publishing f_j(i))
    finish:         s_i = sum_j f_j(i); Y = sum_j C_j0; Y_l = sum_j sum_k C_jk l^k for every l

A run that disqualifies a dealer or raises a complaint does not finish: the shell archives the evidence and starts
a new run (a new context) without the dealer it names. Every honest member of a finished run holds the same group
key and the same :attr:`DkgResult.transcript_digest`, which the members confirm to each other before the key is
registered: that is what catches a dealer that broadcast different round-1 packages to different members.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from coincurve import PublicKey

from pmoracle.consensus.frost import (
    CONTEXT_STRING,
    ORDER,
    FrostError,
    Point,
    add_points,
    deserialize_element,
    evaluate_polynomial,
    evaluate_vss_commitment,
    hash_to_scalar,
    points_equal,
    scalar_base_mult,
    scalar_mult,
    serialize_element,
    serialize_scalar,
)

DKG_CHALLENGE_DST = CONTEXT_STRING + b"dkg"  # the proof-of-knowledge challenge
_COEFFICIENT_DST = CONTEXT_STRING + b"dkg-coefficient"
_PROOF_NONCE_DST = CONTEXT_STRING + b"dkg-proof-nonce"
MIN_SEED_SIZE = 32


class DkgError(FrostError):
    """Raised when DKG parameters are malformed or a DKG step is asked for out of order."""


class DkgIncompleteError(DkgError):
    """Raised when a run cannot finish; names the dealers missing, disqualified or complained against."""

    def __init__(self, missing: tuple[int, ...], disqualified: tuple[int, ...], accused: tuple[int, ...]) -> None:
        super().__init__(
            "dkg", f"cannot finish: missing {list(missing)}, disqualified {list(disqualified)}, accused {list(accused)}"
        )
        self.missing = missing
        self.disqualified = disqualified
        self.accused = accused


# --- parameters and messages -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkgParameters:
    """One run: its context string, the participants' identifiers (ascending), the threshold and own identifier."""

    context: bytes  # binds proofs to this run, e.g. the committee's config digest and epoch
    identifiers: tuple[int, ...]
    threshold: int
    me: int

    def __post_init__(self) -> None:
        if not isinstance(self.context, bytes) or not self.context:
            raise DkgError("context", f"must be non-empty bytes, got {self.context!r}")
        ids = self.identifiers
        if not ids or any(not isinstance(i, int) or not 0 < i < ORDER for i in ids):
            raise DkgError("identifiers", f"must be non-zero scalars, got {ids!r}")
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise DkgError("identifiers", f"must be strictly increasing, got {list(ids)}")
        if not 1 <= self.threshold <= len(ids):
            raise DkgError("threshold", f"must be in [1, {len(ids)}], got {self.threshold}")
        if self.me not in ids:
            raise DkgError("me", f"{self.me} is not among {list(ids)}")


@dataclass(frozen=True, slots=True)
class Round1Package:
    """A dealer's broadcast: commitments C_k = a_k G to its polynomial and a proof of knowledge of a_0."""

    dealer: int
    commitment: tuple[bytes, ...]  # t compressed points, constant term first
    proof_commitment: bytes  # R = k G
    proof_response: int  # mu = k + a_0 c

    def __post_init__(self) -> None:
        if not isinstance(self.dealer, int) or not 0 < self.dealer < ORDER:
            raise DkgError("dealer", f"must be a non-zero scalar, got {self.dealer!r}")
        if not isinstance(self.commitment, tuple) or not self.commitment:
            raise DkgError("commitment", f"must be a non-empty tuple, got {self.commitment!r}")
        for k, c_k in enumerate(self.commitment):
            deserialize_element(c_k, f"commitment[{k}]")
        deserialize_element(self.proof_commitment, "proof_commitment")
        if not isinstance(self.proof_response, int) or not 0 <= self.proof_response < ORDER:
            raise DkgError("proof_response", f"must be a scalar, got {self.proof_response!r}")


@dataclass(frozen=True, slots=True)
class Round2Share:
    """A dealer's secret share f_dealer(recipient); the shell encrypts it to the recipient and signs it."""

    dealer: int
    recipient: int
    share: int = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.share, int) or not 0 <= self.share < ORDER:
            raise DkgError("share", "must be a scalar in [0, group order)")


@dataclass(frozen=True, slots=True)
class Complaint:
    """A recipient's accusation: the share ``dealer`` sent to ``accuser`` does not match the dealer's commitment.

    The share is published with the complaint (it no longer protects anything: the run is abandoned), so anyone
    holding the dealer's round-1 package can re-check it with :func:`is_valid_complaint`.
    """

    accuser: int
    dealer: int
    share: int


class DkgRejectReason(enum.Enum):
    """Why a DKG message was dropped (a metrics label)."""

    NOT_A_PARTICIPANT = "not_a_participant"
    FROM_SELF = "from_self"
    WRONG_RECIPIENT = "wrong_recipient"
    DUPLICATE = "duplicate"
    WRONG_DEGREE = "wrong_degree"
    BAD_PROOF = "bad_proof"
    DISQUALIFIED = "disqualified"


@dataclass(frozen=True, slots=True)
class DkgRejected:
    """Effect: a message from ``sender`` was dropped for ``reason``."""

    sender: int
    reason: DkgRejectReason


DkgEffect = DkgRejected | Complaint


@dataclass(frozen=True, slots=True)
class DkgResult:
    """A finished run: own signing share, every participant's verification share, the group key, the transcript."""

    parameters: DkgParameters
    signing_share: int = field(repr=False)
    group_public_key: bytes
    verification_shares: Mapping[int, bytes]  # identifier -> s_i G, for every participant
    transcript_digest: bytes  # SHA-256 over the round-1 packages in identifier order; members compare it

    @property
    def identifier(self) -> int:
        """Return this participant's identifier."""
        return self.parameters.me

    @property
    def verification_share(self) -> bytes:
        """Return this participant's own verification share s_i G."""
        return self.verification_shares[self.parameters.me]


# --- state -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkgState:
    """One participant's view of a run: own polynomial, the valid packages and shares received, the failures."""

    parameters: DkgParameters
    coefficients: tuple[int, ...] = field(repr=False)  # own secret polynomial, constant term first
    packages: Mapping[int, Round1Package] = field(default_factory=dict)  # dealer -> valid package (own included)
    shares: Mapping[int, int] = field(default_factory=dict, repr=False)  # dealer -> f_dealer(me), verified
    pending: Mapping[int, int] = field(default_factory=dict, repr=False)  # shares that arrived before the package
    complaints: Mapping[int, Complaint] = field(default_factory=dict)  # dealer -> own complaint against it
    disqualified: frozenset[int] = frozenset()  # dealers whose proof of knowledge failed

    @property
    def own_package(self) -> Round1Package:
        """Return this participant's round-1 package."""
        return self.packages[self.parameters.me]


def compute_proof_challenge(context: bytes, dealer: int, constant_commitment: bytes, proof_commitment: bytes) -> int:
    """Return c = H(SHA-256(context) || dealer || C_0 || R): the proof challenge, bound to the run and the dealer."""
    preimage = hashlib.sha256(context).digest() + serialize_scalar(dealer) + constant_commitment + proof_commitment
    return hash_to_scalar(preimage, DKG_CHALLENGE_DST)


def is_valid_proof(context: bytes, package: Round1Package) -> bool:
    """Check the proof of knowledge of a package's constant term: mu G == R + c C_0."""
    challenge = compute_proof_challenge(context, package.dealer, package.commitment[0], package.proof_commitment)
    right = add_points(
        [
            deserialize_element(package.proof_commitment, "proof_commitment"),
            scalar_mult(deserialize_element(package.commitment[0], "commitment[0]"), challenge),
        ]
    )
    return points_equal(scalar_base_mult(package.proof_response), right)


def _commitment_points(package: Round1Package) -> list[PublicKey]:
    return [deserialize_element(c_k, "commitment") for c_k in package.commitment]


def is_valid_share(package: Round1Package, recipient: int, share: int) -> bool:
    """Check a dealer's share for ``recipient`` against its commitment: share G == sum_k C_k recipient^k."""
    return points_equal(scalar_base_mult(share), evaluate_vss_commitment(_commitment_points(package), recipient))


def is_valid_complaint(package: Round1Package, complaint: Complaint) -> bool:
    """Check if a complaint is justified: the published share does not match the dealer's commitment."""
    return complaint.dealer == package.dealer and not is_valid_share(package, complaint.accuser, complaint.share)


def _derive_scalar(seed: bytes, context: bytes, dst: bytes, index: int) -> int:
    value = hash_to_scalar(seed + hashlib.sha256(context).digest() + index.to_bytes(4, "big"), dst)
    if value == 0:  # probability 2^-256; a zero constant term would make the proof meaningless
        raise DkgError("seed", "derives a zero scalar; draw another seed")
    return value


def start_dkg(parameters: DkgParameters, seed: bytes) -> tuple[DkgState, Round1Package]:
    """Return the initial state and own round-1 package; ``seed`` is >= 32 fresh random bytes, secret."""
    if not isinstance(seed, bytes) or len(seed) < MIN_SEED_SIZE:
        raise DkgError("seed", f"must be at least {MIN_SEED_SIZE} random bytes")
    coefficients = tuple(
        _derive_scalar(seed, parameters.context, _COEFFICIENT_DST, k) for k in range(parameters.threshold)
    )
    nonce = _derive_scalar(seed, parameters.context, _PROOF_NONCE_DST, 0)
    commitment = tuple(serialize_element(scalar_base_mult(a), "coefficient") for a in coefficients)
    proof_commitment = serialize_element(scalar_base_mult(nonce), "proof_nonce")
    challenge = compute_proof_challenge(parameters.context, parameters.me, commitment[0], proof_commitment)
    package = Round1Package(parameters.me, commitment, proof_commitment, (nonce + coefficients[0] * challenge) % ORDER)
    own_share = evaluate_polynomial(parameters.me, coefficients)
    state = DkgState(parameters, coefficients, packages={parameters.me: package}, shares={parameters.me: own_share})
    return state, package


def compute_round2_shares(state: DkgState) -> tuple[Round2Share, ...]:
    """Return own share f_me(l) for every other participant l, in identifier order."""
    me = state.parameters.me
    return tuple(
        Round2Share(me, recipient, evaluate_polynomial(recipient, state.coefficients))
        for recipient in state.parameters.identifiers
        if recipient != me
    )


def _reject(state: DkgState, sender: int, reason: DkgRejectReason) -> tuple[DkgState, tuple[DkgEffect, ...]]:
    return state, (DkgRejected(sender, reason),)


def on_round1_package(state: DkgState, package: Round1Package) -> tuple[DkgState, tuple[DkgEffect, ...]]:
    """Record a dealer's round-1 package if it is well formed and its proof of knowledge verifies.

    A share from this dealer that arrived first is checked now, as :func:`on_round2_share` would have.
    """
    params, dealer = state.parameters, package.dealer
    if dealer not in params.identifiers:  # only the epoch's participants deal
        return _reject(state, dealer, DkgRejectReason.NOT_A_PARTICIPANT)
    if dealer == params.me:  # own package is recorded at start
        return _reject(state, dealer, DkgRejectReason.FROM_SELF)
    if dealer in state.disqualified:  # a failed proof is final for this run
        return _reject(state, dealer, DkgRejectReason.DISQUALIFIED)
    if dealer in state.packages:  # one package per dealer; a different second one is the dealer's equivocation
        return _reject(state, dealer, DkgRejectReason.DUPLICATE)
    if len(package.commitment) != params.threshold:  # a polynomial of degree t - 1
        return _reject(state, dealer, DkgRejectReason.WRONG_DEGREE)
    early = state.pending.get(dealer)
    pending = {d: v for d, v in state.pending.items() if d != dealer}
    if not is_valid_proof(params.context, package):  # the dealer knows its constant term, for this run
        rejected = DkgRejected(dealer, DkgRejectReason.BAD_PROOF)
        return replace(state, disqualified=state.disqualified | {dealer}, pending=pending), (rejected,)
    state = replace(state, packages={**state.packages, dealer: package}, pending=pending)
    if early is None:
        return state, ()
    return _check_share(state, dealer, early)


def on_round2_share(state: DkgState, share: Round2Share) -> tuple[DkgState, tuple[DkgEffect, ...]]:
    """Record a dealer's share for this participant, or complain against the dealer if it fails its commitment.

    A share that arrives before its dealer's round-1 package (gossip does not order the two) waits for it.
    """
    params, dealer = state.parameters, share.dealer
    if dealer not in params.identifiers:  # only the epoch's participants deal
        return _reject(state, dealer, DkgRejectReason.NOT_A_PARTICIPANT)
    if dealer == params.me:  # own share is kept at start
        return _reject(state, dealer, DkgRejectReason.FROM_SELF)
    if share.recipient != params.me:  # a share for someone else was misrouted
        return _reject(state, dealer, DkgRejectReason.WRONG_RECIPIENT)
    if dealer in state.disqualified:  # nothing from a disqualified dealer counts
        return _reject(state, dealer, DkgRejectReason.DISQUALIFIED)
    if dealer in state.shares or dealer in state.complaints or dealer in state.pending:  # one share per dealer
        return _reject(state, dealer, DkgRejectReason.DUPLICATE)
    if dealer not in state.packages:  # at most one early share per participant is kept
        return replace(state, pending={**state.pending, dealer: share.share}), ()
    return _check_share(state, dealer, share.share)


def _check_share(state: DkgState, dealer: int, share: int) -> tuple[DkgState, tuple[DkgEffect, ...]]:
    me = state.parameters.me
    if not is_valid_share(state.packages[dealer], me, share):  # the share is not on the committed polynomial
        complaint = Complaint(accuser=me, dealer=dealer, share=share)
        return replace(state, complaints={**state.complaints, dealer: complaint}), (complaint,)
    return replace(state, shares={**state.shares, dealer: share}), ()


def compute_transcript_digest(packages: Mapping[int, Round1Package]) -> bytes:
    """Return SHA-256 over every round-1 package (identifier, commitments, proof) in identifier order."""
    h = hashlib.sha256(CONTEXT_STRING + b"dkg-transcript")
    for dealer in sorted(packages):
        p = packages[dealer]
        h.update(serialize_scalar(dealer) + len(p.commitment).to_bytes(2, "big") + b"".join(p.commitment))
        h.update(p.proof_commitment + serialize_scalar(p.proof_response))
    return h.digest()


def compute_group_info(
    packages: Mapping[int, Round1Package], identifiers: tuple[int, ...]
) -> tuple[bytes, dict[int, bytes]]:
    """Return the group key sum_j C_j0 and every verification share Y_l = sum_j sum_k C_jk l^k."""
    threshold = len(next(iter(packages.values())).commitment)
    summed: list[Point] = [
        add_points(deserialize_element(p.commitment[k], "commitment") for p in packages.values())
        for k in range(threshold)
    ]
    group_public_key = serialize_element(summed[0], "group_public_key")
    verification = {
        i: serialize_element(evaluate_vss_commitment(summed, i), f"verification_share[{i}]") for i in identifiers
    }
    return group_public_key, verification


def finish_dkg(state: DkgState) -> DkgResult:
    """Return the run's result once every dealer's package and share arrived valid (DkgIncompleteError otherwise)."""
    params = state.parameters
    missing = tuple(
        i
        for i in params.identifiers
        if i not in state.disqualified
        and i not in state.complaints
        and (i not in state.packages or i not in state.shares)
    )
    if missing or state.disqualified or state.complaints:
        raise DkgIncompleteError(missing, tuple(sorted(state.disqualified)), tuple(sorted(state.complaints)))
    signing_share = sum(state.shares.values()) % ORDER
    group_public_key, verification = compute_group_info(state.packages, params.identifiers)
    if not points_equal(scalar_base_mult(signing_share), deserialize_element(verification[params.me])):
        raise DkgError("signing_share", "does not match the verification share the commitments give")  # unreachable
    return DkgResult(params, signing_share, group_public_key, verification, compute_transcript_digest(state.packages))
