"""RFC 9591's FROST(secp256k1, SHA-256) vectors and ZcashFoundation/frost's: every intermediate value, byte for byte."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from pmoracle.consensus import frost

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "vectors" / "frost"
CASES = sorted(p.name for p in VECTORS.glob("*.json"))


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def _scalar(hex_string: str) -> int:
    return frost.deserialize_scalar(bytes.fromhex(hex_string))


def _round_one(vector: dict[str, Any]) -> tuple[dict[int, frost.SigningNonces], list[frost.SigningCommitment]]:
    nonces, commitments = {}, []
    for identifier in vector["participant_list"]:
        out = vector["round_one_outputs"][str(identifier)]
        share = _share_of(vector, identifier)
        nonce, commitment = frost.commit(
            identifier,
            share,
            bytes.fromhex(out["hiding_nonce_randomness"]),
            bytes.fromhex(out["binding_nonce_randomness"]),
        )
        nonces[identifier] = nonce
        commitments.append(commitment)
    return nonces, commitments


def _share_of(vector: dict[str, Any], identifier: int) -> int:
    secret = _scalar(vector["group_secret_key"])
    coefficients = [_scalar(c) for c in vector["share_polynomial_coefficients"]]
    return frost.evaluate_polynomial(identifier, [secret, *coefficients])


def test_all_three_vector_files_are_present() -> None:
    assert CASES == ["rfc9591_secp256k1_sha256.json", "zcash_secp256k1.json", "zcash_secp256k1_big_identifier.json"]


@pytest.mark.parametrize("name", CASES)
def test_key_material(name: str) -> None:
    vector = _load(name)
    secret = _scalar(vector["group_secret_key"])
    coefficients = [_scalar(c) for c in vector["share_polynomial_coefficients"]]
    assert len(coefficients) == vector["min_participants"] - 1
    assert frost.serialize_element(frost.scalar_base_mult(secret)).hex() == vector["group_public_key"]
    assert frost.compute_vss_commitment([secret, *coefficients])[0].hex() == vector["group_public_key"]
    shares = frost.split_secret(secret, coefficients, vector["max_participants"])
    assert len(shares) == vector["max_participants"]
    for identifier, share_hex in vector["participant_shares"].items():
        assert frost.serialize_scalar(shares[int(identifier)]).hex() == share_hex
    signers = {i: shares[i] for i in vector["participant_list"]}
    assert frost.interpolate_constant(signers) == secret


@pytest.mark.parametrize("name", CASES)
def test_round_one_nonces_and_commitments(name: str) -> None:
    vector = _load(name)
    nonces, commitments = _round_one(vector)
    for commitment in commitments:
        out = vector["round_one_outputs"][str(commitment.identifier)]
        assert frost.serialize_scalar(nonces[commitment.identifier].hiding).hex() == out["hiding_nonce"]
        assert frost.serialize_scalar(nonces[commitment.identifier].binding).hex() == out["binding_nonce"]
        assert commitment.hiding.hex() == out["hiding_nonce_commitment"]
        assert commitment.binding.hex() == out["binding_nonce_commitment"]


@pytest.mark.parametrize("name", CASES)
def test_binding_factors(name: str) -> None:
    vector = _load(name)
    _, commitments = _round_one(vector)
    group_public_key, message = bytes.fromhex(vector["group_public_key"]), bytes.fromhex(vector["message"])
    factors = frost.compute_binding_factors(group_public_key, commitments, message)
    assert sorted(factors) == vector["participant_list"]
    for identifier in vector["participant_list"]:
        out = vector["round_one_outputs"][str(identifier)]
        rho_input = frost.compute_binding_factor_input(group_public_key, commitments, message, identifier)
        assert rho_input.hex() == out["binding_factor_input"]
        assert frost.h1(rho_input) == factors[identifier] == _scalar(out["binding_factor"])


@pytest.mark.parametrize("name", CASES)
def test_round_two_shares_and_signature(name: str) -> None:
    vector = _load(name)
    nonces, commitments = _round_one(vector)
    group_public_key, message = bytes.fromhex(vector["group_public_key"]), bytes.fromhex(vector["message"])
    shares = [
        frost.sign(i, _share_of(vector, i), group_public_key, nonces[i], message, commitments)
        for i in vector["participant_list"]
    ]
    for share in shares:
        assert frost.serialize_scalar(share.share).hex() == vector["round_two_outputs"][str(share.identifier)]
    signature = frost.aggregate(commitments, message, group_public_key, shares)
    assert signature.to_bytes().hex() == vector["signature"]
    assert frost.verify(group_public_key, message, signature)
    assert frost.Signature.from_bytes(bytes.fromhex(vector["signature"])) == signature


@pytest.mark.parametrize("name", CASES)
def test_every_share_verifies_against_its_verification_share(name: str) -> None:
    vector = _load(name)
    nonces, commitments = _round_one(vector)
    group_public_key, message = bytes.fromhex(vector["group_public_key"]), bytes.fromhex(vector["message"])
    package = frost.compute_signing_package(group_public_key, commitments, message)
    verification = {
        i: frost.serialize_element(frost.scalar_base_mult(_share_of(vector, i))) for i in vector["participant_list"]
    }
    shares = [
        frost.sign(i, _share_of(vector, i), group_public_key, nonces[i], message, commitments)
        for i in vector["participant_list"]
    ]
    for share in shares:
        frost.verify_signature_share(package, share, verification[share.identifier])
    assert frost.aggregate_verified(package, shares, verification).to_bytes().hex() == vector["signature"]
