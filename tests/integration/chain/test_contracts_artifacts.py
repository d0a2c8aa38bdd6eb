"""The committed artifacts are what solc builds from the committed sources with the pinned settings."""

from __future__ import annotations

import json

from pmoracle.chain.compile import (
    BUILD_INFO,
    CONTRACTS,
    SOLC_VERSION,
    build_artifacts,
    collect_sources,
    compute_input_hash,
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
