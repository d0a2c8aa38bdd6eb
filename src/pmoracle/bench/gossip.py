"""Gossip benchmark: n real libp2p node processes on this machine exchanging signed reports round after round.

For each committee size n it starts n ``peer_demo`` processes (127.0.0.1, one TCP port each), starts their rounds
at the same wall-clock instant, and measures per round:

- latency: from the first signature (earliest ``t_sign`` of any node) to a quorum certificate at every node
  (latest ``t_cert``), and to the full signature set at every node (latest ``t_complete``);
- bytes each node wrote to its libp2p TCP connections, and its CPU time, between signing and holding every
  signature;

and, in this process, the topic validator's throughput (decode + membership + EIP-712 signature recovery).
With ``--frost`` every round is also signed with FROST after the ECDSA quorum (``peer_demo --frost``, docs/frost.md)
and the figures add what FROST adds to a round: from a quorum certificate at every node (latest ``t_cert``) to the
FROST signature at every node (latest ``t_frost``), and the rounds whose signature aggregated everywhere.
Run it with ``pmoracle bench gossip [--ns 4 7 16] [--rounds 5] [--frost]``; figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from pmoracle.consensus.report import sign_report
from pmoracle.p2p.codec import SignedReportMessage, encode_message
from pmoracle.p2p.validator import ReportValidator
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.demo_cluster import DemoCluster


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


def measure_validator_throughput(n: int = 16, messages: int = 2000) -> dict[str, float]:
    """Return messages/s of the topic validator on valid member reports and on garbage, in this process."""
    committee = make_test_committee(n)
    validator = ReportValidator(committee.network, committee.config)
    payloads = [
        encode_message(
            SignedReportMessage(
                committee.network,
                sign_report(committee.network.domain, committee.report(1000 + 10 * i), committee.signing_keys[i % n]),
            )
        )
        for i in range(messages)
    ]
    start = time.perf_counter()
    accepted = sum(validator(p).accepted for p in payloads)
    valid_s = time.perf_counter() - start
    if accepted != messages:
        raise RuntimeError(f"validator accepted {accepted}/{messages} valid messages")
    garbage = [bytes([0x9C]) + p[1:-1] for p in payloads]  # truncated: fails in the codec
    start = time.perf_counter()
    rejected = sum(not validator(p).accepted for p in garbage)
    garbage_s = time.perf_counter() - start
    if rejected != messages:
        raise RuntimeError(f"validator rejected {rejected}/{messages} garbage messages")
    return {"valid_per_s": messages / valid_s, "garbage_per_s": messages / garbage_s, "n": n}


def run_committee(
    n: int, rounds: int, round_interval: float, republish_interval: float, timeout: float, frost: bool = False
) -> dict[str, Any]:
    """Run ``rounds`` rounds on ``n`` real node processes and return the per-round figures (``frost``: with FROST
    signing after each quorum)."""
    with tempfile.TemporaryDirectory(prefix="pmoracle-bench-gossip-") as data_dir:
        return _run_committee(n, rounds, round_interval, republish_interval, timeout, data_dir if frost else None)


def _run_committee(
    n: int, rounds: int, round_interval: float, republish_interval: float, timeout: float, frost_dir: str | None
) -> dict[str, Any]:
    args = [
        f"--rounds={rounds}",
        f"--round-interval={round_interval}",
        f"--republish-interval={republish_interval}",
        "--wait-start",
        "--linger=1",
        "--connect-timeout=120",
        f"--round-timeout={max(30.0, round_interval * 4)}",
    ]
    if frost_dir is not None:
        args += ["--frost", f"--data-dir={frost_dir}", f"--frost-timeout={round_interval}"]
    cluster = DemoCluster(n, args)
    started = time.time()
    try:
        cluster.start_all()
        connected = cluster.wait_for(lambda e: e["event"] == "connected", n, timeout=timeout)
        connect_s = time.time() - started
        t0 = time.time() + 1.0
        for index in range(n):
            cluster.send(index, f"start {t0}")
        events = cluster.wait_for(
            lambda e: e["event"] == "round", n * rounds, timeout=timeout + rounds * round_interval
        )
        frost_events = []
        if frost_dir is not None:
            frost_events = cluster.wait_for(
                lambda e: e["event"] == "frost", n * rounds, timeout=timeout + rounds * round_interval
            )
        stats = cluster.wait_for(lambda e: e["event"] == "stats", n, timeout=timeout)
    finally:
        cluster.stop()
    by_block: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_block.setdefault(event["block"], []).append(event)
    cert_latency, complete_latency = [], []
    for block_events in by_block.values():
        first_signature = min(e["t_sign"] for e in block_events)
        if all(e["t_cert"] is not None for e in block_events):
            cert_latency.append(max(e["t_cert"] for e in block_events) - first_signature)
        complete_latency.append(max(e["t_complete"] for e in block_events) - first_signature)
    figures = {
        "n": n,
        "rounds": rounds,
        "round_interval_s": round_interval,
        "republish_interval_s": republish_interval,
        "startup_to_connected_s": connect_s,
        "connected_peers_min": min(e["peers"] for e in connected),
        "rounds_complete": sum(e["complete"] for e in events),
        "cert_latency_median_s": statistics.median(cert_latency) if cert_latency else None,
        "cert_latency_p95_s": _percentile(cert_latency, 0.95) if cert_latency else None,
        "complete_latency_median_s": statistics.median(complete_latency),
        "complete_latency_p95_s": _percentile(complete_latency, 0.95),
        "bytes_per_node_round_mean": statistics.mean(e["tcp_bytes_sent"] for e in events),
        "cpu_ms_per_node_round_mean": 1000 * statistics.mean(e["cpu_s"] for e in events),
        "max_rss_mib_mean": statistics.mean(s["max_rss_kib"] for s in stats) / 1024,
        "rejections": sum(sum(s["rejections"].values()) for s in stats),
    }
    if frost_dir is not None:
        figures.update(compute_frost_figures(frost_events))
    return figures


def compute_frost_figures(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Return what FROST adds per round: latest FROST signature minus latest ECDSA certificate over the nodes."""
    by_block: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_block.setdefault(event["block"], []).append(event)
    added = [
        max(e["t_frost"] for e in block_events) - max(e["t_cert"] for e in block_events)
        for block_events in by_block.values()
        if all(e["t_frost"] is not None and e["t_cert"] is not None for e in block_events)
    ]
    return {
        "frost_rounds_signed": len(added),
        "frost_added_median_s": statistics.median(added) if added else None,
        "frost_added_p95_s": _percentile(added, 0.95) if added else None,
        "frost_second_attempts": sum(e["attempt"] == 1 for e in events),
    }


def run_gossip_bench(
    ns: tuple[int, ...] = (4, 7, 16), rounds: int = 5, connect_timeout: float = 180.0, frost: bool = False
) -> dict[str, Any]:
    """Return the gossip benchmark figures for each committee size in ``ns`` plus the validator throughput.

    Args:
        ns: committee sizes; each runs as that many node processes on 127.0.0.1.
        rounds: rounds per committee size (median and p95 are over these).
        connect_timeout: seconds the processes may take to start and connect.
        frost: also sign every round with FROST after its quorum, and measure what that adds.
    """
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "python": sys.version.split()[0]},
        "validator": measure_validator_throughput(),
        "committees": [],
    }
    for n in ns:
        # Rounds must not overlap, and re-publication must not saturate the CPU when n processes share the machine
        # (py-libp2p spends several ms CPU per message received; re-publication backs off from this interval).
        round_interval = max(2.0, n / 2)
        republish_interval = max(1.0, n / 8)
        results["committees"].append(
            run_committee(n, rounds, round_interval, republish_interval, connect_timeout, frost)
        )
    results["machine"]["loadavg_1m_after"] = os.getloadavg()[0]
    return results


def format_gossip_table(results: dict[str, Any]) -> str:
    """Return the benchmark results as a plain-text table."""

    def fmt(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
        return "-" if value is None else f"{value * scale:.{digits}f}"

    lines = [
        f"machine: {results['machine']['cpus']} CPUs, load {results['machine']['loadavg_1m']:.1f} before / "
        f"{results['machine']['loadavg_1m_after']:.1f} after",
        f"validator: {results['validator']['valid_per_s']:.0f} valid msg/s, "
        f"{results['validator']['garbage_per_s']:.0f} garbage msg/s (n={results['validator']['n']})",
        "",
        f"{'n':>3} {'rounds ok':>9} {'cert med ms':>11} {'cert p95 ms':>11} {'all med ms':>10} {'all p95 ms':>10} "
        f"{'KiB/node/rnd':>12} {'CPU ms/node/rnd':>15} {'RSS MiB':>7} {'startup s':>9}",
    ]
    for c in results["committees"]:
        lines.append(
            f"{c['n']:>3} {c['rounds_complete']:>4}/{c['n'] * c['rounds']:<4} "
            f"{fmt(c['cert_latency_median_s'], 1000):>11} {fmt(c['cert_latency_p95_s'], 1000):>11} "
            f"{fmt(c['complete_latency_median_s'], 1000):>10} {fmt(c['complete_latency_p95_s'], 1000):>10} "
            f"{fmt(c['bytes_per_node_round_mean'], 1 / 1024, 1):>12} {fmt(c['cpu_ms_per_node_round_mean'], 1, 1):>15} "
            f"{c['max_rss_mib_mean']:>7.0f} {c['startup_to_connected_s']:>9.1f}"
        )
    frost = [c for c in results["committees"] if "frost_rounds_signed" in c]
    if frost:
        lines += ["", f"{'n':>3} {'FROST rounds':>12} {'added med ms':>12} {'added p95 ms':>12} {'2nd attempts':>12}"]
        for c in frost:
            lines.append(
                f"{c['n']:>3} {c['frost_rounds_signed']:>6}/{c['rounds']:<5} "
                f"{fmt(c['frost_added_median_s'], 1000):>12} {fmt(c['frost_added_p95_s'], 1000):>12} "
                f"{c['frost_second_attempts']:>12}"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser``."""
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 7, 16], help="committee sizes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--frost", action="store_true", help="also sign every round with FROST and measure it")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its table."""
    results = run_gossip_bench(tuple(args.ns), args.rounds, frost=args.frost)
    print(format_gossip_table(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pmoracle.bench.gossip``."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.bench.gossip", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
