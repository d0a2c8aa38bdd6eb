"""The node's three keys, each in its own encrypted file.

- ``signing``: secp256k1 key that signs EIP-712 reports; its address is the committee member.
- ``transmitter``: secp256k1 account that pays gas for attest and evidence transactions.
- ``p2p``: secp256k1 libp2p identity; the peer id is derived from its public key.

All three are Web3 Secret Storage (V3) keystores written by eth-keyfile, with a ``pmoracle`` object naming
the kind (and, for p2p, the peer id and protobuf public key) so ``keys show`` needs no password. The p2p file
carries no ``address`` field: it is not an Ethereum account. Files are created 0600 and never overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_keyfile import create_keyfile_json, decode_keyfile_json
from eth_keys import keys as eth_keys
from eth_utils import to_canonical_address, to_checksum_address

from pmoracle.errors import PmoracleError
from pmoracle.node.logs import register_secret

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

LIGHT_KDF_ITERATIONS = 4096  # devnets and tests only; the eth-keyfile default (1,000,000+) is for real keys


class KeyKind(StrEnum):
    """Which of the node's keys a file holds."""

    SIGNING = "signing"
    TRANSMITTER = "transmitter"
    P2P = "p2p"


class KeyFileError(PmoracleError):
    """Raised when a key file is missing, malformed, of the wrong kind, or already exists."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class WrongPasswordError(KeyFileError):
    """Raised when a keystore's MAC does not match: the password is wrong (or the file was altered)."""


class PasswordSourceError(PmoracleError):
    """Raised when no password can be read from the configured file or environment variable."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """The public side of a key file: what ``keys show`` prints."""

    path: Path
    kind: KeyKind | None  # None: a plain V3 keystore (geth, eth-account), usable as signing or transmitter key
    address: str | None  # checksum address (signing, transmitter)
    peer_id: str | None  # base58 peer id (p2p)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (no secret in it)."""
        kind = self.kind.value if self.kind is not None else "ethereum"
        return {"path": str(self.path), "kind": kind, "address": self.address, "peerId": self.peer_id}


@dataclass(frozen=True, slots=True)
class UnlockedKey:
    """A decrypted key; ``secret`` is kept out of ``repr`` and registered for log redaction."""

    info: KeyInfo
    secret: bytes = field(repr=False)

    @property
    def address_bytes(self) -> bytes:
        """Return the 20-byte address (signing and transmitter keys)."""
        if self.info.address is None:
            raise KeyFileError(self.info.path, "a p2p key has no address")
        return to_canonical_address(self.info.address)

    def p2p_key_pair(self) -> KeyPair:
        """Return the libp2p key pair of a p2p identity key."""
        if self.info.kind is not KeyKind.P2P:
            raise KeyFileError(self.info.path, "not a libp2p identity key")
        from libp2p.crypto.secp256k1 import create_new_key_pair

        return create_new_key_pair(self.secret)


def compute_peer_id(secret: bytes) -> tuple[str, bytes]:
    """Return (base58 peer id, protobuf-serialized public key) of a secp256k1 libp2p identity secret."""
    from libp2p.crypto.secp256k1 import create_new_key_pair
    from libp2p.peer.id import ID

    pair = create_new_key_pair(secret)
    return ID.from_pubkey(pair.public_key).to_base58(), pair.public_key.serialize()


def _parse_kind(kind: KeyKind | str) -> KeyKind:
    try:
        return KeyKind(kind)
    except ValueError:
        raise PmoracleError(f"kind: {kind!r} is not one of signing, transmitter, p2p") from None


def _check_secret(secret: bytes, path: Path) -> None:
    try:
        eth_keys.PrivateKey(secret)
    except Exception as exc:  # eth-keys raises ValidationError with several causes
        raise KeyFileError(path, f"not a valid secp256k1 private key: {type(exc).__name__}") from None


def write_key_file(
    kind: KeyKind | str,
    out: Path,
    password: bytes,
    *,
    secret: bytes | None = None,
    kdf_iterations: int | None = None,
) -> KeyInfo:
    """Encrypt a new (or the given) key into ``out``, created with mode 0600.

    Args:
        kind: signing, transmitter or p2p.
        out: file to create; it must not exist.
        password: keystore password (non-empty).
        secret: 32-byte private key to import; None draws a fresh one from the OS CSPRNG.
        kdf_iterations: PBKDF2 iterations; None uses eth-keyfile's default (the secure choice).

    Returns:
        The public :class:`KeyInfo` of the written file.

    Errors:
        KeyFileError if ``out`` exists or ``secret`` is not a valid key; PmoracleError for an empty password
        or unknown kind.
    """
    kind = _parse_kind(kind)
    out = Path(out)
    if not password:
        raise PasswordSourceError("password: empty passwords are refused")
    if secret is None:
        secret = _fresh_secret()
    _check_secret(secret, out)
    register_secret(secret)
    keystore = create_keyfile_json(secret, password, kdf="pbkdf2", iterations=kdf_iterations)
    if kind is KeyKind.P2P:
        keystore.pop("address", None)
        peer_id, public_key = compute_peer_id(secret)
        keystore["pmoracle"] = {"kind": kind.value, "peerId": peer_id, "publicKey": public_key.hex()}
        info = KeyInfo(out, kind, None, peer_id)
    else:
        address = to_checksum_address(keystore["address"])
        keystore["pmoracle"] = {"kind": kind.value}
        info = KeyInfo(out, kind, address, None)
    write_new_keystore(out, keystore)
    return info


def write_new_keystore(out: Path, keystore: dict[str, Any]) -> None:
    """Write ``keystore`` as JSON to a new file ``out`` (mode 0600, never over an existing file), synced to disk.

    Errors:
        KeyFileError when ``out`` exists or cannot be created.
    """
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(out, "already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(out, f"cannot create: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(keystore, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _fresh_secret() -> bytes:
    # Rejection sampling: a 32-byte draw is >= the curve order with probability ~2^-128.
    while True:
        candidate = os.urandom(32)
        try:
            return eth_keys.PrivateKey(candidate).to_bytes()
        except Exception:  # pragma: no cover - astronomically rare
            continue


def _load_keystore(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(path, "not found") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyFileError(path, "not a JSON keystore") from None
    if not isinstance(data, dict) or data.get("version") != 3 or not isinstance(data.get("crypto"), dict):
        raise KeyFileError(path, "not a version 3 keystore")
    return data


def describe_key_file(path: Path) -> KeyInfo:
    """Return the public info of a key file without decrypting it.

    Errors:
        KeyFileError if the file is missing, not a V3 keystore, or its public fields are inconsistent.
    """
    path = Path(path)
    data = _load_keystore(path)
    meta = data.get("pmoracle")
    if not isinstance(meta, dict) or meta.get("kind") not in {k.value for k in KeyKind}:
        # A plain V3 keystore (geth, eth-account) is an Ethereum account usable as signing or transmitter key.
        if "address" not in data:
            raise KeyFileError(path, "keystore has neither a pmoracle kind nor an address")
        return KeyInfo(path, None, to_checksum_address(data["address"]), None)
    kind = KeyKind(meta["kind"])
    if kind is KeyKind.P2P:
        from libp2p.crypto.serialization import deserialize_public_key
        from libp2p.peer.id import ID

        try:
            peer_id = ID.from_pubkey(deserialize_public_key(bytes.fromhex(meta["publicKey"]))).to_base58()
        except Exception:
            raise KeyFileError(path, "p2p key file has a malformed publicKey") from None
        if peer_id != meta.get("peerId"):
            raise KeyFileError(path, "p2p key file's peerId does not match its publicKey")
        return KeyInfo(path, kind, None, peer_id)
    if "address" not in data:
        raise KeyFileError(path, f"{kind.value} keystore has no address")
    return KeyInfo(path, kind, to_checksum_address(data["address"]), None)


def unlock_key_file(path: Path, password: bytes, *, expected_kind: KeyKind | str | None = None) -> UnlockedKey:
    """Decrypt a key file; the secret is registered for log redaction before it is returned.

    Errors:
        KeyFileError for a missing/malformed file, a kind other than ``expected_kind``, or public fields that do
        not match the decrypted key; WrongPasswordError for a wrong password.
    """
    path = Path(path)
    info = describe_key_file(path)
    if expected_kind is not None:
        expected = _parse_kind(expected_kind)
        if info.kind is None and expected is not KeyKind.P2P:
            info = KeyInfo(path, expected, info.address, None)  # a plain Ethereum keystore serves either role
        elif info.kind is not expected:
            held = info.kind.value if info.kind is not None else "plain Ethereum"
            raise KeyFileError(path, f"holds a {held} key, expected {expected.value}")
    data = _load_keystore(path)
    try:
        secret = decode_keyfile_json(data, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPasswordError(path, "wrong password") from None
        raise KeyFileError(path, "cannot decrypt keystore") from None
    except (KeyError, TypeError):
        raise KeyFileError(path, "malformed keystore") from None
    register_secret(secret)
    # The public fields are unauthenticated; a file whose address was edited must not pass for another key.
    if info.kind is KeyKind.P2P:
        if compute_peer_id(secret)[0] != info.peer_id:
            raise KeyFileError(path, "peerId does not match the decrypted key")
    elif eth_keys.PrivateKey(secret).public_key.to_checksum_address() != info.address:
        raise KeyFileError(path, "address does not match the decrypted key")
    return UnlockedKey(info, secret)


def read_password(
    password_file: Path | None, password_env: str | None, environ: Mapping[str, str] | None = None
) -> bytes:
    """Return the keystore password from ``password_file`` (first line) or else the ``password_env`` variable.

    Errors:
        PasswordSourceError naming the file or variable when neither yields a non-empty password.
    """
    environ = os.environ if environ is None else environ
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PasswordSourceError(f"password file {password_file}: cannot read ({exc.strerror})") from None
        password = text.splitlines()[0] if text else ""
        source = f"password file {password_file}"
    elif password_env:
        password = environ.get(password_env, "")
        source = f"environment variable {password_env}"
    else:
        raise PasswordSourceError("no password source: give a password file or an environment variable name")
    if not password:
        raise PasswordSourceError(f"{source}: empty or not set")
    register_secret(password)
    return password.encode("utf-8")


def read_private_key_file(path: Path) -> bytes:
    """Return the 32-byte key in a file holding it as hex (with or without 0x, surrounding whitespace ignored).

    Errors:
        KeyFileError if the file cannot be read or does not hold 32 bytes of hex.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KeyFileError(path, f"cannot read: {exc.strerror}") from None
    hex_text = text[2:] if text.lower().startswith("0x") else text
    try:
        secret = bytes.fromhex(hex_text)
    except ValueError:
        raise KeyFileError(path, "does not hold a hex private key") from None
    if len(secret) != 32:
        raise KeyFileError(path, f"expected a 32-byte private key, got {len(secret)} bytes")
    register_secret(secret)
    return secret
