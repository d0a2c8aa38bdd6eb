"""A tiny test contract compiled with the pinned solcjs (cancun), for chain-layer tests before the protocol exists."""

from __future__ import annotations

import functools
import json
import pathlib
import subprocess
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[3]

PROBE_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

contract Probe {
    error TooBig(uint256 given, uint256 limit);
    error Forbidden(address caller, bytes32 reason);

    struct Item { uint32 id; int128 size; }

    uint256 public value;
    Item[] private items;
    event ValueSet(uint256 value);

    function set(uint256 v) external {
        if (v > 1000) revert TooBig(v, 1000);
        if (v == 666) revert Forbidden(msg.sender, "beast");
        value = v;
        emit ValueSet(v);
    }

    function push(uint32 id, int128 size) external { items.push(Item(id, size)); }

    function page(uint256 offset, uint256 limit) external view returns (Item[] memory out) {
        uint256 n = items.length;
        uint256 end = offset + limit > n ? n : offset + limit;
        out = new Item[](end > offset ? end - offset : 0);
        for (uint256 i = offset; i < end; i++) out[i - offset] = items[i];
    }

    function failRequire() external pure { require(false, "nope"); }
}
"""


@functools.cache
def compile_probe() -> dict[str, Any]:
    """Return {"abi", "bytecode"} of Probe compiled with node_modules/solc (evmVersion cancun, optimizer on)."""
    request = {
        "language": "Solidity",
        "sources": {"Probe.sol": {"content": PROBE_SOURCE}},
        "settings": {
            "evmVersion": "cancun",
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = subprocess.run(
        ["node", str(REPO / "node_modules" / "solc" / "solc.js"), "--standard-json"],
        input=json.dumps(request).encode(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    # solcjs prints a note (">>> Cannot retry compilation with SMT ...") before the JSON on stdout.
    text = out.stdout.decode()
    result = json.loads(text[text.index("{") :])
    errors = [e for e in result.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise RuntimeError(errors)
    contract = result["contracts"]["Probe.sol"]["Probe"]
    return {"abi": contract["abi"], "bytecode": bytes.fromhex(contract["evm"]["bytecode"]["object"])}
