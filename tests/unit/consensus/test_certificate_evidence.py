"""Quorum certificates, evidence checks, dispute-file JSON and the slashing-protection rule."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pmoracle.consensus.certificate import (
    CertificateError,
    QuorumCertificate,
    build_certificate,
    is_valid_certificate,
)
from pmoracle.consensus.evidence import (
    Deviation,
    Equivocation,
    compute_equivocation,
    decode_evidence,
    encode_evidence,
    is_deviation,
    is_equivocation,
)
from pmoracle.consensus.protection import SigningVerdict, check_can_sign, is_safe_to_sign
from pmoracle.consensus.report import compute_report_digest
from pmoracle.errors import InputError
from tests.unit.consensus.factories import DOMAIN, make_committee, make_report, make_signed

N = 7  # quorum 5


def _certificate(members: list[int]) -> QuorumCertificate:
    committee = make_committee(N)
    return build_certificate(
        committee,
        make_report(committee, 20),
        {committee.members[i]: make_signed(N, i, 20).signature for i in members},
    )


def test_certificate_orders_signatures_by_index_and_verifies() -> None:
    committee = make_committee(N)
    cert = _certificate([6, 0, 3, 2, 5])
    assert cert.signer_bitmap == 0b1101101
    assert cert.get_signer_indices() == (0, 2, 3, 5, 6)
    assert cert.signatures == tuple(make_signed(N, i, 20).signature for i in (0, 2, 3, 5, 6))
    assert is_valid_certificate(DOMAIN, committee, cert)
    assert QuorumCertificate.from_json(json.loads(json.dumps(cert.to_json()))) == cert


def test_build_certificate_refuses_short_or_foreign_sets() -> None:
    committee = make_committee(N)
    with pytest.raises(CertificateError):
        _certificate([0, 1, 2, 3])
    with pytest.raises(CertificateError):
        build_certificate(
            committee, make_report(committee, 20), {bytes([i]) * 20: make_signed(N, 0, 20).signature for i in range(5)}
        )


def test_invalid_certificates_rejected() -> None:
    committee = make_committee(N)
    cert = _certificate([0, 1, 2, 3, 4])
    sigs = list(cert.signatures)
    swapped = replace(cert, signatures=(sigs[1], sigs[0], *sigs[2:]))
    short = replace(cert, signer_bitmap=0b1111, signatures=tuple(sigs[:4]))
    extra_bit = replace(cert, signer_bitmap=cert.signer_bitmap | 1 << N)
    count_mismatch = replace(cert, signer_bitmap=0b111111)
    other_report = replace(cert, report=make_report(committee, 20, variant=1))
    other_committee = make_committee(N, quorum=6)
    for bad in (swapped, short, extra_bit, count_mismatch, other_report):
        assert not is_valid_certificate(DOMAIN, committee, bad)
    assert not is_valid_certificate(DOMAIN, other_committee, cert)


def test_equivocation_checks() -> None:
    committee = make_committee(N)
    a, b = make_signed(N, 2, 20, 0), make_signed(N, 2, 20, 1)
    evidence = compute_equivocation(DOMAIN, b, a)
    assert compute_report_digest(DOMAIN, evidence.a.report) < compute_report_digest(DOMAIN, evidence.b.report)
    assert is_equivocation(DOMAIN, committee, evidence)
    assert not is_equivocation(DOMAIN, committee, Equivocation(a, a))  # same digest
    assert not is_equivocation(DOMAIN, committee, Equivocation(a, make_signed(N, 3, 20, 1)))  # two signers
    assert not is_equivocation(DOMAIN, committee, Equivocation(a, make_signed(N, 2, 30, 1)))  # two rounds
    forged = replace(b, signature=make_signed(N, 3, 20, 1).signature)
    assert not is_equivocation(DOMAIN, committee, Equivocation(a, forged))


def test_deviation_checks() -> None:
    committee = make_committee(N)
    honest = compute_report_digest(DOMAIN, make_report(committee, 20))
    assert is_deviation(DOMAIN, committee, Deviation(make_signed(N, 4, 20, 1), honest))
    assert not is_deviation(DOMAIN, committee, Deviation(make_signed(N, 4, 20, 0), honest))
    forged = replace(make_signed(N, 4, 20, 1), signer=committee.members[5])
    assert not is_deviation(DOMAIN, committee, Deviation(forged, honest))


def test_evidence_json_round_trip_and_errors() -> None:
    committee = make_committee(N)
    honest = compute_report_digest(DOMAIN, make_report(committee, 20))
    for evidence in (
        Equivocation(make_signed(N, 2, 20, 0), make_signed(N, 2, 20, 1)),
        Deviation(make_signed(N, 4, 20, 1), honest),
    ):
        assert decode_evidence(json.loads(json.dumps(encode_evidence(evidence)))) == evidence
    bad = encode_evidence(Deviation(make_signed(N, 4, 20, 1), honest))
    for mutate, field in [
        ({"kind": "bribe"}, "kind"),
        ({"version": 9}, "version"),
        ({"attestedDigest": "0x12"}, "attested_digest"),
        ({"signed": {"report": bad["signed"]["report"], "signer": "zz", "signature": "0x"}}, "signer"),
    ]:
        with pytest.raises(InputError) as info:
            decode_evidence({**bad, **mutate})
        assert info.value.field == field


def test_signing_rule() -> None:
    d1, d2 = b"\x01" * 32, b"\x02" * 32
    assert check_can_sign(None, d1) is SigningVerdict.RECORD_AND_SIGN
    assert check_can_sign(d1, d1) is SigningVerdict.SIGN_AGAIN
    assert check_can_sign(d1, d2) is SigningVerdict.REFUSE
    assert is_safe_to_sign(d1, d1) and not is_safe_to_sign(d1, d2)
