"""``MarginAccountsReader``'s packed output written out independently of its decoder, for the decoder's tests and
``pmoracle bench book`` (never for production: the node only decodes what the chain returns)."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode as abi_encode

from pmoracle.chain.snapshot import RawAccount


def encode_packed_accounts(since_hash: bytes, next_index: int, total: int, accounts: Sequence[RawAccount]) -> bytes:
    """Return what MarginAccountsReader returns for these accounts (one ABI-encoded ``bytes``)."""
    out = [since_hash, next_index.to_bytes(32, "big"), total.to_bytes(32, "big")]
    for account, cash, positions, collateral in accounts:
        out += (account, cash.to_bytes(32, "big", signed=True), len(positions).to_bytes(2, "big"))
        for iid, size, cost, index in positions:
            slot = ((cost % 2**128) << 128) | (size % 2**128)  # the first slot of PositionState: cost high, size low
            out += (iid.to_bytes(4, "big"), slot.to_bytes(32, "big"), index.to_bytes(32, "big", signed=True))
        out.append(len(collateral).to_bytes(2, "big"))
        for token, amount in collateral:
            out += (token, amount.to_bytes(32, "big"))
    return abi_encode(["bytes"], [b"".join(out)])
