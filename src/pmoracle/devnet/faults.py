"""TEST-ONLY fault injection: a solver node that misbehaves on purpose.

Never reachable from a production config: ``node.toml`` and ``pmoracle node`` know nothing of it. It is started only
by the end-to-end tests and ``pmoracle devnet --faulty K:MODE``, through this module's hidden entry point::

    python -m pmoracle.devnet.faults --mode equivocate --config node-3/node.toml

Modes (:data:`FAULT_MODES`):

- ``wrong-value``: signs the root of perturbed leaves instead of the computed one, through the node's own
  slashing-protection path (so it is consistently wrong, one digest per round);
- ``equivocate``: signs the honest report through slashing protection and then a second, different report for the
  same round bypassing it, and gossips both (re-publishing the second until the round is attested);
- ``silent``: computes every round and never releases a signature;
- ``slow``: releases each signature ``--delay`` seconds late (default: after the whole transmission schedule);
- ``partitioned``: an honest node cut off from the majority: it dials only its config's bootstrap list, never the
  members registered on chain (the scenario also moves its listen port, so nobody dials it either);
- ``spam``: signs honestly and floods the topic with malformed, oversized, wrong-network and wrong-config messages
  and with reports signed by non-members or carrying bad signatures (its own outgoing validator lets them through).

A faulty node never submits evidence against itself (an honest node's evidence is what the scenarios measure).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from dataclasses import replace
from typing import Any

import trio

from pmoracle import numba_cache
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation, Equivocation, Evidence
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Report, SignedReport, sign_report
from pmoracle.errors import InputError
from pmoracle.node.daemon import SolverNode, run_until_signalled
from pmoracle.node.round import RoundOutput
from pmoracle.p2p.abc import Verdict
from pmoracle.p2p.codec import MAX_MESSAGE_BYTES, NetworkId, SignedReportMessage, encode_message

log = logging.getLogger("pmoracle.devnet.faults")

FAULT_MODES = ("wrong-value", "equivocate", "silent", "slow", "spam", "partitioned")
SPAM_INTERVAL = 0.05  # seconds between spam batches
EQUIVOCATION_REPUBLISH = 1.0  # seconds between re-publications of the second report


def compute_perturbed_report(output: RoundOutput, nudge: int = 1) -> Report:
    """Return ``output.report`` with the root of leaves whose first initial margin is off by ``nudge``."""
    leaves = list(output.tree.leaves)
    if leaves:
        first = leaves[0]
        leaves[0] = replace(first, initial_margin=first.initial_margin + nudge)
    else:
        leaves = [AccountLeaf(account=bytes(19) + b"\x01", initial_margin=nudge, maintenance_margin=0, equity=0)]
    return replace(output.report, accounts_root=MerkleTree(leaves).root)


class _AcceptAll:
    """An outgoing validator that lets everything through (the spammer's own publishes pass it first)."""

    def __call__(self, payload: bytes) -> Verdict:
        return Verdict.accept()


class FaultyNode(SolverNode):
    """A solver node with one injected fault (see the module docstring); set it with :meth:`configure_fault`."""

    mode: str = "silent"
    delay: float = 0.0

    def configure_fault(self, mode: str, *, delay: float | None = None, seed: int = 0) -> None:
        """Select the fault ``mode`` (one of FAULT_MODES); ``delay`` is the ``slow`` mode's lateness in seconds."""
        if mode not in FAULT_MODES:
            raise InputError("--mode", f"expected one of {', '.join(FAULT_MODES)}, got {mode!r}")
        self.mode = mode
        default_delay = (self.committee.n + 2) * self.config.transmit.stage_delay + 2.0
        self.delay = default_delay if delay is None else delay
        self._rng = random.Random(seed)
        self._second: dict[int, SignedReport] = {}  # equivocate: round -> the second signed report
        self.spam_sent: dict[str, int] = {}
        log.warning("FAULT INJECTION ACTIVE: mode %s (test-only)", mode)

    # --- the overridden hooks -----------------------------------------------------------------------------------

    def make_report(self, output: RoundOutput) -> Report:
        """Return the perturbed report in ``wrong-value`` mode, the computed one otherwise."""
        if self.mode == "wrong-value":
            return compute_perturbed_report(output)
        return output.report

    async def release_signature(self, signed: SignedReport) -> None:
        """Withhold, delay or double the signature according to the mode."""
        block = signed.report.block_number
        if self.mode == "silent":
            log.warning("fault silent: round %d: signature withheld", block)
            return
        if self.mode == "slow":
            log.warning("fault slow: round %d: signature released in %.1f s", block, self.delay)
            self._spawn(self._release_later, signed)
            return
        await super().release_signature(signed)
        if self.mode == "equivocate":
            # the second report for the same round key, signed WITHOUT the slashing-protection store
            other = self.make_second_report(signed.report)
            second = sign_report(self.domain, other, self.identity.signing_key)
            self._second[block] = second
            log.warning("fault equivocate: round %d: second report root %s signed and gossiped", block,
                        other.accounts_root.hex()[:16])  # fmt: skip
            await self._publish_raw(encode_message(SignedReportMessage(self.network, second)))

    def make_second_report(self, report: Report) -> Report:
        """Return a report for the same round key with a different root (the equivocation's second digest)."""
        return replace(report, accounts_root=bytes(b ^ 0xFF for b in report.accounts_root))

    async def discover_peers(self) -> list[str]:
        """Return no on-chain peers in ``partitioned`` mode (only the bootstrap list is dialed)."""
        return [] if self.mode == "partitioned" else await super().discover_peers()

    def make_validator(self, validator: Any) -> Any:
        """Return an accept-all outgoing validator in ``spam`` mode (so the junk leaves this node)."""
        return _AcceptAll() if self.mode == "spam" else validator

    async def _submit_evidence(self, evidence: Evidence) -> None:
        signer = evidence.a.signer if isinstance(evidence, Equivocation) else None
        if isinstance(evidence, Deviation):
            signer = evidence.signed.signer
        if signer == self.identity.signing_address:
            return  # a faulty node does not report itself
        await super()._submit_evidence(evidence)

    async def run_extra(self) -> None:
        """Run the mode's background task: re-publication of second reports, or the spam flood."""
        if self.mode == "equivocate":
            while True:
                await trio.sleep(EQUIVOCATION_REPUBLISH)
                for block, second in list(self._second.items()):
                    if self.last_attested is not None and block <= self.last_attested:
                        del self._second[block]
                        continue
                    await self._publish_raw(encode_message(SignedReportMessage(self.network, second)))
        elif self.mode == "spam":
            while True:
                await trio.sleep(SPAM_INTERVAL)
                for kind, payload in self.make_spam():
                    await self._publish_raw(payload)
                    self.spam_sent[kind] = self.spam_sent.get(kind, 0) + 1

    # --- helpers ------------------------------------------------------------------------------------------------

    async def _release_later(self, signed: SignedReport) -> None:
        await trio.sleep(self.delay)
        log.warning("fault slow: round %d: releasing the signature now", signed.report.block_number)
        await SolverNode.release_signature(self, signed)

    async def _publish_raw(self, payload: bytes) -> None:
        if self.gossip is None:
            return
        try:
            await self.gossip.publish(payload)
        except Exception as exc:  # a fault injector never stops the node
            log.debug("fault publish failed: %s", exc)

    def make_spam(self) -> list[tuple[str, bytes]]:
        """Return one batch of bad messages, each with the validator reason it should be rejected for."""
        return compute_spam_batch(self._rng, self.committee, self.network, self.head or 0)


def compute_spam_batch(
    rng: random.Random, committee: CommitteeConfig, network: NetworkId, head: int
) -> list[tuple[str, bytes]]:
    """Return one batch of bad gossip messages as (rejection reason the validator should give, payload)."""
    block = max(committee.round_period, head - head % committee.round_period)
    report = Report(
        config_digest=committee.digest(), block_number=block, block_hash=rng.randbytes(32),
        params_hash=committee.params_hash, accounts_root=rng.randbytes(32), account_count=rng.randrange(100),
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


def main(argv: list[str] | None = None) -> int:
    """The hidden entry point: run a faulty node from a node config until SIGINT/SIGTERM (test-only)."""
    # The devnet starts this module with its NUMBA_CACHE_DIR, which numba read before the imports above.
    numba_cache.configure()

    from pmoracle.config.local import add_config_arguments, load_local_config, overrides_from_args
    from pmoracle.errors import PmoracleError
    from pmoracle.node.daemon import load_node
    from pmoracle.node.keys import read_password
    from pmoracle.node.logs import configure_logging

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
        node = load_node(config, password, node_class=FaultyNode)
    except PmoracleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not isinstance(node, FaultyNode):
        raise TypeError("load_node did not build a FaultyNode")
    node.configure_fault(args.mode, delay=args.delay, seed=args.seed)

    trio.run(run_until_signalled, node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
