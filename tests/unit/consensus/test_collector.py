"""The quorum collector's handlers, one behaviour per test; invalid input leaves the state unchanged."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pmoracle.consensus.certificate import is_valid_certificate
from pmoracle.consensus.collector import (
    ArchiveSignedReport,
    Broadcast,
    CertificateFormed,
    CollectorContext,
    CollectorState,
    Effect,
    Rejected,
    RejectReason,
    SignReport,
    SubmitEvidence,
    Transmit,
    get_committee_position,
    init_collector_state,
    on_local_report,
    on_members_ejected,
    on_new_head,
    on_own_signed_report,
    on_round_attested,
    on_signed_report,
    on_tick,
)
from pmoracle.consensus.evidence import Deviation, Equivocation, is_deviation, is_equivocation
from pmoracle.consensus.report import SignedReport, compute_report_digest, sign_report
from pmoracle.errors import InputError
from tests.unit.consensus.factories import DOMAIN, make_committee, make_key, make_report, make_signed

N = 4  # quorum 3, f 1
BLOCK = 50
HEAD = 52


def _state(me: int | None = 0, n: int = N, **kwargs: float) -> CollectorState:
    committee = make_committee(n)
    context = CollectorContext.create(
        DOMAIN,
        committee,
        None if me is None else committee.members[me],
        window_rounds=3,
        **kwargs,  # type: ignore[arg-type]
    )
    return init_collector_state(context, HEAD)


def _feed(state: CollectorState, *msgs: SignedReport, now: float = 0.0) -> tuple[CollectorState, list[Effect]]:
    effects: list[Effect] = []
    for msg in msgs:
        state, more = on_signed_report(state, msg, now)
        effects.extend(more)
    return state, effects


def _of(effects: list[Effect] | tuple[Effect, ...], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in effects if isinstance(e, kind)]


def _digest(variant: int = 0, block: int = BLOCK) -> bytes:
    return compute_report_digest(DOMAIN, make_report(make_committee(N), block, variant))


def _hash(block: int = BLOCK) -> bytes:
    return make_report(make_committee(N), block).block_hash


def test_quorum_of_same_digest_forms_one_valid_certificate() -> None:
    state, effects = _feed(_state(), make_signed(N, 1, BLOCK), make_signed(N, 2, BLOCK))
    assert _of(effects, CertificateFormed) == []
    assert len(_of(effects, ArchiveSignedReport)) == 2
    state, effects = _feed(state, make_signed(N, 3, BLOCK), now=4.0)
    [formed] = _of(effects, CertificateFormed)
    assert formed.digest == _digest()
    assert formed.certificate.signer_bitmap == 0b1110
    assert is_valid_certificate(DOMAIN, make_committee(N), formed.certificate)
    assert state.get_certificate(BLOCK) == formed.certificate
    assert state.rounds[BLOCK].certified_at == 4.0
    # a fourth signature neither changes the certificate nor forms another
    state, effects = _feed(state, make_signed(N, 0, BLOCK))
    assert _of(effects, CertificateFormed) == []
    assert state.get_certificate(BLOCK) == formed.certificate


def test_split_votes_form_no_certificate() -> None:
    state, effects = _feed(_state(), make_signed(N, 0, BLOCK, 0), make_signed(N, 1, BLOCK, 0))
    state, effects = _feed(state, make_signed(N, 2, BLOCK, 1), make_signed(N, 3, BLOCK, 1))
    assert _of(effects, CertificateFormed) == []
    assert state.get_certificate(BLOCK) is None


def _wrong_config(msg: SignedReport) -> SignedReport:
    other = make_committee(N, quorum=4)
    return replace(msg, report=replace(msg.report, config_digest=other.digest()))


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (_wrong_config(make_signed(N, 1, BLOCK)), RejectReason.WRONG_CONFIG_DIGEST),
        (sign_report(DOMAIN, make_report(make_committee(N), BLOCK), make_key(9)), RejectReason.NOT_A_MEMBER),
        (make_signed(N, 1, BLOCK + 1), RejectReason.NOT_ANCHOR_BLOCK),
        (make_signed(N, 1, BLOCK - 30), RejectReason.OUTSIDE_WINDOW),  # window 3 rounds of 10 blocks
        (make_signed(N, 1, BLOCK + 20), RejectReason.OUTSIDE_WINDOW),  # more than a period ahead
        (replace(make_signed(N, 1, BLOCK), signature=make_signed(N, 2, BLOCK).signature), RejectReason.BAD_SIGNATURE),
        (
            replace(make_signed(N, 1, BLOCK), report=make_report(make_committee(N), BLOCK, 5)),
            RejectReason.BAD_SIGNATURE,
        ),
    ],
)
def test_invalid_signed_report_leaves_state_unchanged(msg: SignedReport, reason: RejectReason) -> None:
    state, _ = _feed(_state(), make_signed(N, 2, BLOCK))
    after, effects = on_signed_report(state, msg, 1.0)
    assert after is state
    assert effects == (Rejected(reason),)


def test_duplicate_and_third_digest_rejected() -> None:
    state, _ = _feed(_state(), make_signed(N, 1, BLOCK, 0), make_signed(N, 1, BLOCK, 1))
    for msg, reason in [
        (make_signed(N, 1, BLOCK, 0), RejectReason.DUPLICATE),
        (make_signed(N, 1, BLOCK, 2), RejectReason.TOO_MANY_DIGESTS),
    ]:
        after, effects = on_signed_report(state, msg, 1.0)
        assert after is state
        assert effects == (Rejected(reason),)
    assert state.rounds[BLOCK].digests_of[make_committee(N).members[1]] == (_digest(0), _digest(1))


def test_equivocation_detected_once_with_valid_evidence() -> None:
    state, effects = _feed(_state(), make_signed(N, 1, BLOCK, 1), make_signed(N, 1, BLOCK, 0))
    [submit] = _of(effects, SubmitEvidence)
    assert isinstance(submit.evidence, Equivocation)
    assert is_equivocation(DOMAIN, make_committee(N), submit.evidence)
    # both messages stay archived as evidence, and the equivocator's honest vote still counts
    state, effects = _feed(state, make_signed(N, 2, BLOCK, 0), make_signed(N, 3, BLOCK, 0))
    assert _of(effects, SubmitEvidence) == []
    assert len(_of(effects, CertificateFormed)) == 1


def test_deviation_reported_on_attestation_and_for_late_messages() -> None:
    state, _ = _feed(_state(), make_signed(N, 1, BLOCK, 0), make_signed(N, 2, BLOCK, 1))
    key = (make_committee(N).digest(), BLOCK)
    state, effects = on_round_attested(state, key, _digest(0), _hash())
    [submit] = _of(effects, SubmitEvidence)
    assert isinstance(submit.evidence, Deviation)
    assert submit.evidence.signed == make_signed(N, 2, BLOCK, 1)
    assert is_deviation(DOMAIN, make_committee(N), submit.evidence)
    state, effects = _feed(state, make_signed(N, 3, BLOCK, 2))
    [late] = _of(effects, SubmitEvidence)
    assert isinstance(late.evidence, Deviation) and late.evidence.signed.signer == make_committee(N).members[3]
    # attesting again reports nothing twice
    _, effects = on_round_attested(state, key, _digest(0), _hash())
    assert _of(effects, SubmitEvidence) == []


def test_a_node_never_reports_its_own_deviation() -> None:
    # node 0 signed digest 1; a quorum attests digest 0 (a colluding quorum, or node 0 was wrong): the evidence
    # against node 0 is the others' to submit, never node 0's own (it would pay gas to slash itself)
    state, _ = _feed(_state(me=0), make_signed(N, 0, BLOCK, 1), make_signed(N, 2, BLOCK, 1))
    state, effects = on_round_attested(state, (make_committee(N).digest(), BLOCK), _digest(0), _hash())
    [submit] = _of(effects, SubmitEvidence)
    assert submit.evidence.signed.signer == make_committee(N).members[2]
    # nor when its own report arrives after the attestation (a late echo of its gossip)
    fresh, _ = on_round_attested(_state(me=0), (make_committee(N).digest(), BLOCK), _digest(0), _hash())
    _, effects = _feed(fresh, make_signed(N, 0, BLOCK, 1))
    assert _of(effects, SubmitEvidence) == []
    # a watcher (no own identity) reports every deviation
    watcher, _ = _feed(_state(me=None), make_signed(N, 0, BLOCK, 1))
    _, effects = on_round_attested(watcher, (make_committee(N).digest(), BLOCK), _digest(0), _hash())
    assert len(_of(effects, SubmitEvidence)) == 1


def test_no_deviation_is_reported_for_a_report_about_a_reorged_block() -> None:
    # a deep reorg replaced block B after members 1 and 2 signed it; the round is attested over the new hash
    old_fork = replace(make_report(make_committee(N), BLOCK), block_hash=b"\xee" * 32)
    signed_on_old_fork = [sign_report(DOMAIN, old_fork, make_key(i)) for i in (1, 2)]
    state, _ = _feed(_state(), signed_on_old_fork[0])
    state, effects = on_round_attested(state, (make_committee(N).digest(), BLOCK), _digest(0), _hash())
    assert _of(effects, SubmitEvidence) == []
    # nor when such a report arrives after the attestation
    state, effects = _feed(state, signed_on_old_fork[1])
    assert _of(effects, SubmitEvidence) == []
    # a report about the canonical block that differs is still a deviation
    _, effects = _feed(state, make_signed(N, 3, BLOCK, 1))
    [submit] = _of(effects, SubmitEvidence)
    assert isinstance(submit.evidence, Deviation) and submit.evidence.signed == make_signed(N, 3, BLOCK, 1)


def test_a_member_ejected_on_chain_never_counts_toward_a_certificate() -> None:
    committee = make_committee(N)
    ejected = frozenset({committee.members[3]})
    state, effects = _feed(_state(), *(make_signed(N, i, BLOCK) for i in (3, 1, 2)), now=1.0)
    [formed] = _of(effects, CertificateFormed)
    assert formed.certificate.signer_bitmap == 0b1110
    # member 3 is ejected (the oracle would refuse this certificate): two others are no quorum, it is dropped
    state, effects = on_members_ejected(state, ejected, 2.0)
    assert effects == () and state.get_certificate(BLOCK) is None and state.ejected == ejected
    again, effects = on_members_ejected(state, ejected, 3.0)
    assert again is state and effects == ()
    # member 0's signature makes a quorum without member 3
    state, effects = _feed(state, make_signed(N, 0, BLOCK), now=4.0)
    [formed] = _of(effects, CertificateFormed)
    assert formed.certificate.signer_bitmap == 0b0111 and is_valid_certificate(DOMAIN, committee, formed.certificate)
    assert state.rounds[BLOCK].certified_at == 4.0


def test_a_certificate_naming_an_ejected_member_is_rebuilt_from_the_others() -> None:
    committee = make_committee(N)
    state, _ = _feed(_state(), *(make_signed(N, i, BLOCK) for i in (3, 1, 2, 0)), now=1.0)
    assert state.get_certificate(BLOCK).signer_bitmap == 0b1110  # type: ignore[union-attr]
    state, effects = on_members_ejected(state, frozenset({committee.members[1]}), 2.0)
    [formed] = _of(effects, CertificateFormed)
    assert formed.certificate.signer_bitmap == 0b1101 and state.rounds[BLOCK].transmitted_at is None


def test_attestation_of_other_config_rejected() -> None:
    state = _state()
    after, effects = on_round_attested(state, (b"\x07" * 32, BLOCK), _digest(), _hash())
    assert after is state and effects == (Rejected(RejectReason.WRONG_CONFIG_DIGEST),)


def test_local_report_asks_to_sign_once_and_refuses_a_conflict() -> None:
    state = _state()
    report = make_report(make_committee(N), BLOCK)
    state, effects = on_local_report(state, report, 0.0)
    assert effects == (SignReport(report.round_key, _digest(), report),)
    again, effects = on_local_report(state, report, 1.0)
    assert again is state and effects == ()
    after, effects = on_local_report(state, make_report(make_committee(N), BLOCK, 1), 1.0)
    assert after is state and effects == (Rejected(RejectReason.CONFLICTING_OWN_REPORT),)


def test_local_report_refused_for_watcher_and_closed_round() -> None:
    report = make_report(make_committee(N), BLOCK)
    watcher = _state(me=None)
    assert on_local_report(watcher, report, 0.0) == (watcher, (Rejected(RejectReason.NOT_A_MEMBER),))
    state, _ = on_round_attested(_state(), (make_committee(N).digest(), BLOCK), _digest(), _hash())
    assert on_local_report(state, report, 0.0) == (state, (Rejected(RejectReason.ROUND_CLOSED),))


def test_own_signed_report_broadcasts_and_counts() -> None:
    state = _state()
    signed = make_signed(N, 0, BLOCK)
    # not requested yet
    assert on_own_signed_report(state, signed, 0.0) == (state, (Rejected(RejectReason.NOT_REQUESTED),))
    state, _ = on_local_report(state, signed.report, 0.0)
    # someone else's signature is not ours
    other = make_signed(N, 1, BLOCK)
    assert on_own_signed_report(state, other, 0.0) == (state, (Rejected(RejectReason.NOT_OWN_REPORT),))
    forged = replace(signed, signature=other.signature)
    assert on_own_signed_report(state, forged, 0.0) == (state, (Rejected(RejectReason.BAD_SIGNATURE),))
    state, effects = on_own_signed_report(state, signed, 2.0)
    assert effects[0] == Broadcast(signed)
    assert _of(effects, ArchiveSignedReport) == [ArchiveSignedReport(signed, _digest())]
    assert state.rounds[BLOCK].own == signed
    assert on_own_signed_report(state, signed, 3.0) == (state, (Rejected(RejectReason.DUPLICATE),))


def test_own_report_is_broadcast_once() -> None:
    # re-publication belongs to the reliable-broadcast layer (p2p.reports.ReportGossip), never to the tick
    state = _state()
    signed = make_signed(N, 0, BLOCK)
    state, _ = on_local_report(state, signed.report, 0.0)
    state, effects = on_own_signed_report(state, signed, 0.0)
    assert _of(effects, Broadcast) == [Broadcast(signed)]
    for now in (5.0, 50.0, 500.0):
        same, effects = on_tick(state, now)
        assert same is state and effects == ()


@pytest.mark.parametrize("member", range(N))
def test_transmission_waits_for_schedule_position(member: int) -> None:
    committee = make_committee(N)
    position = get_committee_position(committee, (committee.digest(), BLOCK), committee.members[member])
    assert position is not None
    state = _state(me=member, stage_delay=10.0)
    others = [make_signed(N, i, BLOCK) for i in range(N) if i != member]
    state, effects = _feed(state, *others, now=100.0)
    [formed] = _of(effects, CertificateFormed)
    due = 100.0 + 10.0 * position
    if position == 0:
        assert _of(effects, Transmit) == [Transmit(formed.certificate)]
    else:
        assert _of(effects, Transmit) == []
        state, effects = on_tick(state, due - 0.01)
        assert _of(effects, Transmit) == []
        state, effects = on_tick(state, due)
        assert effects == (Transmit(formed.certificate),)
    state, effects = on_tick(state, due + 1.0)
    assert effects == ()
    # a lost transaction is retried once every member had its turn
    state, effects = on_tick(state, due + 10.0 * N)
    assert effects == (Transmit(formed.certificate),)


def test_no_transmission_after_attestation_or_newer_round() -> None:
    committee = make_committee(N)
    state = _state(me=0, stage_delay=10.0)
    state, _ = on_round_attested(state, (committee.digest(), BLOCK + 10), _digest(block=BLOCK + 10),
                                 _hash(BLOCK + 10))  # fmt: skip
    state, effects = _feed(state, *(make_signed(N, i, BLOCK) for i in range(1, N)), now=0.0)
    assert len(_of(effects, CertificateFormed)) == 1
    state, effects = on_tick(state, 1000.0)
    assert _of(effects, Transmit) == []


def test_watcher_collects_but_never_transmits() -> None:
    state, effects = _feed(_state(me=None), *(make_signed(N, i, BLOCK) for i in range(N)))
    assert len(_of(effects, CertificateFormed)) == 1
    state, effects = on_tick(state, 1e6)
    assert effects == ()


def test_new_head_forgets_old_rounds() -> None:
    state, _ = _feed(_state(), make_signed(N, 1, 30), make_signed(N, 1, 40), make_signed(N, 1, 50))
    assert sorted(state.rounds) == [30, 40, 50]
    state, _ = on_new_head(state, 71)  # window 3 rounds: keep B > 41
    assert sorted(state.rounds) == [50]
    after, effects = on_signed_report(state, make_signed(N, 2, 40), 0.0)
    assert after is state and effects == (Rejected(RejectReason.OUTSIDE_WINDOW),)
    # a head that goes back (reorg) does not bring a forgotten round back
    state, _ = on_new_head(state, 52)
    after, effects = on_signed_report(state, make_signed(N, 2, 40), 0.0)
    assert after is state and effects == (Rejected(RejectReason.OUTSIDE_WINDOW),)


def test_context_validation() -> None:
    committee = make_committee(N)
    with pytest.raises(InputError) as info:
        CollectorContext.create(DOMAIN, committee, b"\x05" * 20)
    assert info.value.field == "me"
    with pytest.raises(InputError) as info:
        CollectorContext(DOMAIN, committee, b"\x00" * 32, None, 1.0, 2)
    assert info.value.field == "config_digest"
    with pytest.raises(InputError):
        init_collector_state(CollectorContext.create(DOMAIN, committee, None), -1)
