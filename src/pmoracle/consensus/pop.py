"""Proof of possession of a report-signing key, as ``SolverRegistry.register`` checks it.

The signing key signs, with EIP-191 (``personal_sign`` of a 32-byte hash), the hash
``keccak256(abi.encode("pmoracle-pop", registrant, chainId, registry))``: it names the operator account that
registers, the chain and the registry contract, so a proof cannot be replayed for another operator, chain or
registry.
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak

from pmoracle.consensus.report import recover_signer, sign_digest
from pmoracle.errors import InputError

POP_TAG = "pmoracle-pop"
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n32"


def _check_address(field: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 20:
        raise InputError(field, f"expected a 20-byte address, got {value!r}")


def compute_pop_hash(chain_id: int, registry: bytes, registrant: bytes) -> bytes:
    """Return ``SolverRegistry.popHash(registrant)``: the 32-byte hash the signing key signs."""
    _check_address("registry", registry)
    _check_address("registrant", registrant)
    return keccak(abi_encode(["string", "address", "uint256", "address"], [POP_TAG, registrant, chain_id, registry]))


def compute_pop_digest(chain_id: int, registry: bytes, registrant: bytes) -> bytes:
    """Return the EIP-191 digest ``keccak256("\\x19Ethereum Signed Message:\\n32" || popHash)`` that is signed."""
    return keccak(_EIP191_PREFIX + compute_pop_hash(chain_id, registry, registrant))


def sign_proof_of_possession(chain_id: int, registry: bytes, registrant: bytes, signing_key: bytes) -> bytes:
    """Return the 65-byte proof of possession of ``signing_key`` for ``registrant`` at ``registry``."""
    return sign_digest(compute_pop_digest(chain_id, registry, registrant), signing_key)


def recover_pop_signer(chain_id: int, registry: bytes, registrant: bytes, proof: bytes) -> bytes | None:
    """Return the signing address a proof of possession recovers to (None if malformed)."""
    return recover_signer(compute_pop_digest(chain_id, registry, registrant), proof)
