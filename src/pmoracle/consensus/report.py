"""The round report and its EIP-712 hashing: the one definition shared by nodes, contracts and tests.

The Solidity side (``contracts/MarginOracle.sol``) declares the same ``REPORT_TYPE`` string; the shared vectors in
``tests/vectors/eip712.json`` prove that both, and eth-account's ``encode_typed_data``, give the same digest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_canonical_address, to_checksum_address

from pmoracle.errors import InputError

# EIP-712 domain of the MarginOracle contract (name and version are part of the protocol).
DOMAIN_NAME = "pmoracle"
DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
REPORT_TYPE = (
    "Report(bytes32 configDigest,uint64 blockNumber,bytes32 blockHash,bytes32 paramsHash,"
    "bytes32 accountsRoot,uint32 accountCount,bytes32 riskArraysRoot,bytes32 marketHash)"
)
EIP712_DOMAIN_TYPEHASH = keccak(text=EIP712_DOMAIN_TYPE)
REPORT_TYPEHASH = keccak(text=REPORT_TYPE)

# The same types in the shape eth-account's ``encode_typed_data(full_message=...)`` takes.
REPORT_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Report": [
        {"name": "configDigest", "type": "bytes32"},
        {"name": "blockNumber", "type": "uint64"},
        {"name": "blockHash", "type": "bytes32"},
        {"name": "paramsHash", "type": "bytes32"},
        {"name": "accountsRoot", "type": "bytes32"},
        {"name": "accountCount", "type": "uint32"},
        {"name": "riskArraysRoot", "type": "bytes32"},
        {"name": "marketHash", "type": "bytes32"},
    ],
}

_UINT64_MAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1


def _check_bytes32(field: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InputError(field, f"expected 32 bytes, got {value!r}")


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: the oracle contract on one chain."""

    chain_id: int
    verifying_contract: bytes  # 20-byte address

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, int) or self.chain_id <= 0:
            raise InputError("chain_id", f"must be a positive integer, got {self.chain_id!r}")
        if not isinstance(self.verifying_contract, bytes) or len(self.verifying_contract) != 20:
            raise InputError("verifying_contract", f"expected 20 bytes, got {self.verifying_contract!r}")

    @classmethod
    def from_address(cls, chain_id: int, address: str) -> Domain:
        """Return the domain of the oracle at a hex ``address`` on ``chain_id``."""
        return cls(chain_id, to_canonical_address(address))

    def separator(self) -> bytes:
        """Return the EIP-712 domain separator."""
        return compute_domain_separator(self.chain_id, self.verifying_contract)


@functools.cache  # every digest needs it; a node sees one or two domains in its life
def compute_domain_separator(chain_id: int, verifying_contract: bytes) -> bytes:
    """Return the EIP-712 domain separator of the oracle at ``verifying_contract`` on ``chain_id``."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                EIP712_DOMAIN_TYPEHASH,
                keccak(text=DOMAIN_NAME),
                keccak(text=DOMAIN_VERSION),
                chain_id,
                verifying_contract,
            ],
        )
    )


@dataclass(frozen=True, slots=True)
class Report:
    """What a committee attests for one round: the margin book of block ``block_number``, with the risk arrays
    and market inputs it was computed from (``pmoracle.consensus.commitments``), what a fraud proof checks."""

    config_digest: bytes
    block_number: int
    block_hash: bytes
    params_hash: bytes
    accounts_root: bytes
    account_count: int
    risk_arrays_root: bytes
    market_hash: bytes

    def __post_init__(self) -> None:
        _check_bytes32("config_digest", self.config_digest)
        _check_bytes32("block_hash", self.block_hash)
        _check_bytes32("params_hash", self.params_hash)
        _check_bytes32("accounts_root", self.accounts_root)
        _check_bytes32("risk_arrays_root", self.risk_arrays_root)
        _check_bytes32("market_hash", self.market_hash)
        if not isinstance(self.block_number, int) or not 0 <= self.block_number <= _UINT64_MAX:
            raise InputError("block_number", f"must fit uint64, got {self.block_number!r}")
        if not isinstance(self.account_count, int) or not 0 <= self.account_count <= _UINT32_MAX:
            raise InputError("account_count", f"must fit uint32, got {self.account_count!r}")

    @property
    def round_key(self) -> tuple[bytes, int]:
        """Return the round key ``(configDigest, blockNumber)`` this report belongs to."""
        return (self.config_digest, self.block_number)

    def struct_hash(self) -> bytes:
        """Return ``hashStruct(report)`` of EIP-712."""
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "uint64", "bytes32", "bytes32", "bytes32", "uint32", "bytes32", "bytes32"],
                [
                    REPORT_TYPEHASH,
                    self.config_digest,
                    self.block_number,
                    self.block_hash,
                    self.params_hash,
                    self.accounts_root,
                    self.account_count,
                    self.risk_arrays_root,
                    self.market_hash,
                ],
            )
        )

    def as_frost_tuple(self) -> tuple[int, bytes, int, bytes, bytes]:
        """Return the ``FrostReport`` tuple ``MarginOracle.attestFrost`` takes: the report without its config
        digest, block hash and parameters hash (the contract takes the current committee's and blockhash()'s)."""
        return (self.block_number, self.accounts_root, self.account_count, self.risk_arrays_root, self.market_hash)

    def as_tuple(self) -> tuple[bytes, int, bytes, bytes, bytes, int, bytes, bytes]:
        """Return the report as the ABI tuple the MarginOracle contract takes."""
        return (
            self.config_digest,
            self.block_number,
            self.block_hash,
            self.params_hash,
            self.accounts_root,
            self.account_count,
            self.risk_arrays_root,
            self.market_hash,
        )

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (hex strings for bytes)."""
        return {
            "configDigest": "0x" + self.config_digest.hex(),
            "blockNumber": self.block_number,
            "blockHash": "0x" + self.block_hash.hex(),
            "paramsHash": "0x" + self.params_hash.hex(),
            "accountsRoot": "0x" + self.accounts_root.hex(),
            "accountCount": self.account_count,
            "riskArraysRoot": "0x" + self.risk_arrays_root.hex(),
            "marketHash": "0x" + self.market_hash.hex(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Report:
        """Return the report encoded by :meth:`to_json`."""
        try:
            return cls(
                config_digest=bytes.fromhex(_strip0x(obj["configDigest"])),
                block_number=int(obj["blockNumber"]),
                block_hash=bytes.fromhex(_strip0x(obj["blockHash"])),
                params_hash=bytes.fromhex(_strip0x(obj["paramsHash"])),
                accounts_root=bytes.fromhex(_strip0x(obj["accountsRoot"])),
                account_count=int(obj["accountCount"]),
                risk_arrays_root=bytes.fromhex(_strip0x(obj["riskArraysRoot"])),
                market_hash=bytes.fromhex(_strip0x(obj["marketHash"])),
            )
        except KeyError as exc:
            raise InputError(str(exc.args[0]), "missing from report") from None
        except (TypeError, ValueError) as exc:
            raise InputError("report", str(exc)) from None


def _strip0x(value: str) -> str:
    return value[2:] if value.startswith(("0x", "0X")) else value


def compute_report_digest(domain: Domain, report: Report) -> bytes:
    """Return the EIP-712 digest ``keccak256(0x1901 || domainSeparator || hashStruct(report))`` that is signed."""
    return keccak(b"\x19\x01" + domain.separator() + report.struct_hash())


def report_typed_data(domain: Domain, report: Report) -> dict[str, Any]:
    """Return the report as EIP-712 typed data (the ``full_message`` of eth-account; used as a cross-check)."""
    return {
        "types": REPORT_TYPES,
        "primaryType": "Report",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": domain.chain_id,
            "verifyingContract": to_checksum_address(domain.verifying_contract),
        },
        "message": {
            "configDigest": report.config_digest,
            "blockNumber": report.block_number,
            "blockHash": report.block_hash,
            "paramsHash": report.params_hash,
            "accountsRoot": report.accounts_root,
            "accountCount": report.account_count,
            "riskArraysRoot": report.risk_arrays_root,
            "marketHash": report.market_hash,
        },
    }


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report with one committee member's signature: what nodes gossip and what evidence is made of."""

    report: Report
    signer: bytes  # 20-byte address of the report-signing key
    signature: bytes  # 65 bytes r || s || v, v in {27, 28}

    def __post_init__(self) -> None:
        if not isinstance(self.signer, bytes) or len(self.signer) != 20:
            raise InputError("signer", f"expected a 20-byte address, got {self.signer!r}")
        if not isinstance(self.signature, bytes) or len(self.signature) != 65:
            raise InputError("signature", f"expected 65 bytes, got {len(self.signature)!r}")


def sign_digest(digest: bytes, private_key: bytes) -> bytes:
    """Return the 65-byte Ethereum signature (r || s || v with v in {27, 28}) of a 32-byte digest."""
    from coincurve import PrivateKey

    raw = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return raw[:64] + bytes([raw[64] + 27])


def recover_public_key(digest: bytes, signature: bytes) -> bytes | None:
    """Return the 33-byte compressed public key that signed ``digest``, or None if the signature is malformed or
    high-s."""
    from coincurve import PublicKey

    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < s <= _SECP256K1_HALF_N:  # reject malleable signatures, as OpenZeppelin's ECDSA does
        return None
    try:
        public = PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]), digest, hasher=None)
    except ValueError:
        return None
    compressed: bytes = public.format(compressed=True)
    return compressed


def recover_signer(digest: bytes, signature: bytes) -> bytes | None:
    """Return the 20-byte address that signed ``digest``, or None if the signature is malformed or high-s."""
    from coincurve import PublicKey

    public = recover_public_key(digest, signature)
    if public is None:
        return None
    return keccak(PublicKey(public).format(compressed=False)[1:])[12:]


def address_of(private_key: bytes) -> bytes:
    """Return the 20-byte Ethereum address of a secp256k1 private key."""
    from coincurve import PrivateKey

    return keccak(PrivateKey(private_key).public_key.format(compressed=False)[1:])[12:]


def sign_report(domain: Domain, report: Report, private_key: bytes) -> SignedReport:
    """Return ``report`` signed over its EIP-712 digest (callers check slashing protection first)."""
    signature = sign_digest(compute_report_digest(domain, report), private_key)
    return SignedReport(report=report, signer=address_of(private_key), signature=signature)


def is_valid_signed_report(domain: Domain, signed: SignedReport) -> bool:
    """Check if ``signed.signature`` is ``signed.signer``'s signature of the report's EIP-712 digest."""
    return recover_signer(compute_report_digest(domain, signed.report), signed.signature) == signed.signer


_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
