"""The FROST signing machine's handlers, one check per test; a rejected input leaves the very same state."""

from __future__ import annotations

import dataclasses

import pytest

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.frost_evm import EvmSignature, is_valid_evm_signature
from pmoracle.consensus.report import sign_digest
from pmoracle.errors import InputError
from pmoracle.testing.frost import FrostTestCommittee, make_frost_test_committee
from tests.unit.consensus.frost_round_harness import BLOCK, HEAD, STAGE, Cluster, make_certificate, report_digest

FC4 = make_frost_test_committee(4)  # t = q = 3
FC7 = make_frost_test_committee(7)  # t = q = 5
DOMAIN = FC4.committee.network.domain
ROUND = (FC4.committee.config.digest(), BLOCK)
STRANGER_KEY = b"\x42" * 32


def _commitment(member: int, attempt: int = 0, block: int = BLOCK, seed: bytes = b"a") -> frost.SigningCommitment:
    share = FC4.results[member].signing_share
    return frost.commit(member, share, (seed * 32)[:32], (seed * 32)[1:33] + b"x")[1]


def _signed_commitment(
    member: int, attempt: int = 0, block: int = BLOCK, seed: bytes = b"a"
) -> fr.SignedFrostCommitment:
    key = FC4.committee.signing_keys[member - 1]
    round_key = (FC4.committee.config.digest(), block)
    return fr.sign_frost_commitment(DOMAIN, round_key, attempt, _commitment(member, attempt, block, seed), key)


def _state(me: int | None = 1) -> fr.FrostState:
    return fr.init_frost_state(FC4.context(me, stage_delay=STAGE, window_rounds=3), HEAD)


def _rejected(before: fr.FrostState, transition: fr.Transition, reason: fr.RejectReason) -> None:
    after, effects = transition
    assert after is before
    assert effects == (fr.Rejected(reason),)


# --- context -----------------------------------------------------------------------------------------------------


def test_context_refuses_a_threshold_below_the_quorum_and_a_foreign_group_key() -> None:
    first = FC4.results[1]
    config = FC4.committee.config
    with pytest.raises(InputError, match="threshold"):
        fr.FrostRoundContext.create(DOMAIN, config, first.group_public_key, first.verification_shares, 2, 1)
    other = make_frost_test_committee(4, "another-committee")
    with pytest.raises(InputError, match="group_public_key"):
        fr.FrostRoundContext.create(DOMAIN, config, other.group_public_key, first.verification_shares, 3, 1)
    with pytest.raises(InputError, match="no FROST group key"):
        keyless = dataclasses.replace(config, group_key=None)
        fr.FrostRoundContext.create(DOMAIN, keyless, first.group_public_key, first.verification_shares, 3, 1)
    with pytest.raises(InputError, match="verification_shares"):
        shares = dict(first.verification_shares)
        del shares[4]
        fr.FrostRoundContext.create(DOMAIN, config, first.group_public_key, shares, 3, 1)
    with pytest.raises(InputError, match="stage_delay"):
        FC4.context(1, stage_delay=0)
    with pytest.raises(InputError, match="attempts"):
        FC4.context(1, attempts=0)


# --- commitments -------------------------------------------------------------------------------------------------


def test_a_valid_commitment_is_kept() -> None:
    state = _state()
    after, effects = fr.on_commitment(state, _signed_commitment(2), 0.0)
    assert effects == ()
    rnd = after.get_round(BLOCK)
    assert rnd is not None and set(rnd.commitments) == {(0, 2)}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: dataclasses.replace(_signed_commitment(2), config_digest=b"\x01" * 32), "WRONG_CONFIG_DIGEST"),
        (lambda: _signed_commitment(2, block=BLOCK + 1), "NOT_ANCHOR_BLOCK"),
        (lambda: _signed_commitment(2, block=BLOCK + 100), "OUTSIDE_WINDOW"),
        (lambda: _signed_commitment(2, attempt=2), "BAD_ATTEMPT"),
        (
            lambda: fr.sign_frost_commitment(DOMAIN, ROUND, 0, _commitment(2), STRANGER_KEY),
            "NOT_A_MEMBER",
        ),
        (
            lambda: fr.sign_frost_commitment(DOMAIN, ROUND, 0, _commitment(3), FC4.committee.signing_keys[1]),
            "WRONG_IDENTIFIER",
        ),
        (
            lambda: dataclasses.replace(_signed_commitment(2), signature=_signed_commitment(3).signature),
            "BAD_SIGNATURE",
        ),
    ],
)
def test_each_invalid_commitment_is_dropped_with_its_reason(make: object, reason: str) -> None:
    state = _state()
    _rejected(state, fr.on_commitment(state, make(), 0.0), fr.RejectReason[reason])  # type: ignore[operator]


def test_a_repeated_commitment_is_a_duplicate_and_a_second_one_conflicts() -> None:
    state, _ = fr.on_commitment(_state(), _signed_commitment(2), 0.0)
    _rejected(state, fr.on_commitment(state, _signed_commitment(2), 0.0), fr.RejectReason.DUPLICATE)
    other = _signed_commitment(2, seed=b"b")
    _rejected(state, fr.on_commitment(state, other, 0.0), fr.RejectReason.CONFLICTING_COMMITMENT)


def test_a_commitment_of_an_attested_round_is_dropped() -> None:
    state, _ = fr.on_round_attested(_state(), ROUND)
    _rejected(state, fr.on_commitment(state, _signed_commitment(2), 0.0), fr.RejectReason.ROUND_CLOSED)


def test_own_commitments_are_asked_for_once_and_broadcast_only_when_own() -> None:
    state = _state(1)
    state, effects = fr.on_round_opened(state, BLOCK, 0.0)
    assert effects == (fr.IssueCommitments(ROUND, 2),)
    assert fr.on_round_opened(state, BLOCK, 0.0) == (state, ())
    own = _signed_commitment(1)
    _, effects = fr.on_own_commitment(state, own, 0.0)
    assert effects == (fr.BroadcastCommitment(own),)
    _rejected(state, fr.on_own_commitment(state, _signed_commitment(2), 0.0), fr.RejectReason.NOT_OWN)
    fresh = _state(1)
    _rejected(fresh, fr.on_own_commitment(fresh, own, 0.0), fr.RejectReason.NOT_REQUESTED)
    watcher = _state(None)
    _rejected(watcher, fr.on_round_opened(watcher, BLOCK, 0.0), fr.RejectReason.NOT_OWN)


def test_a_round_opened_again_says_its_own_commitments_once_more_and_only_once() -> None:
    # opened ahead, then again as it starts: members that dropped the first broadcast (a late committee install)
    state, _ = fr.on_round_opened(_state(1), BLOCK, 0.0)
    own = (_signed_commitment(1, 0), _signed_commitment(1, 1, seed=b"b"))
    for commitment in own:
        state, _ = fr.on_own_commitment(state, commitment, 0.0)
    state, _ = fr.on_commitment(state, _signed_commitment(2), 0.0)  # another member's is not ours to repeat
    state, effects = fr.on_round_opened(state, BLOCK, 5.0)
    assert effects == tuple(fr.BroadcastCommitment(c) for c in own)
    assert fr.on_round_opened(state, BLOCK, 6.0) == (state, ())


# --- certificate and the happy path ------------------------------------------------------------------------------


def test_all_honest_sign_at_once_and_the_first_transmitter_posts_the_frost_signature() -> None:
    cluster = Cluster(FC4, seed=1)
    cluster.open_round()
    cluster.deliver_all(0.0)
    certificate = make_certificate(FC4)
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
    # attempt 0's set is identifiers 1..3: they sign at once, member 4 does not
    assert [len(m.sign_requests) for m in cluster.members.values()] == [1, 1, 1, 0]
    cluster.deliver_all(1.0)
    digest = report_digest(FC4, certificate.report)
    for member in cluster.members.values():
        assert len(member.signatures) == 1
        formed = member.signatures[0]
        assert formed.signers == 0b0111 and formed.attempt == 0
        assert frost.verify(FC4.group_public_key, digest, formed.signature)
        assert is_valid_evm_signature(
            FC4.committee.config.group_key,  # type: ignore[arg-type]
            digest,
            EvmSignature.from_signature(formed.signature),
        )
    first = [m for m in cluster.members.values() if m.state.rounds[BLOCK].transmit_position == 0]
    assert [t for _, t in first[0].transmissions] == [fr.TransmitFrost(certificate, formed.signature)]
    # the others wait for their turn: position p at p * stage
    cluster.tick(1.0 + STAGE - 0.01)
    assert sum(len(m.transmissions) for m in cluster.members.values()) == 1


def test_a_second_certificate_of_another_digest_is_refused_and_of_the_same_keeps_the_timing() -> None:
    state = _state()
    certificate = make_certificate(FC4)
    state, _ = fr.on_certificate(state, certificate, 1.0)
    _rejected(state, fr.on_certificate(state, certificate, 2.0), fr.RejectReason.DUPLICATE)
    wrong = dataclasses.replace(certificate, report=FC4.committee.report(BLOCK, accounts_root=b"\x07" * 32))
    _rejected(state, fr.on_certificate(state, wrong, 2.0), fr.RejectReason.CONFLICTING_CERTIFICATE)
    rebuilt = make_certificate(FC4, signers=(1, 2, 3))
    after, effects = fr.on_certificate(state, rebuilt, 5.0)
    rnd = after.rounds[BLOCK]
    assert effects == () and rnd.certificate == rebuilt and rnd.certified_at == 1.0


# --- shares ------------------------------------------------------------------------------------------------------


def _signing_round() -> tuple[Cluster, list[fr.SignedFrostShare]]:
    """Return a cluster whose members 1..3 signed attempt 0, with the shares still in flight."""
    cluster = Cluster(FC4, seed=2)
    cluster.open_round()
    cluster.deliver_all(0.0)
    for member in cluster.members.values():
        cluster.certify(member, make_certificate(FC4), 1.0)
    shares = [m for _, m in cluster.in_flight if isinstance(m, fr.SignedFrostShare)]
    return cluster, shares


def test_each_invalid_share_envelope_is_dropped_with_its_reason() -> None:
    cluster, shares = _signing_round()
    share = next(s for s in shares if s.share.identifier == 2)
    state = cluster.members[4].state
    key2, key3 = FC4.committee.signing_keys[1], FC4.committee.signing_keys[2]

    def resign(signers: int, key: bytes = key2, identifier: int = 2) -> fr.SignedFrostShare:
        z = frost.SignatureShare(identifier, share.share.share)
        return fr.sign_frost_share(DOMAIN, ROUND, 0, share.message, signers, z, key)

    cases = [
        (dataclasses.replace(share, config_digest=b"\x01" * 32), "WRONG_CONFIG_DIGEST"),
        (dataclasses.replace(share, attempt=2), "BAD_ATTEMPT"),
        (resign(0b0111, STRANGER_KEY), "NOT_A_MEMBER"),
        (resign(0b0111, key3), "WRONG_IDENTIFIER"),
        (resign(0b0011), "BAD_SIGNERS"),  # fewer than t
        (resign(0b1101), "BAD_SIGNERS"),  # without its signer
        (resign(0b10011), "BAD_SIGNERS"),  # a member beyond the committee
        (dataclasses.replace(share, signature=shares[0].signature), "BAD_SIGNATURE"),
    ]
    for msg, reason in cases:
        _rejected(state, fr.on_share(state, msg, 1.0), fr.RejectReason[reason])
    state, _ = fr.on_share(state, share, 1.0)
    _rejected(state, fr.on_share(state, share, 1.0), fr.RejectReason.DUPLICATE)


def test_a_share_waits_for_its_commitments_and_is_checked_when_they_arrive() -> None:
    cluster, shares = _signing_round()
    commitments = [m for m in cluster.members[1].state.rounds[BLOCK].commitments.values()]
    late = fr.init_frost_state(FC4.context(4, stage_delay=STAGE), HEAD)
    late, effects = fr.on_share(late, shares[0], 1.0)
    assert effects == () and set(late.rounds[BLOCK].pending) == {(0, shares[0].share.identifier)}
    for commitment in commitments:
        late, effects = fr.on_commitment(late, commitment, 1.0)
        assert effects == ()
    rnd = late.rounds[BLOCK]
    assert rnd.pending == {} and set(rnd.shares) == {(0, shares[0].share.identifier)}


def test_an_invalid_share_names_its_signer_with_evidence_anyone_rechecks() -> None:
    cluster = Cluster(FC4, {2: "bad"}, seed=3, watcher=True)
    cluster.open_round()
    cluster.deliver_all(0.0)
    for member in cluster.members.values():
        cluster.certify(member, make_certificate(FC4), 1.0)
    cluster.deliver_all(1.0)
    context = FC4.context(None)
    assert cluster.watcher is not None
    for member in [cluster.members[1], cluster.members[3], cluster.members[4], cluster.watcher]:
        assert [e.share.signer for e in member.evidence] == [FC4.committee.config.members[1]]
        assert fr.is_invalid_frost_share(context, member.evidence[0])
        assert member.state.rounds[BLOCK].excluded == {2}
        assert member.signatures == []
    # a valid share dressed as evidence is not evidence
    honest = cluster.members[1].state.rounds[BLOCK].shares[(0, 1)]
    evidence = cluster.members[1].evidence[0]
    assert not fr.is_invalid_frost_share(context, dataclasses.replace(evidence, share=honest))
    # attempt 1 leaves member 2 out: {1, 3, 4} sign and the round gets its FROST signature within the stage
    cluster.tick(1.0 + STAGE / 2)
    cluster.deliver_all(1.0 + STAGE / 2)
    for member in cluster.members.values():
        if member.identifier != 2:
            assert [(s.attempt, s.signers) for s in member.signatures] == [(1, 0b1101)]


def test_a_withholding_member_in_the_first_set_costs_half_a_stage_then_frost() -> None:
    cluster = Cluster(FC7, {1: "withhold"}, seed=4)
    cluster.open_round()
    cluster.deliver_all(0.0)
    certificate = make_certificate(FC7)
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
    cluster.deliver_all(1.0)
    assert all(m.signatures == [] for m in cluster.members.values())
    cluster.tick(1.0 + STAGE / 2 - 0.01)
    assert all(m.state.rounds[BLOCK].attempt == 0 for m in cluster.members.values())
    cluster.tick(1.0 + STAGE / 2)
    cluster.deliver_all(1.0 + STAGE / 2)
    for member in cluster.members.values():
        assert member.state.rounds[BLOCK].excluded == {1}
        assert [(s.attempt, s.signers) for s in member.signatures] == [(1, 0b0111110)]
    transmissions = [t for m in cluster.members.values() for _, t in m.transmissions]
    assert len(transmissions) == 1 and isinstance(transmissions[0], fr.TransmitFrost)


def test_too_few_signers_fall_back_to_ecdsa_exactly_one_stage_late() -> None:
    cluster = Cluster(FC4, {1: "withhold", 2: "withhold"}, seed=5)
    cluster.open_round()
    cluster.deliver_all(0.0)
    certificate = make_certificate(FC4)
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
    cluster.deliver_all(1.0)
    cluster.tick(1.0 + STAGE / 2)
    cluster.deliver_all(1.0 + STAGE / 2)
    assert all(m.signatures == [] for m in cluster.members.values())
    first = next(m for m in cluster.members.values() if m.state.rounds[BLOCK].transmit_position == 0)
    cluster.tick(1.0 + STAGE - 0.01)
    assert first.transmissions == []
    cluster.tick(1.0 + STAGE)
    assert first.transmissions == [(1.0 + STAGE, fr.TransmitEcdsa(certificate))]


def test_own_share_is_broadcast_only_when_asked_for() -> None:
    cluster, shares = _signing_round()
    member = cluster.members[4]  # not in attempt 0's set
    own = fr.sign_frost_share(
        DOMAIN,
        ROUND,
        0,
        shares[0].message,
        shares[0].signers,
        frost.SignatureShare(4, 1),
        FC4.committee.signing_keys[3],
    )
    _rejected(member.state, fr.on_own_share(member.state, own, 1.0), fr.RejectReason.NOT_REQUESTED)
    _rejected(member.state, fr.on_own_share(member.state, shares[0], 1.0), fr.RejectReason.NOT_OWN)


def test_attested_rounds_are_forgotten_and_heads_prune_the_window() -> None:
    cluster, shares = _signing_round()
    state = cluster.members[4].state
    after, _ = fr.on_round_attested(state, ROUND)
    assert BLOCK not in after.rounds
    _rejected(after, fr.on_share(after, shares[0], 1.0), fr.RejectReason.ROUND_CLOSED)
    _rejected(state, fr.on_round_attested(state, (b"\x01" * 32, BLOCK)), fr.RejectReason.WRONG_CONFIG_DIGEST)
    pruned, _ = fr.on_new_head(state, HEAD + 200)  # the cluster keeps 16 rounds of 10 blocks
    assert pruned.rounds == {} and pruned.forgotten_through == HEAD + 200 - 16 * 10


def test_envelope_digests_bind_every_field() -> None:
    commitment = _commitment(2)
    base = fr.compute_commitment_digest(DOMAIN, ROUND, 0, commitment)
    assert base != fr.compute_commitment_digest(DOMAIN, ROUND, 1, commitment)
    assert base != fr.compute_commitment_digest(DOMAIN, (ROUND[0], BLOCK + 10), 0, commitment)
    share = frost.SignatureShare(2, 5)
    digest = fr.compute_share_digest(DOMAIN, ROUND, 0, b"\x01" * 32, 0b111, share)
    assert digest != fr.compute_share_digest(DOMAIN, ROUND, 0, b"\x01" * 32, 0b1011, share)
    assert digest != fr.compute_share_digest(DOMAIN, ROUND, 0, b"\x02" * 32, 0b111, share)
    assert digest != fr.compute_share_digest(DOMAIN, ROUND, 0, b"\x01" * 32, 0b111, frost.SignatureShare(2, 6))
    assert len(sign_digest(digest, FC4.committee.signing_keys[0])) == 65


def test_a_bad_share_poisons_a_naive_aggregate_but_never_the_machines() -> None:
    # the attack: one invalid share in an unchecked aggregate gives a signature the chain refuses
    cluster = Cluster(FC4, {2: "bad"}, seed=7)
    cluster.open_round()
    cluster.deliver_all(0.0)
    certificate = make_certificate(FC4)
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
    shares = sorted(
        (m for _, m in cluster.in_flight if isinstance(m, fr.SignedFrostShare)), key=lambda s: s.share.identifier
    )
    unique = {s.share.identifier: s for s in shares}
    commitments = [cluster.members[1].state.rounds[BLOCK].commitments[(0, i)].commitment for i in (1, 2, 3)]
    digest = report_digest(FC4, certificate.report)
    naive = frost.aggregate(commitments, digest, FC4.group_public_key, [unique[i].share for i in (1, 2, 3)])
    group_key = FC4.committee.config.group_key
    assert group_key is not None and not is_valid_evm_signature(group_key, digest, EvmSignature.from_signature(naive))
    # the machines check every share first: no aggregate of attempt 0, the cheater named
    cluster.deliver_all(1.0)
    for member in cluster.members.values():
        assert member.signatures == []
        if member.identifier != 2:
            assert [e.share.share.identifier for e in member.evidence] == [2]


def test_commitments_for_the_next_round_can_be_issued_ahead() -> None:
    state = _state(1)
    ahead = HEAD - HEAD % 10 + 10  # the next anchor, one period ahead of the head
    state, effects = fr.on_round_opened(state, ahead, 0.0)
    assert effects == (fr.IssueCommitments((ROUND[0], ahead), 2),)
    _rejected(state, fr.on_round_opened(state, ahead + 10, 0.0), fr.RejectReason.OUTSIDE_WINDOW)


# --- the early share: signed with the own report, before the certificate ----------------------------------------


def _early_round(fc: FrostTestCommittee, reports: dict[int, bytes], seed: int) -> Cluster:
    """Return a cluster whose members hold every commitment and signed their reports (``reports``: identifier ->
    digest, default the honest one), with the early shares delivered; nobody holds the certificate yet."""
    cluster = Cluster(fc, seed=seed)
    cluster.open_round()
    cluster.deliver_all(0.0)
    honest = report_digest(fc, make_certificate(fc).report)
    for member in cluster.members.values():
        cluster.report(member, reports.get(member.identifier, honest), 0.5)
    cluster.deliver_all(0.5)
    return cluster


def test_the_first_set_signs_with_its_reports_and_the_certificate_aggregates_with_no_further_message() -> None:
    cluster = _early_round(FC7, {}, seed=11)
    # members 1..5 (S_0) signed with their report; 6 and 7 did not
    assert [len(m.sign_requests) for m in cluster.members.values()] == [1, 1, 1, 1, 1, 0, 0]
    certificate = make_certificate(FC7)
    digest = report_digest(FC7, certificate.report)
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
        # aggregated inside the certificate's own transition: nothing sent, nothing asked for after it
        assert [(s.attempt, s.signers) for s in member.signatures] == [(0, 0b0011111)]
        assert frost.verify(FC7.group_public_key, digest, member.signatures[0].signature)
    assert cluster.in_flight == []
    assert [len(m.sign_requests) for m in cluster.members.values()] == [1, 1, 1, 1, 1, 0, 0]
    first = next(m for m in cluster.members.values() if m.state.rounds[BLOCK].transmit_position == 0)
    assert [t for _, t in first.transmissions] == [fr.TransmitFrost(certificate, first.signatures[0].signature)]


def test_a_member_whose_report_differs_spends_attempt_0_and_attempt_1_signs() -> None:
    minority = FC7.committee.report(BLOCK, accounts_root=b"\x07" * 32)
    cluster = _early_round(FC7, {2: report_digest(FC7, minority)}, seed=12)
    certificate = make_certificate(FC7, signers=(0, 2, 3, 4, 5))  # the quorum without member 2
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
    cluster.deliver_all(1.0)
    # member 2's share is of its own digest: set {1..5} never completes for the certified one
    assert all(m.signatures == [] for m in cluster.members.values())
    assert cluster.members[2].sign_requests[0].message == report_digest(FC7, minority)
    cluster.tick(1.0 + STAGE / 2)
    cluster.deliver_all(1.0 + STAGE / 2)
    for member in cluster.members.values():
        assert member.state.rounds[BLOCK].excluded == {2}
        if member.identifier != 2:
            assert [(s.attempt, s.signers) for s in member.signatures] == [(1, 0b0111101)]
    # member 2 is never asked for the certified digest with its attempt-0 commitment
    assert [r.attempt for r in cluster.members[2].sign_requests] == [0]


def test_early_shares_of_a_digest_never_certified_are_never_aggregated() -> None:
    # the attack: members 1..3 (all of S_0 at n = 4) release a complete set of shares of a digest that is not the
    # certified one; the machines keep the shares, aggregate none of them and fall back to the ECDSA certificate
    other = report_digest(FC4, FC4.committee.report(BLOCK, accounts_root=b"\x07" * 32))
    cluster = _early_round(FC4, {1: other, 2: other, 3: other}, seed=13)
    kept = cluster.members[4].state.rounds[BLOCK].shares
    assert {(a, i) for (a, i), s in kept.items() if s.message == other} == {(0, 1), (0, 2), (0, 3)}
    certificate = make_certificate(FC4)
    for member in cluster.members.values():
        cluster.certify(member, certificate, 1.0)
    cluster.tick(1.0 + STAGE / 2)
    cluster.deliver_all(1.0 + STAGE / 2)
    cluster.tick(1.0 + 2 * STAGE)
    assert all(m.signatures == [] for m in cluster.members.values())
    transmissions = [t for m in cluster.members.values() for _, t in m.transmissions]
    assert transmissions and all(t == fr.TransmitEcdsa(certificate) for t in transmissions)


def test_a_member_without_the_first_t_commitments_signs_after_the_certificate() -> None:
    cluster = Cluster(FC4, seed=14)
    cluster.open_round()
    member = cluster.members[1]
    # member 1 holds its own commitments and member 3's, not member 2's
    for index in reversed(range(len(cluster.in_flight))):
        recipient, message = cluster.in_flight[index]
        if recipient == 1 and isinstance(message, fr.SignedFrostCommitment) and message.commitment.identifier == 3:
            cluster.deliver_one(index, 0.0)
    certificate = make_certificate(FC4)
    cluster.report(member, report_digest(FC4, certificate.report), 0.5)
    assert member.sign_requests == [] and 0 not in member.state.rounds[BLOCK].signing_sets
    cluster.deliver_all(0.5)
    cluster.certify(member, certificate, 1.0)
    assert [(r.attempt, r.signers) for r in member.sign_requests] == [(0, 0b0111)]


def test_own_report_inputs_are_checked() -> None:
    digest = report_digest(FC4, make_certificate(FC4).report)
    watcher = _state(None)
    _rejected(watcher, fr.on_own_report(watcher, BLOCK, digest, 0.0), fr.RejectReason.NOT_OWN)
    state = _state(1)
    _rejected(state, fr.on_own_report(state, BLOCK + 1, digest, 0.0), fr.RejectReason.NOT_ANCHOR_BLOCK)
    _rejected(state, fr.on_own_report(state, BLOCK + 100, digest, 0.0), fr.RejectReason.OUTSIDE_WINDOW)
    with pytest.raises(InputError, match="digest"):
        fr.on_own_report(state, BLOCK, b"\x01", 0.0)
    state, effects = fr.on_own_report(state, BLOCK, digest, 0.0)
    assert effects == () and state.rounds[BLOCK].reported == digest  # no commitments known: nothing to sign yet
    _rejected(state, fr.on_own_report(state, BLOCK, digest, 0.0), fr.RejectReason.DUPLICATE)
    _rejected(state, fr.on_own_report(state, BLOCK, b"\x02" * 32, 0.0), fr.RejectReason.CONFLICTING_REPORT)


def test_an_early_own_share_is_broadcast_only_for_the_reported_digest() -> None:
    cluster = _early_round(FC4, {}, seed=15)
    member = cluster.members[1]
    request = member.sign_requests[0]
    own = member.state.rounds[BLOCK].shares[(0, 1)]
    assert own.message == request.message
    fresh = Cluster(FC4, seed=15)
    fresh.open_round()
    fresh.deliver_all(0.0)
    other = fresh.members[1]
    fresh.report(other, b"\x02" * 32, 0.5)
    # the same member's share of the honest digest was not asked for in this state
    _rejected(other.state, fr.on_own_share(other.state, own, 0.5), fr.RejectReason.NOT_REQUESTED)


def test_commitments_are_kept_up_to_two_periods_ahead_of_the_head() -> None:
    state = _state(1)
    ahead = HEAD - HEAD % 10 + 20  # two periods ahead: a sender whose head is a block ahead committed to it
    state, effects = fr.on_commitment(state, _signed_commitment(2, block=ahead), 0.0)
    assert effects == () and set(state.rounds[ahead].commitments) == {(0, 2)}
    far = _signed_commitment(2, block=ahead + 10)
    _rejected(state, fr.on_commitment(state, far, 0.0), fr.RejectReason.OUTSIDE_WINDOW)
