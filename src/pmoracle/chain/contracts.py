"""The compiled contract artifacts committed under ``chain/artifacts`` (written by ``pmoracle.chain.compile``)."""

from __future__ import annotations

import functools
import json
import pathlib
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from pmoracle.errors import PmoracleError

ARTIFACTS_DIR = pathlib.Path(__file__).resolve().parent / "artifacts"
CONTRACT_NAMES = ("MarginAccounts", "MarketFeeds", "SolverRegistry", "MarginOracle", "MockERC20")


class ArtifactError(PmoracleError):
    """Raised when a contract artifact is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: its ABI and creation bytecode."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    deployed_bytecode: bytes

    def error_selectors(self) -> dict[bytes, dict[str, Any]]:
        """Return the ABI entries of this contract's custom errors by their 4-byte selector."""
        return {compute_selector(entry): entry for entry in self.abi if entry["type"] == "error"}


def _canonical_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def compute_signature(entry: dict[str, Any]) -> str:
    """Return the canonical signature ``name(type,...)`` of an ABI function, event or error entry."""
    return f"{entry['name']}({','.join(_canonical_type(p) for p in entry.get('inputs', []))})"


def compute_selector(entry: dict[str, Any]) -> bytes:
    """Return the 4-byte selector of an ABI function or error entry."""
    return keccak(text=compute_signature(entry))[:4]


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Return the committed artifact of contract ``name``.

    Errors:
        ArtifactError when the artifact file is missing or malformed (run ``python -m pmoracle.chain.compile``).
    """
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text())
        return Artifact(
            name=name,
            abi=tuple(data["abi"]),
            bytecode=bytes.fromhex(data["bytecode"][2:]),
            deployed_bytecode=bytes.fromhex(data["deployedBytecode"][2:]),
        )
    except FileNotFoundError:
        raise ArtifactError(f"no artifact for {name!r} at {path}: run `python -m pmoracle.chain.compile`") from None
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"artifact {path} is malformed: {exc}") from None


def all_error_selectors() -> dict[bytes, dict[str, Any]]:
    """Return every custom error of every pmoracle contract by selector (for decoding reverts)."""
    selectors: dict[bytes, dict[str, Any]] = {}
    for name in CONTRACT_NAMES:
        selectors.update(load_artifact(name).error_selectors())
    return selectors


def describe_revert(data: bytes) -> tuple[str, tuple[Any, ...]]:
    """Return (error name, decoded arguments) of revert ``data`` from a pmoracle contract or OpenZeppelin.

    Unknown selectors give ``("0x<selector>", (data,))``; an ``Error(string)`` gives ``("Error", (message,))``.
    """
    from eth_abi import decode as abi_decode

    if len(data) < 4:
        return ("<empty revert>", (data,))
    selector, payload = data[:4], data[4:]
    if selector == keccak(text="Error(string)")[:4]:
        return ("Error", tuple(abi_decode(["string"], payload)))
    entry = all_error_selectors().get(selector)
    if entry is None:
        return ("0x" + selector.hex(), (data,))
    types = [_canonical_type(p) for p in entry.get("inputs", [])]
    values = abi_decode(types, payload)
    decoded = tuple(to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True))
    return (str(entry["name"]), decoded)


def revert_data_of(exc: BaseException) -> bytes | None:
    """Return the revert data carried by a web3 contract error (None if it has none)."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None
