"""A member's FROST key share at rest: the DKG result of one committee epoch, encrypted like the node's other keys.

The file is a Web3 Secret Storage (V3) keystore written by eth-keyfile, as :mod:`pmoracle.node.keys` writes the
signing key, whose encrypted secret is the member's signing share ``s_i``. A ``pmoracle`` object carries the
public rest of the DKG result: the DKG context (the committee epoch the share belongs to), the participants and
threshold, the member's identifier, the group key, every verification share and the transcript digest. The V3
MAC covers only the ciphertext, so the public fields carry their own: HMAC-SHA256 under a key derived from
``s_i``, checked after decryption (an edited group key or verification share is refused, not trusted). The file
has no ``address`` field: the share is not an Ethereum account, and :func:`pmoracle.node.keys.unlock_key_file`
refuses it as a signing or transmitter key. Files are created 0600 and never overwritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from eth_keyfile import create_keyfile_json, decode_keyfile_json

from pmoracle.consensus import frost
from pmoracle.consensus.frost_dkg import DkgParameters, DkgResult
from pmoracle.node.keys import KeyFileError, PasswordSourceError, WrongPasswordError, write_new_keystore
from pmoracle.node.logs import register_secret

FROST_SHARE_KIND = "frost-share"
FROST_SHARE_VERSION = 1
_MAC_KEY_DST = b"pmoracle-frost-share-mac-v1"


class FrostShareMismatchError(KeyFileError):
    """Raised when a key share file belongs to another committee epoch or group key than the one expected."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def compute_public_fields(result: DkgResult) -> dict[str, Any]:
    """Return the public part of a DKG result as the file stores it (JSON, hex strings, no secret)."""
    params = result.parameters
    return {
        "kind": FROST_SHARE_KIND,
        "version": FROST_SHARE_VERSION,
        "context": _hex(params.context),
        "identifiers": list(params.identifiers),
        "threshold": params.threshold,
        "identifier": params.me,
        "groupPublicKey": _hex(result.group_public_key),
        "verificationShares": {str(i): _hex(result.verification_shares[i]) for i in params.identifiers},
        "transcriptDigest": _hex(result.transcript_digest),
    }


def compute_public_mac(signing_share: int, public: dict[str, Any]) -> bytes:
    """Return HMAC-SHA256 of the canonical JSON of the public fields, keyed by a hash of the signing share."""
    key = hashlib.sha256(_MAC_KEY_DST + frost.serialize_scalar(signing_share)).digest()
    canonical = json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).digest()


def write_frost_share(out: Path, result: DkgResult, password: bytes, *, kdf_iterations: int | None = None) -> None:
    """Encrypt a member's DKG result into a new key share file, created with mode 0600.

    Args:
        out: the file to create; it must not exist (its directory must).
        result: this member's finished DKG run.
        password: keystore password (non-empty).
        kdf_iterations: PBKDF2 iterations; None uses eth-keyfile's default (the secure choice).

    Errors:
        KeyFileError if ``out`` exists or cannot be created; PasswordSourceError for an empty password.
    """
    out = Path(out)
    if not password:
        raise PasswordSourceError("password: empty passwords are refused")
    if not 0 < result.signing_share < frost.ORDER:  # zero: probability 2^-256, and not a keystore secret
        raise KeyFileError(out, "the signing share is zero; run the DKG again")
    secret = frost.serialize_scalar(result.signing_share)
    register_secret(secret)
    keystore = create_keyfile_json(secret, password, kdf="pbkdf2", iterations=kdf_iterations)
    keystore.pop("address", None)  # not an Ethereum account: never to be loaded as a signing key
    public = compute_public_fields(result)
    keystore["pmoracle"] = {**public, "mac": _hex(compute_public_mac(result.signing_share, public))}
    write_new_keystore(out, keystore)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(path, "not found") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyFileError(path, "not a JSON keystore") from None
    if not isinstance(data, dict) or data.get("version") != 3 or not isinstance(data.get("crypto"), dict):
        raise KeyFileError(path, "not a version 3 keystore")
    meta = data.get("pmoracle")
    if not isinstance(meta, dict) or meta.get("kind") != FROST_SHARE_KIND:
        raise KeyFileError(path, f"not a FROST key share (pmoracle.kind is not {FROST_SHARE_KIND!r})")
    if meta.get("version") != FROST_SHARE_VERSION:
        raise KeyFileError(path, f"pmoracle.version: expected {FROST_SHARE_VERSION}, got {meta.get('version')!r}")
    return data


def _bytes_field(path: Path, meta: dict[str, Any], name: str) -> bytes:
    value = meta.get(name)
    if not isinstance(value, str) or not value.startswith("0x"):
        raise KeyFileError(path, f"pmoracle.{name}: expected a 0x-prefixed hex string, got {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise KeyFileError(path, f"pmoracle.{name}: not hex: {value!r}") from None


def _int_field(path: Path, meta: dict[str, Any], name: str) -> int:
    value = meta.get(name)
    if type(value) is not int:
        raise KeyFileError(path, f"pmoracle.{name}: expected an integer, got {value!r}")
    return value


def _parse_public(path: Path, meta: dict[str, Any], signing_share: int) -> DkgResult:
    identifiers = meta.get("identifiers")
    if not isinstance(identifiers, list) or not all(type(i) is int for i in identifiers):
        raise KeyFileError(path, f"pmoracle.identifiers: expected a list of integers, got {identifiers!r}")
    threshold, me = _int_field(path, meta, "threshold"), _int_field(path, meta, "identifier")
    shares = meta.get("verificationShares")
    if not isinstance(shares, dict) or sorted(shares) != sorted(str(i) for i in identifiers):
        raise KeyFileError(path, "pmoracle.verificationShares: expected one per identifier")
    try:
        parameters = DkgParameters(_bytes_field(path, meta, "context"), tuple(identifiers), threshold, me)
        result = DkgResult(
            parameters=parameters,
            signing_share=signing_share,
            group_public_key=_bytes_field(path, meta, "groupPublicKey"),
            verification_shares={i: _bytes_field(path, shares, str(i)) for i in identifiers},
            transcript_digest=_bytes_field(path, meta, "transcriptDigest"),
        )
        frost.deserialize_element(result.group_public_key, "groupPublicKey")
        for i, share in result.verification_shares.items():
            frost.deserialize_element(share, f"verificationShares[{i}]")
    except frost.FrostError as exc:  # DkgParameters and point decoding name the field
        raise KeyFileError(path, f"pmoracle: {exc}") from None
    return result


def _check_consistent(path: Path, result: DkgResult) -> None:
    """Raise KeyFileError unless s_i G = Y_i and the first t verification shares interpolate to the group key."""
    own = frost.scalar_base_mult(result.signing_share)
    if not frost.points_equal(own, frost.deserialize_element(result.verification_share)):
        raise KeyFileError(path, "the signing share does not match the member's verification share")
    quorum = result.parameters.identifiers[: result.parameters.threshold]
    interpolated = frost.add_points(
        frost.scalar_mult(
            frost.deserialize_element(result.verification_shares[i]), frost.derive_interpolating_value(quorum, i)
        )
        for i in quorum
    )
    if not frost.points_equal(interpolated, frost.deserialize_element(result.group_public_key)):
        raise KeyFileError(path, "the verification shares do not interpolate to the group key")


def unlock_frost_share(
    path: Path, password: bytes, *, context: bytes, group_public_key: bytes | None = None
) -> DkgResult:
    """Decrypt a key share file for the committee epoch ``context``; the share is registered for log redaction.

    Args:
        path: the key share file.
        password: keystore password.
        context: the DKG context of the committee epoch the node is in (the file must belong to it).
        group_public_key: the group key registered for the committee, when known (the file must hold it).

    Returns:
        The member's DKG result, as :func:`pmoracle.consensus.frost_dkg.finish_dkg` returned it.

    Errors:
        KeyFileError for a missing or malformed file, public fields that fail their MAC or do not match the
        share; WrongPasswordError for a wrong password; FrostShareMismatchError when the file belongs to another
        committee epoch or group key (checked before decrypting).
    """
    path = Path(path)
    data = _read(path)
    meta = data["pmoracle"]
    stored_context = _bytes_field(path, meta, "context")
    if stored_context != context:  # a share of another committee epoch never signs for this one
        raise FrostShareMismatchError(
            path, f"belongs to committee context {_hex(stored_context)}, expected {_hex(context)}"
        )
    stored_key = _bytes_field(path, meta, "groupPublicKey")
    if group_public_key is not None and stored_key != group_public_key:
        raise FrostShareMismatchError(
            path, f"holds group key {_hex(stored_key)}, the committee's is {_hex(group_public_key)}"
        )
    try:
        secret = decode_keyfile_json(data, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPasswordError(path, "wrong password") from None
        raise KeyFileError(path, "cannot decrypt keystore") from None
    except (KeyError, TypeError):
        raise KeyFileError(path, "malformed keystore") from None
    register_secret(secret)
    if len(secret) != frost.SCALAR_SIZE or not 0 < int.from_bytes(secret, "big") < frost.ORDER:
        raise KeyFileError(path, "the decrypted secret is not a non-zero scalar")
    signing_share = int.from_bytes(secret, "big")
    result = _parse_public(path, meta, signing_share)
    public = {k: v for k, v in meta.items() if k != "mac"}
    # the public fields are outside the keystore's MAC: they carry their own, keyed by the share
    if not hmac.compare_digest(_bytes_field(path, meta, "mac"), compute_public_mac(signing_share, public)):
        raise KeyFileError(path, "pmoracle.mac: the public fields were altered")
    _check_consistent(path, result)
    return result


def describe_frost_share(path: Path) -> dict[str, Any]:
    """Return the public fields of a key share file without decrypting it (unauthenticated until unlocked).

    Errors:
        KeyFileError for a missing or malformed file, or one that is not a FROST key share.
    """
    path = Path(path)
    meta = _read(path)["pmoracle"]
    return {"path": str(path), **{k: v for k, v in meta.items() if k != "mac"}}
