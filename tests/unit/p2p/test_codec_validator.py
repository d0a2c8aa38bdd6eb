"""The wire codec and the topic validator: exact formats, named rejections, and fuzzing that never gets through."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.consensus.report import SignedReport, sign_report
from pmoracle.errors import InputError
from pmoracle.p2p.codec import (
    MAX_MESSAGE_BYTES,
    CatchUpRequest,
    NetworkId,
    SignedReportMessage,
    decode_message,
    encode_message,
)
from pmoracle.p2p.errors import CodecError
from pmoracle.p2p.validator import REJECTION_REASONS, ReportValidator
from pmoracle.testing.committees import make_test_committee

COMMITTEE = make_test_committee(4)
NETWORK = COMMITTEE.network
DOMAIN = NETWORK.domain
REPORT = COMMITTEE.report(100)
SIGNED = sign_report(DOMAIN, REPORT, COMMITTEE.signing_keys[0])
VALID = encode_message(SignedReportMessage(NETWORK, SIGNED))
CATCH_UP = encode_message(CatchUpRequest(NETWORK, REPORT.config_digest, 100))
VALIDATOR = ReportValidator(NETWORK, COMMITTEE.config)


def _fields(data: bytes) -> list[object]:
    return list(msgpack.unpackb(data, raw=False))


def _pack(fields: list[object]) -> bytes:
    return bytes(msgpack.packb(fields, use_bin_type=True))


def test_roundtrip_of_both_kinds() -> None:
    assert decode_message(VALID) == SignedReportMessage(NETWORK, SIGNED)
    assert decode_message(CATCH_UP) == CatchUpRequest(NETWORK, REPORT.config_digest, 100)
    assert len(VALID) < 350  # a signed report is ~325 bytes


def test_topic_names_chain_oracle_and_version() -> None:
    assert NETWORK.topic == "pmoracle/31337/0x5fbdb2315678afecb367f032d93f642f64180aa3/v2"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f.__setitem__(0, 1), "bad-version"),
        (lambda f: f.__setitem__(1, 9), "unknown-kind"),
        (lambda f: f.__setitem__(1, True), "unknown-kind"),
        (lambda f: f.append(b""), "bad-length"),
        (lambda f: f.__setitem__(2, 0), "bad-field"),
        (lambda f: f.__setitem__(3, b"\x00" * 19), "bad-field"),
        (lambda f: f.__setitem__(4, "not-bytes"), "bad-field"),
        (lambda f: f.__setitem__(5, -1), "bad-field"),
        (lambda f: f.__setitem__(5, 1.0), "bad-field"),
        (lambda f: f.__setitem__(9, 2**32), "bad-field"),
        (lambda f: f.__setitem__(11, b"\x00" * 64), "bad-field"),
    ],
)
def test_each_malformed_field_is_rejected_with_its_reason(mutate: object, reason: str) -> None:
    fields = _fields(VALID)
    mutate(fields)  # type: ignore[operator]
    with pytest.raises(CodecError) as info:
        decode_message(_pack(fields))
    assert info.value.reason == reason


def test_size_limit_is_checked_before_decoding() -> None:
    with pytest.raises(CodecError) as info:
        decode_message(b"\x91" + b"\x00" * MAX_MESSAGE_BYTES)
    assert info.value.reason == "oversize"


def test_non_canonical_encoding_is_refused() -> None:
    # the same fields with the block number (field 5) as a uint64 instead of the shortest int
    fields = _fields(VALID)
    parts = [bytes(msgpack.packb(f, use_bin_type=True)) for f in fields]
    parts[5] = b"\xcf" + (100).to_bytes(8, "big")
    data = bytes([0x90 + len(fields)]) + b"".join(parts)
    assert _fields(data) == _fields(VALID)
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.reason == "non-canonical"


def test_network_id_checks_its_fields() -> None:
    with pytest.raises(InputError, match="oracle"):
        NetworkId(1, b"\x00" * 19)
    with pytest.raises(InputError, match="chain_id"):
        NetworkId(0, b"\x00" * 20)


def test_validator_accepts_member_reports_and_catch_up() -> None:
    assert VALIDATOR(VALID).accepted
    assert VALIDATOR(CATCH_UP).accepted
    for key in COMMITTEE.signing_keys:
        assert VALIDATOR(encode_message(SignedReportMessage(NETWORK, sign_report(DOMAIN, REPORT, key)))).accepted


def _signed_message(report_changes: dict[str, object], key: bytes, network: NetworkId = NETWORK) -> bytes:
    report = dataclasses.replace(REPORT, **report_changes)  # type: ignore[arg-type]
    return encode_message(SignedReportMessage(network, sign_report(network.domain, report, key)))


def test_validator_rejections_name_the_rule() -> None:
    outsider = make_test_committee(1, label="outsider")
    other_network = NetworkId(1, NETWORK.oracle)
    cases = {
        "wrong-network": _signed_message({}, COMMITTEE.signing_keys[0], other_network),
        "wrong-config": _signed_message({"config_digest": b"\x01" * 32}, COMMITTEE.signing_keys[0]),
        "wrong-params": _signed_message({"params_hash": b"\x02" * 32}, COMMITTEE.signing_keys[0]),
        "not-member": _signed_message({}, outsider.signing_keys[0]),
        # a member's signature over another report
        "bad-signature": encode_message(
            SignedReportMessage(
                NETWORK, dataclasses.replace(SIGNED, report=dataclasses.replace(REPORT, account_count=7))
            )
        ),
        "malformed": b"\xc1",
        "not-array": _pack({"a": 1}),  # type: ignore[arg-type]
    }
    for reason, payload in cases.items():
        verdict = VALIDATOR(payload)
        assert (verdict.accepted, verdict.reason) == (False, reason)
        assert reason in REJECTION_REASONS
    assert not VALIDATOR(encode_message(CatchUpRequest(NETWORK, b"\x05" * 32, 1))).accepted


def test_signature_by_a_member_claimed_for_another_member_is_rejected() -> None:
    forged = SignedReport(REPORT, COMMITTEE.config.members[1], SIGNED.signature)
    assert VALIDATOR(encode_message(SignedReportMessage(NETWORK, forged))).reason == "bad-signature"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_and_are_never_accepted(data: bytes) -> None:
    with contextlib.suppress(CodecError):  # the only exception the codec may raise
        decode_message(data)
    verdict = VALIDATOR(data)
    assert not verdict.accepted or data in (VALID, CATCH_UP)


_MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=80),
    lambda children: st.lists(children, max_size=14) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_MSGPACK_VALUES)
def test_arbitrary_msgpack_structures_never_raise(value: object) -> None:
    data = _pack(value)  # type: ignore[arg-type]
    verdict = VALIDATOR(data)
    assert not verdict.accepted or data in (VALID, CATCH_UP)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_valid_messages_are_accepted_only_if_still_valid(data: st.DataObject) -> None:
    original = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "field"]))
        if kind == "flip" and original:
            i = data.draw(st.integers(0, len(original) - 1))
            original[i] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate" and original:
            del original[data.draw(st.integers(0, len(original) - 1)) :]
        elif kind == "insert":
            i = data.draw(st.integers(0, len(original)))
            original[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            try:
                fields = _fields(bytes(original))
            except Exception:
                continue
            if isinstance(fields, list) and fields:
                i = data.draw(st.integers(0, len(fields) - 1))
                fields[i] = data.draw(_MSGPACK_VALUES)
                original = bytearray(_pack(fields))
    payload = bytes(original)
    verdict = VALIDATOR(payload)
    if verdict.accepted:
        # only a message that still decodes to a correctly signed member report (or a catch-up) gets through
        message = decode_message(payload)
        assert encode_message(message) == payload
        if isinstance(message, SignedReportMessage):
            assert message.signed == SIGNED
