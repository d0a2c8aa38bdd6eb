"""The committee configuration shared by all nodes and committed on-chain through ``configDigest``.

``SolverRegistry.configDigest()`` computes the same hash in Solidity:
``keccak256(abi.encode(chainId, registry, version, members, quorum, roundPeriod, finalityDepth, paramsHash,
engineVersion))`` with ``members`` the report-signing addresses in committee order (the order signer bitmaps
index) and ``engineVersion`` the risk engine version every member runs (``pmoracle.risk.version``). A committee with
a FROST group key (``SolverRegistry.setFrostCommittee``) appends ``groupKeyX, groupKeyParity`` to the encoding; one
without keeps the digest above unchanged (the encodings differ in length, so the two never collide).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_utils import keccak

from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.errors import InputError

MAX_COMMITTEE = 64  # signer bitmaps are uint256, but attest gas grows with n; 64 is far above any sane committee
MAX_ENGINE_VERSION = 2**32 - 1  # uint32 on chain


def compute_max_faulty(n: int) -> int:
    """Return f = (n - 1) // 3, the number of Byzantine members a committee of n tolerates."""
    return (n - 1) // 3


def compute_byzantine_quorum(n: int) -> int:
    """Return (n + f) // 2 + 1: two quorums of this size always share an honest member."""
    return (n + compute_max_faulty(n)) // 2 + 1


@dataclass(frozen=True, slots=True)
class CommitteeConfig:
    """The network config of one committee version (read from ``SolverRegistry`` on chain)."""

    chain_id: int
    registry: bytes  # 20-byte address of SolverRegistry
    version: int
    members: tuple[bytes, ...]  # 20-byte report-signing addresses, committee order
    quorum: int
    round_period: int  # blocks between anchor blocks
    finality_depth: int  # blocks an anchor block must be buried under before its round starts
    params_hash: bytes  # keccak256 of the canonical risk parameters
    engine_version: int  # the risk engine every member runs: same inputs and parameters, same bits
    group_key: EvmGroupKey | None = None  # the FROST group key (x, parity) from the committee's DKG; None: ECDSA only

    def __post_init__(self) -> None:
        if len(self.registry) != 20:
            raise InputError("registry", f"expected a 20-byte address, got {self.registry!r}")
        if not 1 <= len(self.members) <= MAX_COMMITTEE:
            raise InputError("members", f"committee size must be in [1, {MAX_COMMITTEE}], got {len(self.members)}")
        if any(len(m) != 20 for m in self.members):
            raise InputError("members", "every member must be a 20-byte address")
        if len(set(self.members)) != len(self.members):
            raise InputError("members", "duplicate member")
        # A quorum below the Byzantine quorum would let two conflicting reports both gather one.
        if not compute_byzantine_quorum(len(self.members)) <= self.quorum <= len(self.members):
            raise InputError(
                "quorum",
                f"{self.quorum} outside [{compute_byzantine_quorum(len(self.members))}, {len(self.members)}]",
            )
        if self.round_period < 1:
            raise InputError("round_period", f"must be >= 1, got {self.round_period}")
        if self.finality_depth < 0:
            raise InputError("finality_depth", f"must be >= 0, got {self.finality_depth}")
        if len(self.params_hash) != 32:
            raise InputError("params_hash", "expected 32 bytes")
        if not 1 <= self.engine_version <= MAX_ENGINE_VERSION:
            raise InputError("engine_version", f"must be in [1, {MAX_ENGINE_VERSION}], got {self.engine_version}")
        if self.group_key is not None and not isinstance(self.group_key, EvmGroupKey):
            raise InputError("group_key", f"expected an EvmGroupKey or None, got {self.group_key!r}")

    @property
    def n(self) -> int:
        """Return the committee size."""
        return len(self.members)

    @property
    def f(self) -> int:
        """Return the number of faulty members tolerated."""
        return compute_max_faulty(self.n)

    def index_of(self, signer: bytes) -> int | None:
        """Return the committee index of ``signer`` or None if it is not a member."""
        try:
            return self.members.index(signer)
        except ValueError:
            return None

    def digest(self) -> bytes:
        """Return ``configDigest``, the hash that binds every report to this exact configuration."""
        return compute_config_digest(self)


def compute_config_digest(config: CommitteeConfig) -> bytes:
    """Return keccak256 of the ABI encoding of the config, exactly as ``SolverRegistry.configDigest()``."""
    types = ["uint256", "address", "uint64", "address[]", "uint8", "uint64", "uint64", "bytes32", "uint32"]
    values: list[object] = [
        config.chain_id,
        config.registry,
        config.version,
        list(config.members),
        config.quorum,
        config.round_period,
        config.finality_depth,
        config.params_hash,
        config.engine_version,
    ]
    if config.group_key is not None:
        types += ["uint256", "uint8"]
        values += [config.group_key.x, config.group_key.parity]
    return keccak(abi_encode(types, values))
