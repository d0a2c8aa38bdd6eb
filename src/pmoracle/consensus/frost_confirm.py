"""A member's confirmation of its DKG result, as ``SolverRegistry.confirmFrostKey`` checks it. PURE.

After the DKG of a committee without a group key, each member signs with its report-signing key (EIP-191,
``personal_sign`` of a 32-byte hash) the hash ``keccak256(abi.encode("pmoracle-frost-confirm", chainId, registry,
configDigest, version, groupKeyX, groupKeyParity, transcriptDigest))`` (``SolverRegistry.frostConfirmationHash``);
anyone relays it. The configDigest binds it to that committee epoch, so a confirmation never counts for another
version, chain or registry; a member's later confirmation (a later DKG run's) replaces its earlier one. When every
member's confirmation is the same key and transcript, the registry installs the key as a new committee version
(docs/contracts.md, docs/frost.md).
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak

from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.consensus.report import recover_signer, sign_digest
from pmoracle.errors import InputError

CONFIRM_TAG = "pmoracle-frost-confirm"
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n32"


def compute_frost_confirmation_hash(
    committee: CommitteeConfig, group_key: EvmGroupKey, transcript_digest: bytes
) -> bytes:
    """Return ``SolverRegistry.frostConfirmationHash(x, parity, transcriptDigest)`` for ``committee`` (keyless)."""
    if committee.group_key is not None:
        raise InputError("committee", f"version {committee.version} already has a group key: nothing to confirm")
    if not isinstance(transcript_digest, bytes) or len(transcript_digest) != 32:
        raise InputError("transcript_digest", f"expected 32 bytes, got {transcript_digest!r}")
    types = ["string", "uint256", "address", "bytes32", "uint64", "uint256", "uint8", "bytes32"]
    values = [CONFIRM_TAG, committee.chain_id, committee.registry, committee.digest(), committee.version, group_key.x,
              group_key.parity, transcript_digest]  # fmt: skip
    return keccak(abi_encode(types, values))


def compute_frost_confirmation_value(group_key: EvmGroupKey, transcript_digest: bytes) -> bytes:
    """Return what ``SolverRegistry.frostConfirmations(version, member)`` records for a confirmation."""
    return keccak(abi_encode(["uint256", "uint8", "bytes32"], [group_key.x, group_key.parity, transcript_digest]))


def compute_frost_confirmation_digest(
    committee: CommitteeConfig, group_key: EvmGroupKey, transcript_digest: bytes
) -> bytes:
    """Return the EIP-191 digest of the confirmation hash: what the report-signing key signs."""
    return keccak(_EIP191_PREFIX + compute_frost_confirmation_hash(committee, group_key, transcript_digest))


def sign_frost_confirmation(
    committee: CommitteeConfig, group_key: EvmGroupKey, transcript_digest: bytes, signing_key: bytes
) -> bytes:
    """Return a member's 65-byte confirmation of ``(group_key, transcript_digest)`` for ``committee``."""
    return sign_digest(compute_frost_confirmation_digest(committee, group_key, transcript_digest), signing_key)


def recover_frost_confirmer(
    committee: CommitteeConfig, group_key: EvmGroupKey, transcript_digest: bytes, signature: bytes
) -> bytes | None:
    """Return the address a confirmation recovers to (None if malformed)."""
    return recover_signer(compute_frost_confirmation_digest(committee, group_key, transcript_digest), signature)
