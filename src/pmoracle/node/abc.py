"""The narrow interfaces the node's protocol executor reaches the world through (libocr / py-evm style).

:class:`~pmoracle.node.executor.ProtocolExecutor` sees only these, a
:class:`~pmoracle.p2p.abc.GossipEndpoint` (under :class:`~pmoracle.p2p.reports.ReportGossip`) and trio's clock
(``trio.current_time``, virtual under ``trio.testing.MockClock``). Production plugs in the oracle contract through
ChainClient + Transmitter, the SQLite stores and libp2p; the protocol simulation plugs in an in-memory chain and the
in-memory network. Test-only fault injection wraps these interfaces; the node itself has no hooks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Evidence
from pmoracle.consensus.frost_evm import EvmSignature
from pmoracle.consensus.protection import SigningVerdict
from pmoracle.consensus.report import SignedReport
from pmoracle.consensus.rounds import RoundKey
from pmoracle.node.round import RoundOutput
from pmoracle.risk.params import RiskParams
from pmoracle.risk.policy import PolicyRound
from pmoracle.storage.archive import ArchivedReport


@dataclass(frozen=True, slots=True)
class AttestedRound:
    """What MarginOracle stores for one attested round (``latestRound()`` / ``roundAt(block)``)."""

    block_number: int
    accounts_root: bytes
    report_digest: bytes
    config_digest: bytes
    config_version: int
    account_count: int
    attested_at: int
    block_hash: bytes  # of block_number, checked against blockhash() when attested: the canonical one

    @classmethod
    def from_view(cls, view: Sequence[Any]) -> AttestedRound:
        """Return the round decoded from the oracle's ``RoundView`` tuple."""
        return cls(block_number=int(view[0]), accounts_root=bytes(view[1]), report_digest=bytes(view[2]),
                   config_digest=bytes(view[3]), config_version=int(view[4]), account_count=int(view[5]),
                   attested_at=int(view[6]), block_hash=bytes(view[7]))  # fmt: skip


class ChainPort(ABC):
    """What the executor asks of the chain: post certificates and evidence, read the newest attested round."""

    @abstractmethod
    async def transmit(self, certificate: QuorumCertificate, frost_signature: EvmSignature | None = None) -> None:
        """Post ``certificate`` to the oracle contract and wait for the outcome.

        Args:
            certificate: a quorum certificate formed by the collector.
            frost_signature: the committee's FROST signature of its report (``attestFrost``), if signing finished.

        Errors:
            None: a refused or failed transaction is logged; the collector's schedule retries it.
        """

    @abstractmethod
    async def submit_evidence(self, evidence: Evidence) -> None:
        """Post slashing ``evidence`` (equivocation or deviation) and wait for the outcome.

        Errors:
            None: a refused or failed transaction is logged (another node's evidence may have landed first).
        """

    @abstractmethod
    async def read_latest_attested(self) -> AttestedRound | None:
        """Return the newest attested round, or None when there is none or the chain cannot be read now."""

    @abstractmethod
    async def read_ejected_members(self) -> tuple[bytes, int] | None:
        """Return (current config digest, bitmap of its members the oracle refuses), or None when unreadable."""


class ProtectionStore(Protocol):
    """The durable slashing-protection record (round key -> the one digest this node may sign)."""

    def record_and_check(self, key: RoundKey, digest: bytes) -> SigningVerdict:
        """Record ``key -> digest`` durably, or raise SlashingProtectionError for a second digest."""
        ...


class SignedReportArchive(Protocol):
    """The dispute archive of valid signed reports seen."""

    def add(self, signed: SignedReport, digest: bytes, seen_at: float) -> bool:
        """Keep ``signed``; return False if it was already kept."""
        ...

    def get_by_signer(self, signer: bytes, key: RoundKey | None = None) -> list[ArchivedReport]:
        """Return what ``signer`` signed (for round ``key`` only when given)."""
        ...


# Hands a signature the slashing-protection store already recorded to the collector (and thus to gossip).
DeliverSignature = Callable[[SignedReport], Awaitable[None]]


class SignatureRelease(ABC):
    """The step between a signature existing (recorded, signed) and the collector seeing it."""

    @abstractmethod
    async def release(self, signed: SignedReport, deliver: DeliverSignature) -> None:
        """Hand ``signed`` to ``deliver`` (production: at once; fault injection may delay, withhold or double it)."""


class ReleaseNow(SignatureRelease):
    """Release every signature at once (the production policy)."""

    async def release(self, signed: SignedReport, deliver: DeliverSignature) -> None:
        """Deliver ``signed`` now."""
        await deliver(signed)


# One round's computation from a snapshot (production: pmoracle.node.round.compute_round, run in a worker thread).
RoundComputer = Callable[[ChainSnapshot, RiskParams, CommitteeConfig, PolicyRound | None], RoundOutput]

# The libp2p multiaddrs to dial besides the bootstrap list (production: the members registered on chain).
PeerDiscovery = Callable[[], Awaitable[list[str]]]
