"""FROST signatures checked the way an EVM contract checks them: one ``ecrecover`` call. PURE.

The RFC 9591 signature (R, z) under group key P on message m is valid iff ``z G == R + c P`` with
``c = H2(ser(R) || ser(P) || m)``. The EVM has no point arithmetic, but ``ecrecover(h, v, r, s)`` returns the address
of ``r^-1 (s K - h G)`` where K is the point with x-coordinate r and y-parity v - 27. With ``K = P`` (``r = P.x``,
``v = 27 + P.parity``), ``s = -c P.x`` and ``h = -z P.x`` (mod n) it returns the address of ``z G - c P``, which is
R's address exactly when the signature is valid. This is the technique of Chronicle Scribe's ``LibSchnorr`` and of
public FROST verifiers; here the challenge is RFC 9591's H2, so signatures are plain RFC 9591 signatures.

The contract stores the group key as ``(P.x, P.parity)`` and receives ``(R.x, R.y, z)``: R's full coordinates are
needed for its address, and R must be checked to be on the curve (otherwise an attacker picking R.y freely turns
the 160-bit address comparison into a birthday search). :func:`is_valid_evm_signature` is the rule, step by step,
as the contract implements it (docs/frost.md, "On-chain verification").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from coincurve import PublicKey
from eth_utils import keccak

from pmoracle.consensus.frost import (
    CONTEXT_STRING,
    FIELD_PRIME,
    ORDER,
    FrostError,
    Signature,
    deserialize_element,
)

_CURVE_B = 7  # secp256k1: y^2 = x^3 + 7
CHALLENGE_DST = CONTEXT_STRING + b"chal"  # H2's domain separation tag, 29 bytes


@dataclass(frozen=True, slots=True)
class EvmGroupKey:
    """The group key as the contract stores it: x-coordinate (below the group order) and y-parity (0 even, 1 odd)."""

    x: int
    parity: int

    def __post_init__(self) -> None:
        if not isinstance(self.x, int) or not 0 < self.x < ORDER:
            raise FrostError("group_key.x", f"must be in (0, group order) for ecrecover, got {self.x:#x}")
        if self.parity not in (0, 1):
            raise FrostError("group_key.parity", f"must be 0 or 1, got {self.parity!r}")

    @classmethod
    def from_compressed(cls, group_public_key: bytes) -> EvmGroupKey:
        """Return the stored form of a 33-byte group key (FrostError if x >= n: such a key cannot be registered)."""
        deserialize_element(group_public_key, "group_public_key")
        return cls(int.from_bytes(group_public_key[1:], "big"), group_public_key[0] - 2)

    def to_compressed(self) -> bytes:
        """Return the 33-byte SEC1 encoding that enters the challenge."""
        return bytes([2 + self.parity]) + self.x.to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class EvmSignature:
    """The signature as the contract receives it: R's affine coordinates and z, each a uint256."""

    rx: int
    ry: int
    z: int

    @classmethod
    def from_signature(cls, signature: Signature) -> EvmSignature:
        """Return the calldata form of an RFC 9591 signature."""
        x, y = deserialize_element(signature.commitment, "commitment").point()
        return cls(x, y, signature.z)

    def to_words(self) -> tuple[int, int, int]:
        """Return (R.x, R.y, z), the three uint256 words of the calldata."""
        return self.rx, self.ry, self.z


@dataclass(frozen=True, slots=True)
class EcrecoverCall:
    """The inputs of the ``ecrecover`` precompile and the address it must return for a valid signature."""

    message_hash: bytes  # h = -z P.x mod n, as bytes32
    v: int  # 27 + P.parity
    r: int  # P.x
    s: int  # -c P.x mod n
    expected: bytes  # address(R) = keccak256(R.x || R.y)[12:]


def compute_point_address(x: int, y: int) -> bytes:
    """Return the Ethereum address of the point (x, y): the last 20 bytes of keccak256(x || y)."""
    return keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:]


def is_on_curve(x: int, y: int) -> bool:
    """Check if (x, y) are field elements with y^2 = x^3 + 7 (mod p)."""
    return 0 <= x < FIELD_PRIME and 0 <= y < FIELD_PRIME and (y * y - x * x * x - _CURVE_B) % FIELD_PRIME == 0


def compute_evm_challenge(group_key: EvmGroupKey, message: bytes, signature: EvmSignature) -> int:
    """Return c = H2(ser(R) || ser(P) || message) with the contract's three SHA-256 calls (equal to ``frost.h2``).

    expand_message_xmd with L = 48 on the 98-byte input (32-byte message) and DST' = DST || len(DST):
    b0 = sha256(0^64 || input || 0x0030 || 0x00 || DST'), b1 = sha256(b0 || 0x01 || DST'),
    b2 = sha256((b0 xor b1) || 0x02 || DST'), c = (b1 * 2^128 + (b2 >> 128)) mod n.
    """
    commitment = bytes([2 + signature.ry % 2]) + signature.rx.to_bytes(32, "big")
    dst_prime = CHALLENGE_DST + bytes([len(CHALLENGE_DST)])
    preimage = commitment + group_key.to_compressed() + message
    b0 = hashlib.sha256(bytes(64) + preimage + (48).to_bytes(2, "big") + b"\x00" + dst_prime).digest()
    b1 = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    b2 = hashlib.sha256(bytes(a ^ b for a, b in zip(b0, b1, strict=True)) + b"\x02" + dst_prime).digest()
    high = int.from_bytes(b1, "big") * 2**128 % ORDER  # Solidity: mulmod(uint256(b1), 1 << 128, N)
    return (high + (int.from_bytes(b2, "big") >> 128)) % ORDER  # addmod(high, uint256(b2) >> 128, N)


def compute_ecrecover_call(group_key: EvmGroupKey, message: bytes, signature: EvmSignature) -> EcrecoverCall:
    """Return the (h, v, r, s) an ecrecover-based verifier passes, and the address it must get back."""
    challenge = compute_evm_challenge(group_key, message, signature)
    return EcrecoverCall(
        message_hash=((-signature.z * group_key.x) % ORDER).to_bytes(32, "big"),
        v=27 + group_key.parity,
        r=group_key.x,
        s=(-challenge * group_key.x) % ORDER,
        expected=compute_point_address(signature.rx, signature.ry),
    )


def ecrecover(message_hash: bytes, v: int, r: int, s: int) -> bytes:
    """Return what the EVM's ecrecover precompile returns: the signer's address, or 20 zero bytes on failure."""
    if v not in (27, 28) or not 0 < r < ORDER or not 0 < s < ORDER or len(message_hash) != 32:
        return bytes(20)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v - 27])
    try:
        public = PublicKey.from_signature_and_message(signature, message_hash, hasher=None)
    except ValueError:
        return bytes(20)
    address: bytes = keccak(public.format(compressed=False)[1:])[12:]
    return address


def is_valid_evm_signature(group_key: EvmGroupKey, message: bytes, signature: EvmSignature) -> bool:
    """Check a signature with exactly the contract's steps (docs/frost.md, "On-chain verification")."""
    if not 0 < signature.z < ORDER:  # canonical and non-zero z: no z + n twin, no zero ecrecover hash
        return False
    if not is_on_curve(signature.rx, signature.ry):  # R is a curve point, so address(R) commits to it
        return False
    call = compute_ecrecover_call(group_key, message, signature)
    if call.s == 0:  # c = 0: ecrecover would fail anyway; refused explicitly
        return False
    recovered = ecrecover(call.message_hash, call.v, call.r, call.s)
    return recovered != bytes(20) and recovered == call.expected
