"""The ecrecover technique verifies FROST signatures: checked with eth_keys' independent ecrecover and coincurve."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest
from eth_keys import KeyAPI

from pmoracle.consensus import frost
from pmoracle.consensus import frost_evm as evm

VECTOR = json.loads(
    (pathlib.Path(__file__).resolve().parents[2] / "vectors" / "frost" / "rfc9591_secp256k1_sha256.json").read_text()
)
MESSAGE = hashlib.sha256(b"EIP-712 report digest").digest()


def _eth_keys_ecrecover(call: evm.EcrecoverCall) -> bytes:
    """Return the address eth_keys recovers from the call's (h, v, r, s) (an implementation independent of ours)."""
    signature = KeyAPI.Signature(vrs=(call.v - 27, call.r, call.s))
    address: bytes = signature.recover_public_key_from_msg_hash(call.message_hash).to_canonical_address()
    return address


def _signed(seed: int, message: bytes = MESSAGE) -> tuple[bytes, frost.Signature]:
    secret = frost.hash_to_scalar(seed.to_bytes(8, "big"), b"evm-test")
    shares = frost.split_secret(secret, [frost.hash_to_scalar(b"c" + seed.to_bytes(8, "big"), b"evm-test")], 3)
    group_key = frost.serialize_element(frost.scalar_base_mult(secret))
    rounds = {i: frost.commit(i, shares[i], bytes([i, seed % 256]) * 16, bytes([seed % 256, i]) * 16) for i in (1, 3)}
    commitments = [rounds[1][1], rounds[3][1]]
    sig_shares = [frost.sign(i, shares[i], group_key, rounds[i][0], message, commitments) for i in (1, 3)]
    return group_key, frost.aggregate(commitments, message, group_key, sig_shares)


SEEDS = range(8)


def test_the_seeds_cover_both_parities_of_the_group_key_and_of_the_commitment() -> None:
    prefixes = {(group_key[0], signature.commitment[0]) for group_key, signature in map(_signed, SEEDS)}
    assert prefixes == {(2, 2), (2, 3), (3, 2), (3, 3)}


@pytest.mark.parametrize("seed", SEEDS)
def test_ecrecover_returns_the_commitment_address_for_valid_signatures(seed: int) -> None:
    group_key, signature = _signed(seed)
    assert frost.verify(group_key, MESSAGE, signature)
    key, calldata = evm.EvmGroupKey.from_compressed(group_key), evm.EvmSignature.from_signature(signature)
    call = evm.compute_ecrecover_call(key, MESSAGE, calldata)
    assert _eth_keys_ecrecover(call) == call.expected == evm.ecrecover(call.message_hash, call.v, call.r, call.s)
    assert evm.is_valid_evm_signature(key, MESSAGE, calldata)
    assert key.to_compressed() == group_key
    assert evm.compute_evm_challenge(key, MESSAGE, calldata) == frost.compute_challenge(
        signature.commitment, group_key, MESSAGE
    )


def test_the_rfc_vector_signature_verifies_on_the_evm_path() -> None:
    group_key = bytes.fromhex(VECTOR["group_public_key"])
    message = bytes.fromhex(VECTOR["message"])
    signature = frost.Signature.from_bytes(bytes.fromhex(VECTOR["signature"]))
    key, calldata = evm.EvmGroupKey.from_compressed(group_key), evm.EvmSignature.from_signature(signature)
    call = evm.compute_ecrecover_call(key, message, calldata)
    assert _eth_keys_ecrecover(call) == call.expected
    assert evm.is_valid_evm_signature(key, message, calldata)


def test_ecrecover_returns_another_address_for_invalid_signatures() -> None:
    group_key, signature = _signed(11)
    key, good = evm.EvmGroupKey.from_compressed(group_key), evm.EvmSignature.from_signature(signature)
    other_key = evm.EvmGroupKey.from_compressed(_signed(12)[0])
    negated_r = evm.EvmSignature(good.rx, frost.FIELD_PRIME - good.ry, good.z)  # -R: on the curve, other parity
    cases = [
        (key, MESSAGE[::-1], good),  # another message
        (key, MESSAGE, evm.EvmSignature(good.rx, good.ry, (good.z + 1) % frost.ORDER)),  # another z
        (key, MESSAGE, negated_r),
        (other_key, MESSAGE, good),  # another committee's key
        (evm.EvmGroupKey(key.x, 1 - key.parity), MESSAGE, good),  # -P
    ]
    for k, message, calldata in cases:
        call = evm.compute_ecrecover_call(k, message, calldata)
        assert _eth_keys_ecrecover(call) != call.expected
        assert not evm.is_valid_evm_signature(k, message, calldata)


def test_off_curve_and_non_canonical_inputs_are_refused_before_ecrecover() -> None:
    group_key, signature = _signed(13)
    key, good = evm.EvmGroupKey.from_compressed(group_key), evm.EvmSignature.from_signature(signature)
    assert not evm.is_valid_evm_signature(key, MESSAGE, evm.EvmSignature(good.rx, good.ry + 2, good.z))
    assert not evm.is_valid_evm_signature(key, MESSAGE, evm.EvmSignature(good.rx + frost.FIELD_PRIME, good.ry, good.z))
    assert not evm.is_valid_evm_signature(key, MESSAGE, evm.EvmSignature(good.rx, good.ry, good.z + frost.ORDER))
    assert not evm.is_valid_evm_signature(key, MESSAGE, evm.EvmSignature(good.rx, good.ry, 0))
    # z + n gives the same ecrecover call: only the z < n check stops the twin
    twin = evm.compute_ecrecover_call(key, MESSAGE, evm.EvmSignature(good.rx, good.ry, good.z + frost.ORDER))
    assert twin == evm.compute_ecrecover_call(key, MESSAGE, good)


def test_a_group_key_whose_x_is_not_below_the_order_cannot_be_registered() -> None:
    x = frost.ORDER
    while True:  # about half of all x have a point; the first one above n is a few steps away
        try:
            point = frost.deserialize_element(b"\x02" + x.to_bytes(32, "big"))
            break
        except frost.FrostError:
            x += 1
    with pytest.raises(frost.FrostError, match=r"group_key\.x"):
        evm.EvmGroupKey.from_compressed(frost.serialize_element(point))


def test_the_precompile_model_fails_like_the_precompile() -> None:
    group_key, signature = _signed(14)
    call = evm.compute_ecrecover_call(
        evm.EvmGroupKey.from_compressed(group_key), MESSAGE, evm.EvmSignature.from_signature(signature)
    )
    zero = bytes(20)
    assert evm.ecrecover(call.message_hash, 29, call.r, call.s) == zero
    assert evm.ecrecover(call.message_hash, call.v, call.r, 0) == zero
    assert evm.ecrecover(call.message_hash, call.v, frost.ORDER, call.s) == zero


SHARED = json.loads((pathlib.Path(__file__).resolve().parents[2] / "vectors" / "frost_evm.json").read_text())


@pytest.mark.parametrize("case", SHARED["cases"], ids=lambda c: str(c["note"]))
def test_the_shared_contract_vectors_hold_under_an_independent_ecrecover(case: dict[str, object]) -> None:
    """The vectors the contract tests will read: each verdict agrees with eth_keys' ecrecover and with H2."""
    words = {k: int(str(case[k]), 16) for k in ("groupKeyX", "rx", "ry", "z")}
    key = evm.EvmGroupKey(words["groupKeyX"], int(str(case["groupKeyParity"])))
    signature = evm.EvmSignature(words["rx"], words["ry"], words["z"])
    message = bytes.fromhex(str(case["message"])[2:])
    assert evm.is_valid_evm_signature(key, message, signature) is case["valid"]
    if "ecrecover" not in case:  # refused before ecrecover: R off the curve or z out of range
        assert case["valid"] is False
        return
    call = evm.compute_ecrecover_call(key, message, signature)
    assert (_eth_keys_ecrecover(call) == call.expected) is case["valid"]
    commitment = bytes([2 + signature.ry % 2]) + signature.rx.to_bytes(32, "big")
    challenge = frost.compute_challenge(commitment, key.to_compressed(), message)
    assert int(str(case["challenge"]), 16) == challenge
