"""EIP-712 hashing of reports: our digest equals eth-account's, and signatures recover to the signer."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from pmoracle.consensus.report import Domain, Report, compute_report_digest, report_typed_data
from pmoracle.errors import InputError

b32 = st.binary(min_size=32, max_size=32)
reports = st.builds(
    Report,
    config_digest=b32,
    block_number=st.integers(0, 2**64 - 1),
    block_hash=b32,
    params_hash=b32,
    accounts_root=b32,
    account_count=st.integers(0, 2**32 - 1),
    risk_arrays_root=b32,
    market_hash=b32,
)
domains = st.builds(Domain, chain_id=st.integers(1, 2**64), verifying_contract=st.binary(min_size=20, max_size=20))


@given(domain=domains, report=reports)
def test_digest_matches_eth_account(domain: Domain, report: Report) -> None:
    signable = encode_typed_data(full_message=report_typed_data(domain, report))
    expected = b"\x19" + signable.version + signable.header + signable.body
    from eth_utils import keccak

    assert compute_report_digest(domain, report) == keccak(expected)


def test_signature_recovers_signer() -> None:
    domain = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
    report = Report(b"\x01" * 32, 100, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, 7, b"\x05" * 32, b"\x06" * 32)
    account = Account.from_key(b"\x11" * 32)
    signed = account.sign_message(encode_typed_data(full_message=report_typed_data(domain, report)))
    assert signed.message_hash == compute_report_digest(domain, report)
    recovered = Account._recover_hash(compute_report_digest(domain, report), signature=signed.signature)
    assert recovered == account.address


def test_report_json_round_trip() -> None:
    report = Report(b"\x01" * 32, 100, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, 7, b"\x05" * 32, b"\x06" * 32)
    assert Report.from_json(report.to_json()) == report


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("config_digest", {"config_digest": b"\x01" * 31}),
        ("block_number", {"block_number": -1}),
        ("block_number", {"block_number": 2**64}),
        ("account_count", {"account_count": 2**32}),
        ("accounts_root", {"accounts_root": "00" * 32}),
        ("risk_arrays_root", {"risk_arrays_root": b"\x05" * 33}),
        ("market_hash", {"market_hash": None}),
    ],
)
def test_report_rejects_out_of_range_fields(field: str, kwargs: dict[str, object]) -> None:
    base: dict[str, object] = dict(
        config_digest=b"\x01" * 32,
        block_number=1,
        block_hash=b"\x02" * 32,
        params_hash=b"\x03" * 32,
        accounts_root=b"\x04" * 32,
        account_count=1,
        risk_arrays_root=b"\x05" * 32,
        market_hash=b"\x06" * 32,
    )
    base.update(kwargs)
    with pytest.raises(InputError) as info:
        Report(**base)  # type: ignore[arg-type]
    assert info.value.field == field


def test_domain_binds_chain_and_contract() -> None:
    report = Report(b"\x01" * 32, 100, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, 7, b"\x05" * 32, b"\x06" * 32)
    a = compute_report_digest(Domain(1, b"\xaa" * 20), report)
    assert a != compute_report_digest(Domain(2, b"\xaa" * 20), report)
    assert a != compute_report_digest(Domain(1, b"\xab" * 20), report)


def test_sign_report_matches_eth_account_and_verifies() -> None:
    from pmoracle.consensus.report import SignedReport, is_valid_signed_report, sign_report

    domain = Domain(31337, b"\x42" * 20)
    report = Report(b"\x01" * 32, 100, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, 7, b"\x05" * 32, b"\x06" * 32)
    key = b"\x22" * 32
    signed = sign_report(domain, report, key)
    expected = Account.from_key(key).sign_message(encode_typed_data(full_message=report_typed_data(domain, report)))
    assert signed.signature == bytes(expected.signature)
    assert "0x" + signed.signer.hex() == expected_address(key)
    assert is_valid_signed_report(domain, signed)
    other = Report(b"\x01" * 32, 101, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, 7, b"\x05" * 32, b"\x06" * 32)
    assert not is_valid_signed_report(domain, SignedReport(other, signed.signer, signed.signature))
    high_s = signed.signature[:32] + (2**256 - 1).to_bytes(32, "big") + signed.signature[64:]
    assert not is_valid_signed_report(domain, SignedReport(report, signed.signer, high_s))


def expected_address(key: bytes) -> str:
    return Account.from_key(key).address.lower()
