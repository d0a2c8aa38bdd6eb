"""The slashing-protection store on a real SQLite file: durable across reopen, refuses conflicts, JSON interchange."""

from __future__ import annotations

import json
import pathlib
import sqlite3

import pytest

from pmoracle.consensus.protection import SigningVerdict
from pmoracle.errors import InputError
from pmoracle.storage.protection_db import ProtectionDB, SlashingProtectionError

CONFIG = b"\xc0" * 32
D1, D2 = b"\x01" * 32, b"\x02" * 32


def test_record_then_same_digest_then_conflict(tmp_path: pathlib.Path) -> None:
    with ProtectionDB(tmp_path / "p.db") as db:
        assert db.record_and_check((CONFIG, 10), D1) is SigningVerdict.RECORD_AND_SIGN
        assert db.record_and_check((CONFIG, 10), D1) is SigningVerdict.SIGN_AGAIN
        with pytest.raises(SlashingProtectionError) as info:
            db.record_and_check((CONFIG, 10), D2)
        assert info.value.recorded == D1 and info.value.attempted == D2 and info.value.round_key == (CONFIG, 10)
        assert db.get_digest((CONFIG, 10)) == D1
        # another round or another config is a different key
        assert db.record_and_check((CONFIG, 20), D2) is SigningVerdict.RECORD_AND_SIGN
        assert db.record_and_check((b"\xc1" * 32, 10), D2) is SigningVerdict.RECORD_AND_SIGN


def test_survives_restart(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    db = ProtectionDB(path)
    db.record_and_check((CONFIG, 10), D1)
    db.close()
    with ProtectionDB(path) as reopened:
        with pytest.raises(SlashingProtectionError):
            reopened.record_and_check((CONFIG, 10), D2)
        assert reopened.record_and_check((CONFIG, 10), D1) is SigningVerdict.SIGN_AGAIN


def test_wal_and_full_sync(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    with ProtectionDB(path) as db:
        db.record_and_check((CONFIG, 10), D1)
        assert db._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        # a second connection (another process would do the same) sees the committed record at once
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM signed_rounds").fetchone()[0] == 1
        other.close()


def test_bad_input_named(tmp_path: pathlib.Path) -> None:
    with ProtectionDB(tmp_path / "p.db") as db:
        for key, digest, field in [
            ((CONFIG[:31], 10), D1, "config_digest"),
            ((CONFIG, -1), D1, "block_number"),
            ((CONFIG, 10), D1[:5], "digest"),
        ]:
            with pytest.raises(InputError) as info:
                db.record_and_check(key, digest)
            assert info.value.field == field


def test_export_import_round_trip(tmp_path: pathlib.Path) -> None:
    with ProtectionDB(tmp_path / "a.db") as a:
        a.record_and_check((CONFIG, 10), D1)
        a.record_and_check((CONFIG, 20), D2)
        document = json.loads(json.dumps(a.export_json()))
    assert document["metadata"] == {"format": "pmoracle-slashing-protection", "version": 1}
    with ProtectionDB(tmp_path / "b.db") as b:
        b.record_and_check((CONFIG, 30), D1)
        assert b.import_json(document) == 2
        assert b.import_json(document) == 0  # merging twice adds nothing
        assert list(b.iter_records()) == [((CONFIG, 10), D1), ((CONFIG, 20), D2), ((CONFIG, 30), D1)]
        with pytest.raises(SlashingProtectionError):
            b.record_and_check((CONFIG, 20), D1)


def test_import_conflict_refused_and_nothing_written(tmp_path: pathlib.Path) -> None:
    with ProtectionDB(tmp_path / "a.db") as a:
        a.record_and_check((CONFIG, 10), D2)
        document = {
            "metadata": {"format": "pmoracle-slashing-protection", "version": 1},
            "records": [
                {"configDigest": "0x" + CONFIG.hex(), "blockNumber": 0, "digest": "0x" + D1.hex()},
                {"configDigest": "0x" + CONFIG.hex(), "blockNumber": 10, "digest": "0x" + D1.hex()},
            ],
        }
        with pytest.raises(SlashingProtectionError) as info:
            a.import_json(document)
        assert info.value.round_key == (CONFIG, 10)
        assert a.get_digest((CONFIG, 0)) is None  # all or nothing


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], "document"),
        ({"metadata": {"format": "eip-3076", "version": 1}, "records": []}, "metadata.format"),
        ({"metadata": {"format": "pmoracle-slashing-protection", "version": 2}, "records": []}, "metadata.version"),
        ({"metadata": {"format": "pmoracle-slashing-protection", "version": 1}, "records": {}}, "records"),
        (
            {
                "metadata": {"format": "pmoracle-slashing-protection", "version": 1},
                "records": [{"configDigest": "0x12", "blockNumber": 1, "digest": "0x" + D1.hex()}],
            },
            "records[0].configDigest",
        ),
        (
            {
                "metadata": {"format": "pmoracle-slashing-protection", "version": 1},
                "records": [{"configDigest": "0x" + CONFIG.hex(), "blockNumber": "1", "digest": "0x" + D1.hex()}],
            },
            "records[0].blockNumber",
        ),
    ],
)
def test_import_malformed_names_field(tmp_path: pathlib.Path, document: object, field: str) -> None:
    with ProtectionDB(tmp_path / "a.db") as a, pytest.raises(InputError) as info:
        a.import_json(document)
    assert info.value.field == field


def test_import_document_with_internal_conflict_refused(tmp_path: pathlib.Path) -> None:
    record = {"configDigest": "0x" + CONFIG.hex(), "blockNumber": 10}
    document = {
        "metadata": {"format": "pmoracle-slashing-protection", "version": 1},
        "records": [{**record, "digest": "0x" + D1.hex()}, {**record, "digest": "0x" + D2.hex()}],
    }
    with ProtectionDB(tmp_path / "a.db") as a, pytest.raises(SlashingProtectionError):
        a.import_json(document)
