"""The compiled contract artifacts committed under ``chain/artifacts`` (written by ``pmoracle.chain.compile``)."""

from __future__ import annotations

import functools
import json
import pathlib
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from pmoracle.errors import PmoracleError

ARTIFACTS_DIR = pathlib.Path(__file__).resolve().parent / "artifacts"
CONTRACT_NAMES = (
    "MarginAccounts",
    "Exchange",
    "Liquidator",
    "MarketFeeds",
    "SolverRegistry",
    "MarginOracle",
    "EntryPricer",
    "MockERC20",
    "MarginGatedLender",
)


class ArtifactError(PmoracleError):
    """Raised when a contract artifact is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: its ABI and creation bytecode."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    deployed_bytecode: bytes


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


def _abi_type(param: dict[str, Any]) -> str:
    """Return a parameter's canonical ABI type (a struct as its tuple of component types)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


@functools.cache
def event_topic(contract: str, event: str) -> bytes:
    """Return topic 0 of ``contract``'s ``event``: keccak256 of its canonical signature, read from the artifact's ABI,
    so a changed event never leaves a stale copy of its signature behind.

    Errors:
        ArtifactError when the contract has no such event (or several: an overloaded event needs its signature).
    """
    found = [e for e in load_artifact(contract).abi if e.get("type") == "event" and e.get("name") == event]
    if len(found) != 1:
        raise ArtifactError(f"{contract} has {len(found)} events named {event!r}, expected exactly one")
    signature = f"{event}({','.join(_abi_type(p) for p in found[0]['inputs'])})"
    return keccak(text=signature)
