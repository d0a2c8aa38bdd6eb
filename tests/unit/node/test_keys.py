"""Key files: encrypted V3 keystores for the signing and transmitter keys, a libp2p identity, the CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account
from libp2p.peer.id import ID

from pmoracle.cli import main
from pmoracle.node.keys import (
    LIGHT_KDF_ITERATIONS,
    KeyFileError,
    KeyKind,
    PasswordSourceError,
    WrongPasswordError,
    describe_key_file,
    read_password,
    read_private_key_file,
    unlock_key_file,
    write_key_file,
)

PASSWORD = b"correct horse battery"
SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")


def test_signing_key_round_trip_matches_eth_account(tmp_path: Path) -> None:
    out = tmp_path / "signing.json"
    info = write_key_file("signing", out, PASSWORD, secret=SECRET, kdf_iterations=LIGHT_KDF_ITERATIONS)
    assert info.address == Account.from_key(SECRET).address
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert SECRET.hex() not in out.read_text()
    key = unlock_key_file(out, PASSWORD, expected_kind=KeyKind.SIGNING)
    assert key.secret == SECRET
    assert key.address_bytes == bytes.fromhex(Account.from_key(SECRET).address[2:])
    # eth-account (the independent implementation) decrypts our file too.
    assert Account.decrypt(json.loads(out.read_text()), PASSWORD.decode()) == SECRET
    assert SECRET.hex() not in repr(key) and "secret" not in repr(key)


def test_p2p_key_has_libp2p_peer_id_and_no_address(tmp_path: Path) -> None:
    out = tmp_path / "p2p.json"
    info = write_key_file(KeyKind.P2P, out, PASSWORD, kdf_iterations=LIGHT_KDF_ITERATIONS)
    assert info.address is None and "address" not in json.loads(out.read_text())
    key = unlock_key_file(out, PASSWORD, expected_kind="p2p")
    pair = key.p2p_key_pair()
    assert ID.from_pubkey(pair.public_key).to_base58() == info.peer_id == describe_key_file(out).peer_id
    assert info.peer_id is not None and info.peer_id.startswith("16Uiu2")  # secp256k1 identity multihash
    with pytest.raises(KeyFileError, match="no address"):
        _ = key.address_bytes


def test_fresh_keys_differ_and_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    a = write_key_file("transmitter", tmp_path / "a.json", PASSWORD, kdf_iterations=LIGHT_KDF_ITERATIONS)
    b = write_key_file("transmitter", tmp_path / "b.json", PASSWORD, kdf_iterations=LIGHT_KDF_ITERATIONS)
    assert a.address != b.address
    before = (tmp_path / "a.json").read_text()
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file("transmitter", tmp_path / "a.json", PASSWORD, kdf_iterations=LIGHT_KDF_ITERATIONS)
    assert (tmp_path / "a.json").read_text() == before


def test_wrong_password_wrong_kind_and_tampering_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "signing.json"
    write_key_file("signing", out, PASSWORD, secret=SECRET, kdf_iterations=LIGHT_KDF_ITERATIONS)
    with pytest.raises(WrongPasswordError, match="wrong password"):
        unlock_key_file(out, b"nope")
    with pytest.raises(KeyFileError, match="holds a signing key, expected transmitter"):
        unlock_key_file(out, PASSWORD, expected_kind="transmitter")
    data = json.loads(out.read_text())
    data["address"] = "00" * 20
    out.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="address does not match"):
        unlock_key_file(out, PASSWORD)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(KeyFileError, match="not a JSON keystore"):
        describe_key_file(tmp_path / "junk.json")
    with pytest.raises(KeyFileError, match="not found"):
        describe_key_file(tmp_path / "absent.json")


def test_plain_ethereum_keystore_serves_as_signing_or_transmitter(tmp_path: Path) -> None:
    out = tmp_path / "geth.json"
    out.write_text(json.dumps(Account.encrypt(SECRET, PASSWORD.decode(), iterations=LIGHT_KDF_ITERATIONS)))
    assert describe_key_file(out).kind is None
    assert unlock_key_file(out, PASSWORD, expected_kind="transmitter").info.kind is KeyKind.TRANSMITTER
    with pytest.raises(KeyFileError, match="expected p2p"):
        unlock_key_file(out, PASSWORD, expected_kind="p2p")


def test_password_sources(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text("from-file\nignored second line\n")
    assert read_password(pw_file, "PW", {"PW": "from-env"}) == b"from-file"
    assert read_password(None, "PW", {"PW": "from-env"}) == b"from-env"
    with pytest.raises(PasswordSourceError, match="environment variable PW: empty or not set"):
        read_password(None, "PW", {})
    with pytest.raises(PasswordSourceError, match="cannot read"):
        read_password(tmp_path / "absent", None, {})
    with pytest.raises(PasswordSourceError, match="empty passwords"):
        write_key_file("signing", tmp_path / "x.json", b"")


def test_private_key_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "k.hex"
    path.write_text("0x" + SECRET.hex() + "\n")
    assert read_private_key_file(path) == SECRET
    path.write_text("abcd")
    with pytest.raises(KeyFileError, match="expected a 32-byte private key, got 2 bytes"):
        read_private_key_file(path)
    path.write_text("zz" * 32)
    with pytest.raises(KeyFileError, match="hex private key"):
        read_private_key_file(path)
    with pytest.raises(KeyFileError, match="not a valid secp256k1"):
        write_key_file("signing", tmp_path / "zero.json", PASSWORD, secret=b"\x00" * 32)


def test_cli_new_import_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODE_PW", "s3cret-pass")
    key_hex = tmp_path / "k.hex"
    key_hex.write_text(SECRET.hex())
    common = ["--password-env", "NODE_PW", "--light-kdf", "--json"]
    assert main(["keys", "import", "--kind", "signing", "--private-key-file", str(key_hex), "--out",
                 str(tmp_path / "s.json"), *common]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert shown["address"] == Account.from_key(SECRET).address and shown["kind"] == "signing"
    assert main(["keys", "new", "--kind", "p2p", "--out", str(tmp_path / "p.json"), *common]) == 0
    peer_id = json.loads(capsys.readouterr().out)["peerId"]
    assert main(["keys", "show", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert f"peer id: {peer_id}" in out
    assert unlock_key_file(tmp_path / "s.json", b"s3cret-pass").secret == SECRET
    monkeypatch.delenv("NODE_PW")
    assert main(["keys", "new", "--kind", "transmitter", "--out", str(tmp_path / "t.json"), *common]) == 2
    assert "NODE_PW: empty or not set" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_cli_protection_export_import_between_data_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pmoracle.node.datadir import protection_db_path
    from pmoracle.storage.protection_db import ProtectionDB, SlashingProtectionError

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    config_digest = b"\x07" * 32
    with ProtectionDB(protection_db_path(old)) as db:
        db.record_and_check((config_digest, 100), b"\x01" * 32)
        db.record_and_check((config_digest, 110), b"\x02" * 32)
    out = tmp_path / "protection.json"
    assert main(["keys", "export-protection", "--data-dir", str(old), "--out", str(out)]) == 0
    assert "exported 2 record(s)" in capsys.readouterr().out
    assert main(["keys", "import-protection", "--data-dir", str(new), str(out)]) == 0
    assert "imported 2 new record(s)" in capsys.readouterr().out
    with ProtectionDB(protection_db_path(new)) as db:
        assert db.get_digest((config_digest, 110)) == b"\x02" * 32
        # The imported record protects the new machine: a different digest for round 110 is refused.
        with pytest.raises(SlashingProtectionError):
            db.record_and_check((config_digest, 110), b"\x03" * 32)
    # A conflicting document is refused as a whole.
    document = json.loads(out.read_text())
    document["records"][0]["digest"] = "0x" + "09" * 32
    document["records"].append({"configDigest": "0x" + "08" * 32, "blockNumber": 5, "digest": "0x" + "04" * 32})
    out.write_text(json.dumps(document))
    assert main(["keys", "import-protection", "--data-dir", str(new), str(out)]) == 2
    assert "refusing to sign" in capsys.readouterr().err
    with ProtectionDB(protection_db_path(new)) as db:
        assert len(list(db.iter_records())) == 2
    # Exporting from a directory without a store, or over an existing file, is an error, not an empty export.
    assert (
        main(["keys", "export-protection", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    )
    assert "no slashing-protection database" in capsys.readouterr().err
    assert main(["keys", "export-protection", "--data-dir", str(old), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
