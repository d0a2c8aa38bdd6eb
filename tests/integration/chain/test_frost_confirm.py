"""SolverRegistry.confirmFrostKey on a real anvil: the members of a keyless committee confirm their DKG's group key
and transcript digest, each signed by its report-signing key and relayed by one account; the n-th identical
confirmation installs the key as a new committee version, which the node's committee reader sees (a new
configDigest, the group key) and for which it finds the share its DKG wrote in its data directory. A member
confirming another transcript blocks the installation until it confirms the others' values (a later DKG run's)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import DeployError, confirm_frost_key
from pmoracle.consensus.frost_confirm import (
    compute_frost_confirmation_hash,
    compute_frost_confirmation_value,
    sign_frost_confirmation,
)
from pmoracle.consensus.frost_dkg_wire import compute_dkg_context
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.daemon import find_frost_key, read_committee, read_config_digest
from pmoracle.node.datadir import frost_share_path
from pmoracle.node.frost_keys import write_frost_share
from pmoracle.testing.frost import run_test_dkg
from tests.integration.chain.contracts_support import System, deploy_system

PASSWORD = b"correct horse"


def _dkg(system: System, seed: bytes) -> dict[int, Any]:
    context = compute_dkg_context(system.domain, system.config)
    return run_test_dkg(system.config.quorum, len(system.config.members), seed, context=context)


def _confirm(system: System, member: int, key: EvmGroupKey, transcript: bytes) -> Any:
    signature = sign_frost_confirmation(system.config, key, transcript, system.signing_keys[member])
    return confirm_frost_key(system.owner, system.deployment, system.config, key, transcript, signature)


def test_every_member_confirming_installs_the_key_the_node_then_follows(anvil: Devchain, tmp_path: Path) -> None:
    system = deploy_system(anvil, n=4)
    client = ChainClient([anvil.url])
    shares = _dkg(system, b"confirm")
    key = EvmGroupKey.from_compressed(shares[1].group_public_key)
    transcript = shares[1].transcript_digest
    # the Python hash is the contract's
    on_chain = system.registry.functions.frostConfirmationHash(key.x, key.parity, transcript).call()
    assert bytes(on_chain) == compute_frost_confirmation_hash(system.config, key, transcript)
    before = read_config_digest(client, system.deployment)
    for member in range(3):
        _confirm(system, member, key, transcript)
        assert read_config_digest(client, system.deployment) == before  # not before every member confirmed
    first = to_checksum_address(system.config.members[0])
    recorded = system.registry.functions.frostConfirmations(system.config.version, first)
    assert bytes(recorded.call()) == compute_frost_confirmation_value(key, transcript)
    receipt = _confirm(system, 3, key, transcript)
    assert receipt.gas_used > 0
    assert read_config_digest(client, system.deployment) != before
    committee = read_committee(client, system.deployment)
    assert committee.group_key == key and committee.version == system.config.version + 1
    assert committee.members == system.config.members and committee.quorum == system.config.quorum
    # member 2's node finds the share its DKG wrote in its data directory (no keys.frost_share)
    out = frost_share_path(tmp_path, shares[3].parameters.context)
    out.parent.mkdir(parents=True)
    write_frost_share(out, shares[3], PASSWORD, kdf_iterations=2)
    config = SimpleNamespace(keys=SimpleNamespace(frost_share=None), node=SimpleNamespace(data_dir=tmp_path))
    found = find_frost_key(config, committee, PASSWORD)  # type: ignore[arg-type]
    assert found is not None and found.identifier == 3 and found.group_public_key == shares[3].group_public_key
    # nothing more to confirm for the keyed version
    with pytest.raises(DeployError, match="NotCurrentVersion"):
        _confirm(system, 0, key, transcript)


def test_a_member_confirming_another_transcript_blocks_installation_until_it_confirms_again(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4)
    client = ChainClient([anvil.url])
    shares = _dkg(system, b"conflict")
    key = EvmGroupKey.from_compressed(shares[1].group_public_key)
    transcript = shares[1].transcript_digest
    before = read_config_digest(client, system.deployment)
    for member in range(3):
        _confirm(system, member, key, transcript)
    _confirm(system, 3, key, bytes(32))  # saw other round-1 packages
    assert read_config_digest(client, system.deployment) == before
    assert read_committee(client, system.deployment).group_key is None
    with pytest.raises(DeployError, match="AlreadyConfirmed"):  # the same values twice
        _confirm(system, 3, key, bytes(32))
    _confirm(system, 3, key, transcript)  # replaces its confirmation
    assert read_committee(client, system.deployment).group_key == key
