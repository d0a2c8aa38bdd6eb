"""TEST-ONLY fault injection: a solver node that misbehaves on purpose, by wrapping the interfaces handed to it.

Never reachable from a production config: ``node.toml`` and ``pmoracle node`` know nothing of it. It is started only
by the end-to-end tests and ``pmoracle devnet --faulty K:MODE``, through this module's hidden entry point::

    python -m pmoracle.devnet.faults --mode equivocate --config node-3/node.toml

The node is the production :class:`~pmoracle.node.daemon.SolverNode`; only its :class:`~pmoracle.node.daemon.NodePorts`
are wrapped. Modes (:data:`FAULT_MODES`):

- ``wrong-value``: a round computer that perturbs the leaves' root (:func:`perturbed_rounds`); the wrong report goes
  through the node's own slashing-protection path, so it is consistently wrong, one digest per round;
- ``equivocate``: a release step that delivers the honest signature and then signs a second, different report for
  the same round *without* the slashing-protection store and gossips it (:class:`EquivocatingRelease`);
- ``silent``: a release step that withholds every signature (:class:`WithholdingRelease`);
- ``slow``: a release step that delivers each signature ``--delay`` seconds late (:class:`DelayedRelease`; default:
  after the whole transmission schedule);
- ``partitioned``: an honest node cut off from the majority: peer discovery finds nobody, so it dials only its
  config's bootstrap list (the scenario also moves its listen port, so nobody dials it either);
- ``collude``: a round computer that understates the maintenance margin of the account with the largest one by
  ``COLLUDE_UNDERSTATEMENT`` and re-roots the leaves (:func:`colluding_rounds`); the tree it serves on its API is the
  wrong one, so every colluder computes, signs and serves the same wrong round: a colluding quorum attests it, and
  only a fraud proof (docs/dispute.md) can catch it;
- ``spam``: signs honestly and floods the topic with malformed, oversized, wrong-network and wrong-config messages
  and with reports signed by non-members or carrying bad signatures (its gossip endpoint validates with
  ``accept_all``, so the junk leaves it).

A faulty node never submits evidence against itself (:class:`SelfSparingChain`): an honest node's evidence is what the
scenarios measure. The protocol simulation (tests/unit/consensus/simulation.py) uses the same release wrappers.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import trio

from pmoracle import numba_cache
from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation, Equivocation, Evidence
from pmoracle.consensus.frost_evm import EvmSignature
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Report, SignedReport, sign_report
from pmoracle.errors import InputError
from pmoracle.node.abc import AttestedRound, ChainPort, DeliverSignature, RoundComputer, SignatureRelease
from pmoracle.node.daemon import NodePorts, NodeSetup, SolverNode, create_gossip, run_until_signalled
from pmoracle.node.round import RoundOutput
from pmoracle.p2p.abc import accept_all
from pmoracle.p2p.codec import MAX_MESSAGE_BYTES, NetworkId, SignedReportMessage, encode_message
from pmoracle.risk.params import RiskParams
from pmoracle.risk.policy import PolicyRound
from pmoracle.trio_types import TaskStatus

log = logging.getLogger("pmoracle.devnet.faults")

FAULT_MODES = ("wrong-value", "equivocate", "silent", "slow", "spam", "partitioned", "collude")
COLLUDE_UNDERSTATEMENT = (1, 2)  # collude: the largest maintenance margin is lowered by this fraction (num, den)
SPAM_INTERVAL = 0.05  # seconds between spam batches
EQUIVOCATION_REPUBLISH = 1.0  # seconds between re-publications of the second report
EQUIVOCATION_ROUNDS_KEPT = 2  # second reports of this many newest rounds are re-published
EQUIVOCATION_REPUBLISH_FOR = 60.0  # seconds a second report is re-published (rounds are attested well before)

PublishRaw = Callable[[bytes], Awaitable[None]]


def compute_perturbed_report(output: RoundOutput, nudge: int = 1) -> Report:
    """Return ``output.report`` with the root of leaves whose first initial margin is off by ``nudge``."""
    leaves = list(output.tree.leaves)
    if leaves:
        first = leaves[0]
        leaves[0] = replace(first, initial_margin=first.initial_margin + nudge)
    else:
        leaves = [AccountLeaf(account=bytes(19) + b"\x01", initial_margin=nudge, maintenance_margin=0, equity=0)]
    return replace(output.report, accounts_root=MerkleTree(leaves).root)


def compute_second_report(report: Report) -> Report:
    """Return a report for the same round key with a different root (an equivocation's second digest)."""
    return replace(report, accounts_root=bytes(b ^ 0xFF for b in report.accounts_root))


def perturbed_rounds(compute: RoundComputer) -> RoundComputer:
    """Return a round computer whose report carries a perturbed root (the tree behind /v1/margin stays honest)."""

    def compute_wrong(
        snapshot: ChainSnapshot, params: RiskParams, committee: CommitteeConfig, policy: PolicyRound | None
    ) -> RoundOutput:
        output = compute(snapshot, params, committee, policy)
        return replace(output, report=compute_perturbed_report(output))

    return compute_wrong


def compute_colluding_tree(tree: MerkleTree) -> MerkleTree:
    """Return ``tree`` with the largest maintenance margin (ties: the smallest account) lowered by
    COLLUDE_UNDERSTATEMENT, re-rooted; ``tree`` itself when no leaf has a positive maintenance margin."""
    leaves = list(tree.leaves)
    if not leaves:
        return tree
    target = min(range(len(leaves)), key=lambda i: (-leaves[i].maintenance_margin, leaves[i].account))
    leaf = leaves[target]
    if leaf.maintenance_margin <= 0:
        return tree
    num, den = COLLUDE_UNDERSTATEMENT
    leaves[target] = replace(leaf, maintenance_margin=leaf.maintenance_margin - leaf.maintenance_margin * num // den)
    return MerkleTree(leaves)


def colluding_rounds(compute: RoundComputer) -> RoundComputer:
    """Return a round computer whose report and served tree understate one account's maintenance margin (the same on
    every colluder: the computation is deterministic)."""

    def compute_colluding(
        snapshot: ChainSnapshot, params: RiskParams, committee: CommitteeConfig, policy: PolicyRound | None
    ) -> RoundOutput:
        output = compute(snapshot, params, committee, policy)
        tree = compute_colluding_tree(output.tree)
        return replace(output, tree=tree, report=replace(output.report, accounts_root=tree.root))

    return compute_colluding


class WithholdingRelease(SignatureRelease):
    """Never release a signature (the node still computes, records and collects)."""

    async def release(self, signed: SignedReport, deliver: DeliverSignature) -> None:
        """Drop ``signed``."""
        log.warning("fault silent: round %d: signature withheld", signed.report.block_number)


class DelayedRelease(SignatureRelease):
    """Release each signature ``delay`` seconds late; run :meth:`run` in a nursery first."""

    def __init__(self, delay: float) -> None:
        if delay < 0:
            raise InputError("delay", f"must be >= 0, got {delay}")
        self.delay = delay
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the late releases until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def release(self, signed: SignedReport, deliver: DeliverSignature) -> None:
        """Deliver ``signed`` after the delay, without holding up the caller."""
        if self._nursery is None:
            raise RuntimeError("DelayedRelease.run is not running")
        log.warning("fault slow: round %d: signature released in %.1f s", signed.report.block_number, self.delay)
        self._nursery.start_soon(self._release_later, signed, deliver)

    async def _release_later(self, signed: SignedReport, deliver: DeliverSignature) -> None:
        await trio.sleep(self.delay)
        log.warning("fault slow: round %d: releasing the signature now", signed.report.block_number)
        await deliver(signed)


@dataclass
class _Second:
    signed: SignedReport
    payload: bytes
    until: float


class EquivocatingRelease(SignatureRelease):
    """Deliver the honest signature, then sign and gossip a second report for the same round, bypassing slashing
    protection; :meth:`run` re-publishes the second reports of the newest rounds for a while."""

    def __init__(self, network: NetworkId, signing_key: bytes, publish: PublishRaw) -> None:
        """Args:
        network: the gossip network (and EIP-712 domain) the second report is signed and stamped for.
        signing_key: the node's report-signing key.
        publish: publishes an encoded message on the topic, around the node's own gossip layer.
        """
        self.network = network
        self.signing_key = signing_key
        self.publish = publish
        self.second: dict[int, _Second] = {}  # block -> the second signed report

    async def release(self, signed: SignedReport, deliver: DeliverSignature) -> None:
        """Deliver ``signed``, then publish a second signed report for its round."""
        await deliver(signed)
        block = signed.report.block_number
        other = compute_second_report(signed.report)
        second = sign_report(self.network.domain, other, self.signing_key)
        payload = encode_message(SignedReportMessage(self.network, second))
        self.second[block] = _Second(second, payload, trio.current_time() + EQUIVOCATION_REPUBLISH_FOR)
        for old in sorted(self.second)[:-EQUIVOCATION_ROUNDS_KEPT]:
            del self.second[old]
        log.warning("fault equivocate: round %d: second report root %s signed and gossiped", block,
                    other.accounts_root.hex()[:16])  # fmt: skip
        await self.publish(payload)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Re-publish the kept second reports every EQUIVOCATION_REPUBLISH seconds until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(EQUIVOCATION_REPUBLISH)
            now = trio.current_time()
            for block, second in list(self.second.items()):
                if now > second.until:
                    del self.second[block]
                else:
                    await self.publish(second.payload)


class SelfSparingChain(ChainPort):
    """A chain port that submits no evidence against ``me`` (everything else goes to ``inner``)."""

    def __init__(self, inner: ChainPort, me: bytes) -> None:
        self.inner = inner
        self.me = me

    async def transmit(self, certificate: QuorumCertificate, frost_signature: EvmSignature | None = None) -> None:
        """Post ``certificate`` (with its FROST signature, if any) through the wrapped port."""
        await self.inner.transmit(certificate, frost_signature)

    async def submit_evidence(self, evidence: Evidence) -> None:
        """Post ``evidence`` through the wrapped port unless it accuses ``me``."""
        match evidence:
            case Equivocation(a=a):
                signer = a.signer
            case Deviation(signed=signed):
                signer = signed.signer
        if signer != self.me:
            await self.inner.submit_evidence(evidence)

    async def read_latest_attested(self) -> AttestedRound | None:
        """Read through the wrapped port."""
        return await self.inner.read_latest_attested()

    async def read_ejected_members(self) -> tuple[bytes, int] | None:
        """Return the inner port's answer."""
        return await self.inner.read_ejected_members()


async def _no_peers() -> list[str]:
    return []


class FaultInjector:
    """One injected fault (see the module docstring): :meth:`wrap` the node's ports, then :meth:`run` beside it."""

    def __init__(self, mode: str, setup: NodeSetup, *, delay: float | None = None, seed: int = 0) -> None:
        """Args:
        mode: one of FAULT_MODES.
        setup: the loaded node.
        delay: the ``slow`` mode's lateness in seconds (default: after the whole transmission schedule).
        seed: the spam generator's seed.

        Errors:
            InputError: an unknown mode.
        """
        if mode not in FAULT_MODES:
            raise InputError("--mode", f"expected one of {', '.join(FAULT_MODES)}, got {mode!r}")
        self.mode = mode
        self.setup = setup
        default_delay = (setup.committee.n + 2) * setup.config.transmit.stage_delay + 2.0
        self.delay = default_delay if delay is None else delay
        self._rng = random.Random(seed)
        self.spam_sent: dict[str, int] = {}
        self.services: list[Callable[..., Awaitable[None]]] = []
        log.warning("FAULT INJECTION ACTIVE: mode %s (test-only)", mode)

    def wrap(self, ports: NodePorts) -> NodePorts:
        """Return ``ports`` with this mode's fault wrapped in (and evidence against this node never submitted)."""
        ports = replace(ports, chain=SelfSparingChain(ports.chain, self.setup.identity.signing_address))
        match self.mode:
            case "wrong-value":
                return replace(ports, compute_round=perturbed_rounds(ports.compute_round))
            case "silent":
                return replace(ports, release=WithholdingRelease())
            case "slow":
                slow = DelayedRelease(self.delay)
                self.services.append(slow.run)
                return replace(ports, release=slow)
            case "equivocate":
                publish = ports.gossip.publish
                key = self.setup.identity.signing_key
                equivocating = EquivocatingRelease(self.setup.network, key, lambda raw: _publish_quietly(publish, raw))
                self.services.append(equivocating.run)
                return replace(ports, release=equivocating)
            case "partitioned":
                return replace(ports, discover_peers=_no_peers)
            case "collude":
                return replace(ports, compute_round=colluding_rounds(ports.compute_round))
            case "spam":  # the unstarted committee-validating endpoint is simply dropped
                return replace(ports, gossip=create_gossip(self.setup, accept_all))
        raise InputError("--mode", f"unhandled fault mode {self.mode!r}")

    async def run(self, node: SolverNode, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the mode's background tasks beside ``node`` until cancelled (late releases, re-publication, spam)."""
        async with trio.open_nursery() as nursery:
            for service in self.services:
                await nursery.start(service)
            if self.mode == "spam":
                nursery.start_soon(self._spam, node)
            task_status.started()

    async def _spam(self, node: SolverNode) -> None:
        while True:
            await trio.sleep(SPAM_INTERVAL)
            batch = compute_spam_batch(self._rng, node.committee, node.network, node.executor.head or 0)
            for kind, payload in batch:
                await _publish_quietly(node.gossip.publish, payload)
                self.spam_sent[kind] = self.spam_sent.get(kind, 0) + 1


async def _publish_quietly(publish: PublishRaw, payload: bytes) -> None:
    try:
        await publish(payload)
    except Exception as exc:  # a fault injector never stops the node
        log.debug("fault publish failed: %s", exc)


def compute_spam_batch(
    rng: random.Random, committee: CommitteeConfig, network: NetworkId, head: int
) -> list[tuple[str, bytes]]:
    """Return one batch of bad gossip messages as (rejection reason the validator should give, payload)."""
    block = max(committee.round_period, head - head % committee.round_period)
    report = Report(
        config_digest=committee.digest(), block_number=block, block_hash=rng.randbytes(32),
        params_hash=committee.params_hash, accounts_root=rng.randbytes(32), account_count=rng.randrange(100),
        risk_arrays_root=rng.randbytes(32), market_hash=rng.randbytes(32),
    )  # fmt: skip
    outsider = sign_report(network.domain, report, rng.randbytes(31) + b"\x01")
    member = committee.members[rng.randrange(committee.n)]
    forged = SignedReport(report=report, signer=member, signature=outsider.signature)
    other_network = NetworkId(network.chain_id + 1, network.oracle)
    wrong_config = replace(report, config_digest=rng.randbytes(32))
    return [
        ("malformed", b"\xc1" + rng.randbytes(rng.randrange(1, 200))),  # 0xc1 is never valid msgpack
        ("oversize", rng.randbytes(MAX_MESSAGE_BYTES + 1 + rng.randrange(4096))),
        ("not-member", encode_message(SignedReportMessage(network, outsider))),
        ("bad-signature", encode_message(SignedReportMessage(network, forged))),
        ("wrong-network", encode_message(SignedReportMessage(other_network, outsider))),
        ("wrong-config", encode_message(SignedReportMessage(network, replace(outsider, report=wrong_config)))),
    ]


async def run_faulty_until_signalled(node: SolverNode, injector: FaultInjector) -> None:
    """Run ``node`` with ``injector``'s background tasks until SIGINT or SIGTERM."""
    async with trio.open_nursery() as nursery:
        await nursery.start(injector.run, node)
        await run_until_signalled(node)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    """The hidden entry point: run a faulty node from a node config until SIGINT/SIGTERM (test-only)."""
    # The devnet starts this module with its NUMBA_CACHE_DIR, which numba read before the imports above.
    numba_cache.configure()

    from pmoracle.config.local import add_config_arguments, load_local_config, overrides_from_args
    from pmoracle.errors import PmoracleError
    from pmoracle.node.daemon import create_ports, load_setup
    from pmoracle.node.keys import read_password
    from pmoracle.node.logs import configure_logging
    from pmoracle.node.metrics import create_node_metrics

    parser = argparse.ArgumentParser(prog="python -m pmoracle.devnet.faults", description="TEST-ONLY faulty node")
    parser.add_argument("--mode", required=True, choices=FAULT_MODES)
    parser.add_argument("--delay", type=float, default=None, help="slow mode: seconds a signature is held back")
    parser.add_argument("--seed", type=int, default=0)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = load_local_config(args.config, overrides=overrides_from_args(args))
        configure_logging(config.node.log_format, config.node.log_level)
        password = read_password(config.keys.password_file, config.keys.password_env)
        setup = load_setup(config, password)
        injector = FaultInjector(args.mode, setup, delay=args.delay, seed=args.seed)
        metrics = create_node_metrics()
        node = SolverNode(setup, injector.wrap(create_ports(setup, metrics)), metrics=metrics)
    except PmoracleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trio.run(run_faulty_until_signalled, node, injector)
    return 0


if __name__ == "__main__":
    sys.exit(main())
