"""The committed artifacts are what solc builds from the committed sources with the pinned settings."""

from __future__ import annotations

import json
from typing import Any

from pmoracle.chain.compile import (
    BUILD_INFO,
    CONTRACTS,
    SETTINGS,
    SOLC_VERSION,
    build_artifacts,
    collect_sources,
    compute_input_hash,
    run_solc,
)
from pmoracle.chain.contracts import load_artifact


def test_build_info_hash_matches_sources_and_settings() -> None:
    """Fails when a source, an OpenZeppelin import or a setting changed without `python -m pmoracle.chain.compile`."""
    info = json.loads(BUILD_INFO.read_text())
    assert info["solcVersion"] == SOLC_VERSION
    assert info["settings"]["evmVersion"] == "cancun"
    assert compute_input_hash(collect_sources()) == info["inputHash"]


def test_recompiling_gives_the_committed_bytecode() -> None:
    artifacts, info = build_artifacts()
    assert info["inputHash"] == json.loads(BUILD_INFO.read_text())["inputHash"]
    for name in CONTRACTS:
        committed = load_artifact(name)
        assert "0x" + committed.bytecode.hex() == artifacts[name]["bytecode"], name
        assert list(committed.abi) == artifacts[name]["abi"], name


def test_the_packed_reader_has_the_ledgers_storage_layout() -> None:
    """MarginAccountsReader runs over MarginAccounts' storage: each of its variables is the ledger's variable of the
    same name (up to a leading underscore) at the same slot and offset, and so is each member of its structs."""
    units = {n: f"contracts/{n}.sol" for n in ("MarginAccounts", "MarginAccountsReader")}
    selection = {unit: {name: ["storageLayout"]} for name, unit in units.items()}
    output = run_solc(collect_sources(), settings={**SETTINGS, "outputSelection": selection})
    layouts = {name: output["contracts"][unit][name]["storageLayout"] for name, unit in units.items()}

    def shape(layout: dict[str, Any], entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        rows = []
        for e in entries:
            members = layout["types"][e["type"]].get("members", [])
            rows.append((e["label"].lstrip("_"), e["slot"], e["offset"], layout["types"][e["type"]]["numberOfBytes"],
                         shape(layout, members)))  # fmt: skip
        return rows

    ledger, reader = (shape(layouts[n], layouts[n]["storage"]) for n in units)
    assert len(reader) == 17  # through _held, the last variable it reads
    assert reader == ledger[: len(reader)]
