"""Pedersen DKG for FROST: t-of-n runs that sign with every quorum, complaints, bad proofs, wrong keys."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.consensus import frost
from pmoracle.consensus import frost_dkg as dkg

CONTEXT = hashlib.sha256(b"configDigest || epoch 7").digest()
MESSAGE = hashlib.sha256(b"report digest").digest()

ShareTamper = Callable[[dkg.Round2Share], dkg.Round2Share]


def _seed(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def _start(threshold: int, n: int, context: bytes = CONTEXT) -> dict[int, tuple[dkg.DkgState, dkg.Round1Package]]:
    ids = tuple(range(1, n + 1))
    return {i: dkg.start_dkg(dkg.DkgParameters(context, ids, threshold, i), _seed(context, i)) for i in ids}


def _run(
    threshold: int,
    n: int,
    *,
    tamper_share: ShareTamper | None = None,
    tamper_package: Callable[[dkg.Round1Package], dkg.Round1Package] | None = None,
    context: bytes = CONTEXT,
) -> tuple[dict[int, dkg.DkgState], list[dkg.DkgEffect]]:
    """Run every participant through both rounds (each message delivered once); return the states and effects."""
    started = _start(threshold, n, context)
    states = {i: s for i, (s, _) in started.items()}
    effects: list[dkg.DkgEffect] = []
    for i, (_, package) in started.items():
        sent = tamper_package(package) if tamper_package else package
        for j in states:
            if j != i:
                states[j], out = dkg.on_round1_package(states[j], sent)
                effects.extend(out)
    for state, _ in started.values():
        for share in dkg.compute_round2_shares(state):
            sent = tamper_share(share) if tamper_share else share
            states[share.recipient], out = dkg.on_round2_share(states[share.recipient], sent)
            effects.extend(out)
    return states, effects


def _sign(results: dict[int, dkg.DkgResult], signers: tuple[int, ...], session: int = 0) -> frost.Signature:
    any_result = next(iter(results.values()))
    group_key = any_result.group_public_key
    rounds = {
        i: frost.commit(i, results[i].signing_share, _seed("h", session, i), _seed("b", session, i)) for i in signers
    }
    commitments = [rounds[i][1] for i in sorted(signers)]
    package = frost.compute_signing_package(group_key, commitments, MESSAGE)
    shares = [frost.sign(i, results[i].signing_share, group_key, rounds[i][0], MESSAGE, commitments) for i in signers]
    return frost.aggregate_verified(package, shares, any_result.verification_shares)


@pytest.mark.parametrize(("threshold", "n"), [(2, 3), (3, 4), (5, 7)])
def test_a_clean_run_agrees_and_every_quorum_signs(threshold: int, n: int) -> None:
    states, effects = _run(threshold, n)
    assert effects == []
    results = {i: dkg.finish_dkg(s) for i, s in states.items()}
    first = results[1]
    assert {r.group_public_key for r in results.values()} == {first.group_public_key}
    assert {r.transcript_digest for r in results.values()} == {first.transcript_digest}
    assert all(dict(r.verification_shares) == dict(first.verification_shares) for r in results.values())
    for i, r in results.items():
        assert frost.points_equal(
            frost.scalar_base_mult(r.signing_share), frost.deserialize_element(r.verification_share)
        )
        assert r.identifier == i
    # the shares interpolate to the sum of the dealers' constant terms, whose image is the group key
    secret = frost.interpolate_constant({i: results[i].signing_share for i in range(1, threshold + 1)})
    assert secret == sum(s.coefficients[0] for s in states.values()) % frost.ORDER
    assert frost.serialize_element(frost.scalar_base_mult(secret)) == first.group_public_key
    # every t-subset of the small cases, one quorum of each size for (5, 7)
    quorums = list(itertools.combinations(range(1, n + 1), threshold)) if n <= 4 else [(1, 2, 3, 4, 5), (3, 4, 5, 6, 7)]
    for signers in quorums:
        signature = _sign(results, signers, session=sum(signers))
        assert frost.verify(first.group_public_key, MESSAGE, signature)
    # fewer than t shares do not make a signature under the group key
    if threshold > 1:
        short = tuple(range(1, threshold))
        with pytest.raises(frost.FrostError, match="below threshold") as raised:
            _sign(results, short)
        assert not isinstance(raised.value, frost.InvalidSignatureShareError)  # nobody cheated


def test_a_bad_share_yields_a_complaint_naming_the_dealer_that_anyone_can_check() -> None:
    def corrupt(share: dkg.Round2Share) -> dkg.Round2Share:
        if share.dealer == 2 and share.recipient == 4:
            return replace(share, share=(share.share + 1) % frost.ORDER)
        return share

    states, effects = _run(3, 4, tamper_share=corrupt)
    [complaint] = effects
    assert isinstance(complaint, dkg.Complaint) and (complaint.accuser, complaint.dealer) == (4, 2)
    assert dkg.is_valid_complaint(states[1].packages[2], complaint)
    # a complaint against an honest dealer (the true share published) does not check out
    honest = dkg.Complaint(accuser=3, dealer=2, share=states[3].shares[2])
    assert not dkg.is_valid_complaint(states[1].packages[2], honest)
    with pytest.raises(dkg.DkgIncompleteError) as raised:
        dkg.finish_dkg(states[4])
    assert raised.value.accused == (2,) and raised.value.missing == () and "accused [2]" in str(raised.value)
    dkg.finish_dkg(states[1])  # the others' view is complete; the shell abandons the run on the complaint


def test_a_bad_proof_of_knowledge_disqualifies_the_dealer() -> None:
    def forge(package: dkg.Round1Package) -> dkg.Round1Package:
        if package.dealer == 3:
            return replace(package, proof_response=(package.proof_response + 1) % frost.ORDER)
        return package

    states, effects = _run(2, 3, tamper_package=forge)
    assert dkg.DkgRejected(3, dkg.DkgRejectReason.BAD_PROOF) in effects
    assert dkg.DkgRejected(3, dkg.DkgRejectReason.DISQUALIFIED) in effects  # its round-2 shares are dropped
    assert states[1].disqualified == frozenset({3}) and 3 not in states[1].packages
    with pytest.raises(dkg.DkgIncompleteError) as raised:
        dkg.finish_dkg(states[1])
    assert raised.value.disqualified == (3,)


@settings(max_examples=12, deadline=None)
@given(shape=st.sampled_from([(2, 3), (3, 4), (1, 2)]), data=st.data())
def test_any_delivery_order_gives_every_member_the_same_result(shape: tuple[int, int], data: st.DataObject) -> None:
    threshold, n = shape
    started = _start(threshold, n)
    messages: list[tuple[int, dkg.Round1Package | dkg.Round2Share]] = [
        (j, package) for i, (_, package) in started.items() for j in started if j != i
    ]
    messages += [
        (share.recipient, share) for state, _ in started.values() for share in dkg.compute_round2_shares(state)
    ]
    states = {i: s for i, (s, _) in started.items()}
    for recipient, message in data.draw(st.permutations(messages)):
        if isinstance(message, dkg.Round1Package):
            states[recipient], effects = dkg.on_round1_package(states[recipient], message)
        else:
            states[recipient], effects = dkg.on_round2_share(states[recipient], message)
        assert effects == ()
    in_order, _ = _run(threshold, n)
    for i, state in states.items():
        assert dkg.finish_dkg(state) == dkg.finish_dkg(in_order[i])


def test_an_early_share_from_a_dealer_whose_proof_fails_is_dropped() -> None:
    started = _start(2, 3)
    state, package = started[1][0], started[2][1]
    share = next(s for s in dkg.compute_round2_shares(started[2][0]) if s.recipient == 1)
    state, _ = dkg.on_round2_share(state, share)
    forged = replace(package, proof_response=(package.proof_response + 1) % frost.ORDER)
    state, effects = dkg.on_round1_package(state, forged)
    assert effects == (dkg.DkgRejected(2, dkg.DkgRejectReason.BAD_PROOF),)
    assert state.pending == {} and 2 not in state.shares and state.disqualified == {2}


def test_a_proof_is_bound_to_the_dealer_and_the_run() -> None:
    started = _start(2, 3)
    package = started[2][1]
    assert dkg.is_valid_proof(CONTEXT, package)
    assert not dkg.is_valid_proof(CONTEXT[::-1], package)  # replayed into another epoch
    assert not dkg.is_valid_proof(CONTEXT, replace(package, dealer=3))  # claimed by another participant
    state = started[1][0]
    after, effects = dkg.on_round1_package(state, replace(package, dealer=3))
    assert effects == (dkg.DkgRejected(3, dkg.DkgRejectReason.BAD_PROOF),) and after.disqualified == {3}


def test_a_signing_share_from_a_wrong_key_is_identified() -> None:
    results = {i: dkg.finish_dkg(s) for i, s in _run(3, 4)[0].items()}
    other_epoch = {i: dkg.finish_dkg(s) for i, s in _run(3, 4, context=b"epoch 8")[0].items()}
    assert other_epoch[2].group_public_key != results[2].group_public_key
    results[2] = replace(results[2], signing_share=other_epoch[2].signing_share)  # signer 2 holds the wrong key
    with pytest.raises(frost.InvalidSignatureShareError) as raised:
        _sign(results, (1, 2, 4))
    assert raised.value.identifiers == (2,)
    assert frost.verify(results[1].group_public_key, MESSAGE, _sign(results, (1, 3, 4)))


def test_malformed_and_misrouted_messages_are_dropped_without_touching_the_state() -> None:
    started = _start(2, 3)
    state = started[1][0]
    package = started[2][1]
    cases = [
        (dkg.on_round1_package, replace(package, dealer=9), dkg.DkgRejectReason.NOT_A_PARTICIPANT),
        (dkg.on_round1_package, started[1][1], dkg.DkgRejectReason.FROM_SELF),
        (dkg.on_round1_package, replace(package, commitment=package.commitment[:1]), dkg.DkgRejectReason.WRONG_DEGREE),
        (dkg.on_round2_share, dkg.Round2Share(2, 3, 5), dkg.DkgRejectReason.WRONG_RECIPIENT),
        (dkg.on_round2_share, dkg.Round2Share(1, 1, 5), dkg.DkgRejectReason.FROM_SELF),
        (dkg.on_round2_share, dkg.Round2Share(7, 1, 5), dkg.DkgRejectReason.NOT_A_PARTICIPANT),
    ]
    for handler, message, reason in cases:
        after, effects = handler(state, message)  # type: ignore[operator]
        assert after is state and effects == (dkg.DkgRejected(message.dealer, reason),)
    early, effects = dkg.on_round2_share(state, dkg.Round2Share(2, 1, 5))  # before the package: kept, unchecked
    assert effects == () and early.pending == {2: 5}
    after, effects = dkg.on_round2_share(early, dkg.Round2Share(2, 1, 6))
    assert after is early and effects == (dkg.DkgRejected(2, dkg.DkgRejectReason.DUPLICATE),)
    checked, effects = dkg.on_round1_package(early, package)  # the package arrives: the early share fails it
    assert effects == (dkg.Complaint(accuser=1, dealer=2, share=5),) and checked.pending == {}
    state, _ = dkg.on_round1_package(state, package)
    after, effects = dkg.on_round1_package(state, package)
    assert after is state and effects == (dkg.DkgRejected(2, dkg.DkgRejectReason.DUPLICATE),)
    share = next(s for s in dkg.compute_round2_shares(started[2][0]) if s.recipient == 1)
    state, effects = dkg.on_round2_share(state, share)
    assert effects == ()
    after, effects = dkg.on_round2_share(state, share)
    assert after is state and effects == (dkg.DkgRejected(2, dkg.DkgRejectReason.DUPLICATE),)
    with pytest.raises(dkg.DkgIncompleteError) as raised:
        dkg.finish_dkg(state)
    assert raised.value.missing == (3,)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"context": b""}, "context"),
        ({"identifiers": (2, 1, 3)}, "identifiers"),
        ({"identifiers": (0, 1, 2)}, "identifiers"),
        ({"threshold": 4}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"me": 5}, "me"),
    ],
)
def test_parameters_are_validated(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"context": CONTEXT, "identifiers": (1, 2, 3), "threshold": 2, "me": 1}
    with pytest.raises(dkg.DkgError) as raised:
        dkg.DkgParameters(**(base | kwargs))  # type: ignore[arg-type]
    assert raised.value.field == field


def test_a_short_seed_is_refused_and_secrets_stay_out_of_reprs() -> None:
    params = dkg.DkgParameters(CONTEXT, (1, 2, 3), 2, 1)
    with pytest.raises(dkg.DkgError, match="seed"):
        dkg.start_dkg(params, b"\x01" * 31)
    state, _ = dkg.start_dkg(params, _seed("x"))
    assert str(state.coefficients[0]) not in repr(state)
    share = dkg.compute_round2_shares(state)[0]
    assert str(share.share) not in repr(share)
