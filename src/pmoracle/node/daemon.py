"""The solver daemon: trio wiring of the chain follower, round worker, gossip, protocol executor and API.

The consensus decisions are the pure collector's (``pmoracle.consensus.collector``); the
:class:`~pmoracle.node.executor.ProtocolExecutor` feeds it and carries out its effects through narrow interfaces
(:mod:`pmoracle.node.abc`), the same class the protocol simulation runs. This module builds the production
implementations of those interfaces (:class:`NodePorts`) and runs the services around the executor. Blocking work
(JSON-RPC through web3's sync client, the numba risk kernel) runs in worker threads.

Services (each started with ``nursery.start`` and reporting readiness):

- gossip: the libp2p gossipsub endpoint;
- protocol executor: signed-report gossip (dedupe, re-publication, catch-up), the collector's inputs and effects;
- chain follower: new heads and reorgs from the block watcher -> executor (attested rounds, round triggers);
- round worker: snapshot(B) -> risk engine -> leaves -> Merkle root -> report -> executor;
- snapshot check: every ``chain.full_snapshot_every``-th incremental snapshot against a full read, beside the rounds;
- fraud prover: an attested round whose digest differs from this node's, proven in the background
  (``node/fraud_prover.py``, with the attested tree from ``dispute.peer_apis``);
- probes: RPC endpoint order, transmitter balance, gossip peer and rejection metrics;
- FROST signing (a committee with a group key and this node's key share, ``keys.frost_share``): commitments and
  shares over the report gossip, ``attestFrost`` or the ECDSA certificate one stage later
  (``node/frost_service.py``, docs/frost.md);
- the node's own DKG (``frost.auto_dkg``): a member of a committee without a group key runs the FROST DKG over this
  host's gossip, stores its share in the data directory and confirms the key on chain (``node/dkg_service.py``);
- committee changes: at each head the registry's ``configDigest()``; a new one is re-read and installed before the
  head's round is triggered (:meth:`SolverNode.install_committee`: rounds anchored from then on are computed, signed
  and collected under the new committee; a node left out of it stops signing; FROST when the new committee has a
  group key and the node holds a matching share, else ECDSA);
- API: /metrics, /health, /v1/margin/{account}.
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

import trio
from eth_account import Account

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.deploy import Deployment, decode_committee_view
from pmoracle.chain.errors import ChainError
from pmoracle.chain.snapshot import ChainSnapshot, SnapshotReader
from pmoracle.chain.transmitter import FeePolicy, Transmitter
from pmoracle.chain.watcher import HeadEvent, NewHead, Reorg, Resync, run_block_watcher
from pmoracle.config.local import LocalConfig
from pmoracle.config.network import require_startup_ok
from pmoracle.config.params import load_params_file
from pmoracle.consensus import collector as col
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_dkg import DkgResult
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Domain, SignedReport
from pmoracle.errors import InputError, PmoracleError
from pmoracle.keeper.decision import AuctionParams
from pmoracle.node.abc import ChainPort, PeerDiscovery, ReleaseNow, RoundComputer, SignatureRelease
from pmoracle.node.api import HealthReport, MarginProof, RiskArrays, RoundLeaves, assess_health, run_api
from pmoracle.node.chain_port import OFFLINE_W3 as OFFLINE_W3  # re-exported: the devnet tools encode with it
from pmoracle.node.chain_port import OracleChainPort
from pmoracle.node.datadir import (
    api_port_path,
    archive_db_path,
    frost_dir,
    policy_db_path,
    protection_db_path,
    state_db_path,
    write_api_port,
)
from pmoracle.node.dkg_service import DkgService, FrostKeyConfirmer
from pmoracle.node.executor import ProtocolExecutor
from pmoracle.node.frost_service import FrostRoundService, create_frost_service
from pmoracle.node.gcpause import with_gc_paused
from pmoracle.node.metrics import NodeMetrics, create_node_metrics, endpoint_label, export_policy, export_stress
from pmoracle.node.policy import PolicyTracker, policy_round_to_json
from pmoracle.node.round import RoundOutput, compute_round
from pmoracle.node.snapshots import RoundSnapshots
from pmoracle.p2p.abc import Validator
from pmoracle.p2p.codec import NetworkId
from pmoracle.p2p.reports import ReportGossip
from pmoracle.risk.params import RiskParams
from pmoracle.risk.stress import run_standard_stress
from pmoracle.storage.archive import ReportArchive
from pmoracle.storage.frost_nonces import FrostNonceDB
from pmoracle.storage.node_state import LAST_PROCESSED_BLOCK, NodeStateDB
from pmoracle.storage.protection_db import ProtectionDB
from pmoracle.trio_types import TaskStatus

if TYPE_CHECKING:
    from pmoracle.node.fraud_prover import FraudProver
    from pmoracle.p2p.libp2p_gossip import Libp2pGossip
    from pmoracle.p2p.validator import ReportValidator

log = logging.getLogger("pmoracle.node")

TREES_KEPT = 8  # recent rounds whose Merkle trees stay in memory to serve proofs
GOSSIP_METRICS_INTERVAL = 1.0  # seconds between two exports of the gossip endpoint's peers and rejections
WINDOW_ROUNDS = 16  # rounds the collector keeps behind the head


class NodeStartupError(PmoracleError):
    """Raised when the node cannot start: chain unreachable, committee or keys inconsistent with the chain."""


@dataclass(frozen=True)
class NodeIdentity:
    """The node's three separate keys (design section 7)."""

    signing_key: bytes = field(repr=False)
    signing_address: bytes
    transmitter_key: bytes = field(repr=False)
    p2p_secret: bytes = field(repr=False)


def read_config_digest(client: ChainClient, deployment: Deployment) -> bytes:
    """Return the registry's current configDigest (changes with every committee version)."""
    registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
    return bytes(client.call(registry.functions.configDigest(), "latest"))


def send_frost_confirmation(
    client: ChainClient,
    transmitter: Transmitter,
    deployment: Deployment,
    committee: CommitteeConfig,
    result: DkgResult,
    signing_key: bytes,
) -> None:
    """Confirm a finished DKG's group key and transcript digest for ``committee`` on chain, signed by this member's
    report-signing key and sent by its transmitter (``SolverRegistry.confirmFrostKey``, replacing an earlier run's);
    nothing when this member already confirmed these values for that version (a restarted node).

    Errors:
        DeployError with the registry's custom error; ChainError.
    """
    from pmoracle.chain.deploy import confirm_frost_key
    from pmoracle.consensus.frost_confirm import compute_frost_confirmation_value, sign_frost_confirmation
    from pmoracle.consensus.frost_evm import EvmGroupKey

    registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
    me = Account.from_key(signing_key).address
    key = EvmGroupKey.from_compressed(result.group_public_key)
    confirmed = bytes(client.call(registry.functions.frostConfirmations(committee.version, me), "latest"))
    if confirmed == compute_frost_confirmation_value(key, result.transcript_digest):
        log.info("DKG: this member already confirmed this key for committee version %d", committee.version)
        return
    signature = sign_frost_confirmation(committee, key, result.transcript_digest, signing_key)
    confirm_frost_key(transmitter, deployment, committee, key, result.transcript_digest, signature)


def read_committee(client: ChainClient, deployment: Deployment) -> CommitteeConfig:
    """Return the current committee configuration stored in SolverRegistry (checked against its digest)."""
    registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
    committee, digest = decode_committee_view(client.call(registry.functions.committee(), "latest"))
    if committee.digest() != digest:
        raise NodeStartupError("the registry's configDigest does not match its committee fields")
    return committee


@dataclass(frozen=True, slots=True)
class InsuranceFund:
    """The liquidation insurance fund as the Liquidator reports it (USD WAD)."""

    balance: int  # negative: the fund owes a socialized loss
    paid: int  # subsidies paid so far
    socialized_loss: int


def read_insurance_fund(client: ChainClient, deployment: Deployment) -> InsuranceFund | None:
    """Return the Liquidator's insurance fund at the latest block (None for a deployment without a Liquidator)."""
    if "Liquidator" not in deployment.contracts:
        return None
    fund = deployment.contract(OFFLINE_W3, "Liquidator").functions
    return InsuranceFund(
        balance=int(client.call(fund.fundBalance(), "latest")),
        paid=int(client.call(fund.insurancePaid(), "latest")),
        socialized_loss=int(client.call(fund.socializedLoss(), "latest")),
    )


def read_auction_params(client: ChainClient, deployment: Deployment) -> AuctionParams | None:
    """Return the Liquidator's auction parameters at the latest block (None for a deployment without one)."""
    if "Liquidator" not in deployment.contracts:
        return None
    return AuctionParams(*client.call(deployment.contract(OFFLINE_W3, "Liquidator").functions.params(), "latest"))


def read_peer_addresses(client: ChainClient, deployment: Deployment, members: tuple[bytes, ...]) -> list[str]:
    """Return the libp2p multiaddrs (with /p2p/<peer id>) that committee members registered on chain."""
    registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
    count = int(client.call(registry.functions.nodeCount(), "latest"))
    nodes = client.call(registry.functions.nodesPage(0, count), "latest") if count else []
    wanted = set(members)
    addresses = []
    for node in nodes:
        if bytes.fromhex(node[1][2:]) in wanted:
            addresses += [str(a) for a in node[6] if "/p2p/" in str(a)]
    return addresses


@dataclass(frozen=True)
class NodeSetup:
    """What a node established before it runs: its config and keys, the chain reached, committee and model read."""

    config: LocalConfig
    identity: NodeIdentity
    client: ChainClient
    deployment: Deployment
    committee: CommitteeConfig
    params: RiskParams
    frost_key: DkgResult | None = None  # this member's FROST key share of the committee (None: ECDSA only)
    password: bytes | None = field(default=None, repr=False)  # the key files' (opens shares of later committees)

    @property
    def domain(self) -> Domain:
        """Return the EIP-712 domain of the oracle contract this node reports to."""
        return Domain.from_address(self.client.chain_id, self.deployment.contracts["MarginOracle"])

    @property
    def network(self) -> NetworkId:
        """Return the gossip network of the oracle contract."""
        return NetworkId.from_domain(self.domain)


@dataclass(frozen=True)
class NodePorts:
    """The interfaces a node reaches the world through (production: :func:`create_ports`; tools may wrap them)."""

    gossip: Libp2pGossip  # the endpoint (the executor sees it as a GossipEndpoint; the node also dials and stops it)
    chain: ChainPort
    compute_round: RoundComputer
    release: SignatureRelease
    discover_peers: PeerDiscovery
    fraud_prover: FraudProver | None = None  # proves attested rounds this node computed otherwise (None: never)
    validator: ReportValidator | None = None  # the gossip endpoint's topic validator (follows committee changes)
    confirm_frost_key: FrostKeyConfirmer | None = None  # sends a finished DKG's key on chain (None: no own DKG)


def create_gossip(setup: NodeSetup, validator: Validator) -> Libp2pGossip:
    """Return the node's libp2p endpoint with topic validator ``validator`` (not started)."""
    from libp2p.crypto.secp256k1 import create_new_key_pair

    from pmoracle.p2p.libp2p_gossip import GossipConfig, Libp2pGossip

    config = GossipConfig(network=setup.network, listen=setup.config.p2p.listen, bootstrap=setup.config.p2p.bootstrap)
    # the identity key file is secp256k1 (pmoracle keys); its peer id is what the registry advertises
    return Libp2pGossip(config, create_new_key_pair(setup.identity.p2p_secret), validator)


def create_ports(setup: NodeSetup, metrics: NodeMetrics) -> NodePorts:
    """Return the production interfaces: libp2p with the committee's validator, the oracle contract, the engine.

    Args:
        setup: the loaded node (see :func:`load_setup`).
        metrics: the node's metrics (the chain port counts gas and evidence there).
    """
    from pmoracle.node.fraud_prover import FraudProver  # imports node.dispute, which imports this module
    from pmoracle.p2p.validator import ReportValidator

    transmitter = Transmitter(
        setup.client, setup.identity.transmitter_key,
        fees=FeePolicy(max_fee_cap=setup.config.transmit.gas_price_cap_wei),
    )  # fmt: skip

    async def discover_peers() -> list[str]:
        # the members registered on chain, dialed besides the bootstrap list
        return await run_sync(read_peer_addresses, setup.client, setup.deployment, setup.committee.members,
                              timeout=30.0)  # fmt: skip

    async def confirm_key(committee: CommitteeConfig, result: DkgResult) -> None:
        await run_sync(send_frost_confirmation, setup.client, transmitter, setup.deployment, committee, result,
                       setup.identity.signing_key, timeout=120.0)  # fmt: skip

    validator = ReportValidator(setup.network, setup.committee)
    return NodePorts(
        gossip=create_gossip(setup, validator),
        chain=OracleChainPort(setup.client, transmitter, setup.deployment, metrics),
        compute_round=compute_round,
        release=ReleaseNow(),
        discover_peers=discover_peers,
        fraud_prover=FraudProver(
            setup.client, setup.deployment, setup.params, transmitter, metrics,
            peer_apis=setup.config.dispute.peer_apis, timeout=setup.config.dispute.prove_timeout,
            members=setup.committee.members,
        ),
        validator=validator,
        confirm_frost_key=confirm_key,
    )  # fmt: skip


class SolverNode:
    """A running solver node: the protocol executor and the production services around it."""

    def __init__(self, setup: NodeSetup, ports: NodePorts, *, metrics: NodeMetrics | None = None) -> None:
        """Args:
        setup: the loaded node (see :func:`load_setup`).
        ports: the interfaces to the world (see :func:`create_ports`).
        metrics: the node's metrics; the ones ``ports`` count into (a fresh registry when None).
        """
        self.setup = setup
        self.config = setup.config
        self.identity = setup.identity
        self.client = setup.client
        self.committee = setup.committee
        self.params = setup.params
        self.ports = ports
        self.gossip = ports.gossip
        self.metrics = metrics or create_node_metrics()
        self.network = setup.network
        self.config.node.data_dir.mkdir(parents=True, exist_ok=True)
        self.protection = ProtectionDB(protection_db_path(self.config.node.data_dir))
        self.archive = ReportArchive(archive_db_path(self.config.node.data_dir))
        self.progress = NodeStateDB(state_db_path(self.config.node.data_dir))
        reports = ReportGossip(self.gossip, self.network)
        self.frost_nonces: FrostNonceDB | None = None
        self.frost: FrostRoundService | None = None
        if setup.frost_key is not None:
            self.frost_nonces = FrostNonceDB(protection_db_path(self.config.node.data_dir))
            self.frost = create_frost_service(
                create_frost_context(setup), self.network, self.identity.signing_key, setup.frost_key,
                self.frost_nonces, reports, self.metrics, self.config.node.data_dir,
            )  # fmt: skip
        context = col.CollectorContext.create(setup.domain, self.committee, self.identity.signing_address,
                                              stage_delay=self.config.transmit.stage_delay,
                                              window_rounds=WINDOW_ROUNDS)  # fmt: skip
        self.executor = ProtocolExecutor(
            context, self.identity.signing_key, reports=reports, chain=ports.chain,
            protection=self.protection, archive=self.archive, release=ports.release, metrics=self.metrics,
            resume_block=self.progress.get(LAST_PROCESSED_BLOCK),  # re-enter this round at the first head
            frost_service=self.frost,
        )  # fmt: skip
        self.transmitter_address: str = Account.from_key(self.identity.transmitter_key).address
        self.transmitter_balance: int | None = None  # wei, at the last check (None before the first)
        self.insurance_fund_balance = 0  # USD WAD, at the last check (the standard stress weighs its shortfall)
        self.outputs: dict[int, RoundOutput] = {}  # anchor block -> computed round (serves /v1/leaves, /v1/risk-arrays)
        self.attested_tree: MerkleTree | None = None
        self._attested_tree_block: int | None = None
        self._rejections_seen: Counter[str] = Counter()
        self._rpc_errors_seen: Counter[tuple[str, str]] = Counter()
        self._round_send, self._round_recv = trio.open_memory_channel[int](1)
        self.deployment = setup.deployment
        self.snapshots = RoundSnapshots(
            SnapshotReader(self.client, setup.deployment, self.config.chain.full_snapshot_every), self.metrics,
            timeout=self.config.chain.rpc_timeout * 10,
        )  # fmt: skip
        self.policy = (
            None if self.params.policy is None
            else PolicyTracker(self.client, setup.deployment, self.params, policy_db_path(self.config.node.data_dir))
        )  # fmt: skip
        self.metrics.committee_version.set(self.committee.version)
        self._config_digest = self.committee.digest()
        self.dkg: DkgService | None = None
        if self.config.frost.auto_dkg and setup.password and ports.confirm_frost_key is not None:
            self.dkg = DkgService(
                setup.domain, reports, ports.validator, self.identity.signing_key, setup.password,
                self.config.node.data_dir, ports.confirm_frost_key, self.metrics, timeout=self.config.frost.dkg_timeout,
            )  # fmt: skip
        self._dkg_scope: trio.CancelScope | None = None
        self._services: trio.Nursery | None = None

    # --- services -----------------------------------------------------------------------------------------------

    async def run_round_worker(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Compute each triggered round: snapshot at B, risk engine, Merkle tree, report -> executor."""
        task_status.started()
        async for block in self._round_recv:
            started = trio.current_time()
            try:
                snapshot = (await self.snapshots.read(block)).snapshot  # a due check runs beside (run_checks)
                read_s = trio.current_time() - started
                policy = None
                if self.policy is not None:  # the adaptive policy's states at B, from the feeds' IndexSet logs
                    refused = self.policy.refused_checkpoints
                    policy = await self.policy.at(snapshot.block_number, snapshot.block_hash, snapshot.timestamp)
                    self.metrics.policy_checkpoints_refused.inc(self.policy.refused_checkpoints - refused)
                output = await trio.to_thread.run_sync(
                    with_gc_paused(self.ports.compute_round), snapshot, self.params, self.committee, policy
                )
            except PmoracleError as exc:  # ChainCallTimeoutError included
                # Invalid or unreadable inputs: nobody honest signs this round (liveness lost, never safety).
                log.warning("round %d: not signed: %s", block, exc)
                continue
            self.metrics.risk_compute_seconds.observe(trio.current_time() - started)
            self.metrics.rounds_computed.inc()
            if output.policy is not None:
                export_policy(self.metrics, output.policy)
            self.progress.advance(LAST_PROCESSED_BLOCK, block)
            self.outputs[block] = output
            for old in sorted(self.outputs)[:-TREES_KEPT]:
                del self.outputs[old]
            self._watch_attested()  # the round may have been attested before this node finished computing it
            how = "full" if snapshot.changed_accounts is None else f"{snapshot.changed_accounts} accounts changed"
            log.info("round %d: computed %d accounts in %.3f s (snapshot %.3f s, %s)", block,
                     output.report.account_count, trio.current_time() - started, read_s, how)  # fmt: skip
            await self.executor.on_local_report(output.report)
            if self.params.stress is not None:  # after the report: the stress never delays a signature
                await self._stress_round(block, snapshot)

    async def _stress_round(self, block: int, snapshot: ChainSnapshot) -> None:
        """Run the parameters document's standard stress on the round's book and export it (docs/stress.md)."""
        try:
            auction = await run_sync(read_auction_params, self.client, self.deployment, timeout=30.0)
            if auction is None:
                return
            result = await trio.to_thread.run_sync(
                with_gc_paused(run_standard_stress), snapshot.market, self.params, snapshot.portfolios, auction,
                self.insurance_fund_balance,
            )  # fmt: skip
        except PmoracleError as exc:
            log.warning("round %d: standard stress not computed: %s", block, exc)
            return
        if result is not None:
            export_stress(self.metrics, block, result)
            log.info("round %d: standard stress: cascade depth %d, shortfall %.2f USD, fund %.2f USD", block,
                     result.cascade_depth, result.shortfall / 10**18, result.insurance_fund / 10**18)  # fmt: skip

    async def on_chain_event(self, event: HeadEvent) -> None:
        """Follow the chain: head, reorgs, attested rounds, and the trigger of each ready anchor block."""
        match event:
            case Reorg(fork_point=fork_point, depth=depth):
                log.warning("reorg: %d blocks above %d replaced", depth, fork_point)
            case Resync(old_tip=old_tip, new_tip=new_tip):
                log.warning("chain resync from %d to %d", old_tip.number, new_tip.number)
            case NewHead(header=header):
                self.metrics.head_block.set(header.number)
                await self.follow_committee()  # a new version applies from this head's round on
                anchor = await self.executor.on_new_head(header.number)
                self._update_attested_tree()
                self._watch_attested()
                if anchor is not None and self.executor.is_member:
                    try:
                        self._round_send.send_nowait(anchor)
                    except trio.WouldBlock:
                        log.warning("round %d: skipped, the previous round is still computing", anchor)
            case _:
                assert_never(event)

    async def follow_committee(self) -> None:
        """Read the registry's configDigest; when it changed, read the new committee and install it.

        A failed read keeps the installed committee (logged): the next head reads again.
        """
        try:
            digest = await run_sync(read_config_digest, self.client, self.deployment, timeout=30.0)
            if digest == self._config_digest:
                return
            committee = await run_sync(read_committee, self.client, self.deployment, timeout=30.0)
        except (ChainError, NodeStartupError) as exc:
            log.warning("could not read the committee: %s", exc)
            return
        await self.install_committee(committee)

    async def install_committee(self, committee: CommitteeConfig) -> None:
        """Install a new committee version at a round boundary (before the next round is triggered).

        Rounds anchored from now on are computed, signed and collected under ``committee`` (its digest, members,
        quorum, round period); the rounds of the old version are dropped (the oracle accepts the new digest only).
        A node left out of it stops signing. FROST signs when the new committee has a group key and this node holds
        a matching share (``keys.frost_share`` or a share its own DKG wrote in the data directory), else ECDSA.
        The block watcher's finality depth stays the one read at start-up.
        """
        me = self.identity.signing_address
        member = committee.index_of(me) is not None
        setup = replace(self.setup, committee=committee, frost_key=None)
        frost_service = None
        if member and committee.group_key is not None:
            try:
                key = find_frost_key(self.config, committee, self.setup.password or b"")
                if key is not None:
                    setup = replace(setup, frost_key=key)
                    frost_context = create_frost_context(setup)
                    if self.frost_nonces is None:
                        self.frost_nonces = FrostNonceDB(protection_db_path(self.config.node.data_dir))
                    frost_service = create_frost_service(
                        frost_context, self.network, self.identity.signing_key, key, self.frost_nonces,
                        self.executor.reports, self.metrics, self.config.node.data_dir,
                    )  # fmt: skip
            except PmoracleError as exc:  # a share that does not open or fit: this version runs on ECDSA
                log.warning("committee version %d: no usable FROST key share (%s): ECDSA certificates only",
                            committee.version, exc)  # fmt: skip
                setup = replace(setup, frost_key=None)
        self.setup = setup
        self.committee = committee
        self._config_digest = committee.digest()
        self.frost = frost_service
        if self.ports.validator is not None:
            self.ports.validator.set_committee(committee)
        if self.ports.fraud_prover is not None:
            self.ports.fraud_prover.members = committee.members
        context = col.CollectorContext.create(setup.domain, committee, me if member else None,
                                              stage_delay=self.config.transmit.stage_delay,
                                              window_rounds=WINDOW_ROUNDS)  # fmt: skip
        await self.executor.install_committee(context, frost_service)
        self.start_dkg(committee)
        self.metrics.committee_version.set(committee.version)
        self.metrics.committee_changes.inc()
        scheme = "ECDSA"
        if setup.frost_key is not None and frost_service is not None:
            scheme = (f"FROST signing on: member {setup.frost_key.identifier} of a "
                      f"{setup.frost_key.parameters.threshold}-of-{committee.n} group key")  # fmt: skip
        role = f"member {committee.index_of(me)}, {scheme}" if member else "not a member: collecting without signing"
        log.info("committee version %d installed (%d members, quorum %d, digest %s): %s", committee.version,
                 committee.n, committee.quorum, self._config_digest.hex()[:16], role)  # fmt: skip
        try:  # dial the new members
            addresses = await run_sync(read_peer_addresses, self.client, self.deployment, committee.members,
                                       timeout=30.0)  # fmt: skip
        except ChainError as exc:
            log.warning("could not read the new members' addresses: %s", exc)
            return
        for address in addresses:
            if self.gossip.peer_id not in address:
                self.gossip.add_peer(address)

    def start_dkg(self, committee: CommitteeConfig) -> None:
        """Stop the DKG of an older committee; start this member's own for ``committee`` if it has no group key."""
        if self._dkg_scope is not None:
            self._dkg_scope.cancel()
            self._dkg_scope = None
        if self.dkg is None or self._services is None or committee.group_key is not None:
            return
        if committee.index_of(self.identity.signing_address) is None:
            return
        scope = trio.CancelScope()
        self._dkg_scope = scope
        dkg = self.dkg

        async def run_dkg() -> None:
            with scope:
                log.info("committee version %d has no FROST group key: running the DKG with its %d members",
                         committee.version, committee.n)  # fmt: skip
                try:
                    await dkg.run_for(committee)
                except (PmoracleError, OSError) as exc:  # a stored share that does not open, a full disk: the node
                    # goes on signing with ECDSA certificates
                    self.metrics.dkg_runs.labels(result="error").inc()
                    log.error("DKG for committee version %d stopped: %s", committee.version, exc)

        self._services.start_soon(run_dkg)

    def _update_attested_tree(self) -> None:
        attested = self.executor.last_attested
        if attested is None or attested.block_number == self._attested_tree_block:
            return
        self._attested_tree_block = attested.block_number
        output = self.outputs.get(attested.block_number)
        self.attested_tree = output.tree if output and output.tree.root == attested.accounts_root else None

    def _watch_attested(self) -> None:
        """Hand the latest attested round and this node's own report of it to the fraud prover, which proves it in
        the background when the digests differ at the canonical hash (once per round: ``consensus.fraud_watch``)."""
        attested = self.executor.last_attested
        if self.ports.fraud_prover is None or attested is None:
            return
        output = self.outputs.get(attested.block_number)
        if output is not None:
            key, digest = (attested.config_digest, attested.block_number), attested.report_digest

            def signed() -> list[SignedReport]:
                return [a.signed for a in self.archive.get_by_round(key) if a.digest == digest]

            self.ports.fraud_prover.offer(attested, output.report, signed)

    async def run_gossip_metrics(self) -> None:
        """Export the gossip endpoint's peer count and the rejections its topic validator counted."""
        while True:
            await trio.sleep(GOSSIP_METRICS_INTERVAL)
            self.metrics.peers.set(len(self.gossip.peers()))
            # the topic validator counts what it drops before delivery; export what is new
            for reason, count in self.gossip.rejections.items():
                delta = count - self._rejections_seen[reason]
                if delta > 0:
                    self.metrics.gossip_messages_rejected.labels(reason=reason).inc(delta)
                    self._rejections_seen[reason] = count

    async def run_endpoint_probe(self) -> None:
        """With several RPC endpoints, ask each for its head every ``probe_interval`` s (``ChainClient.head``).

        Requests demote an endpoint that keeps failing; only a probe brings it back once it serves the current
        head again, and demotes one that answers but lags. Logs every change of the order.
        """
        if len(self.client.urls) < 2:
            return
        order = self.client.preferred_endpoints()
        timeout = self.config.chain.rpc_timeout * len(self.client.urls) + 1.0
        while True:
            await trio.sleep(self.config.chain.probe_interval)
            try:
                await run_sync(self.client.head, timeout=timeout)
            except ChainError as exc:
                log.warning("RPC endpoint probe failed: %s", exc)
                continue
            for endpoint, behind in self.client.endpoint_lag().items():
                self.metrics.rpc_endpoint_lag.labels(endpoint=endpoint_label(endpoint)).set(behind)
            now = self.client.preferred_endpoints()
            if now != order:
                log.warning("RPC endpoints now tried in this order: %s", ", ".join(map(endpoint_label, now)))
                order = now

    async def run_balance_watch(self) -> None:
        """Read the transmitter's balance now and every ``probe_interval`` s (gauge, /health, one log per drop),
        and the liquidation insurance fund's balance and subsidies paid (gauges).

        A failed read keeps the last known balance: RPC errors are counted and reported elsewhere.
        """
        minimum = self.config.transmit.min_balance_wei
        address = self.transmitter_address
        while True:
            try:
                raw = await run_sync(self.client.request, "eth_getBalance", [address, "latest"], timeout=30.0)
                balance = int(raw, 16)
            except (ChainError, TypeError, ValueError) as exc:
                log.warning("could not read the transmitter balance: %s", exc)
            else:
                was_enough = self.transmitter_balance is None or self.transmitter_balance >= minimum
                if balance < minimum and was_enough:
                    log.warning("transmitter %s balance %.6g ETH is below transmit.min_balance_eth (%s): fund it",
                                address, balance / 10**18, self.config.transmit.min_balance_eth)  # fmt: skip
                self.transmitter_balance = balance
                self.metrics.transmitter_balance_wei.set(balance)
            try:
                fund = await run_sync(read_insurance_fund, self.client, self.deployment, timeout=30.0)
            except ChainError as exc:
                log.warning("could not read the insurance fund: %s", exc)
            else:
                if fund is not None:
                    self.insurance_fund_balance = fund.balance
                    self.metrics.insurance_fund_usd.set(fund.balance / 10**18)
                    self.metrics.insurance_paid_usd.set(fund.paid / 10**18)
            await trio.sleep(self.config.chain.probe_interval)

    # --- API providers ------------------------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """Return the node's health for /health."""
        max_lag = 4 * self.committee.round_period + self.committee.finality_depth + 4
        attested = self.executor.last_attested
        return assess_health(self.executor.head, None if attested is None else attested.block_number,
                             len(self.gossip.peers()), min_peers=1, max_lag_blocks=max_lag,
                             balance_wei=self.transmitter_balance,
                             min_balance_wei=self.config.transmit.min_balance_wei)  # fmt: skip

    def margin(self, account: bytes) -> MarginProof | None:
        """Return ``account``'s values in the latest attested round with its Merkle proof, for /v1/margin."""
        tree = self.attested_tree
        if tree is None or self._attested_tree_block is None:
            return None
        try:
            leaf = tree.leaf_of(account)
        except PmoracleError:
            return None
        return MarginProof(leaf, self._attested_tree_block, tree.root, tuple(tree.proof(account)))

    def round_leaves(self, block: int | None) -> RoundLeaves | None:
        """Return every leaf of a kept round (None: the latest computed) for /v1/leaves: the node's own tree of any of
        its last ``TREES_KEPT`` computed rounds, or the attested tree of the round it last saw attested."""
        if block is None:
            block = max(self.outputs) if self.outputs else self._attested_tree_block
        if block is None:
            return None
        output = self.outputs.get(block)
        tree = output.tree if output is not None else self.attested_tree if block == self._attested_tree_block else None
        return None if tree is None else RoundLeaves(block, tree.root, tuple(tree.leaves))

    def policy_json(self, block: int | None) -> dict[str, Any] | None:
        """Return the adaptive policy of a kept round (None: the latest) as the node publishes it, for /v1/policy."""
        kept = [b for b, output in self.outputs.items() if output.policy is not None]
        if not kept:
            return None
        output = self.outputs.get(max(kept) if block is None else block)
        return None if output is None or output.policy is None else policy_round_to_json(output.policy)

    def risk_arrays(self, block: int | None) -> RiskArrays | None:
        """Return the risk-array rows of a kept round (None: the latest) as the node committed to them, for
        /v1/risk-arrays."""
        if not self.outputs:
            return None
        number = max(self.outputs) if block is None else block
        output = self.outputs.get(number)
        return None if output is None else RiskArrays(number, output.risk_tree.root, tuple(output.risk_tree.rows))

    # --- the whole node -----------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until cancelled; report the API port when all are ready."""
        events_send, events_recv = trio.open_memory_channel[HeadEvent](64)
        try:
            async with trio.open_nursery() as nursery:
                self._services = nursery
                await nursery.start(self.gossip.run)
                await nursery.start(self.executor.run)
                for address in await self.ports.discover_peers():
                    if self.gossip.peer_id not in address:
                        self.gossip.add_peer(address)
                self.start_dkg(self.committee)
                await nursery.start(self.snapshots.run_checks)
                if self.ports.fraud_prover is not None:
                    await nursery.start(self.ports.fraud_prover.run)
                await nursery.start(self.run_round_worker)
                await nursery.start(
                    lambda task_status: run_block_watcher(
                        self.client, poll_interval=self.config.chain.poll_interval,
                        finality_depth=self.committee.finality_depth, send_channel=events_send,
                        task_status=task_status,
                    )
                )  # fmt: skip
                nursery.start_soon(self._follow_chain, events_recv)
                nursery.start_soon(self.run_gossip_metrics)
                nursery.start_soon(self.run_endpoint_probe)
                nursery.start_soon(self.run_balance_watch)
                port = await nursery.start(
                    lambda task_status: run_api(
                        self.config.api.host, self.config.api.port, metrics=self.metrics, health=self.health,
                        margin=self.margin, policy=self.policy_json, risk_arrays=self.risk_arrays,
                        leaves=self.round_leaves, task_status=task_status,
                    )
                )  # fmt: skip
                write_api_port(self.config.node.data_dir, port)  # tools find an api.port = 0 node here
                log.info("node 0x%s ready: api port %d, peer %s", self.identity.signing_address.hex(), port,
                         self.gossip.peer_id)  # fmt: skip
                task_status.started(port)
        finally:
            api_port_path(self.config.node.data_dir).unlink(missing_ok=True)
            self.gossip.stop()
            self.protection.close()
            if self.frost_nonces is not None:
                self.frost_nonces.close()
            self.archive.close()
            self.progress.close()
            if self.policy is not None:
                self.policy.close()

    async def _follow_chain(self, events: trio.MemoryReceiveChannel[HeadEvent]) -> None:
        async for event in events:
            await self.on_chain_event(event)
            for (endpoint, kind), count in self.client.error_counts().items():
                # the client counts since it was created; the metric gets what is new since the last look
                delta = count - self._rpc_errors_seen[(endpoint, kind)]
                if delta > 0:
                    self.metrics.rpc_errors.labels(endpoint=endpoint_label(endpoint), kind=kind).inc(delta)
                    self._rpc_errors_seen[(endpoint, kind)] = count


async def run_until_signalled(node: SolverNode) -> None:
    """Run ``node``'s services until SIGINT or SIGTERM, then cancel them cleanly."""
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def create_frost_context(setup: NodeSetup) -> fr.FrostRoundContext:
    """Return the node's FROST signing context from its key share and the installed committee.

    Errors:
        NodeStartupError when the share does not fit the committee (another size, identifier or threshold).
    """
    key = setup.frost_key
    if key is None:
        raise NodeStartupError("no FROST key share loaded")
    members = setup.committee.members
    me = members.index(setup.identity.signing_address) + 1 if setup.identity.signing_address in members else None
    if key.identifier != me:
        raise NodeStartupError(f"keys.frost_share: the share is member {key.identifier}'s, this node is member {me} "
                               "(committee index + 1)")  # fmt: skip
    try:
        return fr.FrostRoundContext.create(
            setup.domain, setup.committee, key.group_public_key, key.verification_shares, key.parameters.threshold,
            me, stage_delay=setup.config.transmit.stage_delay, window_rounds=WINDOW_ROUNDS,
        )  # fmt: skip
    except InputError as exc:
        raise NodeStartupError(f"keys.frost_share: does not fit the installed committee: {exc}") from None


def find_frost_key(config: LocalConfig, committee: CommitteeConfig, password: bytes) -> DkgResult | None:
    """Return the node's FROST key share for ``committee`` (None when the node runs without FROST).

    A node signs with FROST when the committee has a registered group key and this member holds its share of it:
    in ``keys.frost_share`` (written by ``pmoracle frost dkg``), else in one of the shares the node's own DKG wrote
    in ``<data_dir>/frost/``; without either the node stays on ECDSA certificates (logged).

    Errors:
        KeyFileError, WrongPasswordError, FrostShareMismatchError (``keys.frost_share`` holds another group key and
        no share in the data directory holds this one).
    """
    from pmoracle.node.frost_keys import describe_frost_share, unlock_frost_share

    path = config.keys.frost_share
    if committee.group_key is None:
        if path is not None:
            log.warning("keys.frost_share is set but the committee has no FROST group key: ECDSA certificates only")
        return None
    group_key = committee.group_key.to_compressed()
    candidates = [] if path is None else [Path(path)]
    shares_dir = frost_dir(config.node.data_dir)
    if shares_dir.is_dir():
        candidates += sorted(shares_dir.glob("share-*.json"))
    for candidate in candidates:
        try:
            public = describe_frost_share(candidate)
        except PmoracleError as exc:
            if candidate == path:
                raise
            log.warning("%s: not a key share (%s)", candidate, exc)
            continue
        if str(public.get("groupPublicKey", "")).removeprefix("0x") != group_key.hex():
            continue
        context = bytes.fromhex(str(public["context"]).removeprefix("0x"))
        # the file holds the group key registered on chain (checked again before decrypting)
        return unlock_frost_share(candidate, password, context=context, group_public_key=group_key)
    if path is not None:  # the configured file is another group key's: refused with both keys named
        context = bytes.fromhex(str(describe_frost_share(path)["context"]).removeprefix("0x"))
        return unlock_frost_share(path, password, context=context, group_public_key=group_key)
    log.warning("the committee has a FROST group key but keys.frost_share is not set and no share of it is in "
                "%s: ECDSA certificates only", shares_dir)  # fmt: skip
    return None


def load_setup(config: LocalConfig, password: bytes) -> NodeSetup:
    """Return what a node needs before it runs: keys unlocked, chain reached, committee read, start-up checks passed.

    Args:
        config: the checked local configuration.
        password: the key files' password.

    Errors:
        NodeStartupError, ConfigError, KeyFileError, StartupRefusedError with a message naming the problem.
    """
    from pmoracle.node.keys import KeyKind, unlock_key_file

    signing = unlock_key_file(config.keys.signing_keystore, password, expected_kind=KeyKind.SIGNING)
    transmitter = unlock_key_file(config.keys.transmitter_keystore, password, expected_kind=KeyKind.TRANSMITTER)
    p2p = unlock_key_file(config.keys.p2p_key, password, expected_kind=KeyKind.P2P)
    identity = NodeIdentity(signing.secret, signing.address_bytes, transmitter.secret, p2p.secret)
    client = ChainClient(config.chain.rpc_urls, timeout=config.chain.rpc_timeout)
    try:
        client.chain_id  # noqa: B018 - reach the chain once before anything else
    except ChainError as exc:
        raise NodeStartupError(f"chain unreachable at {', '.join(config.chain.rpc_urls)}: {exc}") from None
    deployment = Deployment.load(config.chain.deployment)
    if deployment.chain_id != client.chain_id:
        raise NodeStartupError(f"deployment is for chain {deployment.chain_id}, the RPC serves {client.chain_id}")
    committee = read_committee(client, deployment)
    params = load_params_file(config.risk.params_file)
    check_node_params(params, config.risk.params_file)
    require_startup_ok(config, committee, params.params_hash, identity.signing_address)
    setup = NodeSetup(config, identity, client, deployment, committee, params,
                      find_frost_key(config, committee, password), password)  # fmt: skip
    if setup.frost_key is not None:
        create_frost_context(setup)  # refuse a share that does not fit the committee now, not at the first round
        log.info("FROST signing on: member %d of a %d-of-%d group key", setup.frost_key.identifier,
                 setup.frost_key.parameters.threshold, committee.n)  # fmt: skip
    return setup


def check_node_params(params: RiskParams, path: Path) -> None:
    """Refuse a parameters document the round cannot compute: its hash would be attested with other margins.

    Errors:
        NodeStartupError when the document has a [pmrm2] section (the round computes the scenario-grid model only;
        PMRM_2 runs in ``pmoracle margin``), or an absolute vol shift (``vol.shift_unit = "absolute"``: the on-chain
        pricing challenge recomputes a relative shift, so the round's honest entries would be provable), or an
        extended-move dampener (``extreme.dampener_usd``: the fraud proof sums the committed rows linearly, so an
        honest dampened MM would be provably "fraudulent").
    """
    if params.pmrm2 is not None:
        raise NodeStartupError(
            f"risk.params_file: {path} has a [pmrm2] section; a node computes the scenario-grid model only "
            "(PMRM_2 runs in `pmoracle margin`, docs/parameters.md)"
        )
    if params.is_absolute_vol_shift:
        raise NodeStartupError(
            f'risk.params_file: {path} sets vol.shift_unit = "absolute"; a node commits relative vol shifts only '
            "(EntryPricer recomputes vol x (1 + shock x shift); absolute shifts run in `pmoracle margin`, "
            "docs/parameters.md)"
        )
    if params.extreme_dampener is not None:
        raise NodeStartupError(
            f"risk.params_file: {path} sets extreme.dampener_usd; a node commits undampened extended moves only "
            "(MarginOracle.proveFraud sums each scenario's loss x cover from the committed rows; the dampener runs "
            "in `pmoracle margin`, docs/parameters.md)"
        )


def load_node(config: LocalConfig, password: bytes) -> SolverNode:
    """Return a production node ready to run (see :func:`load_setup` for what is checked and raised)."""
    setup = load_setup(config, password)
    metrics = create_node_metrics()
    return SolverNode(setup, create_ports(setup, metrics), metrics=metrics)
