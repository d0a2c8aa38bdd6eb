"""Revert data -> ``ContractError(name, args)`` using the custom-error selectors of contract ABIs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import collapse_if_tuple, keccak, to_checksum_address

from pmoracle.chain.errors import ContractError, RpcResponseError

# Solidity's built-in reverts: require(cond, "message") and panics (assert, overflow, division by zero, ...).
BUILTIN_ERRORS: tuple[dict[str, Any], ...] = (
    {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
)


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One custom error: its name, the ABI types of its arguments and their names."""

    name: str
    types: tuple[str, ...]
    arg_names: tuple[str, ...]

    @property
    def signature(self) -> str:
        """Return the canonical signature, e.g. ``StaleRound(uint64,uint64)``."""
        return f"{self.name}({','.join(self.types)})"

    @property
    def selector(self) -> bytes:
        """Return the 4-byte selector keccak256(signature)[:4]."""
        return keccak(text=self.signature)[:4]


def revert_data_of(error: RpcResponseError) -> bytes | None:
    """Return the revert data carried by a JSON-RPC error (``b""`` for a bare revert), or None if it is no revert."""
    data: Any = error.data
    if isinstance(data, Mapping):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if error.code == 3 or "execution reverted" in error.rpc_message.lower():
        return b""
    return None


class ErrorDecoder:
    """Maps 4-byte error selectors to custom errors collected from ABIs and decodes revert data."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]] = ()) -> None:
        """Collect every ``type: error`` entry of the given ABIs (plus ``Error(string)`` and ``Panic(uint256)``)."""
        self._specs: dict[bytes, ErrorSpec] = {}
        for abi in (BUILTIN_ERRORS, *abis):
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                inputs = entry.get("inputs", [])
                spec = ErrorSpec(
                    name=str(entry["name"]),
                    types=tuple(collapse_if_tuple(dict(i)) for i in inputs),
                    arg_names=tuple(str(i.get("name", "")) for i in inputs),
                )
                self._specs[spec.selector] = spec

    @classmethod
    def from_artifacts(cls) -> ErrorDecoder:
        """Return a decoder for the custom errors of every pmoracle contract (the committed artifacts)."""
        from pmoracle.chain.contracts import CONTRACT_NAMES, load_artifact

        return cls(load_artifact(name).abi for name in CONTRACT_NAMES)

    def spec(self, selector: bytes) -> ErrorSpec | None:
        """Return the custom error of a selector or None."""
        return self._specs.get(selector)

    def decode(self, data: bytes, *, tx_hash: bytes | None = None) -> ContractError:
        """Return the ``ContractError`` that revert ``data`` encodes (``UnknownError``/``EmptyRevert`` if none).

        Top-level ``address`` arguments are checksummed; addresses inside tuples stay as eth-abi decodes them.
        """
        if not data:
            return ContractError("EmptyRevert", (), data, tx_hash=tx_hash)
        spec = self._specs.get(data[:4]) if len(data) >= 4 else None
        if spec is None:
            return ContractError("UnknownError", ("0x" + data.hex(),), data, tx_hash=tx_hash)
        try:
            values = abi_decode(list(spec.types), data[4:])
        except Exception:  # eth_abi raises several unrelated types for malformed data
            return ContractError("UnknownError", ("0x" + data.hex(),), data, tx_hash=tx_hash)
        # Top-level address arguments in checksum form (what eth-account and web3 show); nested ones as decoded.
        args = tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(spec.types, values, strict=True))
        return ContractError(spec.name, args, data, tx_hash=tx_hash)
