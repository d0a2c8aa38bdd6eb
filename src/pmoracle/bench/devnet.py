"""``pmoracle bench devnet``: round latency of a real devnet (anvil + N ``pmoracle node`` processes over libp2p).

For each committee size n it builds a devnet (:func:`pmoracle.devnet.cluster.build_devnet`), drives its world with
one block per second (:meth:`Devnet.step`: a market move, a few trades or an empty block, in turn), and measures
for each round:

- latency: the anchor block becomes final (the bench sees block anchor + finality depth, polling the head every
  20 ms) -> the transmitting node holds the attestation's receipt (its log line, ms timestamps); the bench itself
  reads ``MarginOracle.latestRound`` only every 0.2 s, to know when to stop, so that its own polling takes little
  of the CPU the nodes share;
- where it goes, from the nodes' own log lines (ISO timestamps with ms): detect (final -> the median node starts
  the round), compute (median node's "computed X accounts in Y s": snapshot read, risk engine, Merkle tree),
  quorum wait (median start -> the quorum-th node signed: compute plus stragglers), gossip (quorum-th signature ->
  first quorum certificate formed), chain (certificate -> "attested on chain in tx": estimate, send, receipt);
- CPU seconds (``/proc/<pid>/stat`` utime + stime) and peak resident memory (``/proc/<pid>/status`` VmHWM) of each
  node process, read just before the nodes are stopped; CPU is divided by the rounds the node ran.

The first ``--warmup`` rounds (numba cache load, libp2p connections) are left out of the latency figures. Every
process (anvil, the nodes, this driver) shares the machine's cores; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pmoracle import numba_cache
from pmoracle.bench import parse_int_list
from pmoracle.errors import InputError

POLL_S = 0.02  # head polls: the resolution of "final at"
PROGRESS_POLL_S = 0.2  # attested-round polls: only to know when enough rounds are done
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \S+\s+\S+: round (\d+)(?::)? (.*)$")
COMPUTED = re.compile(r"computed (\d+) accounts in ([0-9.]+) s(?: \(snapshot ([0-9.]+) s)?")


@dataclass
class RoundTiming:
    """One attested round: wall-clock times (Unix seconds) from the bench and the node logs."""

    block: int
    final_at: float  # the bench saw block + finality depth
    seen_at: float  # the bench saw the round attested
    started: list[float] = field(default_factory=list)  # per node: computed-at minus compute time
    compute: list[float] = field(default_factory=list)  # per node, seconds
    snapshot: list[float] = field(default_factory=list)  # per node, seconds of it reading the chain snapshot
    signed: list[float] = field(default_factory=list)  # per node
    certificate: float | None = None  # first node to form the certificate
    attested_tx: float | None = None  # the transmitting node saw its receipt
    gas: int = 0  # of the transaction that attested it (its receipt)
    scheme: str = ""  # the path that attested it (its RoundAttested event): "frost" or "ecdsa"

    @property
    def latency(self) -> float:
        """Return seconds from the anchor being final to the attestation's receipt (or to the bench seeing it)."""
        end = self.attested_tx if self.attested_tx is not None else self.seen_at
        return end - self.final_at


@dataclass
class NodeUsage:
    """CPU over the measured rounds and peak memory over the whole run, of one node process."""

    index: int
    cpu_s: float  # user + system seconds from the end of the warm-up to the end of the run
    peak_rss_mb: float
    rounds: int  # rounds attested in that span

    @property
    def cpu_per_round_s(self) -> float:
        """Return CPU seconds per measured round (0 when none)."""
        return self.cpu_s / self.rounds if self.rounds else 0.0


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


def read_proc_usage(pid: int) -> tuple[float, float]:
    """Return (CPU seconds user + system, peak RSS in MiB) of a live process from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        stat = handle.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": fields[0] is the state (field 3)
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15)
    peak_kib = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                peak_kib = int(line.split()[1])
    return cpu, peak_kib / 1024


def _pid_of(node: Any) -> int:
    from pmoracle.devnet.cluster import DevnetError

    if node.process is None:
        raise DevnetError(f"node {node.index} was never started")
    return int(node.process.pid)


def _cpu_of(node: Any) -> float:
    return read_proc_usage(_pid_of(node))[0]


def parse_node_log(path: Path, rounds: dict[int, RoundTiming]) -> None:
    """Add one node's log lines about the rounds in ``rounds`` to their timings."""
    per_round: dict[int, dict[str, float]] = {}
    for line in path.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        ts, block, rest = _parse_ts(match.group(1)), int(match.group(2)), match.group(3)
        entry = per_round.setdefault(block, {})
        if rest.startswith("computed"):
            found = COMPUTED.search(rest)
            if found:
                entry["compute"] = float(found.group(2))
                if found.group(3):
                    entry["snapshot"] = float(found.group(3))
                entry["started"] = ts - float(found.group(2))
        elif rest.startswith("signed report"):
            entry["signed"] = ts
        elif rest.startswith("quorum certificate formed"):
            entry["certificate"] = ts
        elif rest.startswith("attested on chain in tx"):
            entry["attested_tx"] = ts
    for block, entry in per_round.items():
        timing = rounds.get(block)
        if timing is None:
            continue
        if "compute" in entry:
            timing.compute.append(entry["compute"])
            timing.started.append(entry["started"])
        if "snapshot" in entry:
            timing.snapshot.append(entry["snapshot"])
        if "signed" in entry:
            timing.signed.append(entry["signed"])
        if "certificate" in entry:
            timing.certificate = min(entry["certificate"], timing.certificate or entry["certificate"])
        if "attested_tx" in entry:
            timing.attested_tx = min(entry["attested_tx"], timing.attested_tx or entry["attested_tx"])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def split_round(timing: RoundTiming, quorum: int) -> dict[str, float] | None:
    """Return the latency split of a round (seconds), or None when a log line is missing."""
    if not timing.started or len(timing.signed) < quorum or timing.certificate is None or timing.attested_tx is None:
        return None
    start = statistics.median(timing.started)
    signed_q = sorted(timing.signed)[quorum - 1]
    return {
        "latency": timing.latency,
        "detect": start - timing.final_at,
        "compute": statistics.median(timing.compute),
        "quorum_wait": signed_q - start,
        "gossip": timing.certificate - signed_q,
        "chain": timing.attested_tx - timing.certificate,
        "snapshot": statistics.median(timing.snapshot) if timing.snapshot else float("nan"),
    }


def run_devnet_bench(
    n: int,
    *,
    accounts: int,
    rounds: int,
    warmup: int,
    run_dir: Path,
    round_period: int = 5,
    seed: int = 1,
    timeout: float = 600.0,
    full_snapshot_every: int = 32,
    ecdsa: bool = False,
    trades_per_step: int = 3,
) -> dict[str, Any]:
    """Build an n-node devnet, run it until ``warmup + rounds`` rounds are attested, and return the figures.

    ``timeout`` is the whole run's budget in seconds, the build (seeding included) counted; ``trades_per_step`` the
    world's random trades every third block.

    Errors:
        DevnetError when a node dies; BenchError-style PmoracleError when too few rounds are attested in time.
    """
    from pmoracle.devnet.cluster import DevnetError, DevnetOptions, build_devnet
    from pmoracle.errors import PmoracleError

    # by default the operators' background check of every 32nd incremental snapshot, not the devnet's every 4th
    options = DevnetOptions(nodes=n, accounts=accounts, duration=None, rounds=None, seed=seed, run_dir=run_dir,
                            round_period=round_period, full_snapshot_every=full_snapshot_every,
                            quiet=True, ecdsa=ecdsa, trades_per_step=trades_per_step)  # fmt: skip
    build_started = time.monotonic()
    devnet = build_devnet(options, say=lambda _msg: None)
    build_s = time.monotonic() - build_started
    depth, period = options.finality_depth, options.round_period
    quorum = devnet.committee.quorum
    timings: dict[int, RoundTiming] = {}
    final_at: dict[int, float] = {}
    usage: list[tuple[float, float]] = []
    cpu_at_warmup: list[float] = []
    try:
        started = time.monotonic()
        last_block_at = last_progress_at = 0.0
        seen_head = first_head = int(devnet.client.block_number())
        last_attested = 0
        while len(timings) < warmup + rounds:
            now = time.monotonic()
            if now - build_started > timeout:
                raise PmoracleError(f"bench devnet n={n}: only {len(timings)} rounds attested within the "
                                    f"{timeout:.0f} s budget (build {build_s:.0f} s)")  # fmt: skip
            for node in devnet.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise DevnetError(f"node {node.index} exited with {node.process.returncode}; see {node.log_path}")
            head = int(devnet.client.block_number())
            wall = time.time()
            for final_head in range(seen_head + 1, head + 1):
                anchor = final_head - depth
                if anchor > 0 and anchor % period == 0:
                    final_at.setdefault(anchor, wall)
            seen_head = max(seen_head, head)
            block = last_attested
            if now - last_progress_at >= PROGRESS_POLL_S:
                last_progress_at = now
                block, _, _ = devnet.latest_round()
            if block > last_attested:
                last_attested = block
                if block in final_at:  # rounds whose anchor became final before the bench started are skipped
                    timings[block] = RoundTiming(block, final_at[block], wall)
                    if len(timings) == warmup:
                        cpu_at_warmup = [_cpu_of(node) for node in devnet.nodes]
            if now - last_block_at >= options.block_interval:
                last_block_at = now
                devnet.step(head)  # one block: a market move, a few trades, or an empty block
            time.sleep(POLL_S)
        usage = [read_proc_usage(_pid_of(node)) for node in devnet.nodes]
        for timing in timings.values():  # each round's attestation: gas and the path (FROST or ECDSA)
            timing.gas, timing.scheme = devnet.attestation(timing.block)
        blocks_per_s = (seen_head - first_head) / (time.monotonic() - started)
        anchors_ready = sorted(final_at)
        if not cpu_at_warmup:
            cpu_at_warmup = [0.0] * len(devnet.nodes)
    finally:
        devnet.stop()
    measured_blocks = sorted(timings)[warmup:]
    nodes = []
    for node, (cpu, peak), cpu0 in zip(devnet.nodes, usage, cpu_at_warmup, strict=True):
        parse_node_log(node.log_path, timings)
        # CPU from the end of the warm-up to the end of the run (start-up, imports and JIT cache load excluded).
        nodes.append(NodeUsage(node.index, cpu - cpu0, peak, len(measured_blocks)))
    measured = [timings[b] for b in measured_blocks]
    splits = [s for s in (split_round(t, quorum) for t in measured) if s is not None]
    latencies = [t.latency for t in measured]
    return {
        "n": n,
        "scheme": "ecdsa" if ecdsa else "frost",
        "rounds_frost": sum(t.scheme == "frost" for t in measured),
        "rounds_ecdsa": sum(t.scheme == "ecdsa" for t in measured),
        "attest_gas_median": statistics.median(t.gas for t in measured),
        "quorum": quorum,
        "accounts": accounts,
        "rounds": len(measured),
        "warmup": warmup,
        "build_s": build_s,
        "round_period": round_period,
        "full_snapshot_every": full_snapshot_every,
        "blocks_per_s": blocks_per_s,
        "anchors_final": len(anchors_ready),
        "anchors_attested": len(timings),
        "latency_median_s": statistics.median(latencies),
        "latency_p95_s": _percentile(latencies, 0.95),
        "latency_max_s": max(latencies),
        "split_median_s": {k: statistics.median(s[k] for s in splits) for k in splits[0]} if splits else {},
        "rounds_split": len(splits),
        "nodes": [asdict(u) | {"cpu_per_round_s": u.cpu_per_round_s} for u in nodes],
        "cpu_per_round_median_s": statistics.median(u.cpu_per_round_s for u in nodes),
        "peak_rss_max_mb": max(u.peak_rss_mb for u in nodes),
        "run_dir": str(run_dir),
        "rounds_detail": [asdict(t) | {"latency": t.latency} for t in measured],
    }


def format_devnet_table(results: list[dict[str, Any]]) -> str:
    """Return the Markdown table of the devnet bench."""
    cores = os.cpu_count()
    lines = [
        "| n | scheme | quorum | accounts | rounds | latency median | p95 | detect | compute (snapshot) | quorum wait "
        "| gossip | chain | attest gas (median) | rounds FROST/ECDSA | CPU s/round/node (median) | peak RSS/node (max) "
        "| anchors attested/final | blocks/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["split_median_s"]

        def ms(key: str, s: dict[str, float] = s) -> str:
            return f"{s[key] * 1000:.0f} ms" if key in s else "-"

        lines.append(
            f"| {r['n']} | {r['scheme']} | {r['quorum']} | {r['accounts']} | {r['rounds']} "
            f"| {r['latency_median_s'] * 1000:.0f} ms "
            f"| {r['latency_p95_s'] * 1000:.0f} ms | {ms('detect')} | {ms('compute')} ({ms('snapshot')}) "
            f"| {ms('quorum_wait')} "
            f"| {ms('gossip')} | {ms('chain')} | {r['attest_gas_median']:,.0f} "
            f"| {r['rounds_frost']}/{r['rounds_ecdsa']} "
            f"| {r['cpu_per_round_median_s']:.2f} | {r['peak_rss_max_mb']:.0f} MiB "
            f"| {r['anchors_attested']}/{r['anchors_final']} | {r['blocks_per_s']:.1f} |"
        )
    lines.append("")
    for r in results:  # seeding dominates the build beyond a few thousand accounts (docs/performance-devnet.md)
        lines.append(f"n = {r['n']}: devnet built (anvil, contracts, {r['accounts']} accounts seeded, nodes started) "
                     f"in {r['build_s']:.1f} s")  # fmt: skip
    lines.append(f"Machine: {cores} cores shared by anvil, every node process and the driver.")
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple[int, ...]:
    """Return the committee sizes of ``--nodes 4,7`` (InputError("--nodes") when malformed or outside [1, 16])."""
    return parse_int_list(text, "--nodes", 1, 16, "sizes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the devnet benchmark's options to ``parser``."""
    parser.add_argument("--nodes", default="4,7", help="committee sizes, comma-separated (default 4,7)")
    parser.add_argument("--accounts", type=int, default=1000, help="trader accounts (default 1000)")
    parser.add_argument("--rounds", type=int, default=8, help="measured rounds per size (default 8)")
    parser.add_argument("--warmup", type=int, default=1, help="first rounds left out (default 1)")
    parser.add_argument("--round-period", type=int, default=5, help="blocks between anchor blocks (default 5)")
    parser.add_argument("--full-snapshot-every", type=int, default=32,
                        help="the nodes' chain.full_snapshot_every (default 32, the operators' default)")  # fmt: skip
    parser.add_argument("--run-dir", type=Path, default=None, help="where the devnets' logs go (default: a temp dir)")
    parser.add_argument("--trades-per-step", type=int, default=3,
                        help="the world's random trades every third block (default 3)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds for each size's whole run, build and seeding included (default 600)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--ecdsa", action="store_true",
                        help="ECDSA certificates only (default: the devnet's group key, attestFrost)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the devnet benchmark for each size and print its table (exit 128 + the signal on SIGTERM/SIGINT)."""
    sizes = parse_sizes(args.nodes)
    if args.accounts < 1:
        raise InputError("--accounts", f"must be >= 1, got {args.accounts}")
    if args.rounds < 1 or args.warmup < 0:
        raise InputError("--rounds", f"need --rounds >= 1 and --warmup >= 0, got {args.rounds}, {args.warmup}")
    if args.full_snapshot_every < 1:
        raise InputError("--full-snapshot-every", f"must be >= 1, got {args.full_snapshot_every}")
    if args.trades_per_step < 0:
        raise InputError("--trades-per-step", f"must be >= 0, got {args.trades_per_step}")
    if not args.timeout > 0:
        raise InputError("--timeout", f"must be > 0 seconds, got {args.timeout}")
    from pmoracle.devnet.processes import StopRequested, supervise

    base = args.run_dir or Path(tempfile.mkdtemp(prefix="pmoracle-bench-devnet-"))
    results = []
    try:
        with supervise():  # SIGTERM/SIGINT in any phase (seeding included) ends anvil and every node
            for n in sizes:
                print(f"bench devnet: n={n}, {args.accounts} accounts, {args.warmup}+{args.rounds} rounds ...",
                      file=sys.stderr)  # fmt: skip
                results.append(run_devnet_bench(n, accounts=args.accounts, rounds=args.rounds, warmup=args.warmup,
                                                run_dir=base / f"n{n}", round_period=args.round_period,
                                                full_snapshot_every=args.full_snapshot_every,
                                                ecdsa=args.ecdsa, timeout=args.timeout,
                                                trades_per_step=args.trades_per_step))  # fmt: skip
    except StopRequested as stop:
        print(f"bench devnet: {stop}; logs: {base}", file=sys.stderr)
        return 128 + stop.signum
    print(format_devnet_table(results))
    print(f"logs: {base}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pmoracle.bench.devnet``."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.bench.devnet", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    numba_cache.configure()  # before run() imports the devnet, and with it the risk kernels
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
