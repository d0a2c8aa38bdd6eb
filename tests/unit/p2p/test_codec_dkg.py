"""DKG messages on the wire: exact formats, signatures bound to one run, the validator's named rejections, the
share encryption."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.consensus import frost
from pmoracle.consensus import frost_dkg as fd
from pmoracle.consensus import frost_dkg_wire as wire
from pmoracle.node.frost_dkg_gossip import decrypt_share, encrypt_share
from pmoracle.p2p.codec import MAX_MESSAGE_BYTES, DkgMessage, decode_message, encode_message
from pmoracle.p2p.errors import CodecError
from pmoracle.p2p.validator import REJECTION_REASONS, ReportValidator
from pmoracle.testing.committees import make_test_committee

TC = make_test_committee(4)
NETWORK = TC.network
DOMAIN = NETWORK.domain
KEYS = TC.signing_keys
CONTEXT = wire.compute_dkg_context(DOMAIN, TC.config)
OTHER_RUN = wire.compute_dkg_context(DOMAIN, TC.config, run=1)
_, PACKAGE = fd.start_dkg(fd.DkgParameters(CONTEXT, (1, 2, 3, 4), 3, 2), b"\x07" * 32)
SIGNED_PACKAGE = wire.sign_dkg_package(DOMAIN, CONTEXT, PACKAGE, KEYS[1])
COMPLAINT = fd.Complaint(accuser=2, dealer=3, share=frost.ORDER - 9)
SIGNED_COMPLAINT = wire.sign_dkg_complaint(DOMAIN, CONTEXT, COMPLAINT, KEYS[1])
RECIPIENT_KEY = wire.recover_sender_key(DOMAIN, wire.sign_dkg_package(DOMAIN, CONTEXT, PACKAGE, KEYS[2]))


def _aad(ephemeral: bytes) -> bytes:
    return wire.compute_share_associated_data(CONTEXT, 2, 3, ephemeral)


assert RECIPIENT_KEY is not None
EPHEMERAL, CIPHERTEXT = encrypt_share(RECIPIENT_KEY, 12345, _aad)
SIGNED_SHARE = wire.sign_dkg_share(DOMAIN, CONTEXT, 2, 3, EPHEMERAL, CIPHERTEXT, KEYS[1])
ALL = (SIGNED_PACKAGE, SIGNED_SHARE, SIGNED_COMPLAINT)


def _validator(context: bytes | None = CONTEXT) -> ReportValidator:
    validator = ReportValidator(NETWORK, TC.config)
    validator.set_dkg_context(context)
    return validator


def _pack(fields: list[object]) -> bytes:
    return bytes(msgpack.packb(fields, use_bin_type=True))


def test_roundtrip_and_acceptance() -> None:
    for signed in ALL:
        data = encode_message(DkgMessage(NETWORK, signed))
        assert decode_message(data) == DkgMessage(NETWORK, signed)
        assert _validator()(data).accepted
    # the largest package (64 members, threshold 64) fits the message limit
    big = fd.Round1Package(1, (PACKAGE.commitment[0],) * 64, PACKAGE.proof_commitment, 1)
    data = encode_message(DkgMessage(NETWORK, wire.sign_dkg_package(DOMAIN, CONTEXT, big, KEYS[0])))
    assert len(data) < MAX_MESSAGE_BYTES


def test_message_of_another_run_is_refused() -> None:
    # the same package signed for run 1: fine on its own, refused by a node taking part in run 0
    other = encode_message(DkgMessage(NETWORK, wire.sign_dkg_package(DOMAIN, OTHER_RUN, PACKAGE, KEYS[1])))
    assert _validator(OTHER_RUN)(other).accepted
    assert _validator()(other).reason == "wrong-dkg"
    assert _validator(None)(encode_message(DkgMessage(NETWORK, SIGNED_PACKAGE))).reason == "wrong-dkg"
    # re-stamping the context of a signed message breaks its signature
    restamped = dataclasses.replace(SIGNED_PACKAGE, context=OTHER_RUN)
    assert _validator(OTHER_RUN)(encode_message(DkgMessage(NETWORK, restamped))).reason == "bad-signature"
    # the context covers the member set: another committee's run has another context
    assert wire.compute_dkg_context(DOMAIN, make_test_committee(5).config) != CONTEXT


def test_a_validator_accepting_several_runs_accepts_exactly_those() -> None:
    # the node's own DKG accepts its run and the later ones (to notice members that moved on), nothing else
    runs = [wire.compute_dkg_context(DOMAIN, TC.config, run=r) for r in range(4)]
    validator = ReportValidator(NETWORK, TC.config)
    validator.set_dkg_contexts(runs[1:])
    for r, context in enumerate(runs):
        data = encode_message(DkgMessage(NETWORK, wire.sign_dkg_package(DOMAIN, context, PACKAGE, KEYS[1])))
        assert validator(data).accepted is (r >= 1), r
    validator.set_dkg_contexts(())
    assert validator(encode_message(DkgMessage(NETWORK, SIGNED_PACKAGE))).reason == "wrong-dkg"


def test_non_member_and_impersonation_are_refused() -> None:
    outsider = b"\x42" * 32
    forged = wire.sign_dkg_package(DOMAIN, CONTEXT, PACKAGE, outsider)  # dealer 2, signed by a non-member
    assert _validator()(encode_message(DkgMessage(NETWORK, forged))).reason == "not-member"
    as_other = wire.sign_dkg_package(DOMAIN, CONTEXT, PACKAGE, KEYS[0])  # member 1 claiming to be dealer 2
    assert _validator()(encode_message(DkgMessage(NETWORK, as_other))).reason == "not-member"
    # a changed ciphertext under the original signature
    tampered = dataclasses.replace(SIGNED_SHARE, ciphertext=bytes(48))
    assert _validator()(encode_message(DkgMessage(NETWORK, tampered))).reason == "bad-signature"
    complaint = dataclasses.replace(SIGNED_COMPLAINT, complaint=dataclasses.replace(COMPLAINT, dealer=4))
    assert _validator()(encode_message(DkgMessage(NETWORK, complaint))).reason == "bad-signature"


OFF_CURVE = b"\x02" + b"\xff" * 32
PACKAGE_FIELDS = list(msgpack.unpackb(encode_message(DkgMessage(NETWORK, SIGNED_PACKAGE)), raw=False))
SHARE_FIELDS = list(msgpack.unpackb(encode_message(DkgMessage(NETWORK, SIGNED_SHARE)), raw=False))


@pytest.mark.parametrize(
    ("fields", "index", "value", "reason"),
    [
        (PACKAGE_FIELDS, 4, b"\x00" * 31, "bad-field"),  # context
        (PACKAGE_FIELDS, 5, 0, "bad-field"),  # dealer 0
        (PACKAGE_FIELDS, 5, 65, "bad-field"),  # dealer beyond a committee
        (PACKAGE_FIELDS, 6, [], "bad-field"),  # no commitment
        (PACKAGE_FIELDS, 6, [OFF_CURVE], "bad-field"),
        (PACKAGE_FIELDS, 6, [PACKAGE.commitment[0]] * 65, "malformed"),  # beyond 64: the unpacker refuses
        (PACKAGE_FIELDS, 7, OFF_CURVE, "bad-field"),
        (PACKAGE_FIELDS, 8, b"\xff" * 32, "bad-field"),  # proof response not below the order
        (SHARE_FIELDS, 6, 0, "bad-field"),  # recipient 0
        (SHARE_FIELDS, 7, b"\x02" * 32, "bad-field"),  # ephemeral key size
        (SHARE_FIELDS, 8, b"\x00" * 47, "bad-field"),  # ciphertext size
        (SHARE_FIELDS, 1, 8, "unknown-kind"),
    ],
)
def test_malformed_fields_are_named(fields: list[object], index: int, value: object, reason: str) -> None:
    mutated = list(fields)
    mutated[index] = value
    data = _pack(mutated)
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.reason == reason
    assert _validator()(data).reason == reason


def test_oversize_and_wrong_length() -> None:
    assert _validator()(b"\x00" * (MAX_MESSAGE_BYTES + 1)).reason == "oversize"
    assert _validator()(_pack(SHARE_FIELDS[:-1])).reason == "bad-length"
    assert _validator()(_pack([*PACKAGE_FIELDS, 1])).reason == "bad-length"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(index=st.integers(0, 10_000), flip=st.integers(1, 255), which=st.sampled_from(ALL))
def test_byte_flips_never_crash_and_never_pass_changed(index: int, flip: int, which: wire.SignedDkgMessage) -> None:
    data = bytearray(encode_message(DkgMessage(NETWORK, which)))
    data[index % len(data)] ^= flip
    verdict = _validator()(bytes(data))  # never raises
    assert verdict.reason in REJECTION_REASONS or verdict.accepted
    if verdict.accepted:  # a flip the signature does not cover cannot exist: accepted means unchanged content
        assert decode_message(bytes(data)) == DkgMessage(NETWORK, which)


def test_share_encryption_opens_only_for_its_recipient() -> None:
    assert decrypt_share(KEYS[2], EPHEMERAL, CIPHERTEXT, _aad(EPHEMERAL)) == 12345
    assert decrypt_share(KEYS[3], EPHEMERAL, CIPHERTEXT, _aad(EPHEMERAL)) is None  # another member
    # moved to another recipient or run, or altered: the AEAD refuses
    assert (
        decrypt_share(KEYS[2], EPHEMERAL, CIPHERTEXT, wire.compute_share_associated_data(CONTEXT, 2, 4, EPHEMERAL))
        is None
    )
    assert decrypt_share(KEYS[2], EPHEMERAL, bytes([CIPHERTEXT[0] ^ 1]) + CIPHERTEXT[1:], _aad(EPHEMERAL)) is None
    assert decrypt_share(KEYS[2], b"\x02" + b"\xff" * 32, CIPHERTEXT, _aad(EPHEMERAL)) is None  # not a point
    # a fresh ephemeral key each time: the same share never encrypts the same way twice
    assert encrypt_share(RECIPIENT_KEY, 12345, _aad)[1] != CIPHERTEXT
