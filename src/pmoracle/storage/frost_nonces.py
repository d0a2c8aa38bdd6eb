"""The FROST nonce store: every nonce commitment this node issued, the round key it is bound to, and its one use.

A FROST nonce pair signs once (docs/frost.md, "Nonce safety"). This store applies the rules durably, in the
slashing-protection file (``protection.sqlite``, WAL, ``synchronous=FULL``, the same discipline as
:class:`~pmoracle.storage.protection_db.ProtectionDB`):

- a commitment is recorded as *issued*, bound to one round key, before it is gossiped; a commitment whose points
  were ever recorded before is refused (a repeated nonce means a broken random source);
- before a signature share leaves the node, :meth:`FrostNonceDB.record_used` writes the commitment as *used* with
  the message, a digest of the signing package's commitment list and the share, in one committed transaction;
  a second, different request for the same commitment is refused (across restarts), the same one gets the
  recorded share back (releasing it twice gives nothing new away);
- the message must be the digest this member signed with ECDSA for the round key (``signed_rounds``, checked in
  the same transaction): a FROST share is never produced for a report the member did not sign itself.

Only public values are stored: commitments, messages, digests and shares (a share is public once released). The
secret nonces never touch the disk; :class:`pmoracle.node.frost_signer.FrostSigner` holds them in memory and
deletes them once their use is recorded, so a commitment issued before a restart can no longer sign anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pmoracle.consensus.frost import ELEMENT_SIZE, ORDER, SCALAR_SIZE, SigningCommitment, encode_group_commitment_list
from pmoracle.consensus.rounds import RoundKey
from pmoracle.errors import InputError, PmoracleError
from pmoracle.storage.protection_db import ProtectionDB
from pmoracle.storage.sqlite import SqliteStore

_SQLITE_INT_MAX = 2**63 - 1
_DIGEST_SIZE = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frost_nonces (
    hiding BLOB NOT NULL UNIQUE CHECK (length(hiding) = 33),
    binding BLOB NOT NULL UNIQUE CHECK (length(binding) = 33),
    identifier INTEGER NOT NULL CHECK (identifier > 0),
    group_key BLOB NOT NULL CHECK (length(group_key) = 33),
    config_digest BLOB NOT NULL CHECK (length(config_digest) = 32),
    block_number INTEGER NOT NULL CHECK (block_number >= 0),
    message BLOB CHECK (message IS NULL OR length(message) = 32),
    package_digest BLOB CHECK (package_digest IS NULL OR length(package_digest) = 32),
    share BLOB CHECK (share IS NULL OR length(share) = 32),
    CHECK ((message IS NULL) = (package_digest IS NULL) AND (message IS NULL) = (share IS NULL)),
    PRIMARY KEY (hiding, binding)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS frost_nonces_by_round ON frost_nonces (config_digest, block_number);
"""


class FrostNonceError(PmoracleError):
    """Raised when a nonce commitment cannot sign a request: unknown, repeated, bound to another round, or unheld."""

    def __init__(self, commitment: SigningCommitment, message: str) -> None:
        super().__init__(f"commitment D=0x{commitment.hiding.hex()} of participant {commitment.identifier}: {message}")
        self.commitment = commitment


class NonceReuseError(FrostNonceError):
    """Raised when a used commitment is asked to sign a different message or commitment list (nothing is written)."""

    def __init__(self, commitment: SigningCommitment, used: NonceRecord, message: bytes, package_digest: bytes) -> None:
        super().__init__(
            commitment,
            f"already signed message 0x{(used.message or b'').hex()} (package 0x{(used.package_digest or b'').hex()}),"
            f" refusing message 0x{message.hex()} (package 0x{package_digest.hex()})",
        )
        self.used = used


class NotSignedReportError(FrostNonceError):
    """Raised when the message is not the report digest this node recorded (and signed with ECDSA) for the round."""


@dataclass(frozen=True, slots=True)
class NonceRecord:
    """One issued commitment: the round key it is bound to and, once used, what it signed."""

    commitment: SigningCommitment
    group_key: bytes
    round_key: RoundKey
    message: bytes | None  # None while issued and unused
    package_digest: bytes | None  # SHA-256 of the signing package's commitment list
    share: int | None  # the signature share released for it

    @property
    def is_used(self) -> bool:
        """Check if the commitment has signed (its nonces are consumed)."""
        return self.message is not None


def compute_package_digest(commitments: Sequence[SigningCommitment]) -> bytes:
    """Return SHA-256 of the encoded commitment list: with the message and group key it fixes the binding factors."""
    return hashlib.sha256(encode_group_commitment_list(commitments)).digest()


def _check_round_key(round_key: RoundKey) -> None:
    config_digest, block_number = round_key
    if not isinstance(config_digest, bytes) or len(config_digest) != _DIGEST_SIZE:
        raise InputError("config_digest", f"expected 32 bytes, got {config_digest!r}")
    if isinstance(block_number, bool) or not isinstance(block_number, int) or not 0 <= block_number <= _SQLITE_INT_MAX:
        raise InputError("block_number", f"must be in [0, 2**63), got {block_number!r}")


def _check_bytes(field: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise InputError(field, f"expected {size} bytes, got {value!r}")


class FrostNonceDB(SqliteStore):
    """The nonce table of the slashing-protection file (open it at ``protection_db_path``; writes are serialized).

    The ``signed_rounds`` table of :class:`ProtectionDB` is created too if missing, so the ECDSA record a share
    depends on is read in the same transaction that marks the nonce used. Use it from one thread (the node's event
    loop, as slashing protection); several processes may share the file.
    """

    SCHEMA = f"{ProtectionDB.SCHEMA};\n{_SCHEMA}"
    SYNCHRONOUS = "FULL"

    def get(self, commitment: SigningCommitment) -> NonceRecord | None:
        """Return the record of ``commitment``, or None when this file never issued it."""
        row = self._db.execute(
            "SELECT identifier, group_key, config_digest, block_number, message, package_digest, share"
            " FROM frost_nonces WHERE hiding = ? AND binding = ?",
            (commitment.hiding, commitment.binding),
        ).fetchone()
        if row is None:
            return None
        identifier, group_key, config_digest, block_number, message, package_digest, share = row
        if identifier != commitment.identifier:  # the points are this node's, the identifier is not
            raise FrostNonceError(commitment, f"was issued for participant {identifier}")
        return NonceRecord(
            commitment=commitment,
            group_key=bytes(group_key),
            round_key=(bytes(config_digest), int(block_number)),
            message=None if message is None else bytes(message),
            package_digest=None if package_digest is None else bytes(package_digest),
            share=None if share is None else int.from_bytes(share, "big"),
        )

    def record_issued(self, round_key: RoundKey, group_key: bytes, commitment: SigningCommitment) -> None:
        """Record a fresh commitment as issued and bound to ``round_key``, durably, before it is published.

        Args:
            round_key: the one round (configDigest, anchor block) this commitment may sign for.
            group_key: the 33-byte group key the commitment signs under.
            commitment: the public commitment (D, E) of a fresh nonce pair.

        Errors:
            FrostNonceError: D or E was recorded before, in any role (a repeated nonce; nothing is written).
            InputError: the round key or group key is malformed.
        """
        _check_round_key(round_key)
        _check_bytes("group_key", group_key, ELEMENT_SIZE)
        points = (commitment.hiding, commitment.binding)
        if commitment.hiding == commitment.binding:  # d = e: the pair is one nonce
            raise FrostNonceError(commitment, "hiding and binding nonce commitments are equal")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            repeated = self._db.execute(
                "SELECT count(*) FROM frost_nonces WHERE hiding IN (?, ?) OR binding IN (?, ?)", points + points
            ).fetchone()[0]
            if repeated:
                raise FrostNonceError(commitment, "a nonce commitment was issued before: the random source repeats")
            self._db.execute(
                "INSERT INTO frost_nonces (hiding, binding, identifier, group_key, config_digest, block_number)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*points, commitment.identifier, group_key, *round_key),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def record_used(
        self, round_key: RoundKey, commitment: SigningCommitment, message: bytes, package_digest: bytes, share: int
    ) -> int:
        """Record ``commitment`` as used for (message, package) durably; only then may ``share`` leave the node.

        Args:
            round_key: the round the signing session belongs to.
            commitment: this node's commitment in the signing package.
            message: the 32-byte message signed (the report digest).
            package_digest: SHA-256 of the encoded commitment list (it fixes the binding factors).
            share: the signature share computed with the commitment's nonces.

        Returns:
            The share to release: ``share``, or the share recorded by an earlier identical request.

        Errors:
            FrostNonceError: the commitment was not issued here, or is bound to another round key.
            NotSignedReportError: ``message`` is not the digest recorded for ``round_key`` in ``signed_rounds``.
            NonceReuseError: the commitment already signed another message or commitment list.
            Nothing is written when an error is raised.
        """
        _check_round_key(round_key)
        _check_bytes("message", message, _DIGEST_SIZE)
        _check_bytes("package_digest", package_digest, _DIGEST_SIZE)
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share < ORDER:
            raise InputError("share", f"must be a scalar in [0, group order), got {share!r}")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            recorded = self._check_use(round_key, commitment, message, package_digest)
            if recorded is None:
                encoded_share = share.to_bytes(SCALAR_SIZE, "big")
                self._db.execute(
                    "UPDATE frost_nonces SET message = ?, package_digest = ?, share = ?"
                    " WHERE hiding = ? AND binding = ?",
                    (message, package_digest, encoded_share, commitment.hiding, commitment.binding),
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return share if recorded is None else recorded

    def check_use(
        self, round_key: RoundKey, commitment: SigningCommitment, message: bytes, package_digest: bytes
    ) -> int | None:
        """Return the share recorded for this very request, None if the commitment may sign it, else raise.

        The read-only half of :meth:`record_used` (same errors), for a signer that wants to answer a repeated
        request without its nonces.
        """
        _check_round_key(round_key)
        _check_bytes("message", message, _DIGEST_SIZE)
        _check_bytes("package_digest", package_digest, _DIGEST_SIZE)
        return self._check_use(round_key, commitment, message, package_digest)

    def _check_use(
        self, round_key: RoundKey, commitment: SigningCommitment, message: bytes, package_digest: bytes
    ) -> int | None:
        record = self.get(commitment)
        if record is None:  # only commitments this node issued (and recorded) can sign
            raise FrostNonceError(commitment, "was not issued by this node")
        if record.round_key != round_key:  # a commitment gossiped ahead signs for its own round only
            raise FrostNonceError(commitment, f"is bound to round {_round(record.round_key)}, not {_round(round_key)}")
        signed = self._db.execute(
            "SELECT digest FROM signed_rounds WHERE config_digest = ? AND block_number = ?", round_key
        ).fetchone()
        if signed is None or bytes(signed[0]) != message:  # the member signs with FROST what it signed with ECDSA
            raise NotSignedReportError(commitment, f"0x{message.hex()} is not the report digest signed for the round")
        if record.is_used:
            if (record.message, record.package_digest) == (message, package_digest):
                return record.share  # the same request again: the same share
            raise NonceReuseError(commitment, record, message, package_digest)
        return None

    def iter_round(self, round_key: RoundKey) -> list[NonceRecord]:
        """Return every commitment bound to ``round_key`` (issued or used), ordered by D."""
        _check_round_key(round_key)
        rows = self._db.execute(
            "SELECT hiding, binding, identifier FROM frost_nonces WHERE config_digest = ? AND block_number = ?"
            " ORDER BY hiding",
            round_key,
        ).fetchall()
        records = []
        for hiding, binding, identifier in rows:
            record = self.get(SigningCommitment(int(identifier), bytes(hiding), bytes(binding)))
            if record is not None:
                records.append(record)
        return records


def _round(round_key: RoundKey) -> str:
    return f"(0x{round_key[0].hex()}, {round_key[1]})"
