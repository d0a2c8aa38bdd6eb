"""The wire format of gossip messages: msgpack arrays with a version, a kind and an exact, typed field list.

Layout (every message starts with ``[version, kind, chainId, oracle, ...]``)::

    SIGNED_REPORT  [2, 1, chainId, oracle, configDigest, blockNumber, blockHash, paramsHash, accountsRoot,
                    accountCount, riskArraysRoot, marketHash, signer, signature]
    CATCH_UP       [2, 2, chainId, oracle, configDigest, blockNumber]

``chainId`` is a uint64, ``oracle`` and ``signer`` 20 bytes, hashes 32 bytes, ``blockNumber`` uint64,
``accountCount`` uint32, ``signature`` 65 bytes. Decoding refuses anything longer than :data:`MAX_MESSAGE_BYTES`
before parsing, anything not byte-for-byte canonical (so one message has one encoding), and raises only
:class:`~pmoracle.p2p.errors.CodecError` whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from pmoracle.consensus.report import Domain, Report, SignedReport
from pmoracle.errors import InputError
from pmoracle.p2p.errors import CodecError

PROTOCOL_VERSION = 2  # 2: the report carries riskArraysRoot and marketHash
# A signed report is ~325 bytes; 4 KiB leaves room for a later field or two and stops amplification early.
MAX_MESSAGE_BYTES = 4096
KIND_SIGNED_REPORT = 1
KIND_CATCH_UP = 2

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


Message = SignedReportMessage | CatchUpRequest


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
