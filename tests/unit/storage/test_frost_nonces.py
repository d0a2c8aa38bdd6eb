"""The FROST nonce store on a real SQLite file: issue, one use, refusals, durability, and racing connections."""

from __future__ import annotations

import hashlib
import pathlib
import sqlite3
import threading
from collections.abc import Callable

import pytest

from pmoracle.consensus import frost
from pmoracle.errors import InputError
from pmoracle.storage.frost_nonces import (
    FrostNonceDB,
    FrostNonceError,
    NonceReuseError,
    NotSignedReportError,
    compute_package_digest,
)
from pmoracle.storage.protection_db import ProtectionDB

CONFIG = b"\xc0" * 32
ROUND = (CONFIG, 40)
MESSAGE = hashlib.sha256(b"report of round 40").digest()
GROUP_KEY = frost.serialize_element(frost.scalar_base_mult(12345))


def _commitment(identifier: int, seed: int) -> frost.SigningCommitment:
    return frost.commit(identifier, 777, seed.to_bytes(32, "big"), (seed + 1).to_bytes(32, "big"))[1]


def _package(*commitments: frost.SigningCommitment) -> bytes:
    return compute_package_digest(sorted(commitments, key=lambda c: c.identifier))


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    """A protection file where the node signed MESSAGE for ROUND with ECDSA."""
    path = tmp_path / "protection.sqlite"
    with ProtectionDB(path) as protection:
        protection.record_and_check(ROUND, MESSAGE)
    return path


def test_an_issued_commitment_is_bound_to_its_round_and_unused(path: pathlib.Path) -> None:
    own = _commitment(1, 10)
    with FrostNonceDB(path) as db:
        assert db.get(own) is None
        db.record_issued(ROUND, GROUP_KEY, own)
        record = db.get(own)
        assert record is not None and not record.is_used
        assert (record.round_key, record.group_key, record.message, record.share) == (ROUND, GROUP_KEY, None, None)
        assert db.iter_round(ROUND) == [record] and db.iter_round((CONFIG, 41)) == []


def test_one_use_then_the_same_share_or_a_refusal(path: pathlib.Path) -> None:
    own, other, third = _commitment(1, 10), _commitment(2, 20), _commitment(3, 30)
    with FrostNonceDB(path) as db:
        db.record_issued(ROUND, GROUP_KEY, own)
        package = _package(own, other)
        assert db.check_use(ROUND, own, MESSAGE, package) is None
        assert db.record_used(ROUND, own, MESSAGE, package, 99) == 99
        record = db.get(own)
        assert record is not None and record.is_used
        assert (record.message, record.package_digest, record.share) == (MESSAGE, package, 99)
        # the identical request gets the recorded share, whatever is offered now
        assert db.check_use(ROUND, own, MESSAGE, package) == 99
        assert db.record_used(ROUND, own, MESSAGE, package, 5) == 99
        # another commitment list (another aggregator's package) is a second use
        with pytest.raises(NonceReuseError) as info:
            db.record_used(ROUND, own, MESSAGE, _package(own, third), 100)
        assert info.value.used == record and info.value.commitment == own
        assert db.get(own) == record


def test_a_use_needs_the_ecdsa_signed_digest_of_its_own_round(path: pathlib.Path) -> None:
    own, other = _commitment(1, 10), _commitment(2, 20)
    with FrostNonceDB(path) as db:
        db.record_issued(ROUND, GROUP_KEY, own)
        package = _package(own, other)
        with pytest.raises(NotSignedReportError, match="not the report digest"):
            db.record_used(ROUND, own, hashlib.sha256(MESSAGE).digest(), package, 1)
        # the round the commitment was issued for, only
        with ProtectionDB(path) as protection:
            protection.record_and_check((CONFIG, 44), MESSAGE)
        with pytest.raises(FrostNonceError, match="is bound to round"):
            db.record_used((CONFIG, 44), own, MESSAGE, package, 1)
        # a round the node never signed with ECDSA
        db.record_issued((CONFIG, 48), GROUP_KEY, other)
        with pytest.raises(NotSignedReportError):
            db.record_used((CONFIG, 48), other, MESSAGE, package, 1)
        with pytest.raises(FrostNonceError, match="was not issued by this node"):
            db.record_used(ROUND, _commitment(1, 50), MESSAGE, package, 1)
        record = db.get(own)
        assert record is not None and not record.is_used  # nothing was written


def test_a_repeated_nonce_is_refused_in_either_role(path: pathlib.Path) -> None:
    own = _commitment(1, 10)
    with FrostNonceDB(path) as db:
        db.record_issued(ROUND, GROUP_KEY, own)
        swapped = frost.SigningCommitment(1, own.binding, own.hiding)
        half = frost.SigningCommitment(1, _commitment(1, 60).hiding, own.binding)
        for repeated in (own, swapped, half):
            with pytest.raises(FrostNonceError, match="random source repeats"):
                db.record_issued((CONFIG, 44), GROUP_KEY, repeated)
        with pytest.raises(FrostNonceError, match="are equal"):
            db.record_issued(ROUND, GROUP_KEY, frost.SigningCommitment(1, own.hiding, own.hiding))
        assert len(db.iter_round(ROUND)) == 1 and db.iter_round((CONFIG, 44)) == []
        # the same points under another identifier are not this node's commitment
        with pytest.raises(FrostNonceError, match="issued for participant 1"):
            db.get(frost.SigningCommitment(2, own.hiding, own.binding))


def test_records_survive_a_restart_in_the_protection_file(path: pathlib.Path) -> None:
    own, other = _commitment(1, 10), _commitment(2, 20)
    db = FrostNonceDB(path)
    db.record_issued(ROUND, GROUP_KEY, own)
    db.record_used(ROUND, own, MESSAGE, _package(own, other), 7)
    db.close()
    with FrostNonceDB(path) as reopened, ProtectionDB(path) as protection:
        with pytest.raises(NonceReuseError):
            reopened.record_used(ROUND, own, MESSAGE, _package(own, _commitment(3, 30)), 8)
        assert reopened.record_used(ROUND, own, MESSAGE, _package(own, other), 8) == 7
        assert protection.get_digest(ROUND) == MESSAGE  # one file, both tables
        assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reopened._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other_connection = sqlite3.connect(path)
    assert other_connection.execute("SELECT count(*) FROM frost_nonces WHERE share IS NOT NULL").fetchone()[0] == 1
    other_connection.close()


def test_racing_connections_use_a_commitment_once(path: pathlib.Path) -> None:
    """Eight connections (as eight processes would) record eight different uses at once: exactly one is written."""
    own = _commitment(1, 10)
    with FrostNonceDB(path) as db:
        db.record_issued(ROUND, GROUP_KEY, own)
    racers = 8
    start = threading.Barrier(racers)
    outcomes: dict[int, object] = {}

    def race(k: int) -> None:
        with FrostNonceDB(path) as connection:
            package = _package(own, _commitment(2, 100 + k))
            start.wait()
            try:
                outcomes[k] = connection.record_used(ROUND, own, MESSAGE, package, 1000 + k)
            except NonceReuseError as exc:
                outcomes[k] = exc

    threads = [threading.Thread(target=race, args=(k,)) for k in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = {k: v for k, v in outcomes.items() if isinstance(v, int)}
    assert len(outcomes) == racers and len(winners) == 1
    ((winner, share),) = winners.items()
    assert share == 1000 + winner
    with FrostNonceDB(path) as db:
        record = db.get(own)
        assert record is not None and record.share == share
        assert record.package_digest == _package(own, _commitment(2, 100 + winner))


def test_malformed_input_is_named(path: pathlib.Path) -> None:
    own, package = _commitment(1, 10), _package(_commitment(1, 10))
    with FrostNonceDB(path) as db:
        db.record_issued(ROUND, GROUP_KEY, own)
        cases: list[tuple[Callable[[], object], str]] = [
            (lambda: db.record_issued((CONFIG[:31], 1), GROUP_KEY, _commitment(1, 70)), "config_digest"),
            (lambda: db.record_issued((CONFIG, -1), GROUP_KEY, _commitment(1, 70)), "block_number"),
            (lambda: db.record_issued(ROUND, GROUP_KEY[:32], _commitment(1, 70)), "group_key"),
            (lambda: db.record_used(ROUND, own, MESSAGE[:31], package, 1), "message"),
            (lambda: db.record_used(ROUND, own, MESSAGE, package + b"\x00", 1), "package_digest"),
            (lambda: db.record_used(ROUND, own, MESSAGE, package, frost.ORDER), "share"),
        ]
        for call, field in cases:
            with pytest.raises(InputError) as info:
                call()
            assert info.value.field == field
