"""The start-up check of a node against the on-chain network config."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.config import NetworkConfig, StartupRefusedError, check_startup, load_local_config, require_startup_ok
from pmoracle.risk.version import ENGINE_VERSION

MEMBERS = tuple(bytes([i]) * 20 for i in range(1, 5))
PARAMS_HASH = b"\x11" * 32


def network(engine_version: int = ENGINE_VERSION) -> NetworkConfig:
    return NetworkConfig(
        chain_id=31337,
        registry=b"\xaa" * 20,
        version=3,
        members=MEMBERS,
        quorum=3,
        round_period=10,
        finality_depth=2,
        params_hash=PARAMS_HASH,
        engine_version=engine_version,
    )


def local(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        "PMORACLE_NODE_DATA_DIR": str(tmp_path),
        "PMORACLE_CHAIN_RPC_URLS": "http://127.0.0.1:8545",
        "PMORACLE_CHAIN_DEPLOYMENT": "d.json",
        "PMORACLE_KEYS_SIGNING_KEYSTORE": "s.json",
        "PMORACLE_KEYS_TRANSMITTER_KEYSTORE": "t.json",
        "PMORACLE_KEYS_P2P_KEY": "p.json",
        "PMORACLE_RISK_PARAMS_FILE": "params.json",
    }
    return load_local_config(None, environ=env, check_files=False)


def test_member_with_matching_params_may_start(tmp_path: Path) -> None:
    assert check_startup(local(tmp_path), network(), PARAMS_HASH, MEMBERS[2]) == []
    require_startup_ok(local(tmp_path), network(), PARAMS_HASH, MEMBERS[2])


def test_wrong_params_and_non_member_are_both_reported(tmp_path: Path) -> None:
    problems = check_startup(local(tmp_path), network(), b"\x22" * 32, b"\x09" * 20)
    assert len(problems) == 2
    assert "params.json hashes to 0x2222" in problems[0]
    assert "on-chain paramsHash (config version 3) is 0x1111" in problems[0]
    assert "0x0909090909090909090909090909090909090909 is not in the committee" in problems[1]
    with pytest.raises(StartupRefusedError) as info:
        require_startup_ok(local(tmp_path), network(), b"\x22" * 32, MEMBERS[0])
    assert info.value.problems == (problems[0],)


def test_a_node_of_another_engine_refuses_to_start_naming_both_versions(tmp_path: Path) -> None:
    other = ENGINE_VERSION + 1
    problems = check_startup(local(tmp_path), network(engine_version=other), PARAMS_HASH, MEMBERS[0])
    assert problems == [
        f"engine version: this node runs risk engine version {ENGINE_VERSION}, but the committee (config version 3) "
        f"runs engine version {other}; run a pmoracle release with engine version {other}, or have the owner set a "
        "committee for this engine"
    ]
    with pytest.raises(StartupRefusedError, match=f"risk engine version {ENGINE_VERSION}, but .* version {other}"):
        require_startup_ok(local(tmp_path), network(engine_version=other), PARAMS_HASH, MEMBERS[0])
