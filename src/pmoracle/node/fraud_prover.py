"""The node proves a wrong attested round by itself (issue 14 item 5): the background prover service.

When a round is attested on chain whose report digest differs from the one this node computed for the same
(configDigest, B) at the same canonical block hash (the pure decision: ``consensus.fraud_watch``), the node tries to
prove it, as ``pmoracle dispute prove`` does:

1. the attested leaves and risk-array rows come from the committee members' APIs the operator listed in
   ``dispute.peer_apis`` (the chain holds only roots; the whole round in one request, ``/v1/leaves/B``); the first
   source whose leaves rebuild the attested accounts root, and whose rows rebuild the attested risk-array root when
   this node's own rows do not, is used;
2. ``find_fraud_proof`` recomputes the round from the chain and finds an aggregation proof, else a pricing challenge;
3. the node's transmitter posts it (``submit_fraud_proof`` / ``submit_pricing_challenge``).

It runs beside the rounds, never on their path: the round worker and the chain follower hand rounds over through a
memory channel of ``QUEUE_SIZE`` slots (a full one drops the round, logged and counted as an error), one proof runs
at a time in a worker thread under ``dispute.prove_timeout``, and every failure is logged and counted in
``pmoracle_fraud_proofs_total{result}``, never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import trio

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ContractError
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.commitments import RiskArrayTree
from pmoracle.consensus.fraud_watch import AttestedDigest, FraudWatchState, ProofDecision, on_attested_round
from pmoracle.consensus.merkle import AccountLeaf
from pmoracle.consensus.report import Domain, Report, SignedReport, compute_report_digest
from pmoracle.errors import PmoracleError
from pmoracle.node.abc import AttestedRound
from pmoracle.node.dispute import (
    ClaimedLeaf,
    ClaimedRows,
    DisputeError,
    SlashOutcome,
    fetch_attested_leaves,
    fetch_node_rows,
    find_fraud_proof,
    leaves_prove_root,
    read_attested_report,
    slash_frost_signers,
    submit_fraud_proof,
    submit_pricing_challenge,
)
from pmoracle.node.metrics import NodeMetrics
from pmoracle.risk.params import RiskParams
from pmoracle.trio_types import TaskStatus

log = logging.getLogger("pmoracle.node")

QUEUE_SIZE = 4  # rounds waiting for the prover; a wrong round every round would otherwise pile up without bound
PEER_TIMEOUT = 10.0  # seconds per request to a peer's API


# the members' signed reports of a round's attested digest this node holds, read when asked (the node's archive)
SignedReports = Callable[[], Sequence[SignedReport]]
_Offer = tuple[AttestedRound, Report, SignedReports | None]  # a round queued for the prover


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    """What the prover did about one round: ``result`` is the metric's label (proven | refused | unprovable |
    error)."""

    block_number: int
    result: str
    detail: str
    slashed: tuple[SlashOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class AttestedSource:
    """A peer API whose leaves verify against the attested root (and whose rows rebuild it, when needed)."""

    url: str
    leaves: tuple[ClaimedLeaf, ...]
    rows: ClaimedRows | None  # None: this node's own rows are the attested ones


def select_source(
    peer_apis: Sequence[str],
    attested: AttestedRound,
    report: Report,
    accounts: Sequence[bytes],
    rows_needed: bool,
    *,
    timeout: float = PEER_TIMEOUT,
) -> AttestedSource | None:
    """Return the first of ``peer_apis`` that serves round ``attested``'s leaves, proven against its accounts root,
    and (with ``rows_needed``) rows that rebuild the report's risk-array root; None when none does.

    The leaves come in one request per peer, the whole round by block (``/v1/leaves/B``: any round the peer still
    keeps, not only its latest attested one), and must rebuild the accounts root; a peer without that route is
    asked ``/v1/margin`` for each of ``accounts`` (each leaf's proof must verify). A peer that cannot be reached,
    keeps no such round, serves another round, or serves a tree that is not the attested one is skipped with a log
    line (an honest peer serves its own tree, which is not the lying one).
    """
    block = attested.block_number
    for url in peer_apis:
        try:
            leaves = fetch_attested_leaves(url, accounts, block, timeout=timeout)
            rows = fetch_node_rows(url, block, timeout=timeout) if rows_needed else None
        except DisputeError as exc:
            log.info("round %d: peer API %s skipped: %s", block, url, exc)
            continue
        if not leaves:
            log.info("round %d: peer API %s serves no leaf of the round", block, url)
            continue
        if not leaves_prove_root(attested.accounts_root, leaves):
            log.info("round %d: peer API %s serves leaves that are not the attested tree", block, url)
            continue
        if rows_needed and (rows is None or RiskArrayTree(rows.rows).root != report.risk_arrays_root):
            log.info("round %d: peer API %s serves no rows that rebuild the attested riskArraysRoot", block, url)
            continue
        return AttestedSource(url, tuple(leaves), rows)
    return None


class FraudProver:
    """The node's fraud-proof service: decides on each attested round, proves the wrong ones in the background."""

    def __init__(
        self,
        client: ChainClient,
        deployment: Deployment,
        params: RiskParams,
        transmitter: Transmitter,
        metrics: NodeMetrics,
        *,
        peer_apis: Sequence[str],
        timeout: float,
        members: Sequence[bytes] = (),
    ) -> None:
        """Args:
        client: the JSON-RPC client (the recomputation's reads).
        deployment: the contracts.
        params: the committee's risk parameters (the node's own document).
        transmitter: the node's transmitter account (pays the proof's gas, receives the reporter's reward).
        metrics: counts ``pmoracle_fraud_proofs_total{result}``.
        peer_apis: base URLs of committee members' APIs to fetch the attested leaves and rows from, tried in order.
        timeout: seconds one round's proof may take (fetching, recomputing, the transaction) before it is abandoned.
        members: the committee's signing addresses by index: after proving a FROST-attested round (whose proof
            slashes nobody), each member whose own signed report of the attested digest the node holds is slashed
            with ``slashFrostSigner``.
        """
        self.client = client
        self.deployment = deployment
        self.params = params
        self.transmitter = transmitter
        self.metrics = metrics
        self.peer_apis = tuple(peer_apis)
        self.timeout = timeout
        self.members = tuple(members)
        self.domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
        self.state = FraudWatchState()
        self._send, self._recv = trio.open_memory_channel[_Offer](QUEUE_SIZE)

    def offer(self, attested: AttestedRound, own: Report, signed: SignedReports | None = None) -> ProofDecision:
        """Decide on ``attested`` against this node's own report of the round; queue it for proof when its digest
        differs at the canonical hash (once per round). ``signed`` reads the members' signed reports of the attested
        digest this node received (the evidence against a FROST round's signers), on trio's thread once the round is
        proven: reports still arriving when the round was attested are counted then. Never blocks."""
        digest = AttestedDigest((attested.config_digest, attested.block_number), attested.report_digest,
                                attested.block_hash)  # fmt: skip
        self.state, decision = on_attested_round(
            self.state, digest, own.round_key, compute_report_digest(self.domain, own), own.block_hash
        )
        if decision is not ProofDecision.PROVE:
            return decision
        log.warning("round %d: the attested digest %s is not the one this node computed: proving it",
                    attested.block_number, attested.report_digest.hex()[:16])  # fmt: skip
        try:
            self._send.send_nowait((attested, own, signed))
        except trio.WouldBlock:
            self._count(ProofOutcome(attested.block_number, "error", f"the prover is busy ({QUEUE_SIZE} queued)"))
        return decision

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prove each queued round, one at a time; every outcome is logged and counted."""
        task_status.started()
        async for attested, own, signed in self._recv:
            self._count(await self.prove(attested, own, signed))

    async def prove(self, attested: AttestedRound, own: Report, signed: SignedReports | None = None) -> ProofOutcome:
        """Try to prove ``attested`` wrong and post the proof; return what happened (never raises)."""
        block = attested.block_number
        if not self.peer_apis:
            return ProofOutcome(block, "unprovable", "no dispute.peer_apis configured to fetch the attested leaves")
        try:
            outcome = await run_sync(self._prove, attested, own, time.monotonic() + self.timeout, timeout=self.timeout)
        except ContractError as exc:
            return ProofOutcome(block, "refused", f"the contract refused the proof: {exc.name}{exc.error_args}")
        except PmoracleError as exc:  # chain errors, the timeout, a peer or round that changed under the proof
            return ProofOutcome(block, "error", str(exc))
        except Exception as exc:  # a bug here must not stop the node: it is logged with its traceback
            log.exception("round %d: the fraud prover failed", block)
            return ProofOutcome(block, "error", f"{type(exc).__name__}: {exc}")
        if outcome.result == "proven" and not outcome.slashed and signed is not None:
            outcome = await self._slash_frost_signers(outcome, signed())
        return outcome

    async def _slash_frost_signers(self, outcome: ProofOutcome, reports: Sequence[SignedReport]) -> ProofOutcome:
        """After proving a FROST round (its certificate names nobody), slash each member by its own ECDSA report of
        the attested digest; a chain failure is logged, the round stays proven."""
        try:
            slashed = await run_sync(slash_frost_signers, self.transmitter, self.deployment, self.members, reports,
                                     timeout=self.timeout)  # fmt: skip
        except PmoracleError as exc:
            log.warning("round %d: proven, but its FROST signers could not be slashed: %s", outcome.block_number, exc)
            return outcome
        detail = f"{outcome.detail}; {len(slashed)} FROST signer(s) slashed by their own reports"
        return replace(outcome, detail=detail, slashed=tuple(slashed))

    def _prove(self, attested: AttestedRound, own: Report, deadline: float) -> ProofOutcome:
        """Find and post the proof of ``attested`` (blocking: chain reads, peer APIs, the recomputation); nothing is
        posted past ``deadline`` (``time.monotonic``), when the service has abandoned this thread and counted an
        error."""
        block = attested.block_number
        report = read_attested_report(self.client, self.deployment, attested)
        rows_needed = own.risk_arrays_root != report.risk_arrays_root
        chosen: list[AttestedSource | None] = []

        def claimed(_attested: AttestedRound, recomputed: Sequence[AccountLeaf]) -> Sequence[ClaimedLeaf]:
            if not chosen:  # find_fraud_proof asks twice: the peers are asked once
                accounts = [leaf.account for leaf in recomputed]
                chosen.append(select_source(self.peer_apis, attested, report, accounts, rows_needed))
            return () if chosen[0] is None else chosen[0].leaves

        def claimed_rows(_attested: AttestedRound) -> ClaimedRows | None:
            return None if not chosen or chosen[0] is None else chosen[0].rows

        found = find_fraud_proof(self.client, self.deployment, self.params, block, claimed, claimed_rows)
        source = chosen[0] if chosen else None
        if source is None:
            peers = len(self.peer_apis)
            return ProofOutcome(block, "unprovable", f"none of {peers} peer APIs serves the attested tree")
        if time.monotonic() > deadline:
            return ProofOutcome(block, "error", "past dispute.prove_timeout: not posted")
        if found.proof is not None:
            slashed = submit_fraud_proof(self.transmitter, self.deployment, found.report, found.proof)
            what = f"aggregation proof of 0x{found.proof.leaf.account.hex()} in scenario {found.proof.scenario}"
        elif found.challenge is not None:
            slashed = submit_pricing_challenge(self.transmitter, self.deployment, found.report, found.challenge)
            what = f"pricing challenge of instrument {found.challenge.row.key} entry {found.challenge.scenario}"
        else:
            counts = f"{len(found.understated)} understated, {len(found.changed)} changed since B"
            return ProofOutcome(block, "unprovable", f"nothing provable in the tree of {source.url} ({counts})")
        return ProofOutcome(block, "proven", f"{what}, from {source.url}", tuple(slashed))

    def _count(self, outcome: ProofOutcome) -> None:
        self.metrics.fraud_proofs.labels(result=outcome.result).inc()
        if outcome.result == "proven":
            if outcome.slashed:  # one transaction: every Slashed event carries its gas
                self.metrics.gas_spent.inc(outcome.slashed[0].gas_used)
            signers = ", ".join("0x" + s.signer.hex() for s in outcome.slashed)
            log.warning("round %d: proven wrong (%s); slashed %s", outcome.block_number, outcome.detail, signers)
        elif outcome.result == "refused":
            log.info("round %d: fraud proof not accepted: %s", outcome.block_number, outcome.detail)
        else:
            log.warning("round %d: fraud proof %s: %s", outcome.block_number, outcome.result, outcome.detail)
