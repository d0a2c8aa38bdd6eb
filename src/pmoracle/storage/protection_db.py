"""The slashing-protection store: (configDigest, blockNumber) -> the one digest this node may sign, on SQLite.

The rule is :func:`pmoracle.consensus.protection.check_can_sign`; this module applies it durably. The database runs
in WAL mode with ``synchronous=FULL`` so a record that :meth:`ProtectionDB.record_and_check` returned for is on
disk before the caller signs: a crash can lose a signature, never let a second digest be signed after a restart.
The JSON interchange follows EIP-3076 in spirit (metadata + records; importing merges and refuses conflicts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pmoracle.consensus.protection import SigningVerdict, check_can_sign
from pmoracle.consensus.rounds import RoundKey
from pmoracle.errors import InputError, PmoracleError
from pmoracle.storage.sqlite import SqliteStore

INTERCHANGE_FORMAT = "pmoracle-slashing-protection"
INTERCHANGE_VERSION = 1
_SQLITE_INT_MAX = 2**63 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signed_rounds (
    config_digest BLOB NOT NULL CHECK (length(config_digest) = 32),
    block_number INTEGER NOT NULL CHECK (block_number >= 0),
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    PRIMARY KEY (config_digest, block_number)
) WITHOUT ROWID
"""


class SlashingProtectionError(PmoracleError):
    """Raised when signing (or importing) a digest would conflict with the digest recorded for its round key."""

    def __init__(self, round_key: RoundKey, recorded: bytes, attempted: bytes) -> None:
        super().__init__(
            f"round (0x{round_key[0].hex()}, {round_key[1]}): 0x{recorded.hex()} is recorded, "
            f"refusing to sign 0x{attempted.hex()}"
        )
        self.round_key = round_key
        self.recorded = recorded
        self.attempted = attempted


def _check_key(key: RoundKey, digest: bytes) -> None:
    config_digest, block_number = key
    if not isinstance(config_digest, bytes) or len(config_digest) != 32:
        raise InputError("config_digest", f"expected 32 bytes, got {config_digest!r}")
    if not isinstance(block_number, int) or not 0 <= block_number <= _SQLITE_INT_MAX:
        raise InputError("block_number", f"must be in [0, 2**63), got {block_number!r}")
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise InputError("digest", f"expected 32 bytes, got {digest!r}")


class ProtectionDB(SqliteStore):
    """A slashing-protection database file (safe to open from several processes; writes are serialized)."""

    SCHEMA = _SCHEMA
    SYNCHRONOUS = "FULL"

    def get_digest(self, key: RoundKey) -> bytes | None:
        """Return the digest recorded for ``key``, or None."""
        row = self._db.execute(
            "SELECT digest FROM signed_rounds WHERE config_digest = ? AND block_number = ?", (key[0], key[1])
        ).fetchone()
        return None if row is None else bytes(row[0])

    def record_and_check(self, key: RoundKey, digest: bytes) -> SigningVerdict:
        """Record ``key -> digest`` durably, or confirm it is already recorded; only then may the caller sign.

        Args:
            key: the round key (configDigest, blockNumber).
            digest: the EIP-712 digest about to be signed.

        Returns:
            RECORD_AND_SIGN when the record is new, SIGN_AGAIN when the same digest was recorded before.

        Errors:
            SlashingProtectionError: a different digest is recorded for ``key`` (nothing is written).
            InputError: the key or digest is malformed.
        """
        _check_key(key, digest)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            verdict = check_can_sign(self.get_digest(key), digest)
            if verdict is SigningVerdict.REFUSE:
                recorded = self.get_digest(key)
                raise SlashingProtectionError(key, recorded if recorded is not None else b"", digest)
            if verdict is SigningVerdict.RECORD_AND_SIGN:
                self._db.execute(
                    "INSERT INTO signed_rounds (config_digest, block_number, digest) VALUES (?, ?, ?)",
                    (key[0], key[1], digest),
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return verdict

    def iter_records(self) -> Iterator[tuple[RoundKey, bytes]]:
        """Yield every ``(round key, digest)`` in key order."""
        rows = self._db.execute(
            "SELECT config_digest, block_number, digest FROM signed_rounds ORDER BY config_digest, block_number"
        ).fetchall()
        for config_digest, block_number, digest in rows:
            yield (bytes(config_digest), int(block_number)), bytes(digest)

    def export_json(self) -> dict[str, Any]:
        """Return the whole store as an interchange document (metadata + records)."""
        return {
            "metadata": {"format": INTERCHANGE_FORMAT, "version": INTERCHANGE_VERSION},
            "records": [
                {"configDigest": "0x" + key[0].hex(), "blockNumber": key[1], "digest": "0x" + digest.hex()}
                for key, digest in self.iter_records()
            ],
        }

    def import_json(self, document: Any) -> int:
        """Merge an interchange document into the store, all or nothing.

        Args:
            document: what :meth:`export_json` returned (possibly from another machine).

        Returns:
            The number of records that were new.

        Errors:
            InputError: the document is malformed (names the field).
            SlashingProtectionError: a record conflicts with a digest recorded here (nothing is written).
        """
        records = _parse_interchange(document)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            added = 0
            for key, digest in records:
                recorded = self.get_digest(key)
                verdict = check_can_sign(recorded, digest)
                if verdict is SigningVerdict.REFUSE:
                    raise SlashingProtectionError(key, recorded if recorded is not None else b"", digest)
                if verdict is SigningVerdict.RECORD_AND_SIGN:
                    self._db.execute(
                        "INSERT INTO signed_rounds (config_digest, block_number, digest) VALUES (?, ?, ?)",
                        (key[0], key[1], digest),
                    )
                    added += 1
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return added


def _parse_hex32(field: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise InputError(field, f"expected a 0x-prefixed hex string, got {value!r}")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise InputError(field, f"not hex: {value!r}") from None
    if len(raw) != 32:
        raise InputError(field, f"expected 32 bytes, got {len(raw)}")
    return raw


def _parse_interchange(document: Any) -> list[tuple[RoundKey, bytes]]:
    if not isinstance(document, dict):
        raise InputError("document", f"expected an object, got {type(document).__name__}")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != INTERCHANGE_FORMAT:
        raise InputError("metadata.format", f"expected {INTERCHANGE_FORMAT!r}")
    if metadata.get("version") != INTERCHANGE_VERSION:
        raise InputError("metadata.version", f"expected {INTERCHANGE_VERSION}, got {metadata.get('version')!r}")
    records = document.get("records")
    if not isinstance(records, list):
        raise InputError("records", "expected a list")
    parsed: list[tuple[RoundKey, bytes]] = []
    seen: dict[RoundKey, bytes] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(f"records[{i}]", "expected an object")
        config_digest = _parse_hex32(f"records[{i}].configDigest", record.get("configDigest"))
        block_number = record.get("blockNumber")
        if isinstance(block_number, bool) or not isinstance(block_number, int):
            raise InputError(f"records[{i}].blockNumber", f"expected an integer, got {block_number!r}")
        digest = _parse_hex32(f"records[{i}].digest", record.get("digest"))
        key = (config_digest, block_number)
        _check_key(key, digest)
        # a document that itself holds two digests for one key is evidence, not protection data
        if seen.get(key, digest) != digest:
            raise SlashingProtectionError(key, seen[key], digest)
        seen[key] = digest
        parsed.append((key, digest))
    return parsed
