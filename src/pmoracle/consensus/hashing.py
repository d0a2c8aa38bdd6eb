"""keccak-256 for the hot paths: the Merkle tree of a round (three hashes per account, every round).

``eth_utils.keccak`` goes through eth-hash's pycryptodome backend, ~6.5 us per 64-byte input of which the hash is a
small part (cffi buffers, type dispatch); safe-pysha3's C object takes ~0.7 us. Both compute the same function
(tests compare them on random inputs); the rest of the code keeps ``eth_utils.keccak``.
"""

from __future__ import annotations

from sha3 import keccak_256  # safe-pysha3


def keccak(data: bytes) -> bytes:
    """Return keccak-256 of ``data`` (Ethereum's, not NIST SHA3-256)."""
    return keccak_256(data).digest()  # type: ignore[no-any-return]
