"""FROST commitments and shares on the wire: exact formats, named rejections, mutations that never get through."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.p2p.codec import (
    FrostCommitmentMessage,
    FrostShareMessage,
    Message,
    decode_message,
    encode_message,
)
from pmoracle.p2p.errors import CodecError
from pmoracle.p2p.validator import REJECTION_REASONS, ReportValidator
from pmoracle.testing.frost import make_frost_test_committee

FC = make_frost_test_committee(4)
NETWORK = FC.committee.network
DOMAIN = NETWORK.domain
ROUND = (FC.committee.config.digest(), 100)
KEYS = FC.committee.signing_keys
COMMITMENT = frost.commit(2, FC.results[2].signing_share, b"\x11" * 32, b"\x22" * 32)[1]
SIGNED_COMMITMENT = fr.sign_frost_commitment(DOMAIN, ROUND, 1, COMMITMENT, KEYS[1])
SHARE = frost.SignatureShare(2, frost.ORDER - 5)
SIGNED_SHARE = fr.sign_frost_share(DOMAIN, ROUND, 1, b"\x33" * 32, 0b0111, SHARE, KEYS[1])
COMMIT_BYTES = encode_message(FrostCommitmentMessage(NETWORK, SIGNED_COMMITMENT))
SHARE_BYTES = encode_message(FrostShareMessage(NETWORK, SIGNED_SHARE))
VALIDATOR = ReportValidator(NETWORK, FC.committee.config)
OFF_CURVE = b"\x02" + b"\xff" * 32  # x above the field prime


def _fields(data: bytes) -> list[object]:
    return list(msgpack.unpackb(data, raw=False))


def _pack(fields: list[object]) -> bytes:
    return bytes(msgpack.packb(fields, use_bin_type=True))


def test_roundtrip_and_size() -> None:
    assert decode_message(COMMIT_BYTES) == FrostCommitmentMessage(NETWORK, SIGNED_COMMITMENT)
    assert decode_message(SHARE_BYTES) == FrostShareMessage(NETWORK, SIGNED_SHARE)
    assert len(COMMIT_BYTES) < 250 and len(SHARE_BYTES) < 250


@pytest.mark.parametrize(
    ("data", "index", "value", "reason"),
    [
        (COMMIT_BYTES, 6, 255, "bad-field"),  # attempt beyond uint8 attempts
        (COMMIT_BYTES, 7, 0, "bad-field"),  # identifier 0
        (COMMIT_BYTES, 7, 65, "bad-field"),  # identifier beyond a committee
        (COMMIT_BYTES, 8, OFF_CURVE, "bad-field"),
        (COMMIT_BYTES, 9, b"\x04" + b"\x01" * 32, "bad-field"),  # not a compressed point
        (COMMIT_BYTES, 9, b"\x02" * 32, "bad-field"),  # too short
        (COMMIT_BYTES, 11, b"\x00" * 64, "bad-field"),
        (SHARE_BYTES, 7, b"\x00" * 31, "bad-field"),  # message
        (SHARE_BYTES, 8, 0, "bad-field"),  # empty signing set
        (SHARE_BYTES, 8, -1, "bad-field"),
        (SHARE_BYTES, 10, frost.ORDER.to_bytes(32, "big"), "bad-field"),  # share not below the group order
        (SHARE_BYTES, 10, b"\xff" * 32, "bad-field"),
        (SHARE_BYTES, 12, "signature", "bad-field"),
    ],
)
def test_each_malformed_field_is_rejected_with_its_reason(data: bytes, index: int, value: object, reason: str) -> None:
    fields = _fields(data)
    fields[index] = value
    with pytest.raises(CodecError) as info:
        decode_message(_pack(fields))
    assert info.value.reason == reason
    assert VALIDATOR(_pack(fields)).reason == reason


@pytest.mark.parametrize("data", [COMMIT_BYTES, SHARE_BYTES])
def test_wrong_lengths_are_rejected(data: bytes) -> None:
    for fields in (_fields(data)[:-1], [*_fields(data), b""]):
        with pytest.raises(CodecError) as info:
            decode_message(_pack(fields))
        assert info.value.reason == "bad-length"


def test_validator_accepts_members_and_names_each_rejection() -> None:
    assert VALIDATOR(COMMIT_BYTES).accepted
    assert VALIDATOR(SHARE_BYTES).accepted
    stranger = b"\x42" * 32
    cases: dict[str, list[Message]] = {
        "wrong-config": [
            FrostCommitmentMessage(
                NETWORK, fr.sign_frost_commitment(DOMAIN, (b"\x01" * 32, 100), 0, COMMITMENT, KEYS[1])
            ),
            FrostShareMessage(
                NETWORK, fr.sign_frost_share(DOMAIN, (b"\x01" * 32, 100), 0, b"\x33" * 32, 7, SHARE, KEYS[1])
            ),
        ],
        "not-member": [
            FrostCommitmentMessage(NETWORK, fr.sign_frost_commitment(DOMAIN, ROUND, 0, COMMITMENT, stranger)),
            FrostCommitmentMessage(NETWORK, fr.sign_frost_commitment(DOMAIN, ROUND, 0, COMMITMENT, KEYS[2])),
            FrostShareMessage(NETWORK, fr.sign_frost_share(DOMAIN, ROUND, 0, b"\x33" * 32, 7, SHARE, KEYS[0])),
        ],
        "bad-signature": [
            FrostCommitmentMessage(NETWORK, dataclasses.replace(SIGNED_COMMITMENT, attempt=0)),
            FrostShareMessage(NETWORK, dataclasses.replace(SIGNED_SHARE, signers=0b1110)),
        ],
    }
    for reason, messages in cases.items():
        assert reason in REJECTION_REASONS
        for message in messages:
            verdict = VALIDATOR(encode_message(message))
            assert (verdict.accepted, verdict.reason) == (False, reason)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_frost_messages_are_accepted_only_if_unchanged(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from([COMMIT_BYTES, SHARE_BYTES]))
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "field"]))
        if kind == "flip" and mutated:
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate" and mutated:
            del mutated[data.draw(st.integers(0, len(mutated) - 1)) :]
        else:
            try:
                fields = _fields(bytes(mutated))
            except Exception:
                continue
            if isinstance(fields, list) and fields:
                i = data.draw(st.integers(0, len(fields) - 1))
                fields[i] = data.draw(st.one_of(st.integers(-1, 2**64 - 1), st.binary(max_size=70), st.none()))
                mutated = bytearray(_pack(fields))
    payload = bytes(mutated)
    verdict = VALIDATOR(payload)  # never raises
    if verdict.accepted:
        assert payload == original
