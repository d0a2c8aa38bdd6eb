"""Property tests of the FROST signing machine: whatever arrives, in whatever order, from whichever members."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.frost_evm import EvmSignature, is_valid_evm_signature
from pmoracle.testing.frost import make_frost_test_committee
from tests.unit.consensus.frost_round_harness import BLOCK, STAGE, Cluster, Member, make_certificate, report_digest

FC = make_frost_test_committee(4)  # t = q = 3
CERTIFICATE = make_certificate(FC)
DIGEST = report_digest(FC, CERTIFICATE.report)
CONTEXT = FC.context(None)
OTHER = report_digest(FC, FC.committee.report(CERTIFICATE.report.block_number, accounts_root=b"\x07" * 32))


def _may_report(member: Member) -> bool:
    """Check if ``member`` still has its report to sign (a silent member signs nothing)."""
    rnd = member.state.get_round(BLOCK)
    return member.behaviour != "silent" and (rnd is None or rnd.reported is None)


def _reported(behaviour: str) -> bytes:
    """Return the digest a member's own report has: a minority member computed another one."""
    return OTHER if behaviour == "minority" else DIGEST


def _run(data: st.DataObject, behaviours: dict[int, str], seed: int, *, ticks: bool) -> Cluster:
    """Open the round, then deliver, duplicate, report (an early share may follow), certify (and tick, if ``ticks``)
    in an order hypothesis draws; then everyone reports and certifies, everything arrives and the stage runs out."""
    cluster = Cluster(FC, behaviours, seed=seed, watcher=True)
    for member in cluster.members.values():
        if member.behaviour == "minority":  # its nonce store signs nothing but its own report's digest
            member.reported = OTHER
    cluster.open_round()
    now = 0.0
    delivered: list[tuple[int, fr.SignedFrostCommitment | fr.SignedFrostShare]] = []
    kinds = ["deliver", "deliver", "deliver", "again", "report", "certify"] + (["tick"] if ticks else [])
    for _ in range(data.draw(st.integers(0, 80), label="steps")):
        kind = data.draw(st.sampled_from(kinds))
        if kind == "deliver" and cluster.in_flight:
            index = data.draw(st.integers(0, len(cluster.in_flight) - 1))
            delivered.append(cluster.in_flight[index])
            cluster.deliver_one(index, now)
        elif kind == "again" and delivered:  # gossip delivers twice
            cluster.in_flight.append(delivered[data.draw(st.integers(0, len(delivered) - 1))])
        elif kind == "report":
            member = cluster.members[data.draw(st.integers(1, 4))]
            if _may_report(member):
                cluster.report(member, _reported(member.behaviour), now)
        elif kind == "certify":
            member = cluster.members[data.draw(st.integers(1, 4))]
            cluster.certify(member, CERTIFICATE, now)
        elif kind == "tick":
            now += data.draw(st.sampled_from([0.1, STAGE / 4, STAGE / 2]))
            cluster.tick(now)
    for member in cluster.members.values():
        if _may_report(member):
            cluster.report(member, _reported(member.behaviour), now)
    for member in cluster.everyone():
        cluster.certify(member, CERTIFICATE, now)
    for _ in range(5):
        cluster.deliver_all(now, shuffle=True)
        now += STAGE / 4
        cluster.tick(now)
    cluster.deliver_all(now, shuffle=True)
    return cluster


def _check_safety(cluster: Cluster, bad: set[int]) -> None:
    """Every aggregate verifies and leaves the cheaters out; every piece of evidence names a cheater, re-checked."""
    for member in cluster.everyone():
        assert len(member.signatures) <= 1
        for formed in member.signatures:
            assert frost.verify(FC.group_public_key, DIGEST, formed.signature)
            evm = EvmSignature.from_signature(formed.signature)
            assert is_valid_evm_signature(FC.committee.config.group_key, DIGEST, evm)  # type: ignore[arg-type]
            assert not set(fr.compute_bitmap_identifiers(formed.signers)) & bad
        for evidence in member.evidence:
            assert evidence.share.share.identifier in bad
            assert fr.is_invalid_frost_share(CONTEXT, evidence)
        for _, transmission in member.transmissions:
            assert transmission.certificate == CERTIFICATE
            if isinstance(transmission, fr.TransmitFrost):
                assert frost.verify(FC.group_public_key, DIGEST, transmission.signature)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_honest_shares_always_aggregate_to_a_signature_the_group_key_verifies(data: st.DataObject, seed: int) -> None:
    cluster = _run(data, {}, seed, ticks=False)
    _check_safety(cluster, set())
    for member in cluster.everyone():
        assert len(member.signatures) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    behaviour=st.sampled_from(["bad", "withhold", "silent", "minority"]),
    culprit=st.integers(1, 4),
)
def test_one_cheater_is_left_out_and_the_round_still_gets_frost(
    data: st.DataObject, seed: int, behaviour: str, culprit: int
) -> None:
    cluster = _run(data, {culprit: behaviour}, seed, ticks=False)
    _check_safety(cluster, {culprit} if behaviour == "bad" else set())
    for member in cluster.everyone():
        if member.identifier != culprit:
            assert len(member.signatures) == 1
            named = {e.share.share.identifier for e in member.evidence}
            assert named == ({culprit} if behaviour == "bad" and _culprit_signed(cluster, culprit) else set())


def _culprit_signed(cluster: Cluster, culprit: int) -> bool:
    return bool(cluster.members[culprit].sign_requests)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    behaviours=st.dictionaries(
        st.integers(1, 4), st.sampled_from(["bad", "withhold", "silent", "minority"]), max_size=2
    ),
)
def test_an_invalid_share_never_enters_an_aggregate_and_names_its_signer(
    data: st.DataObject, seed: int, behaviours: dict[int, str]
) -> None:
    cluster = _run(data, behaviours, seed, ticks=True)
    _check_safety(cluster, {i for i, b in behaviours.items() if b == "bad"})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    behaviours=st.dictionaries(st.integers(1, 4), st.sampled_from(["bad", "withhold", "minority"]), max_size=2),
)
def test_a_nonce_is_never_asked_to_sign_twice(data: st.DataObject, seed: int, behaviours: dict[int, str]) -> None:
    cluster = _run(data, behaviours, seed, ticks=True)  # the harness raises if a commitment is asked to sign twice
    for member in cluster.members.values():
        attempts = [r.attempt for r in member.sign_requests]
        assert len(attempts) == len(set(attempts))
        for request in member.sign_requests:
            own = next(c for c in request.commitments if c.identifier == member.identifier)
            # the commitment is this member's own, issued for exactly this attempt
            assert member.own_commitments[(own.hiding, own.binding)] == request.attempt
            # the certified digest, or (early, before the certificate) the member's own report's digest
            assert request.message in (DIGEST, member.reported)
