"""The node's FROST start-up (node/daemon.py): which share it loads, and the shares it refuses."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pmoracle.consensus.report import address_of
from pmoracle.node.daemon import NodeSetup, NodeStartupError, create_frost_context, find_frost_key
from pmoracle.node.datadir import frost_share_path
from pmoracle.node.frost_keys import FrostShareMismatchError, write_frost_share
from pmoracle.testing.frost import make_frost_test_committee

PASSWORD = b"correct horse"


def _config(share: Path | None, stage_delay: float = 2.0, data_dir: Path = Path("/nonexistent")) -> Any:
    return SimpleNamespace(keys=SimpleNamespace(frost_share=share), transmit=SimpleNamespace(stage_delay=stage_delay),
                           node=SimpleNamespace(data_dir=data_dir))  # fmt: skip


def _setup(config: Any, committee: Any, frost_key: Any, signing_key: bytes) -> NodeSetup:
    identity = SimpleNamespace(signing_address=address_of(signing_key))
    client = SimpleNamespace(chain_id=committee.chain_id)
    deployment = SimpleNamespace(contracts={"MarginOracle": "0x" + "11" * 20})
    return NodeSetup(config, identity, client, deployment, committee, None, frost_key)  # type: ignore[arg-type]


def test_a_member_loads_its_share_and_gets_its_signing_context(tmp_path: Path) -> None:
    frost = make_frost_test_committee(4)
    path = tmp_path / "share.json"
    write_frost_share(path, frost.results[3], PASSWORD, kdf_iterations=2)
    config = frost.committee.config
    key = find_frost_key(_config(path), config, PASSWORD)  # type: ignore[arg-type]
    assert key is not None and key.identifier == 3 and key.group_public_key == frost.group_public_key
    context = create_frost_context(_setup(_config(path), config, key, frost.committee.signing_keys[2]))
    assert context.me == 3 and context.threshold == config.quorum and context.stage_delay == 2.0


def test_without_a_share_or_a_group_key_the_node_stays_on_ecdsa(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frost = make_frost_test_committee(4)
    path = tmp_path / "share.json"
    write_frost_share(path, frost.results[1], PASSWORD, kdf_iterations=2)
    with caplog.at_level(logging.WARNING, logger="pmoracle.node"):
        assert find_frost_key(_config(None), frost.committee.config, PASSWORD) is None  # type: ignore[arg-type]
        no_key = dataclasses.replace(frost.committee.config, group_key=None)
        assert find_frost_key(_config(path), no_key, PASSWORD) is None  # type: ignore[arg-type]
    assert "keys.frost_share is not set and no share of it is in" in caplog.text
    assert "the committee has no FROST group key" in caplog.text


def test_a_share_of_another_group_key_or_member_is_refused(tmp_path: Path) -> None:
    frost = make_frost_test_committee(4)
    other = make_frost_test_committee(4, label="another committee")
    foreign = tmp_path / "foreign.json"
    write_frost_share(foreign, other.results[1], PASSWORD, kdf_iterations=2)
    with pytest.raises(FrostShareMismatchError, match="holds group key"):
        find_frost_key(_config(foreign), frost.committee.config, PASSWORD)  # type: ignore[arg-type]
    path = tmp_path / "share.json"
    write_frost_share(path, frost.results[2], PASSWORD, kdf_iterations=2)
    key = find_frost_key(_config(path), frost.committee.config, PASSWORD)  # type: ignore[arg-type]
    # member 1's node with member 2's share
    setup = _setup(_config(path), frost.committee.config, key, frost.committee.signing_keys[0])
    with pytest.raises(NodeStartupError, match=r"keys\.frost_share: the share is member 2's, this node is member 1"):
        create_frost_context(setup)
    # a stage delay the signing machine cannot run with
    setup = _setup(_config(path, stage_delay=0.0), frost.committee.config, key, frost.committee.signing_keys[1])
    with pytest.raises(NodeStartupError, match="does not fit the installed committee"):
        create_frost_context(setup)


def test_a_share_the_node_s_own_dkg_wrote_in_its_data_dir_is_found(tmp_path: Path) -> None:
    frost = make_frost_test_committee(4)
    older = make_frost_test_committee(4, label="the previous epoch")
    config = frost.committee.config
    own = frost_share_path(tmp_path, frost.results[2].parameters.context)
    own.parent.mkdir(parents=True)
    write_frost_share(own, frost.results[2], PASSWORD, kdf_iterations=2)
    write_frost_share(frost_share_path(tmp_path, b"older"), older.results[2], PASSWORD, kdf_iterations=2)
    # without keys.frost_share
    key = find_frost_key(_config(None, data_dir=tmp_path), config, PASSWORD)
    assert key is not None and key.group_public_key == frost.group_public_key and key.identifier == 2
    # keys.frost_share names the share of an earlier epoch: the data dir's share of this group key is taken
    stale = tmp_path / "stale.json"
    write_frost_share(stale, older.results[2], PASSWORD, kdf_iterations=2)
    key = find_frost_key(_config(stale, data_dir=tmp_path), config, PASSWORD)
    assert key is not None and key.group_public_key == frost.group_public_key
    # no share of this group key anywhere: the configured one is refused, naming both keys
    (own).unlink()
    with pytest.raises(FrostShareMismatchError, match="holds group key"):
        find_frost_key(_config(stale, data_dir=tmp_path), config, PASSWORD)
