"""Partition scenarios: f nodes cut off the majority (in the kernel, or by restarts on new ports), then healed."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from pmoracle.devnet import netlab
from pmoracle.devnet.cluster import Devnet, DevnetError, NodeProcess
from pmoracle.devnet.ports import reserve_port
from pmoracle.devnet.scenarios.common import (
    ROUND_TIMEOUT,
    ScenarioResult,
    fault_tolerance,
    log_since,
    read_metrics,
    restart,
    run_scenario,
)


def _signer_bits(devnet: Devnet, nodes: list[NodeProcess]) -> int:
    bits = 0
    for node in nodes:
        index = devnet.committee.index_of(bytes.fromhex(node.signing_address[2:]))
        if index is None:
            raise DevnetError(f"node {node.index} ({node.signing_address}) is not in the committee")
        bits |= 1 << index
    return bits


def _during_cut(
    devnet: Devnet, minority: list[NodeProcess], log_offsets: dict[int, int], attested: list[Any]
) -> dict[str, int]:
    """Return what the minority achieved during a cut: rounds attested with its signature, certificates it formed
    and attestations it sent (from its log since ``log_offsets``)."""
    bits = _signer_bits(devnet, minority)
    logs = [log_since(m, log_offsets[m.index]) for m in minority]
    return {
        "with_minority_signature": sum(1 for e in attested if int(e["args"]["signerBitmap"]) & bits),
        "minority_certificates": sum(log.count("quorum certificate formed") for log in logs),
        "minority_transmissions": sum(log.count("attested on chain in tx") for log in logs),
    }


def scenario_partition(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """Cut f nodes off the majority, then heal: in the kernel where the machine allows it, else by restarts.

    With unprivileged user namespaces (``netlab.unavailable_reason()`` is None) the scenario runs in a child
    process inside its own namespaces, each node in a network namespace of its own, and the cut is a routing rule
    that refuses every packet between the groups (:func:`scenario_partition_netns`). Without them it falls back to
    :func:`scenario_partition_by_restart`, and ``extra["partition"]["why_not_netns"]`` says why.
    """
    if netlab.inside():
        return scenario_partition_netns(run_dir, n, rounds)
    reason = netlab.unavailable_reason()
    if reason is not None:
        result = scenario_partition_by_restart(run_dir, n, rounds)
        result.extra["partition"]["why_not_netns"] = reason
        return result
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "partition-result.json"
    args = ["pmoracle.devnet.reliability", "partition-inside", str(n), str(rounds), str(run_dir), str(out)]
    done = netlab.run_inside(args, timeout=ROUND_TIMEOUT * (rounds + 6))
    if done.returncode != 0 or not out.exists():
        output = (done.stdout + done.stderr).decode(errors="replace")[-4000:]
        raise DevnetError(f"the partition scenario failed in its namespaces (exit {done.returncode}):\n{output}")
    return ScenarioResult(**json.loads(out.read_text()))


def scenario_partition_netns(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """Cut f nodes off the majority in the kernel (``NetLab.cut``), then heal (run inside ``netlab.run_inside``).

    Measured during the cut, from 2 s after it (packets already delivered are not the cut's): the rounds the
    majority attested, the reports the minority received (none when the minority is one node: nothing reaches it),
    and the certificates and transmissions of the minority (none: it is short of a quorum).
    """
    f = fault_tolerance(n)

    def messages_in(node: NodeProcess) -> float:
        return read_metrics(node).get("pmoracle_gossip_messages_in_total", 0.0)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        assert devnet.netlab is not None
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        majority, minority = devnet.nodes[: n - f], devnet.nodes[n - f :]
        devnet.netlab.cut([[m.index for m in majority], [m.index for m in minority]])
        settle = time.monotonic() + 2.0
        devnet.run_until(lambda d: time.monotonic() > settle, 10.0, what="the cut to settle")
        cut_block = int(devnet.client.block_number())
        before = {m.index: messages_in(m) for m in minority}
        offsets = {node.index: node.log_path.stat().st_size for node in minority}
        devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        during = devnet.events("MarginOracle", "RoundAttested", from_block=cut_block)
        received = {m.index: messages_in(m) - before[m.index] for m in minority}
        result.extra["partition"] = {
            "method": "network namespaces; ip rule prohibit between the groups",
            "minority": [m.index for m in minority],
            "rounds_attested": len(during),
            "minority_messages_in": sum(received.values()),
            **_during_cut(devnet, minority, offsets, during),
        }
        after_cut = {m.index: messages_in(m) for m in minority}
        devnet.netlab.heal()
        healed_at = time.monotonic()

        def rejoined(d: Devnet) -> bool:
            return all(messages_in(m) > after_cut[m.index] for m in minority)

        devnet.run_until(rejoined, ROUND_TIMEOUT * 2, what="the minority receiving the majority's reports")
        result.recover_seconds = time.monotonic() - healed_at

        def signed_by_minority(d: Devnet) -> bool:
            healed = d.events("MarginOracle", "RoundAttested", from_block=cut_block)
            return any(int(e["args"]["signerBitmap"]) & _signer_bits(d, minority) for e in healed)

        result.extra["after_heal_seconds_to_a_minority_signature"] = round(
            devnet.run_until(signed_by_minority, ROUND_TIMEOUT * 3, what="a round the minority signed again"), 1
        )

    return run_scenario("partition", n, f"{f} node(s) cut off in the kernel (own network namespaces), then healed",
                        run_dir, (), body, private_network=True)  # fmt: skip


def scenario_partition_by_restart(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """Cut f nodes off the majority without network namespaces, then heal.

    The cut: each minority node restarts on a new libp2p port (the registered on-chain address goes dead, so the
    majority cannot dial it) in the TEST-ONLY ``partitioned`` mode, which dials only its bootstrap list (the other
    minority nodes' new addresses), never the on-chain members. Healing restarts them normally on their old ports.
    """
    from pmoracle.devnet.cluster import _node_secret
    from pmoracle.node.keys import compute_peer_id

    f = fault_tolerance(n)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        minority = devnet.nodes[n - f :]
        originals = {node.index: (node.home / "node.toml").read_text() for node in minority}
        ports = {node.index: reserve_port() for node in minority}
        peer_ids = {node.index: compute_peer_id(_node_secret(devnet.options.seed, node.index, "p2p"))[0]
                    for node in minority}  # fmt: skip
        for node in minority:
            node.kill(signal.SIGTERM)
        for node in minority:
            others = [
                f'"/ip4/127.0.0.1/tcp/{ports[o.index]}/p2p/{peer_ids[o.index]}"' for o in minority if o is not node
            ]
            text = originals[node.index].replace(
                f'/tcp/{node.p2p_port}"', f'/tcp/{ports[node.index]}"\nbootstrap = [{", ".join(others)}]'
            )
            (node.home / "node.toml").write_text(text)
            node.fault = "partitioned"
            restart(devnet, node)
        offsets = {node.index: node.log_path.stat().st_size for node in minority}
        cut_block = int(devnet.client.block_number())
        devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        during = devnet.events("MarginOracle", "RoundAttested", from_block=cut_block)
        minority_peers = max((m.get("/health", timeout=1.0) or {}).get("peers", -1) for m in minority)
        result.extra["partition"] = {
            "method": "restart on new ports, no on-chain discovery",
            "minority": [m.index for m in minority],
            "rounds_attested": len(during),
            "minority_peers": minority_peers,
            **_during_cut(devnet, minority, offsets, during),
        }
        # heal
        for node in minority:
            node.kill(signal.SIGTERM)
            (node.home / "node.toml").write_text(originals[node.index])
            node.fault = None
        healed_at = time.monotonic()
        for node in minority:
            restart(devnet, node)

        def rejoined(d: Devnet) -> bool:
            return all(read_metrics(m).get("pmoracle_gossip_messages_in_total", 0) > 0 for m in minority)

        devnet.run_until(rejoined, ROUND_TIMEOUT * 2, what="the minority receiving the majority's reports")
        result.recover_seconds = time.monotonic() - healed_at
        result.extra["after_heal_seconds_for_2_rounds"] = round(devnet.run_rounds(2, ROUND_TIMEOUT * 2), 1)

    return run_scenario("partition", n, f"{f} node(s) cut off (new port, no on-chain discovery), then healed",
                        run_dir, (), body)  # fmt: skip
