"""The solver daemon: trio wiring of the chain follower, round worker, gossip, transmitter, evidence and API.

The consensus decisions are the pure collector's (``pmoracle.consensus.collector``): every input goes through one
handler, and this module only carries out the effects it returns. Blocking work (JSON-RPC through web3's sync
client, the numba risk kernel, SQLite with synchronous=FULL) runs in worker threads.

Services (each started with ``nursery.start`` and reporting readiness):

- gossip: the libp2p gossipsub endpoint and the consumer of validated messages;
- chain follower: new heads and reorgs from the block watcher -> round triggers and attested-round polling;
- round worker: snapshot(B) -> risk engine -> leaves -> Merkle root -> report -> collector;
- ticker: ``on_tick`` (re-broadcast, transmission schedule);
- API: /metrics, /health, /v1/margin/{account}.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
from web3 import Web3

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.deploy import Deployment, decode_committee_view
from pmoracle.chain.errors import ChainError, ContractError
from pmoracle.chain.snapshot import SnapshotReader
from pmoracle.chain.transmitter import FeePolicy, Transmitter
from pmoracle.chain.watcher import NewHead, Reorg, Resync, run_block_watcher
from pmoracle.config.local import LocalConfig
from pmoracle.config.network import require_startup_ok
from pmoracle.config.params import load_params_file
from pmoracle.consensus import collector as col
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation, Equivocation, Evidence
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Domain, Report, SignedReport, sign_report
from pmoracle.consensus.rounds import compute_latest_ready_anchor, compute_round_key
from pmoracle.errors import PmoracleError
from pmoracle.node.api import HealthReport, MarginProof, assess_health, run_api
from pmoracle.node.datadir import archive_db_path, protection_db_path, state_db_path
from pmoracle.node.metrics import NodeMetrics, create_node_metrics, endpoint_label
from pmoracle.node.round import RoundOutput, compute_round
from pmoracle.p2p.codec import NetworkId
from pmoracle.p2p.reports import ReportGossip
from pmoracle.risk.params import RiskParams
from pmoracle.storage.archive import ReportArchive
from pmoracle.storage.node_state import LAST_PROCESSED_BLOCK, NodeStateDB
from pmoracle.storage.protection_db import ProtectionDB, SlashingProtectionError

log = logging.getLogger("pmoracle.node")
# web3 contract objects only encode calls and decode results here; requests go through ChainClient.
OFFLINE_W3 = Web3()

TICK_SECONDS = 0.2
RPC_TIMEOUT_MARGIN = 2.0  # seconds a threaded chain call may take beyond the client's own timeout
ROUND_COMPUTE_TIMEOUT = 120.0
TREES_KEPT = 8  # recent rounds whose Merkle trees stay in memory to serve proofs


class NodeStartupError(PmoracleError):
    """Raised when the node cannot start: chain unreachable, committee or keys inconsistent with the chain."""


@dataclass(frozen=True)
class NodeIdentity:
    """The node's three separate keys (design section 7)."""

    signing_key: bytes = field(repr=False)
    signing_address: bytes
    transmitter_key: bytes = field(repr=False)
    p2p_secret: bytes = field(repr=False)


def read_committee(client: ChainClient, deployment: Deployment) -> CommitteeConfig:
    """Return the current committee configuration stored in SolverRegistry (checked against its digest)."""
    registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
    committee, digest = decode_committee_view(client.call(registry.functions.committee(), "latest"))
    if committee.digest() != digest:
        raise NodeStartupError("the registry's configDigest does not match its committee fields")
    return committee


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


class SolverNode:
    """A running solver node: the collector state and the shells that feed it and carry out its effects."""

    def __init__(
        self,
        config: LocalConfig,
        identity: NodeIdentity,
        *,
        client: ChainClient,
        deployment: Deployment,
        committee: CommitteeConfig,
        params: RiskParams,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.client = client
        self.deployment = deployment
        self.committee = committee
        self.params = params
        self.metrics = metrics or create_node_metrics()
        self.domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
        self.network = NetworkId.from_domain(self.domain)
        context = col.CollectorContext.create(
            self.domain, committee, identity.signing_address, stage_delay=config.transmit.stage_delay,
            rebroadcast_interval=2.0, window_rounds=16,
        )  # fmt: skip
        self.state = col.init_collector_state(context, head=0)
        self.config.node.data_dir.mkdir(parents=True, exist_ok=True)
        self.protection = ProtectionDB(protection_db_path(config.node.data_dir))
        self.archive = ReportArchive(archive_db_path(config.node.data_dir))
        self.progress = NodeStateDB(state_db_path(config.node.data_dir))
        self._resume_block = self.progress.get(LAST_PROCESSED_BLOCK)  # re-enter this round at the first head
        self.transmitter = Transmitter(
            client, identity.transmitter_key, fees=FeePolicy(max_fee_cap=config.transmit.gas_price_cap_wei)
        )
        self.oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
        self.registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
        self.head: int | None = None
        self.last_attested: int | None = None
        self.last_computed: int | None = None
        self.transmitter_balance: int | None = None  # wei, at the last check (None before the first)
        self.outputs: dict[int, RoundOutput] = {}  # anchor block -> computed round (trees serve /v1/margin)
        self.attested_tree: MerkleTree | None = None
        self.gossip: Any = None  # the libp2p GossipEndpoint, set in run()
        self.reports: ReportGossip | None = None  # re-publication, catch-up and dedupe above it
        self._published: set[tuple[bytes, int]] = set()
        self._rejections_seen: Counter[str] = Counter()
        self._rpc_errors_seen: Counter[tuple[str, str]] = Counter()
        self._round_send, self._round_recv = trio.open_memory_channel[int](1)
        self._nursery: trio.Nursery | None = None
        self._transmitting: set[int] = set()
        self._triggered_at: dict[int, float] = {}  # anchor block -> when it became ready here (round latency)
        self.snapshots = SnapshotReader(client, deployment, config.chain.full_snapshot_every)

    # --- the collector and its effects ------------------------------------------------------------------------

    async def apply(self, transition: col.Transition) -> None:
        """Adopt the collector's new state and carry out its effects in order."""
        self.state, effects = transition
        for effect in effects:
            await self.execute(effect)

    async def execute(self, effect: Any) -> None:
        """Carry out one effect of the collector."""
        if isinstance(effect, col.SignReport):
            await self._sign(effect)
        elif isinstance(effect, col.Broadcast):
            # ReportGossip re-publishes (with back-off) until attested; the collector's periodic Broadcast of the
            # same report is therefore only carried out once per round.
            key = effect.signed.report.round_key
            if self.reports is not None and key not in self._published:
                self._published.add(key)
                await self.reports.publish_own(effect.signed)
                self.metrics.gossip_messages_out.inc()
        elif isinstance(effect, col.ArchiveSignedReport):
            self.archive.add(effect.signed, effect.digest, seen_at=time.time())
        elif isinstance(effect, col.CertificateFormed):
            log.info("round %d: quorum certificate formed (digest %s)", effect.certificate.report.block_number,
                     effect.digest.hex()[:16])  # fmt: skip
        elif isinstance(effect, col.Transmit):
            self._spawn(self._transmit, effect.certificate)
        elif isinstance(effect, col.SubmitEvidence):
            self._spawn(self._submit_evidence, effect.evidence)
        elif isinstance(effect, col.Rejected):
            self.metrics.gossip_messages_rejected.labels(reason=effect.reason.value).inc()
        else:  # a new effect type the shell does not know is a programming error, loudly
            raise TypeError(f"unknown collector effect {effect!r}")

    async def _sign(self, effect: col.SignReport) -> None:
        # Slashing protection first: the (round key -> digest) record is durable before a signature exists.
        try:
            # On the event loop: one fsync'd SQLite write per round (a few ms), and the connection stays in its thread.
            self.protection.record_and_check(effect.round_key, effect.digest)
        except SlashingProtectionError as exc:
            log.error("refusing to sign round %d: %s", effect.round_key[1], exc)
            return
        await self.release_signature(sign_report(self.domain, effect.report, self.identity.signing_key))

    async def release_signature(self, signed: SignedReport) -> None:
        """Hand this node's signature (already recorded by slashing protection) to the collector for gossip."""
        self.metrics.rounds_signed.inc()
        log.info("round %d: signed report root %s (%d accounts)", signed.report.block_number,
                 signed.report.accounts_root.hex()[:16], signed.report.account_count)  # fmt: skip
        await self.apply(col.on_own_signed_report(self.state, signed, trio.current_time()))

    def make_report(self, output: RoundOutput) -> Report:
        """Return the report this node signs for a computed round (the computed one; test-only faults override)."""
        return output.report

    def _spawn(self, fn: Any, *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("node services are not running")
        self._nursery.start_soon(fn, *args)

    async def _transmit(self, cert: QuorumCertificate) -> None:
        block = cert.report.block_number
        if block in self._transmitting or (self.last_attested is not None and block <= self.last_attested):
            return
        self._transmitting.add(block)
        fn = self.oracle.functions.attest(cert.report.as_tuple(), cert.signer_bitmap, list(cert.signatures))
        try:
            receipt = await run_sync(self.transmitter.transact_call, fn, timeout=60.0)
            self.metrics.gas_spent.inc(receipt.gas_used)
            log.info("round %d: attested on chain in tx %s (gas %d)", block, receipt.tx_hash.hex(), receipt.gas_used)
        except ContractError as exc:
            # Another node's attestation landed first (the usual case for later schedule positions).
            log.info("round %d: attest refused by the contract: %s%s", block, exc.name, exc.error_args)
        except (ChainError, trio.TooSlowError) as exc:
            log.warning("round %d: attest failed: %s", block, exc)
        finally:
            self._transmitting.discard(block)

    async def _submit_evidence(self, evidence: Evidence) -> None:
        if isinstance(evidence, Equivocation):
            a, b = evidence.a, evidence.b
            fn = self.registry.functions.slashEquivocation(a.report.as_tuple(), a.signature, b.report.as_tuple(),
                                                           b.signature)  # fmt: skip
            kind = "equivocation"
            signer = a.signer
        elif isinstance(evidence, Deviation):
            fn = self.registry.functions.slashDeviation(evidence.signed.report.as_tuple(), evidence.signed.signature)
            kind = "deviation"
            signer = evidence.signed.signer
        else:
            raise TypeError(f"unknown evidence {evidence!r}")
        try:
            receipt = await run_sync(self.transmitter.transact_call, fn, timeout=60.0)
            self.metrics.evidence_sent.labels(kind=kind).inc()
            self.metrics.gas_spent.inc(receipt.gas_used)
            log.warning("%s evidence against 0x%s posted in tx %s", kind, signer.hex(), receipt.tx_hash.hex())
        except ContractError as exc:
            log.info("%s evidence against 0x%s refused: %s%s", kind, signer.hex(), exc.name, exc.error_args)
        except (ChainError, trio.TooSlowError) as exc:
            log.warning("%s evidence against 0x%s failed: %s", kind, signer.hex(), exc)

    # --- services -----------------------------------------------------------------------------------------------

    async def run_round_worker(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Compute each triggered round: snapshot at B, risk engine, Merkle tree, report -> collector."""
        task_status.started()
        async for block in self._round_recv:
            started = trio.current_time()
            try:
                read = await run_sync(self.snapshots.read, block, timeout=self.config.chain.rpc_timeout * 10)
                snapshot = read.snapshot
                read_s = trio.current_time() - started
                kind = "full" if snapshot.changed_accounts is None else "incremental"
                self.metrics.snapshot_reads.labels(kind=kind).inc()
                if read.mismatch:
                    self.metrics.snapshot_mismatches.inc()
                    log.error("round %d: the incremental snapshot differs from the full read (the full read is used)",
                              block)  # fmt: skip
                output = await trio.to_thread.run_sync(compute_round, snapshot, self.params, self.committee)
            except PmoracleError as exc:
                # Invalid or unreadable inputs: nobody honest signs this round (liveness lost, never safety).
                log.warning("round %d: not signed: %s", block, exc)
                continue
            except trio.TooSlowError:
                log.warning("round %d: snapshot timed out", block)
                continue
            self.metrics.risk_compute_seconds.observe(trio.current_time() - started)
            self.metrics.rounds_computed.inc()
            self.progress.advance(LAST_PROCESSED_BLOCK, block)
            self.outputs[block] = output
            for old in sorted(self.outputs)[:-TREES_KEPT]:
                del self.outputs[old]
            how = kind if snapshot.changed_accounts is None else f"{snapshot.changed_accounts} accounts changed"
            log.info("round %d: computed %d accounts in %.3f s (snapshot %.3f s, %s)", block,
                     output.report.account_count, trio.current_time() - started, read_s, how)  # fmt: skip
            await self.apply(col.on_local_report(self.state, self.make_report(output), trio.current_time()))
            if self.reports is not None:  # ask for the reports we may have missed (a restarted or late node)
                await self.reports.request_catch_up(output.report.round_key)

    async def on_chain_event(self, event: Any) -> None:
        """Follow the chain: head, reorgs, attested rounds, and the trigger of each ready anchor block."""
        if isinstance(event, Reorg):
            log.warning("reorg: %d blocks above %d replaced", event.depth, event.fork_point)
            return
        if isinstance(event, Resync):
            log.warning("chain resync from %d to %d", event.old_tip.number, event.new_tip.number)
            return
        if not isinstance(event, NewHead):
            return
        head = event.header.number
        self.head = head
        self.metrics.head_block.set(head)
        await self.apply(col.on_new_head(self.state, head))
        if self._resume_block is not None:
            await self._resume(self._resume_block)
            self._resume_block = None
        await self._poll_attested()
        anchor = compute_latest_ready_anchor(head, self.committee)
        is_new = anchor is not None and (self.last_computed is None or anchor > self.last_computed)
        if is_new and (self.last_attested is None or anchor > self.last_attested):
            self.last_computed = anchor
            self._triggered_at[anchor] = trio.current_time()
            for old in [b for b in self._triggered_at if b < anchor - 64 * self.committee.round_period]:
                del self._triggered_at[old]
            try:
                self._round_send.send_nowait(anchor)
            except trio.WouldBlock:
                log.warning("round %d: skipped, the previous round is still computing", anchor)

    async def _resume(self, block: int) -> None:
        """Re-enter round ``block`` (processed before a restart) with the report this node signed for it."""
        self.last_computed = max(self.last_computed or 0, block)
        key = compute_round_key(self.committee.digest(), block)
        own = self.archive.get_by_signer(self.identity.signing_address, key)
        if len(own) != 1:  # nothing signed (or, impossibly, two digests: protection would refuse the second)
            return
        log.info("round %d: resuming with the report signed before the restart", block)
        # the collector asks to sign it again; the protection store allows only this same digest
        await self.apply(col.on_local_report(self.state, own[0].signed.report, trio.current_time()))

    async def _poll_attested(self) -> None:
        try:
            view = await run_sync(self.client.call, self.oracle.functions.latestRound(), "latest", timeout=10.0)
        except ContractError as exc:
            if exc.name != "NoAttestedRound":
                log.warning("cannot read the latest attested round: %s", exc)
            return
        except (ChainError, trio.TooSlowError) as exc:
            log.warning("cannot read the latest attested round: %s", exc)
            return
        block, root, digest, config_digest = int(view[0]), bytes(view[1]), bytes(view[2]), bytes(view[3])
        if block == 0 or (self.last_attested is not None and block <= self.last_attested):
            return
        self.last_attested = block
        self.metrics.rounds_attested.inc()
        triggered = self._triggered_at.pop(block, None)
        if triggered is not None:  # anchor block final here -> attestation seen on chain
            self.metrics.round_latency.observe(trio.current_time() - triggered)
        self.metrics.last_attested_round.set(block)
        output = self.outputs.get(block)
        self.attested_tree = output.tree if output and output.tree.root == root else None
        if config_digest == self.committee.digest():
            key = compute_round_key(config_digest, block)
            if self.reports is not None:
                self.reports.mark_attested(key)
            self._published = {k for k in self._published if k[1] > block}  # attested rounds need no more gossip
            await self.apply(col.on_round_attested(self.state, key, digest))
        log.info("round %d attested on chain (root %s)", block, root.hex()[:16])

    async def run_gossip_consumer(self) -> None:
        """Feed the validated, deduplicated signed reports of other members into the collector."""
        if self.reports is None:
            raise RuntimeError("gossip is not running")
        async for signed in self.reports.reports():
            self.metrics.gossip_messages_in.inc()
            await self.apply(col.on_signed_report(self.state, signed, trio.current_time()))

    async def run_ticker(self) -> None:
        """Drive time-based decisions of the collector (re-broadcasts, the transmission schedule)."""
        while True:
            await trio.sleep(TICK_SECONDS)
            await self.apply(col.on_tick(self.state, trio.current_time()))
            if self.gossip is not None:
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
            except (ChainError, trio.TooSlowError) as exc:
                log.warning("RPC endpoint probe failed: %s", exc)
                continue
            for endpoint, behind in self.client.endpoint_lag().items():
                self.metrics.rpc_endpoint_lag.labels(endpoint=endpoint_label(endpoint)).set(behind)
            now = self.client.preferred_endpoints()
            if now != order:
                log.warning("RPC endpoints now tried in this order: %s", ", ".join(map(endpoint_label, now)))
                order = now

    async def run_balance_watch(self) -> None:
        """Read the transmitter's balance now and every ``probe_interval`` s (gauge, /health, one log per drop).

        A failed read keeps the last known balance: RPC errors are counted and reported elsewhere.
        """
        minimum = self.config.transmit.min_balance_wei
        address = self.transmitter.address
        while True:
            try:
                raw = await run_sync(self.client.request, "eth_getBalance", [address, "latest"], timeout=30.0)
                balance = int(raw, 16)
            except (ChainError, trio.TooSlowError, TypeError, ValueError) as exc:
                log.warning("could not read the transmitter balance: %s", exc)
            else:
                was_enough = self.transmitter_balance is None or self.transmitter_balance >= minimum
                if balance < minimum and was_enough:
                    log.warning("transmitter %s balance %.6g ETH is below transmit.min_balance_eth (%s): fund it",
                                address, balance / 10**18, self.config.transmit.min_balance_eth)  # fmt: skip
                self.transmitter_balance = balance
                self.metrics.transmitter_balance_wei.set(balance)
            await trio.sleep(self.config.chain.probe_interval)

    def make_validator(self, validator: Any) -> Any:
        """Return the gossip topic validator (the committee's; test-only faults override)."""
        return validator

    async def discover_peers(self) -> list[str]:
        """Return the multiaddrs of the committee members registered on chain (dialed besides the bootstrap list)."""
        return await run_sync(read_peer_addresses, self.client, self.deployment, self.committee.members, timeout=30.0)

    async def run_extra(self) -> None:
        """Run additional services beside the node's own (none; test-only faults override)."""

    # --- API providers ------------------------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """Return the node's health for /health."""
        peers = len(self.gossip.peers()) if self.gossip is not None else 0
        max_lag = 4 * self.committee.round_period + self.committee.finality_depth + 4
        return assess_health(self.head, self.last_attested, peers, min_peers=1, max_lag_blocks=max_lag,
                             balance_wei=self.transmitter_balance,
                             min_balance_wei=self.config.transmit.min_balance_wei)  # fmt: skip

    def margin(self, account: bytes) -> MarginProof | None:
        """Return ``account``'s values in the latest attested round with its Merkle proof, for /v1/margin."""
        tree = self.attested_tree
        if tree is None or self.last_attested is None:
            return None
        try:
            leaf = tree.leaf_of(account)
        except PmoracleError:
            return None
        return MarginProof(leaf, self.last_attested, tree.root, tuple(tree.proof(account)))

    # --- the whole node -----------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until cancelled; report the API port when all are ready."""
        from pmoracle.p2p.libp2p_gossip import GossipConfig, Libp2pGossip
        from pmoracle.p2p.validator import ReportValidator

        validator = self.make_validator(ReportValidator(self.network, self.committee))
        gossip_config = GossipConfig(network=self.network, listen=self.config.p2p.listen,
                                     bootstrap=self.config.p2p.bootstrap)  # fmt: skip
        # the identity key file is secp256k1 (pmoracle keys); its peer id is what the registry advertises
        from libp2p.crypto.secp256k1 import create_new_key_pair

        self.gossip = Libp2pGossip(gossip_config, create_new_key_pair(self.identity.p2p_secret), validator)
        events_send, events_recv = trio.open_memory_channel[Any](64)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.gossip.run)
                self.reports = ReportGossip(self.gossip, self.network)
                await nursery.start(self.reports.run)
                for address in await self.discover_peers():
                    if self.gossip.peer_id not in address:
                        self.gossip.add_peer(address)
                nursery.start_soon(self.run_gossip_consumer)
                await nursery.start(self.run_round_worker)
                await nursery.start(
                    lambda task_status: run_block_watcher(
                        self.client, poll_interval=self.config.chain.poll_interval,
                        finality_depth=self.committee.finality_depth, send_channel=events_send,
                        task_status=task_status,
                    )
                )  # fmt: skip
                nursery.start_soon(self._follow_chain, events_recv)
                nursery.start_soon(self.run_ticker)
                nursery.start_soon(self.run_endpoint_probe)
                nursery.start_soon(self.run_balance_watch)
                nursery.start_soon(self.run_extra)
                port = await nursery.start(
                    lambda task_status: run_api(
                        self.config.api.host, self.config.api.port, metrics=self.metrics, health=self.health,
                        margin=self.margin, task_status=task_status,
                    )
                )  # fmt: skip
                log.info("node 0x%s ready: api port %d, peer %s", self.identity.signing_address.hex(), port,
                         self.gossip.peer_id)  # fmt: skip
                task_status.started(port)
        finally:
            self.gossip.stop()
            self.protection.close()
            self.archive.close()
            self.progress.close()

    async def _follow_chain(self, events: trio.MemoryReceiveChannel[Any]) -> None:
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


def load_node(config: LocalConfig, password: bytes, *, node_class: type[SolverNode] | None = None) -> SolverNode:
    """Return a node ready to run: keys unlocked, chain reached, committee read and start-up checks passed.

    Args:
        config: the checked local configuration.
        password: the key files' password.
        node_class: a SolverNode subclass to build instead (the test-only fault injector's entry point uses it).

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
    require_startup_ok(config, committee, params.params_hash, identity.signing_address)
    cls = node_class or SolverNode
    return cls(config, identity, client=client, deployment=deployment, committee=committee, params=params)
