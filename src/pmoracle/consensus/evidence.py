"""Evidence of misbehaviour: equivocation and deviation, and their JSON form for dispute files. PURE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.report import Domain, Report, SignedReport, compute_report_digest, is_valid_signed_report
from pmoracle.errors import InputError

EVIDENCE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Two signatures by one signer for one round key over different digests."""

    a: SignedReport
    b: SignedReport


@dataclass(frozen=True, slots=True)
class Deviation:
    """A signature for a round key whose attested digest is a different one."""

    signed: SignedReport
    attested_digest: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.attested_digest, bytes) or len(self.attested_digest) != 32:
            raise InputError("attested_digest", f"expected 32 bytes, got {self.attested_digest!r}")


Evidence = Equivocation | Deviation


def compute_equivocation(domain: Domain, a: SignedReport, b: SignedReport) -> Equivocation:
    """Return the equivocation of ``a`` and ``b`` in canonical order (lower digest first)."""
    if compute_report_digest(domain, a.report) <= compute_report_digest(domain, b.report):
        return Equivocation(a, b)
    return Equivocation(b, a)


def _is_member_signature(domain: Domain, committee: CommitteeConfig, signed: SignedReport) -> bool:
    return (
        signed.report.config_digest == committee.digest()
        and committee.index_of(signed.signer) is not None
        and is_valid_signed_report(domain, signed)
    )


def is_equivocation(domain: Domain, committee: CommitteeConfig, evidence: Equivocation) -> bool:
    """Check if ``evidence`` proves that one committee member signed two digests for one round key."""
    a, b = evidence.a, evidence.b
    # one signer
    if a.signer != b.signer:
        return False
    # one round key
    if a.report.round_key != b.report.round_key:
        return False
    # two different digests
    if compute_report_digest(domain, a.report) == compute_report_digest(domain, b.report):
        return False
    # both are valid signatures of a member of this committee
    return _is_member_signature(domain, committee, a) and _is_member_signature(domain, committee, b)


def is_deviation(domain: Domain, committee: CommitteeConfig, evidence: Deviation) -> bool:
    """Check if ``evidence`` proves a member signed a digest other than ``attested_digest`` for its round key."""
    # the signed digest differs from the attested one (the caller checks the attested one against the chain)
    if compute_report_digest(domain, evidence.signed.report) == evidence.attested_digest:
        return False
    return _is_member_signature(domain, committee, evidence.signed)


def encode_signed_report(signed: SignedReport) -> dict[str, Any]:
    """Return a JSON-friendly dict of a signed report."""
    return {
        "report": signed.report.to_json(),
        "signer": "0x" + signed.signer.hex(),
        "signature": "0x" + signed.signature.hex(),
    }


def _hex_bytes(field: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise InputError(field, f"expected a hex string, got {value!r}")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise InputError(field, f"not hex: {value!r}") from None


def decode_signed_report(obj: Any) -> SignedReport:
    """Return the signed report encoded by :func:`encode_signed_report`."""
    if not isinstance(obj, dict):
        raise InputError("signed_report", f"expected an object, got {type(obj).__name__}")
    for field in ("report", "signer", "signature"):
        if field not in obj:
            raise InputError(field, "missing from signed report")
    if not isinstance(obj["report"], dict):
        raise InputError("report", "expected an object")
    return SignedReport(
        report=Report.from_json(obj["report"]),
        signer=_hex_bytes("signer", obj["signer"]),
        signature=_hex_bytes("signature", obj["signature"]),
    )


def encode_evidence(evidence: Evidence) -> dict[str, Any]:
    """Return the JSON dispute-file form of ``evidence``."""
    if isinstance(evidence, Equivocation):
        return {
            "version": EVIDENCE_FORMAT_VERSION,
            "kind": "equivocation",
            "a": encode_signed_report(evidence.a),
            "b": encode_signed_report(evidence.b),
        }
    return {
        "version": EVIDENCE_FORMAT_VERSION,
        "kind": "deviation",
        "signed": encode_signed_report(evidence.signed),
        "attestedDigest": "0x" + evidence.attested_digest.hex(),
    }


def decode_evidence(obj: Any) -> Evidence:
    """Return the evidence encoded by :func:`encode_evidence`; raise InputError naming the bad field."""
    if not isinstance(obj, dict):
        raise InputError("evidence", f"expected an object, got {type(obj).__name__}")
    if obj.get("version") != EVIDENCE_FORMAT_VERSION:
        raise InputError("version", f"expected {EVIDENCE_FORMAT_VERSION}, got {obj.get('version')!r}")
    kind = obj.get("kind")
    if kind == "equivocation":
        if "a" not in obj or "b" not in obj:
            raise InputError("equivocation", "needs both 'a' and 'b'")
        return Equivocation(decode_signed_report(obj["a"]), decode_signed_report(obj["b"]))
    if kind == "deviation":
        if "signed" not in obj or "attestedDigest" not in obj:
            raise InputError("deviation", "needs 'signed' and 'attestedDigest'")
        return Deviation(decode_signed_report(obj["signed"]), _hex_bytes("attestedDigest", obj["attestedDigest"]))
    raise InputError("kind", f"expected 'equivocation' or 'deviation', got {kind!r}")
