"""The archive of every valid signed report this node saw, for disputes: query by round and by signer. I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pmoracle.consensus.evidence import Equivocation, decode_signed_report, encode_signed_report
from pmoracle.consensus.report import SignedReport
from pmoracle.consensus.rounds import RoundKey
from pmoracle.storage.sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signed_reports (
    signer BLOB NOT NULL,
    config_digest BLOB NOT NULL,
    block_number INTEGER NOT NULL,
    digest BLOB NOT NULL,
    report_json TEXT NOT NULL,
    signature BLOB NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (config_digest, block_number, signer, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS signed_reports_by_signer ON signed_reports (signer, config_digest, block_number);
"""


@dataclass(frozen=True, slots=True)
class ArchivedReport:
    """A signed report as archived: its digest and when this node first saw it (unix seconds)."""

    signed: SignedReport
    digest: bytes
    seen_at: float


class ReportArchive(SqliteStore):
    """A SQLite file of signed reports (the collector's ``ArchiveSignedReport`` effects land here)."""

    SCHEMA = _SCHEMA
    SYNCHRONOUS = "NORMAL"

    def add(self, signed: SignedReport, digest: bytes, seen_at: float) -> bool:
        """Archive a signed report (the caller verified its signature and computed its digest).

        Args:
            signed: the signed report.
            digest: its EIP-712 digest.
            seen_at: when it was first seen (unix seconds).

        Returns:
            True if it was new, False if the same (signer, round, digest) was archived already.
        """
        report = signed.report
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO signed_reports "
            "(signer, config_digest, block_number, digest, report_json, signature, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                signed.signer,
                report.config_digest,
                report.block_number,
                digest,
                json.dumps(encode_signed_report(signed), sort_keys=True),
                signed.signature,
                seen_at,
            ),
        )
        return cursor.rowcount == 1

    def get_by_round(self, key: RoundKey) -> list[ArchivedReport]:
        """Return the reports of round ``key``, ordered by signer then digest."""
        rows = self._db.execute(
            "SELECT report_json, digest, seen_at FROM signed_reports WHERE config_digest = ? AND block_number = ? "
            "ORDER BY signer, digest",
            (key[0], key[1]),
        ).fetchall()
        return [_row(r) for r in rows]

    def get_round_keys(self) -> list[RoundKey]:
        """Return every round key with an archived report, ordered by block then config digest."""
        rows = self._db.execute(
            "SELECT DISTINCT config_digest, block_number FROM signed_reports ORDER BY block_number, config_digest"
        ).fetchall()
        return [(bytes(c), int(b)) for c, b in rows]

    def get_by_signer(self, signer: bytes, key: RoundKey | None = None) -> list[ArchivedReport]:
        """Return the reports signed by ``signer`` (in round ``key`` only, if given), ordered by round."""
        if key is None:
            rows = self._db.execute(
                "SELECT report_json, digest, seen_at FROM signed_reports WHERE signer = ? "
                "ORDER BY config_digest, block_number, digest",
                (signer,),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT report_json, digest, seen_at FROM signed_reports "
                "WHERE signer = ? AND config_digest = ? AND block_number = ? ORDER BY digest",
                (signer, key[0], key[1]),
            ).fetchall()
        return [_row(r) for r in rows]

    def find_equivocations(self, key: RoundKey) -> list[Equivocation]:
        """Return one equivocation per signer that signed two digests in round ``key`` (lower digest first)."""
        by_signer: dict[bytes, list[ArchivedReport]] = {}
        for archived in self.get_by_round(key):
            by_signer.setdefault(archived.signed.signer, []).append(archived)
        return [Equivocation(found[0].signed, found[1].signed) for found in by_signer.values() if len(found) >= 2]


def _row(row: tuple[str, bytes, float]) -> ArchivedReport:
    report_json, digest, seen_at = row
    return ArchivedReport(decode_signed_report(json.loads(report_json)), bytes(digest), float(seen_at))
