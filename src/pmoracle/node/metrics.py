"""The node's Prometheus metrics, on a registry of its own (several nodes in one process do not clash).

Names follow Prometheus conventions: ``pmoracle_`` prefix, base units (seconds, gas, wei), ``_total`` on
counters (added by prometheus_client). RPC endpoint labels hold only scheme, host and port: provider URLs often
carry an API key in their path or query, and labels are public.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from pmoracle.risk.policy import PolicyRound
    from pmoracle.risk.stress import StressResult

# Round latency spans anchor-block-mined to attestation receipt: sub-second on a devnet, seconds on a real chain.
ROUND_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
# Risk compute of one round: milliseconds for hundreds of accounts, seconds for a large book.
RISK_COMPUTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Outcomes of the background check of an incremental snapshot: equal to the full read, different, or not checked
# (the full read failed or timed out, or a reorg replaced the block)
SNAPSHOT_CHECK_RESULTS = ("match", "mismatch", "error")
# Outcomes of the node's own proof of an attested round whose digest differs from its own (node/fraud_prover.py):
# posted and slashed, refused by the contract (another prover was first), nothing provable (no peer API serves the
# attested tree, or no leaf or entry is provably wrong), or not carried out (chain, peer, timeout, a full queue)
FRAUD_PROOF_RESULTS = ("proven", "refused", "unprovable", "error")
# Why held deviation evidence was dropped at its window (docs/dispute.md, "Slashing race")
EVIDENCE_DROP_REASONS = ("invalidated", "round_gone", "replaced", "error")
# How one of the node's own DKG runs ended (node/dkg_service.py): its share written (ok), a complaint, a
# disqualification or an unusable group key (failed), the deadline (timed_out), members seen in a later run
# (superseded), or an error of the node (writing the share, confirming it on chain)
DKG_RESULTS = ("ok", "failed", "timed_out", "superseded", "error")


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """Every metric of one node and the registry that exports them."""

    registry: CollectorRegistry
    rounds_computed: Counter  # rounds whose margins and root this node computed
    rounds_signed: Counter  # rounds this node signed (after the slashing-protection check)
    rounds_attested: Counter  # rounds seen attested on-chain (by any transmitter)
    certificates_formed: Counter  # quorum certificates this node formed (at most one per round)
    round_latency: Histogram  # seconds from this node seeing the anchor final to it seeing the round attested
    risk_compute_seconds: Histogram  # seconds of one round's risk computation
    snapshot_reads: Counter  # chain snapshots read, by kind (full | incremental)
    snapshot_mismatches: Counter  # checks that found an incremental snapshot wrong (= snapshot_checks{mismatch})
    snapshot_checks: Counter  # background checks of an incremental snapshot by a full read, by result
    gossip_messages_in: Counter  # gossip messages received
    gossip_messages_out: Counter  # gossip messages published
    gossip_messages_rejected: Counter  # received messages dropped, by reason (label "reason")
    peers: Gauge  # connected libp2p peers
    evidence_sent: Counter  # slashing-evidence transactions sent, by kind (equivocation | deviation)
    evidence_held: Gauge  # deviation evidence waiting for its round's deviation window
    evidence_dropped: Counter  # held deviation evidence dropped at its window, by reason
    fraud_proofs: Counter  # this node's proofs of attested rounds it computed otherwise, by result
    gas_spent: Counter  # gas units used by this node's transactions
    fees_paid_wei: Counter  # wei paid for this node's transactions (gas used x effective gas price)
    rpc_errors: Counter  # failed JSON-RPC calls, by endpoint (scheme://host:port) and kind
    rpc_endpoint_lag: Gauge  # blocks each endpoint was behind the best one at the last probe (-1: no answer)
    head_block: Gauge  # latest block number seen
    last_attested_round: Gauge  # anchor block number of the latest round attested on-chain
    transmitter_balance_wei: Gauge  # the transmitter account's balance at the last check
    insurance_fund_usd: Gauge  # the liquidation insurance fund's balance (negative: socialized loss)
    insurance_paid_usd: Gauge  # every subsidy the fund has paid to bidders of insolvent accounts
    # The standard stress of the parameters document run on each round's book (risk/stress.py, docs/stress.md)
    stress_round: Gauge  # anchor block of the last round stressed
    stress_cascade_depth: Gauge  # cascade steps that liquidated an account
    stress_shortfall_usd: Gauge  # subsidies the insurance fund would pay for the whole books
    stress_cover2_usd: Gauge  # the shortfall of the two largest defaulting accounts (Cover 2)
    # The adaptive policy ([policy], node/policy.py, docs/policy.md)
    policy_round: Gauge  # anchor block of the last round the policy was computed for
    policy_scan_range: Gauge  # the applied price scan range per underlying, a fraction of the price
    policy_stressed: Gauge  # 1 when the buffer's stress test held at the last sample, per underlying
    policy_vol_shift: Gauge  # the applied vol shift k per underlying ([policy.vol]; 0: the document's vol.shift)
    policy_checkpoints_refused: Counter  # stored checkpoints refused (corrupt, foreign, off the canonical chain)
    # FROST signing in the round (node/frost_service.py, docs/frost.md)
    attestations_sent: Counter  # this node's attestations that landed on chain, by scheme (frost | ecdsa)
    frost_signatures: Counter  # FROST signatures aggregated here (one per round at most)
    frost_rejected: Counter  # FROST messages dropped and signing requests refused, by reason
    frost_evidence: Counter  # invalid FROST shares archived as evidence
    frost_shares: Counter  # own FROST shares released, by path (report: with the own report; certificate: after it)
    # Committee changes and the node's own DKG (node/daemon.py, node/dkg_service.py, docs/operators.md)
    committee_version: Gauge  # the SolverRegistry committee version this node follows
    committee_changes: Counter  # new committee versions installed while running
    dkg_runs: Counter  # DKG runs this node took part in, by result
    dkg_complaints: Counter  # DKG complaints (raised or received) archived as evidence files
    dkg_confirmations: Counter  # group-key confirmations this node sent to SolverRegistry.confirmFrostKey

    def exposition(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)


def create_node_metrics(registry: CollectorRegistry | None = None) -> NodeMetrics:
    """Return a fresh :class:`NodeMetrics` on ``registry`` (a new private registry when None)."""
    registry = CollectorRegistry(auto_describe=True) if registry is None else registry
    p = "pmoracle_"
    return NodeMetrics(
        registry=registry,
        rounds_computed=Counter(p + "rounds_computed", "Rounds whose margins this node computed", registry=registry),
        rounds_signed=Counter(p + "rounds_signed", "Rounds this node signed", registry=registry),
        certificates_formed=Counter(
            p + "certificates_formed", "Quorum certificates this node formed", registry=registry
        ),
        rounds_attested=Counter(p + "rounds_attested", "Rounds seen attested on-chain", registry=registry),
        attestations_sent=_with_labels(
            Counter(
                p + "attestations_sent",
                "This node's attestations that landed, by scheme",
                ["scheme"],
                registry=registry,
            ),
            "scheme",
            ("frost", "ecdsa"),
        ),
        frost_signatures=Counter(p + "frost_signatures", "FROST signatures aggregated here", registry=registry),
        frost_rejected=Counter(
            p + "frost_rejected",
            "FROST messages dropped and signing requests refused, by reason",
            ["reason"],
            registry=registry,
        ),
        frost_evidence=Counter(p + "frost_evidence", "Invalid FROST shares archived as evidence", registry=registry),
        frost_shares=_with_labels(
            Counter(p + "frost_shares", "Own FROST shares released, by path", ["path"], registry=registry),
            "path",
            ("report", "certificate"),
        ),
        round_latency=Histogram(
            p + "round_latency_seconds",
            "Seconds from the anchor block being final (seen by this node) to the round seen attested on chain",
            buckets=ROUND_LATENCY_BUCKETS,
            registry=registry,
        ),
        risk_compute_seconds=Histogram(
            p + "risk_compute_seconds",
            "Seconds of one round's risk computation",
            buckets=RISK_COMPUTE_BUCKETS,
            registry=registry,
        ),
        snapshot_reads=Counter(p + "snapshot_reads", "Chain snapshots read, by kind", ["kind"], registry=registry),
        snapshot_mismatches=Counter(
            p + "snapshot_mismatches", "Incremental snapshots that differed from a full read", registry=registry
        ),
        snapshot_checks=_with_labels(
            Counter(
                p + "snapshot_checks",
                "Incremental snapshots checked against a full read of the same block, by result",
                ["result"],
                registry=registry,
            ),
            "result",
            SNAPSHOT_CHECK_RESULTS,
        ),
        gossip_messages_in=Counter(p + "gossip_messages_in", "Gossip messages received", registry=registry),
        gossip_messages_out=Counter(p + "gossip_messages_out", "Gossip messages published", registry=registry),
        gossip_messages_rejected=Counter(
            p + "gossip_messages_rejected", "Gossip messages dropped, by reason", ["reason"], registry=registry
        ),
        peers=Gauge(p + "peers", "Connected libp2p peers", registry=registry),
        evidence_sent=Counter(p + "evidence_sent", "Slashing-evidence transactions sent", ["kind"], registry=registry),
        evidence_held=Gauge(
            p + "evidence_held", "Deviation evidence waiting for its deviation window", registry=registry
        ),
        evidence_dropped=_with_labels(
            Counter(
                p + "evidence_dropped",
                "Held deviation evidence dropped at its window (round invalidated, gone or replaced), by reason",
                ["reason"],
                registry=registry,
            ),
            "reason",
            EVIDENCE_DROP_REASONS,
        ),
        fraud_proofs=_with_labels(
            Counter(
                p + "fraud_proofs",
                "Proofs of attested rounds whose digest differs from this node's, by result",
                ["result"],
                registry=registry,
            ),
            "result",
            FRAUD_PROOF_RESULTS,
        ),
        gas_spent=Counter(p + "gas_spent", "Gas units used by this node's transactions", registry=registry),
        fees_paid_wei=Counter(p + "fees_paid_wei", "Wei paid for this node's transactions", registry=registry),
        rpc_errors=Counter(
            p + "rpc_errors", "Failed JSON-RPC calls, by endpoint and kind", ["endpoint", "kind"], registry=registry
        ),
        rpc_endpoint_lag=Gauge(
            p + "rpc_endpoint_lag_blocks",
            "Blocks an RPC endpoint was behind the best one at the last probe (-1: no answer)",
            ["endpoint"],
            registry=registry,
        ),
        head_block=Gauge(p + "head_block", "Latest block number seen", registry=registry),
        last_attested_round=Gauge(
            p + "last_attested_round", "Anchor block of the latest attested round", registry=registry
        ),
        transmitter_balance_wei=Gauge(
            p + "transmitter_balance_wei", "Balance of the transmitter account at the last check", registry=registry
        ),
        insurance_fund_usd=Gauge(
            p + "insurance_fund_usd",
            "Liquidation insurance fund balance in USD (negative: a socialized loss)",
            registry=registry,
        ),
        insurance_paid_usd=Gauge(
            p + "insurance_paid_usd", "Subsidies the insurance fund has paid to bidders, in USD", registry=registry
        ),
        stress_round=Gauge(
            p + "stress_round", "Anchor block of the last round the standard stress ran on", registry=registry
        ),
        stress_cascade_depth=Gauge(
            p + "stress_cascade_depth", "Liquidating steps of the standard stress's cascade", registry=registry
        ),
        stress_shortfall_usd=Gauge(
            p + "stress_shortfall_usd", "Insurance fund subsidies the standard stress needs, in USD", registry=registry
        ),
        stress_cover2_usd=Gauge(
            p + "stress_cover2_usd",
            "Standard stress shortfall of the two largest defaulting accounts, in USD",
            registry=registry,
        ),
        policy_round=Gauge(p + "policy_round", "Anchor block of the last round the policy ran for", registry=registry),
        policy_scan_range=Gauge(
            p + "policy_scan_range",
            "Adaptive price scan range applied, a fraction of the price",
            ["underlying"],
            registry=registry,
        ),
        policy_stressed=Gauge(
            p + "policy_stressed",
            "1 when the policy's stress test held at the last sample",
            ["underlying"],
            registry=registry,
        ),
        policy_vol_shift=Gauge(
            p + "policy_vol_shift",
            "Adaptive vol shift k applied at vol.tenor_days (0: the document's vol.shift)",
            ["underlying"],
            registry=registry,
        ),
        policy_checkpoints_refused=Counter(
            p + "policy_checkpoints_refused", "Policy checkpoints refused and recomputed from chain", registry=registry
        ),
        committee_version=Gauge(p + "committee_version", "Committee version this node follows", registry=registry),
        committee_changes=Counter(
            p + "committee_changes", "New committee versions installed while running", registry=registry
        ),
        dkg_runs=_with_labels(
            Counter(p + "dkg_runs", "DKG runs this node took part in, by result", ["result"], registry=registry),
            "result",
            DKG_RESULTS,
        ),
        dkg_complaints=Counter(p + "dkg_complaints", "DKG complaints archived as evidence files", registry=registry),
        dkg_confirmations=Counter(
            p + "dkg_confirmations", "Group-key confirmations sent to SolverRegistry", registry=registry
        ),
    )


_M = TypeVar("_M", Counter, Gauge)


def _with_labels(metric: _M, label: str, values: tuple[str, ...]) -> _M:
    """Return ``metric`` with a series for each of ``values`` from the start (at 0): a rule on a series that
    never appeared (``increase(...) == 0``) would never fire."""
    for value in values:
        metric.labels(**{label: value})
    return metric


def export_stress(metrics: NodeMetrics, block: int, result: StressResult) -> None:
    """Set the stress gauges from the standard stress of the round anchored at ``block``."""
    metrics.stress_round.set(block)
    metrics.stress_cascade_depth.set(result.cascade_depth)
    metrics.stress_shortfall_usd.set(result.shortfall / 10**18)
    metrics.stress_cover2_usd.set(result.cover2 / 10**18)


def export_policy(metrics: NodeMetrics, policy: PolicyRound) -> None:
    """Set the policy gauges from the policy of the round anchored at ``policy.block_number``."""
    from pmoracle.risk.policy import RANGE_SCALE

    metrics.policy_round.set(policy.block_number)
    for state in policy.states:
        metrics.policy_scan_range.labels(underlying=state.underlying).set(state.scan_range / RANGE_SCALE)
        metrics.policy_stressed.labels(underlying=state.underlying).set(1 if state.stressed else 0)
        metrics.policy_vol_shift.labels(underlying=state.underlying).set(state.vol_shift / RANGE_SCALE)


def endpoint_label(url: str) -> str:
    """Return ``scheme://host[:port]`` of an RPC URL: a label that never carries a key in path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "unknown"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme or 'unknown'}://{host}" + (f":{port}" if port else "")
