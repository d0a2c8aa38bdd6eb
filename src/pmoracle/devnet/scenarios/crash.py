"""Crash scenarios: ``kill -9`` of nodes at the worst moments of a round, and restarts on their data directories."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from pmoracle.consensus.rounds import compute_round_key, compute_transmission_schedule
from pmoracle.devnet.cluster import Devnet, NodeProcess
from pmoracle.devnet.scenarios.common import (
    ROUND_TIMEOUT,
    ScenarioResult,
    check_single_digest,
    fault_tolerance,
    protection_records,
    read_metrics,
    restart,
    run_scenario,
)


def wait_round_in_progress(devnet: Devnet) -> int:
    """Run the loop until an anchor block has just become final and is not attested yet; return the anchor."""
    period, depth = devnet.options.round_period, devnet.options.finality_depth
    state: dict[str, int] = {}

    def in_progress(d: Devnet) -> bool:
        head = int(d.client.block_number())
        anchor = head - depth
        last = d.attested[-1].block_number if d.attested else 0
        if anchor > 0 and anchor % period == 0 and anchor > last:
            state["anchor"] = anchor
            return True
        return False

    devnet.run_until(in_progress, ROUND_TIMEOUT, what="a round in progress")
    return state["anchor"]


def scheduled_transmitter(devnet: Devnet, anchor: int) -> NodeProcess:
    """Return the node in position 0 of ``anchor``'s transmission schedule."""
    key = compute_round_key(devnet.committee.digest(), anchor)
    first = compute_transmission_schedule(key, devnet.committee)[0]
    return next(node for node in devnet.nodes if bytes.fromhex(node.signing_address[2:]) == first)


def scenario_crash(run_dir: Path, n: int = 4, down_rounds: int = 1) -> ScenarioResult:
    """kill -9 of a node mid-round, of the round's scheduled transmitter, and of f nodes at once; restart each.

    Measures the time from each kill to the next attested round; afterwards checks that no node's
    slashing-protection store and no archive holds two digests for one round of one signer.
    """
    f = fault_tolerance(n)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        recoveries: list[float] = []
        restarted: list[NodeProcess] = []
        victims_of: list[tuple[str, Callable[[int], list[NodeProcess]]]] = [
            ("mid-round", lambda anchor: [devnet.nodes[1]]),
            ("transmitter", lambda anchor: [scheduled_transmitter(devnet, anchor)]),
            (f"{f} at once", lambda anchor: devnet.nodes[n - f :]),
        ]
        for label, pick in victims_of:
            anchor = wait_round_in_progress(devnet)
            victims = pick(anchor)
            killed_at = time.monotonic()
            for node in victims:
                node.kill(signal.SIGKILL)
            seen = len(devnet.attested)

            def next_attested(d: Devnet, seen: int = seen) -> bool:
                return len(d.attested) > seen

            devnet.run_until(next_attested, ROUND_TIMEOUT, what=f"a round after {label}")
            recoveries.append(time.monotonic() - killed_at)
            killed = {"what": label, "nodes": [v.index for v in victims], "anchor": anchor,
                      "next_attested": devnet.attested[-1].block_number}  # fmt: skip
            result.extra.setdefault("killed", []).append(killed)
            devnet.run_rounds(down_rounds, ROUND_TIMEOUT * down_rounds)
            for node in victims:
                restart(devnet, node)
                restarted.append(node)
        devnet.run_rounds(2, ROUND_TIMEOUT * 2)

        def restarted_sign(d: Devnet) -> bool:
            return all(read_metrics(node).get("pmoracle_rounds_signed_total", 0) > 0 for node in restarted)

        devnet.run_until(restarted_sign, ROUND_TIMEOUT * 2, what="every restarted node signing again")
        result.recover_seconds = max(recoveries)
        result.extra["recoveries"] = [round(r, 2) for r in recoveries]
        result.extra["restarted"] = sorted({node.index for node in restarted})
        result.extra["gaps"] = [
            (b.block_number - a.block_number) // devnet.options.round_period
            for a, b in zip(devnet.attested, devnet.attested[1:], strict=False)
        ]

    def after(devnet: Devnet, result: ScenarioResult) -> None:
        result.extra["double_digests"] = check_single_digest(devnet)
        result.extra["signed_after_last_kill"] = {
            node.index: max(protection_records(node), default=0) > result.extra["killed"][-1]["anchor"]
            for node in devnet.nodes
        }

    return run_scenario("crash", n, f"kill -9: 1 node mid-round, the transmitter, {f} at once; restart each",
                        run_dir, (), body, after)  # fmt: skip
