"""The quorum collector: a pure state machine from signed reports to quorum certificates, transmissions and evidence.

Every handler takes the state (and the time ``now`` as an argument) and returns ``(state, effects)``; the shell
carries the effects out. A rejected input returns the *same* state object and one :class:`Rejected` effect naming
the reason (for metrics). The state is immutable: handlers copy what they change and never mutate a mapping in place.

Re-publication is not the collector's: it asks for one ``Broadcast`` per own signed report, and the shell's
reliable-broadcast layer (``pmoracle.p2p.reports.ReportGossip``) re-publishes it with back-off until the round is
attested, and answers catch-up requests (see docs/p2p.md, "Re-publication").

Protocol, per round key K = (configDigest, B), from the point of view of member p_i::

    upon own report r for K computed:
        if check_can_sign(recorded(K), digest(r)) = RECORD_AND_SIGN: emit SignReport(K, digest(r), r)
    upon own signed report s (after the shell recorded K -> digest durably and signed):
        emit Broadcast(s) once; deliver s to self
    upon valid signed report s from committee member p_j for K:
        S[K][digest(s)] += {p_j}
        if p_j signed another digest for K: emit SubmitEvidence(Equivocation)
        if K is attested with digest a != digest(s), s is about the attested block hash h and p_j != self:
            emit SubmitEvidence(Deviation)
        upon |S[K][d] - E| >= q and no certificate for K: cert[K] := certificate(d, S[K][d] - E); t_K := now
    upon tick at now:
        for every open K with cert[K]: if now - t_K >= position_i(schedule(K)) * stageDelay: emit Transmit(cert[K])
    upon K attested with digest a over block hash h:
        close every K' = (configDigest, B') with B' <= B
        for every p_j != self with d != a in S[K] whose report names h: emit Deviation
        (a report about another hash of B was signed on a fork that a deep reorg replaced: no offence)
    upon members E ejected on chain (slashed below the minimum stake; the oracle refuses their signatures):
        for every open K whose cert[K] names a member of E: rebuild it from S[K][d] - E, or drop it until q others
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pmoracle.consensus.certificate import QuorumCertificate, build_certificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation, Evidence, compute_equivocation
from pmoracle.consensus.protection import SigningVerdict, check_can_sign
from pmoracle.consensus.report import Domain, Report, SignedReport, compute_report_digest, recover_signer
from pmoracle.consensus.rounds import (
    RoundKey,
    compute_transmission_schedule,
    compute_transmit_delay,
    compute_window_floor,
    get_schedule_position,
    is_after_attested,
    is_anchor_block,
    is_in_round_window,
)
from pmoracle.errors import InputError

MAX_DIGESTS_PER_SIGNER = 2  # two digests already prove equivocation; more only cost memory


# --- context and state -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CollectorContext:
    """What a collector needs to know and never changes: domain, committee, own identity, timing."""

    domain: Domain
    committee: CommitteeConfig
    config_digest: bytes  # committee.digest(), cached
    me: bytes | None  # own report-signing address; None for a watcher that only collects
    stage_delay: float  # seconds between two consecutive transmitters of the schedule
    window_rounds: int  # rounds kept behind the head; older ones are forgotten

    def __post_init__(self) -> None:
        if self.config_digest != self.committee.digest():
            raise InputError("config_digest", "does not match the committee")
        if self.me is not None and self.committee.index_of(self.me) is None:
            raise InputError("me", f"0x{self.me.hex()} is not a committee member")
        if self.stage_delay < 0:
            raise InputError("stage_delay", f"must be >= 0, got {self.stage_delay}")
        if self.window_rounds < 1:
            raise InputError("window_rounds", f"must be >= 1, got {self.window_rounds}")

    @classmethod
    def create(
        cls,
        domain: Domain,
        committee: CommitteeConfig,
        me: bytes | None,
        *,
        stage_delay: float = 10.0,
        window_rounds: int = 16,
    ) -> CollectorContext:
        """Return a context for ``committee`` with the config digest computed."""
        return cls(domain, committee, committee.digest(), me, stage_delay, window_rounds)


@dataclass(frozen=True, slots=True)
class RoundState:
    """What the collector knows about one round (one anchor block of this configuration)."""

    block_number: int
    signed: Mapping[bytes, Mapping[bytes, SignedReport]] = field(default_factory=dict)  # digest -> signer -> msg
    digests_of: Mapping[bytes, tuple[bytes, ...]] = field(default_factory=dict)  # signer -> digests, <= 2
    own_digest: bytes | None = None  # the digest this node asked to sign
    own: SignedReport | None = None  # this node's signed report
    certificate: QuorumCertificate | None = None
    certified_at: float | None = None
    transmit_position: int | None = None  # own position in the round's schedule (set with the certificate)
    transmitted_at: float | None = None
    attested_digest: bytes | None = None
    attested_block_hash: bytes | None = None  # the canonical hash of B (the attested report's)
    reported: frozenset[tuple[str, bytes]] = frozenset()  # (evidence kind, signer) already submitted


@dataclass(frozen=True, slots=True)
class CollectorState:
    """The collector: context, chain view (head, newest attested round) and the rounds in the window."""

    context: CollectorContext
    head: int
    latest_attested: int | None = None
    forgotten_through: int = -1  # rounds at or below this block were dropped; never decreases (head may reorg)
    rounds: Mapping[int, RoundState] = field(default_factory=dict)  # block number -> round
    ejected: frozenset[bytes] = frozenset()  # members whose signatures the oracle refuses (never certified)

    def get_round(self, block_number: int) -> RoundState | None:
        """Return the state of round ``block_number`` or None if it is not kept."""
        return self.rounds.get(block_number)

    def get_certificate(self, block_number: int) -> QuorumCertificate | None:
        """Return the certificate of round ``block_number`` if this collector has built one."""
        rnd = self.rounds.get(block_number)
        return None if rnd is None else rnd.certificate


def init_collector_state(context: CollectorContext, head: int) -> CollectorState:
    """Return an empty collector at chain head ``head``."""
    if head < 0:
        raise InputError("head", f"must be >= 0, got {head}")
    return CollectorState(context=context, head=head)


# --- effects -----------------------------------------------------------------------------------------------------


class RejectReason(enum.Enum):
    """Why an input was dropped (a metrics label)."""

    WRONG_CONFIG_DIGEST = "wrong_config_digest"
    NOT_A_MEMBER = "not_a_member"
    NOT_ANCHOR_BLOCK = "not_anchor_block"
    OUTSIDE_WINDOW = "outside_window"
    DUPLICATE = "duplicate"
    TOO_MANY_DIGESTS = "too_many_digests"
    BAD_SIGNATURE = "bad_signature"
    CONFLICTING_OWN_REPORT = "conflicting_own_report"
    ROUND_CLOSED = "round_closed"
    NOT_OWN_REPORT = "not_own_report"
    NOT_REQUESTED = "not_requested"


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Gossip this signed report to the committee."""

    signed: SignedReport


@dataclass(frozen=True, slots=True)
class SignReport:
    """Record ``round_key -> digest`` durably in the slashing-protection store, then sign and feed the result back
    through :func:`on_own_signed_report`. Never sign if the store refuses."""

    round_key: RoundKey
    digest: bytes
    report: Report


@dataclass(frozen=True, slots=True)
class ArchiveSignedReport:
    """Keep this valid signed report in the dispute archive."""

    signed: SignedReport
    digest: bytes


@dataclass(frozen=True, slots=True)
class CertificateFormed:
    """A quorum signed ``certificate.report``: informational (latency metrics, archive)."""

    certificate: QuorumCertificate
    digest: bytes


@dataclass(frozen=True, slots=True)
class Transmit:
    """Post this certificate on-chain (the contract accepts only rounds newer than its latest)."""

    certificate: QuorumCertificate


@dataclass(frozen=True, slots=True)
class SubmitEvidence:
    """Submit this evidence of misbehaviour (and keep it in a dispute file)."""

    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Rejected:
    """The input was dropped and the state left unchanged; count it under ``reason``."""

    reason: RejectReason


Effect = Broadcast | SignReport | ArchiveSignedReport | CertificateFormed | Transmit | SubmitEvidence | Rejected
Transition = tuple[CollectorState, tuple[Effect, ...]]


def _reject(state: CollectorState, reason: RejectReason) -> Transition:
    return state, (Rejected(reason),)


# --- predicates --------------------------------------------------------------------------------------------------


def is_in_window(state: CollectorState, block_number: int) -> bool:
    """Check if round ``block_number`` is neither forgotten nor more than one period ahead of the head."""
    ctx = state.context
    return is_in_round_window(
        block_number, state.head, state.forgotten_through, ctx.window_rounds, ctx.committee.round_period
    )


def is_round_open(state: CollectorState, block_number: int) -> bool:
    """Check if round ``block_number`` can still be attested (no newer or equal round is attested)."""
    return is_after_attested(block_number, state.latest_attested)


# --- handlers ----------------------------------------------------------------------------------------------------


def on_signed_report(state: CollectorState, msg: SignedReport, now: float) -> Transition:
    """Return the transition for a signed report received from the network."""
    ctx = state.context
    block = msg.report.block_number
    # the report belongs to this configuration
    if msg.report.config_digest != ctx.config_digest:
        return _reject(state, RejectReason.WRONG_CONFIG_DIGEST)
    # the signer is a committee member
    if ctx.committee.index_of(msg.signer) is None:
        return _reject(state, RejectReason.NOT_A_MEMBER)
    # rounds start at anchor blocks only
    if not is_anchor_block(block, ctx.committee.round_period):
        return _reject(state, RejectReason.NOT_ANCHOR_BLOCK)
    # memory is bounded: only rounds inside the window are kept
    if not is_in_window(state, block):
        return _reject(state, RejectReason.OUTSIDE_WINDOW)
    rnd = state.rounds.get(block) or RoundState(block_number=block)
    known = rnd.digests_of.get(msg.signer, ())
    # one report per signer per digest (re-broadcasts are the common case: compare before hashing)
    if any(rnd.signed[d][msg.signer].report == msg.report for d in known):
        return _reject(state, RejectReason.DUPLICATE)
    digest = compute_report_digest(ctx.domain, msg.report)
    # at most two digests per signer (already proof of equivocation)
    if len(known) >= MAX_DIGESTS_PER_SIGNER:
        return _reject(state, RejectReason.TOO_MANY_DIGESTS)
    # the signature is the signer's, over this report
    if recover_signer(digest, msg.signature) != msg.signer:
        return _reject(state, RejectReason.BAD_SIGNATURE)
    rnd, effects = _process_valid_signed_report(ctx, rnd, msg, digest, now, state.ejected)
    rnd, transmit = _process_transmission(state, rnd, now)
    return _with_round(state, rnd), effects + transmit


def on_local_report(state: CollectorState, report: Report, now: float) -> Transition:
    """Return the transition for the report this node computed itself (asks the shell to record and sign it)."""
    ctx = state.context
    block = report.block_number
    # a watcher has no key
    if ctx.me is None:
        return _reject(state, RejectReason.NOT_A_MEMBER)
    # the report belongs to this configuration
    if report.config_digest != ctx.config_digest:
        return _reject(state, RejectReason.WRONG_CONFIG_DIGEST)
    # rounds start at anchor blocks only
    if not is_anchor_block(block, ctx.committee.round_period):
        return _reject(state, RejectReason.NOT_ANCHOR_BLOCK)
    if not is_in_window(state, block):
        return _reject(state, RejectReason.OUTSIDE_WINDOW)
    rnd = state.rounds.get(block) or RoundState(block_number=block)
    # an attested round needs no more signatures
    if rnd.attested_digest is not None or not is_round_open(state, block):
        return _reject(state, RejectReason.ROUND_CLOSED)
    digest = compute_report_digest(ctx.domain, report)
    verdict = check_can_sign(rnd.own_digest, digest)
    # never ask to sign a second digest for one round key
    if verdict is SigningVerdict.REFUSE:
        return _reject(state, RejectReason.CONFLICTING_OWN_REPORT)
    # the same report again: already requested or signed
    if verdict is SigningVerdict.SIGN_AGAIN:
        return state, ()
    rnd = replace(rnd, own_digest=digest)
    return _with_round(state, rnd), (SignReport(report.round_key, digest, report),)


def on_own_signed_report(state: CollectorState, signed: SignedReport, now: float) -> Transition:
    """Return the transition for this node's own signature, released by the shell after the protection store."""
    ctx = state.context
    block = signed.report.block_number
    # it is this node's signature
    if ctx.me is None or signed.signer != ctx.me:
        return _reject(state, RejectReason.NOT_OWN_REPORT)
    rnd = state.rounds.get(block)
    digest = compute_report_digest(ctx.domain, signed.report)
    # of the digest this node asked to sign (and the round is still kept)
    if rnd is None or rnd.own_digest != digest or signed.report.config_digest != ctx.config_digest:
        return _reject(state, RejectReason.NOT_REQUESTED)
    # already delivered
    if rnd.own is not None:
        return _reject(state, RejectReason.DUPLICATE)
    # a valid signature
    if recover_signer(digest, signed.signature) != signed.signer:
        return _reject(state, RejectReason.BAD_SIGNATURE)
    effects: tuple[Effect, ...] = (Broadcast(signed),)
    if digest not in rnd.digests_of.get(signed.signer, ()):
        rnd, more = _process_valid_signed_report(ctx, rnd, signed, digest, now, state.ejected)
        effects += more
    rnd = replace(rnd, own=signed)
    rnd, transmit = _process_transmission(state, rnd, now)
    return _with_round(state, rnd), effects + transmit


def on_tick(state: CollectorState, now: float) -> Transition:
    """Return the transition at time ``now``: the transmissions that are due."""
    effects: tuple[Effect, ...] = ()
    rounds = dict(state.rounds)
    changed = False
    for block in sorted(state.rounds):
        rnd = state.rounds[block]
        if rnd.attested_digest is not None or not is_round_open(state, block):
            continue
        rnd, transmit = _process_transmission(state, rnd, now)
        effects += transmit
        if rnd is not state.rounds[block]:
            rounds[block] = rnd
            changed = True
    if not changed:
        return state, effects
    return replace(state, rounds=rounds), effects


def on_new_head(state: CollectorState, head: int) -> Transition:
    """Return the transition for a new chain head: rounds that fell out of the window are forgotten."""
    if head < 0:
        return _reject(state, RejectReason.OUTSIDE_WINDOW)
    ctx = state.context
    # a forgotten round is never collected again, so it can never get a second certificate
    floor = compute_window_floor(head, state.forgotten_through, ctx.window_rounds, ctx.committee.round_period)
    rounds = {b: r for b, r in state.rounds.items() if b > floor}
    return replace(state, head=head, forgotten_through=floor, rounds=rounds), ()


def on_round_attested(state: CollectorState, key: RoundKey, digest: bytes, block_hash: bytes) -> Transition:
    """Return the transition for a round attested on-chain (report ``digest`` about ``block_hash``): it and older
    rounds close; deviations about that block hash are reported."""
    ctx = state.context
    config_digest, block = key
    # the attested round belongs to this configuration
    if config_digest != ctx.config_digest:
        return _reject(state, RejectReason.WRONG_CONFIG_DIGEST)
    latest = block if state.latest_attested is None else max(state.latest_attested, block)
    state = replace(state, latest_attested=latest)
    if not is_in_window(state, block) and block not in state.rounds:
        return state, ()
    rnd = state.rounds.get(block) or RoundState(block_number=block)
    if rnd.attested_digest is not None:
        return state, ()
    rnd = replace(rnd, attested_digest=digest, attested_block_hash=block_hash)
    effects: tuple[Effect, ...] = ()
    for signed_digest in sorted(rnd.signed):
        if signed_digest == digest:
            continue
        for signer in sorted(rnd.signed[signed_digest]):
            rnd, more = _process_deviation(ctx, rnd, rnd.signed[signed_digest][signer], signed_digest)
            effects += more
    return _with_round(state, rnd), effects


def on_members_ejected(state: CollectorState, ejected: frozenset[bytes], now: float) -> Transition:
    """Return the transition for the set of members the oracle now refuses (ejected below the minimum stake):
    certificates naming one are rebuilt from the other signers of their digest, or dropped until enough sign."""
    ctx = state.context
    # nothing changed
    if ejected == state.ejected:
        return state, ()
    state = replace(state, ejected=ejected)
    effects: tuple[Effect, ...] = ()
    for block in sorted(state.rounds):
        rnd = state.rounds[block]
        certificate = rnd.certificate
        if certificate is None or rnd.attested_digest is not None:
            continue
        if not any(ctx.committee.members[i] in ejected for i in _bits(certificate.signer_bitmap)):
            continue
        digest = compute_report_digest(ctx.domain, certificate.report)
        rnd = replace(rnd, certificate=None, certified_at=None, transmit_position=None, transmitted_at=None)
        rnd, more = _certify(ctx, rnd, digest, now, ejected)
        state = _with_round(state, rnd)
        effects += more
    return state, effects


# --- state transitions -------------------------------------------------------------------------------------------


def _bits(bitmap: int) -> list[int]:
    return [i for i in range(bitmap.bit_length()) if bitmap >> i & 1]


def _with_round(state: CollectorState, rnd: RoundState) -> CollectorState:
    rounds = dict(state.rounds)
    rounds[rnd.block_number] = rnd
    return replace(state, rounds=rounds)


def _process_valid_signed_report(
    ctx: CollectorContext, rnd: RoundState, msg: SignedReport, digest: bytes, now: float, ejected: frozenset[bytes]
) -> tuple[RoundState, tuple[Effect, ...]]:
    """Return the round with a verified signed report added, and the archive/evidence/certificate effects."""
    effects: tuple[Effect, ...] = (ArchiveSignedReport(msg, digest),)
    known = rnd.digests_of.get(msg.signer, ())
    by_signer = dict(rnd.signed.get(digest, {}))
    by_signer[msg.signer] = msg
    signed = dict(rnd.signed)
    signed[digest] = by_signer
    digests_of = dict(rnd.digests_of)
    digests_of[msg.signer] = (*known, digest)
    rnd = replace(rnd, signed=signed, digests_of=digests_of)
    # upon p_j signed two digests for K: equivocation
    if known and ("equivocation", msg.signer) not in rnd.reported:
        first = rnd.signed[known[0]][msg.signer]
        evidence: Evidence = compute_equivocation(ctx.domain, first, msg)
        rnd = replace(rnd, reported=rnd.reported | {("equivocation", msg.signer)})
        effects += (SubmitEvidence(evidence),)
    # upon p_j signed d != attested(K): deviation
    if rnd.attested_digest is not None and digest != rnd.attested_digest:
        rnd, more = _process_deviation(ctx, rnd, msg, digest)
        effects += more
    rnd, more = _certify(ctx, rnd, digest, now, ejected)
    return rnd, effects + more


def _certify(
    ctx: CollectorContext, rnd: RoundState, digest: bytes, now: float, ejected: frozenset[bytes]
) -> tuple[RoundState, tuple[Effect, ...]]:
    """Return the round certified for ``digest`` if it has no certificate and a quorum of non-ejected signers."""
    # upon |{p_j signed d for K} - E| >= q and no certificate for K: certify d
    voters = {s: m for s, m in rnd.signed.get(digest, {}).items() if s not in ejected}
    if rnd.certificate is not None or len(voters) < ctx.committee.quorum:
        return rnd, ()
    report = next(iter(voters.values())).report
    certificate = build_certificate(ctx.committee, report, {s: m.signature for s, m in voters.items()})
    position = None
    if ctx.me is not None:
        position = get_committee_position(ctx.committee, (ctx.config_digest, rnd.block_number), ctx.me)
    rnd = replace(rnd, certificate=certificate, certified_at=now, transmit_position=position)
    return rnd, (CertificateFormed(certificate, digest),)


def _process_deviation(
    ctx: CollectorContext, rnd: RoundState, msg: SignedReport, digest: bytes
) -> tuple[RoundState, tuple[Effect, ...]]:
    attested = rnd.attested_digest
    if attested is None or digest == attested or ("deviation", msg.signer) in rnd.reported:
        return rnd, ()
    # a node never submits evidence against itself: it would pay gas to slash its own stake
    if msg.signer == ctx.me:
        return rnd, ()
    # only a report about the canonical block deviates: one about a reorged fork's block was honest when signed
    if msg.report.block_hash != rnd.attested_block_hash:
        return rnd, ()
    rnd = replace(rnd, reported=rnd.reported | {("deviation", msg.signer)})
    return rnd, (SubmitEvidence(Deviation(msg, attested)),)


def _process_transmission(state: CollectorState, rnd: RoundState, now: float) -> tuple[RoundState, tuple[Effect, ...]]:
    """Return the round and a Transmit effect if this node's turn in the schedule has come."""
    ctx = state.context
    if rnd.certificate is None or rnd.certified_at is None or ctx.me is None:
        return rnd, ()
    if rnd.attested_digest is not None or not is_round_open(state, rnd.block_number):
        return rnd, ()
    if rnd.transmitted_at is not None:
        # a lost transaction is retried once the whole schedule has had its turn
        if now - rnd.transmitted_at < ctx.committee.n * ctx.stage_delay or ctx.stage_delay == 0:
            return rnd, ()
    else:
        if rnd.transmit_position is None:
            return rnd, ()
        # position p waits p * stageDelay after the certificate formed
        if now - rnd.certified_at < compute_transmit_delay(rnd.transmit_position, ctx.stage_delay):
            return rnd, ()
    return replace(rnd, transmitted_at=now), (Transmit(rnd.certificate),)


def get_committee_position(committee: CommitteeConfig, round_key: RoundKey, member: bytes) -> int | None:
    """Return ``member``'s transmission position in round ``round_key``."""
    return get_schedule_position(compute_transmission_schedule(round_key, committee), member)
