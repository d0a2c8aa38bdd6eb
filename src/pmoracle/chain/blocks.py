"""Block headers as plain data: what the watcher, the snapshot and the transmitter need of a block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmoracle.chain.errors import ChainError


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The fields of a block the node relies on (hashes are 32 raw bytes)."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee_per_gas: int | None = None

    def __repr__(self) -> str:
        return (
            f"BlockHeader(number={self.number}, hash=0x{self.hash.hex()[:12]}..,"
            f" parent=0x{self.parent_hash.hex()[:12]}..)"
        )


def parse_block_header(raw: Any) -> BlockHeader:
    """Return the header of a JSON-RPC block object; raise ``ChainError`` when a field is missing or malformed."""
    if not isinstance(raw, dict):
        raise ChainError(f"expected a block object, got {raw!r}")
    try:
        block_hash = bytes.fromhex(raw["hash"][2:])
        parent = bytes.fromhex(raw["parentHash"][2:])
        base_fee = raw.get("baseFeePerGas")
        header = BlockHeader(
            number=int(raw["number"], 16),
            hash=block_hash,
            parent_hash=parent,
            timestamp=int(raw["timestamp"], 16),
            base_fee_per_gas=int(base_fee, 16) if base_fee is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainError(f"malformed block object ({exc!r}): {raw!r}") from exc
    if len(block_hash) != 32 or len(parent) != 32:
        raise ChainError(f"malformed block hashes in {raw!r}")
    return header
