"""The wire format of gossip messages: msgpack arrays with a version, a kind and an exact, typed field list.

Layout (every message starts with ``[version, kind, chainId, oracle, ...]``)::

    SIGNED_REPORT  [2, 1, chainId, oracle, configDigest, blockNumber, blockHash, paramsHash, accountsRoot,
                    accountCount, riskArraysRoot, marketHash, signer, signature]
    CATCH_UP       [2, 2, chainId, oracle, configDigest, blockNumber]
    FROST_COMMIT   [2, 3, chainId, oracle, configDigest, blockNumber, attempt, identifier, hiding, binding,
                    signer, signature]
    FROST_SHARE    [2, 4, chainId, oracle, configDigest, blockNumber, attempt, message, signers, identifier,
                    share, signer, signature]
    DKG_PACKAGE    [2, 5, chainId, oracle, context, dealer, [C_0 .. C_t-1], proofCommitment, proofResponse,
                    signer, signature]
    DKG_SHARE      [2, 6, chainId, oracle, context, dealer, recipient, ephemeralKey, ciphertext, signer, signature]
    DKG_COMPLAINT  [2, 7, chainId, oracle, context, accuser, dealer, share, signer, signature]

``chainId`` is a uint64, ``oracle`` and ``signer`` 20 bytes, hashes 32 bytes, ``blockNumber`` uint64,
``accountCount`` uint32, ``signature`` 65 bytes; FROST messages (docs/frost.md, "Signing in the round"):
``attempt`` uint8, ``identifier`` 1..64, ``hiding``/``binding`` 33-byte compressed points on the curve, ``message``
32 bytes, ``signers`` a non-zero uint64 bitmap, ``share`` a 32-byte scalar below the group order. Decoding
refuses anything longer than :data:`MAX_MESSAGE_BYTES` before parsing, anything not byte-for-byte canonical (so one
message has one encoding), and raises only :class:`~pmoracle.p2p.errors.CodecError` whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from pmoracle.consensus.frost import FrostError, SignatureShare, SigningCommitment, deserialize_scalar
from pmoracle.consensus.frost_dkg import Complaint, Round1Package
from pmoracle.consensus.frost_dkg_wire import (
    EPHEMERAL_KEY_SIZE,
    SHARE_CIPHERTEXT_SIZE,
    SignedDkgComplaint,
    SignedDkgPackage,
    SignedDkgShare,
)
from pmoracle.consensus.frost_round import MAX_ATTEMPTS, SignedFrostCommitment, SignedFrostShare
from pmoracle.consensus.report import Domain, Report, SignedReport
from pmoracle.errors import InputError
from pmoracle.p2p.errors import CodecError

PROTOCOL_VERSION = 2  # 2: the report carries riskArraysRoot and marketHash
# A signed report is ~325 bytes; 4 KiB leaves room for a later field or two and stops amplification early.
MAX_MESSAGE_BYTES = 4096
KIND_SIGNED_REPORT = 1
KIND_CATCH_UP = 2
KIND_FROST_COMMITMENT = 3
KIND_FROST_SHARE = 4
KIND_DKG_PACKAGE = 5
KIND_DKG_SHARE = 6
KIND_DKG_COMPLAINT = 7
MAX_IDENTIFIER = 64  # committee index + 1 (committees have at most 64 members)

_UINT64_MAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class NetworkId:
    """Which network a message belongs to: the oracle contract on one chain (the EIP-712 domain), this protocol."""

    chain_id: int
    oracle: bytes  # 20-byte address of MarginOracle

    def __post_init__(self) -> None:
        if type(self.chain_id) is not int or not 1 <= self.chain_id <= _UINT64_MAX:
            raise InputError("chain_id", f"must be in [1, 2**64 - 1], got {self.chain_id!r}")
        if not isinstance(self.oracle, bytes) or len(self.oracle) != 20:
            raise InputError("oracle", f"expected a 20-byte address, got {self.oracle!r}")

    @classmethod
    def from_domain(cls, domain: Domain) -> NetworkId:
        """Return the network of the oracle whose EIP-712 domain is ``domain``."""
        return cls(domain.chain_id, domain.verifying_contract)

    @property
    def domain(self) -> Domain:
        """Return the EIP-712 domain reports of this network are signed under."""
        return Domain(self.chain_id, self.oracle)

    @property
    def topic(self) -> str:
        """Return the gossipsub topic of this network: ``pmoracle/<chainId>/<oracle>/v<protocol>``."""
        return f"pmoracle/{self.chain_id}/0x{self.oracle.hex()}/v{PROTOCOL_VERSION}"


@dataclass(frozen=True, slots=True)
class SignedReportMessage:
    """A committee member's signed report, gossiped on ``network``."""

    network: NetworkId
    signed: SignedReport


@dataclass(frozen=True, slots=True)
class CatchUpRequest:
    """A request to re-publish the signed reports one holds for round ``(config_digest, block_number)``."""

    network: NetworkId
    config_digest: bytes
    block_number: int

    def __post_init__(self) -> None:
        if not isinstance(self.config_digest, bytes) or len(self.config_digest) != 32:
            raise InputError("config_digest", f"expected 32 bytes, got {self.config_digest!r}")
        if type(self.block_number) is not int or not 0 <= self.block_number <= _UINT64_MAX:
            raise InputError("block_number", f"must fit uint64, got {self.block_number!r}")

    @property
    def round_key(self) -> tuple[bytes, int]:
        """Return the round key asked for."""
        return (self.config_digest, self.block_number)


@dataclass(frozen=True, slots=True)
class FrostCommitmentMessage:
    """A committee member's signed FROST nonce commitment, gossiped on ``network`` ahead of the round."""

    network: NetworkId
    signed: SignedFrostCommitment


@dataclass(frozen=True, slots=True)
class FrostShareMessage:
    """A committee member's signed FROST signature share, gossiped on ``network`` once a quorum agrees."""

    network: NetworkId
    signed: SignedFrostShare


@dataclass(frozen=True, slots=True)
class DkgMessage:
    """A committee member's signed DKG message (package, encrypted share or complaint), gossiped on ``network``."""

    network: NetworkId
    signed: SignedDkgPackage | SignedDkgShare | SignedDkgComplaint


Message = SignedReportMessage | CatchUpRequest | FrostCommitmentMessage | FrostShareMessage | DkgMessage


def encode_message(message: Message) -> bytes:
    """Return the canonical wire bytes of ``message``."""
    head: list[Any] = [PROTOCOL_VERSION, 0, message.network.chain_id, message.network.oracle]
    if isinstance(message, SignedReportMessage):
        report, signed = message.signed.report, message.signed
        head[1] = KIND_SIGNED_REPORT
        body: list[Any] = [
            report.config_digest,
            report.block_number,
            report.block_hash,
            report.params_hash,
            report.accounts_root,
            report.account_count,
            report.risk_arrays_root,
            report.market_hash,
            signed.signer,
            signed.signature,
        ]
    elif isinstance(message, CatchUpRequest):
        head[1] = KIND_CATCH_UP
        body = [message.config_digest, message.block_number]
    elif isinstance(message, FrostCommitmentMessage):
        c = message.signed
        head[1] = KIND_FROST_COMMITMENT
        body = [c.config_digest, c.block_number, c.attempt, c.commitment.identifier, c.commitment.hiding,
                c.commitment.binding, c.signer, c.signature]  # fmt: skip
    elif isinstance(message, FrostShareMessage):
        z = message.signed
        head[1] = KIND_FROST_SHARE
        body = [z.config_digest, z.block_number, z.attempt, z.message, z.signers, z.share.identifier,
                z.share.share.to_bytes(32, "big"), z.signer, z.signature]  # fmt: skip
    elif isinstance(message, DkgMessage):
        head[1], body = _encode_dkg(message.signed)
    else:
        raise InputError("message", f"cannot encode {type(message).__name__}")
    data: bytes = msgpack.packb(head + body, use_bin_type=True)
    return data


def decode_message(data: bytes) -> Message:
    """Return the message encoded in ``data``.

    Errors:
        CodecError: with ``reason`` one of ``not-bytes``, ``oversize``, ``malformed``, ``not-array``,
            ``bad-version``, ``unknown-kind``, ``bad-length``, ``bad-field`` (``detail`` names the field),
            ``non-canonical``.

    A FROST commitment whose points are not on the curve, or a share not below the group order, is ``bad-field``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError("not-bytes", type(data).__name__)
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise CodecError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        fields = msgpack.unpackb(
            data,
            use_list=True,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_MESSAGE_BYTES,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_array_len=64,
            max_map_len=64,
            max_ext_len=MAX_MESSAGE_BYTES,
        )
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, StackError, ...) on bad input
        raise CodecError("malformed", type(exc).__name__) from None
    if type(fields) is not list or len(fields) < 2:
        raise CodecError("not-array")
    if _uint(fields[0], "version", _UINT32_MAX) != PROTOCOL_VERSION:
        raise CodecError("bad-version", repr(fields[0]))
    kind = fields[1]
    if kind == KIND_SIGNED_REPORT and type(kind) is int:
        message: Message = _decode_signed_report(fields)
    elif kind == KIND_CATCH_UP and type(kind) is int:
        message = _decode_catch_up(fields)
    elif kind == KIND_FROST_COMMITMENT and type(kind) is int:
        message = _decode_frost_commitment(fields)
    elif kind == KIND_FROST_SHARE and type(kind) is int:
        message = _decode_frost_share(fields)
    elif kind in (KIND_DKG_PACKAGE, KIND_DKG_SHARE, KIND_DKG_COMPLAINT) and type(kind) is int:
        message = _decode_dkg(kind, fields)
    else:
        raise CodecError("unknown-kind", repr(kind))
    # One message, one encoding: no alternative int widths, str-for-bin or trailing tricks reach the node.
    if encode_message(message) != data:
        raise CodecError("non-canonical")
    return message


def _uint(value: Any, field: str, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise CodecError("bad-field", field)
    return value


def _fixed_bytes(value: Any, field: str, length: int) -> bytes:
    if type(value) is not bytes or len(value) != length:
        raise CodecError("bad-field", field)
    return value


def _network(fields: list[Any]) -> NetworkId:
    chain_id = _uint(fields[2], "chain_id", _UINT64_MAX)
    if chain_id == 0:
        raise CodecError("bad-field", "chain_id")
    return NetworkId(chain_id, _fixed_bytes(fields[3], "oracle", 20))


def _decode_signed_report(fields: list[Any]) -> SignedReportMessage:
    if len(fields) != 14:
        raise CodecError("bad-length", f"signed report has {len(fields)} fields, expected 14")
    network = _network(fields)
    report = Report(
        config_digest=_fixed_bytes(fields[4], "config_digest", 32),
        block_number=_uint(fields[5], "block_number", _UINT64_MAX),
        block_hash=_fixed_bytes(fields[6], "block_hash", 32),
        params_hash=_fixed_bytes(fields[7], "params_hash", 32),
        accounts_root=_fixed_bytes(fields[8], "accounts_root", 32),
        account_count=_uint(fields[9], "account_count", _UINT32_MAX),
        risk_arrays_root=_fixed_bytes(fields[10], "risk_arrays_root", 32),
        market_hash=_fixed_bytes(fields[11], "market_hash", 32),
    )
    signed = SignedReport(
        report=report,
        signer=_fixed_bytes(fields[12], "signer", 20),
        signature=_fixed_bytes(fields[13], "signature", 65),
    )
    return SignedReportMessage(network, signed)


def _decode_catch_up(fields: list[Any]) -> CatchUpRequest:
    if len(fields) != 6:
        raise CodecError("bad-length", f"catch-up request has {len(fields)} fields, expected 6")
    return CatchUpRequest(
        _network(fields),
        _fixed_bytes(fields[4], "config_digest", 32),
        _uint(fields[5], "block_number", _UINT64_MAX),
    )


def _identifier(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_IDENTIFIER:
        raise CodecError("bad-field", "identifier")
    return value


def _decode_frost_commitment(fields: list[Any]) -> FrostCommitmentMessage:
    if len(fields) != 12:
        raise CodecError("bad-length", f"FROST commitment has {len(fields)} fields, expected 12")
    network = _network(fields)
    config_digest = _fixed_bytes(fields[4], "config_digest", 32)
    block_number = _uint(fields[5], "block_number", _UINT64_MAX)
    attempt = _uint(fields[6], "attempt", MAX_ATTEMPTS - 1)
    identifier = _identifier(fields[7])
    hiding = _fixed_bytes(fields[8], "hiding", 33)
    binding = _fixed_bytes(fields[9], "binding", 33)
    try:
        commitment = SigningCommitment(identifier, hiding, binding)
    except FrostError as exc:  # off the curve, or not a compressed point
        raise CodecError("bad-field", exc.field) from None
    signed = SignedFrostCommitment(
        config_digest, block_number, attempt, commitment,
        _fixed_bytes(fields[10], "signer", 20), _fixed_bytes(fields[11], "signature", 65),
    )  # fmt: skip
    return FrostCommitmentMessage(network, signed)


def _decode_frost_share(fields: list[Any]) -> FrostShareMessage:
    if len(fields) != 13:
        raise CodecError("bad-length", f"FROST share has {len(fields)} fields, expected 13")
    network = _network(fields)
    config_digest = _fixed_bytes(fields[4], "config_digest", 32)
    block_number = _uint(fields[5], "block_number", _UINT64_MAX)
    attempt = _uint(fields[6], "attempt", MAX_ATTEMPTS - 1)
    message = _fixed_bytes(fields[7], "message", 32)
    signers = _uint(fields[8], "signers", _UINT64_MAX)
    if signers == 0:
        raise CodecError("bad-field", "signers")
    identifier = _identifier(fields[9])
    try:
        share = SignatureShare(identifier, deserialize_scalar(_fixed_bytes(fields[10], "share", 32), "share"))
    except FrostError as exc:  # not below the group order
        raise CodecError("bad-field", exc.field) from None
    signed = SignedFrostShare(
        config_digest, block_number, attempt, message, signers, share,
        _fixed_bytes(fields[11], "signer", 20), _fixed_bytes(fields[12], "signature", 65),
    )  # fmt: skip
    return FrostShareMessage(network, signed)


def _encode_dkg(m: SignedDkgPackage | SignedDkgShare | SignedDkgComplaint) -> tuple[int, list[Any]]:
    if isinstance(m, SignedDkgPackage):
        p = m.package
        return KIND_DKG_PACKAGE, [m.context, p.dealer, list(p.commitment), p.proof_commitment,
                                  p.proof_response.to_bytes(32, "big"), m.signer, m.signature]  # fmt: skip
    if isinstance(m, SignedDkgShare):
        return KIND_DKG_SHARE, [m.context, m.dealer, m.recipient, m.ephemeral_key, m.ciphertext, m.signer,
                                m.signature]  # fmt: skip
    c = m.complaint
    return KIND_DKG_COMPLAINT, [m.context, c.accuser, c.dealer, c.share.to_bytes(32, "big"), m.signer, m.signature]


_DKG_LENGTHS = {KIND_DKG_PACKAGE: 11, KIND_DKG_SHARE: 11, KIND_DKG_COMPLAINT: 10}


def _scalar(value: Any, field: str) -> int:
    try:
        return deserialize_scalar(_fixed_bytes(value, field, 32), field)
    except FrostError as exc:  # not below the group order
        raise CodecError("bad-field", exc.field) from None


def _decode_dkg(kind: int, fields: list[Any]) -> DkgMessage:
    if len(fields) != _DKG_LENGTHS[kind]:
        raise CodecError("bad-length", f"DKG message kind {kind} has {len(fields)} fields")
    network = _network(fields)
    context = _fixed_bytes(fields[4], "context", 32)
    signer = _fixed_bytes(fields[-2], "signer", 20)
    signature = _fixed_bytes(fields[-1], "signature", 65)
    signed: SignedDkgPackage | SignedDkgShare | SignedDkgComplaint
    if kind == KIND_DKG_PACKAGE:
        commitment = fields[6]
        if type(commitment) is not list or not 1 <= len(commitment) <= MAX_IDENTIFIER:
            raise CodecError("bad-field", "commitment")
        points = tuple(_fixed_bytes(c, "commitment", 33) for c in commitment)
        proof_commitment = _fixed_bytes(fields[7], "proof_commitment", 33)
        proof_response = _scalar(fields[8], "proof_response")
        try:
            package = Round1Package(_identifier(fields[5]), points, proof_commitment, proof_response)
        except FrostError as exc:  # a point off the curve
            raise CodecError("bad-field", exc.field) from None
        signed = SignedDkgPackage(context, package, signer, signature)
    elif kind == KIND_DKG_SHARE:
        signed = SignedDkgShare(
            context, _identifier(fields[5]), _identifier(fields[6]),
            _fixed_bytes(fields[7], "ephemeral_key", EPHEMERAL_KEY_SIZE),
            _fixed_bytes(fields[8], "ciphertext", SHARE_CIPHERTEXT_SIZE), signer, signature,
        )  # fmt: skip
    else:
        complaint = Complaint(_identifier(fields[5]), _identifier(fields[6]), _scalar(fields[7], "share"))
        signed = SignedDkgComplaint(context, complaint, signer, signature)
    return DkgMessage(network, signed)
