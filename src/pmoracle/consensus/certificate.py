"""Quorum certificates: one report plus the signatures of a quorum of committee members. PURE.

The signer set is a bitmap over committee indices (bit i = ``committee.members[i]``) and the signatures are
ordered by ascending index, the layout ``MarginOracle.attest`` takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.report import Domain, Report, compute_report_digest, recover_signer
from pmoracle.errors import InputError, PmoracleError


class CertificateError(PmoracleError):
    """Raised when a certificate cannot be built from the given signatures."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class QuorumCertificate:
    """A report with the signatures of the members named by ``signer_bitmap``, ordered by committee index."""

    report: Report
    signer_bitmap: int
    signatures: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.signer_bitmap, int) or self.signer_bitmap < 0:
            raise InputError("signer_bitmap", f"must be a non-negative integer, got {self.signer_bitmap!r}")
        if any(not isinstance(s, bytes) or len(s) != 65 for s in self.signatures):
            raise InputError("signatures", "every signature must be 65 bytes")

    def get_signer_indices(self) -> tuple[int, ...]:
        """Return the committee indices set in the bitmap, ascending."""
        return compute_bitmap_indices(self.signer_bitmap)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (hex strings for bytes)."""
        return {
            "report": self.report.to_json(),
            "signerBitmap": self.signer_bitmap,
            "signatures": ["0x" + s.hex() for s in self.signatures],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> QuorumCertificate:
        """Return the certificate encoded by :meth:`to_json`."""
        try:
            return cls(
                report=Report.from_json(obj["report"]),
                signer_bitmap=int(obj["signerBitmap"]),
                signatures=tuple(bytes.fromhex(s.removeprefix("0x")) for s in obj["signatures"]),
            )
        except KeyError as exc:
            raise InputError(str(exc.args[0]), "missing from certificate") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError("certificate", str(exc)) from None


def compute_bitmap_indices(bitmap: int) -> tuple[int, ...]:
    """Return the positions of the set bits of ``bitmap``, ascending."""
    return tuple(i for i in range(bitmap.bit_length()) if bitmap >> i & 1)


def build_certificate(
    committee: CommitteeConfig, report: Report, signatures: Mapping[bytes, bytes]
) -> QuorumCertificate:
    """Return the certificate of ``report`` from ``signatures`` (signer address -> signature), ordered by index."""
    if len(signatures) < committee.quorum:
        raise CertificateError("signatures", f"{len(signatures)} signatures, quorum is {committee.quorum}")
    indexed: list[tuple[int, bytes]] = []
    for signer, signature in signatures.items():
        index = committee.index_of(signer)
        if index is None:
            raise CertificateError("signatures", f"signer 0x{signer.hex()} is not a committee member")
        indexed.append((index, signature))
    indexed.sort()
    bitmap = 0
    for index, _ in indexed:
        bitmap |= 1 << index
    return QuorumCertificate(report=report, signer_bitmap=bitmap, signatures=tuple(s for _, s in indexed))


def is_valid_certificate(domain: Domain, committee: CommitteeConfig, cert: QuorumCertificate) -> bool:
    """Check if ``cert`` carries valid signatures of at least a quorum of distinct ``committee`` members."""
    # the report belongs to this committee's configuration
    if cert.report.config_digest != committee.digest():
        return False
    # no bit beyond the committee
    if cert.signer_bitmap >> committee.n:
        return False
    indices = cert.get_signer_indices()
    # one signature per set bit
    if len(indices) != len(cert.signatures):
        return False
    # a quorum of distinct members (distinct because bits are)
    if len(indices) < committee.quorum:
        return False
    digest = compute_report_digest(domain, cert.report)
    # every signature is its member's, over this report
    return all(
        recover_signer(digest, signature) == committee.members[index]
        for index, signature in zip(indices, cert.signatures, strict=True)
    )
