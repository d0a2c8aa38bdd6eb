"""A member's FROST key share at rest: encrypted, loaded with the password, refused for another committee or when
its public fields were edited, never mistaken for an Ethereum key."""

from __future__ import annotations

import json
import pathlib
import stat
from collections.abc import Callable
from typing import Any

import pytest

from pmoracle.consensus import frost
from pmoracle.node.datadir import frost_share_path
from pmoracle.node.frost_keys import (
    FrostShareMismatchError,
    describe_frost_share,
    unlock_frost_share,
    write_frost_share,
)
from pmoracle.node.keys import (
    LIGHT_KDF_ITERATIONS,
    KeyFileError,
    PasswordSourceError,
    WrongPasswordError,
    unlock_key_file,
)
from pmoracle.testing.frost import run_test_dkg, sign_in_process

PASSWORD = b"correct horse"
RESULTS = run_test_dkg(3, 4, b"frost-keys-test")
OTHER_EPOCH = run_test_dkg(3, 4, b"frost-keys-test-next-epoch")
CONTEXT = RESULTS[2].parameters.context


def _write(tmp_path: pathlib.Path, member: int = 2) -> pathlib.Path:
    path = frost_share_path(tmp_path, CONTEXT)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_frost_share(path, RESULTS[member], PASSWORD, kdf_iterations=LIGHT_KDF_ITERATIONS)
    return path


def test_a_share_round_trips_and_signs(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = unlock_frost_share(path, PASSWORD, context=CONTEXT, group_public_key=RESULTS[2].group_public_key)
    assert loaded == RESULTS[2]
    # the loaded share signs with the others
    message = b"\x42" * 32
    results = {**RESULTS, 2: loaded}
    assert frost.verify(loaded.group_public_key, message, sign_in_process(results, (1, 2, 4), message, b"seed"))
    public = describe_frost_share(path)
    assert public["identifier"] == 2 and public["groupPublicKey"] == "0x" + loaded.group_public_key.hex()


def test_the_secret_is_encrypted_and_not_an_ethereum_key(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path)
    text = path.read_text()
    share = RESULTS[2].signing_share
    assert frost.serialize_scalar(share).hex() not in text.lower() and str(share) not in text
    assert "address" not in json.loads(text)
    for kind in ("signing", "transmitter"):  # never loaded as a report-signing or gas key
        with pytest.raises(KeyFileError):
            unlock_key_file(path, PASSWORD, expected_kind=kind)
    assert str(share) not in repr(RESULTS[2])


def test_a_wrong_password_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(WrongPasswordError):
        unlock_frost_share(_write(tmp_path), b"wrong", context=CONTEXT)


def test_a_share_of_another_committee_is_refused(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path)
    other_context = OTHER_EPOCH[2].parameters.context
    with pytest.raises(FrostShareMismatchError, match="belongs to committee context") as info:
        unlock_frost_share(path, PASSWORD, context=other_context)
    assert "0x" + other_context.hex() in str(info.value) and "0x" + CONTEXT.hex() in str(info.value)
    with pytest.raises(FrostShareMismatchError, match="the committee's is"):
        unlock_frost_share(path, PASSWORD, context=CONTEXT, group_public_key=OTHER_EPOCH[2].group_public_key)


def _edit(path: pathlib.Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data["pmoracle"])
    path.write_text(json.dumps(data))


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        meta[name] = value

    return change


def _swap_verification_share(meta: dict[str, Any]) -> None:
    meta["verificationShares"]["3"] = "0x" + OTHER_EPOCH[3].verification_share.hex()


def _take_other_public_fields(meta: dict[str, Any]) -> None:
    meta["groupPublicKey"] = "0x" + OTHER_EPOCH[2].group_public_key.hex()
    meta["verificationShares"] = {str(i): "0x" + r.verification_share.hex() for i, r in OTHER_EPOCH.items()}


@pytest.mark.parametrize(
    "change",
    [
        _swap_verification_share,
        _take_other_public_fields,
        _set("threshold", 2),
        _set("identifier", 3),
        _set("transcriptDigest", "0x" + "00" * 32),
    ],
)
def test_edited_public_fields_are_refused(tmp_path: pathlib.Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = _write(tmp_path)
    _edit(path, change)
    with pytest.raises(KeyFileError, match="altered"):
        unlock_frost_share(path, PASSWORD, context=CONTEXT)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set("kind", "signing"), "kind"),
        (_set("version", 2), "version"),
        (_set("context", "beef"), "context"),
        (_set("identifiers", "1,2,3,4"), "identifiers"),
        (_set("threshold", "3"), "threshold"),
        (_set("verificationShares", {"1": "0x02"}), "verificationShares"),
    ],
)
def test_malformed_files_name_the_field(
    tmp_path: pathlib.Path, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    path = _write(tmp_path)
    _edit(path, change)
    with pytest.raises(KeyFileError, match=field):
        unlock_frost_share(path, PASSWORD, context=CONTEXT)


def test_files_are_never_overwritten_and_passwords_never_empty(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_frost_share(path, RESULTS[3], PASSWORD, kdf_iterations=LIGHT_KDF_ITERATIONS)
    assert path.read_bytes() == before
    with pytest.raises(PasswordSourceError):
        write_frost_share(tmp_path / "other.json", RESULTS[3], b"", kdf_iterations=LIGHT_KDF_ITERATIONS)
    with pytest.raises(KeyFileError, match="not found"):
        unlock_frost_share(tmp_path / "missing.json", PASSWORD, context=CONTEXT)


def test_each_epoch_has_its_own_file_in_the_data_directory(tmp_path: pathlib.Path) -> None:
    first = frost_share_path(tmp_path, CONTEXT)
    second = frost_share_path(tmp_path, OTHER_EPOCH[1].parameters.context)
    assert first != second and first.parent == second.parent == tmp_path / "frost"
