"""``NetworkConfig``: the config every node shares, read from ``SolverRegistry`` and bound into each report
through ``configDigest`` — and the start-up check of this node against it."""

from __future__ import annotations

from typing import TypeAlias

from eth_utils import to_checksum_address

from pmoracle.config.local import LocalConfig
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.errors import PmoracleError
from pmoracle.risk.version import ENGINE_VERSION

# The shared config is exactly the committee config committed on-chain: committee members, quorum, round
# period, finality depth, paramsHash, engine version, version (and chain id and registry, which the digest binds).
NetworkConfig: TypeAlias = CommitteeConfig


class StartupRefusedError(PmoracleError):
    """Raised when this node's local setup does not fit the on-chain network config; lists every reason."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("refusing to start:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


def check_startup(
    local: LocalConfig,
    network: NetworkConfig,
    params_hash_of_local_file: bytes,
    signing_address: bytes,
) -> list[str]:
    """Return every reason this node must not start against ``network`` (empty when it may start).

    The node's risk engine is this software's ``ENGINE_VERSION``; it must be the committee's ``engine_version``.

    Args:
        local: this node's config (names the risk params file in messages).
        network: the committee config read from chain.
        params_hash_of_local_file: paramsHash computed from ``local.risk.params_file``.
        signing_address: the 20-byte address of the unlocked report-signing key.
    """
    problems = []
    # Another engine gives other bits for the same inputs: its reports could never join a quorum, and signing them
    # under this config's digest would be signing values the committee's engine does not compute.
    if network.engine_version != ENGINE_VERSION:
        problems.append(
            f"engine version: this node runs risk engine version {ENGINE_VERSION}, but the committee (config "
            f"version {network.version}) runs engine version {network.engine_version}; run a pmoracle release "
            f"with engine version {network.engine_version}, or have the owner set a committee for this engine"
        )
    # A node whose parameters differ computes other margins; its reports could never join a quorum.
    if params_hash_of_local_file != network.params_hash:
        problems.append(
            f"risk.params_file: {local.risk.params_file} hashes to 0x{params_hash_of_local_file.hex()}, "
            f"but the on-chain paramsHash (config version {network.version}) is 0x{network.params_hash.hex()}"
        )
    # A signature by a non-member is ignored by every peer and by the contract.
    if network.index_of(signing_address) is None:
        problems.append(
            f"keys.signing_keystore: signing address {to_checksum_address(signing_address)} is not in the "
            f"committee (config version {network.version}, {network.n} members); register it first"
        )
    return problems


def require_startup_ok(
    local: LocalConfig, network: NetworkConfig, params_hash_of_local_file: bytes, signing_address: bytes
) -> None:
    """Raise :class:`StartupRefusedError` when :func:`check_startup` finds any problem."""
    problems = check_startup(local, network, params_hash_of_local_file, signing_address)
    if problems:
        raise StartupRefusedError(tuple(problems))
