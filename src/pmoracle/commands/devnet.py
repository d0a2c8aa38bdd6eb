"""``pmoracle devnet``: anvil, contracts, staked nodes, a moving market and N node processes, in one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the devnet's options."""
    parser.add_argument("--nodes", type=int, default=4, help="solver node processes (default 4)")
    parser.add_argument("--accounts", type=int, default=300, help="simulated trader accounts (default 300)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, default=None, help="seconds to run (default 60)")
    stop.add_argument("--rounds", type=int, default=None, help="stop after this many attested rounds")
    parser.add_argument("--round-period", type=int, default=5, help="blocks between anchor blocks (default 5)")
    parser.add_argument("--finality-depth", type=int, default=2, help="blocks an anchor must be buried (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of keys, accounts and market moves")
    parser.add_argument("--run-dir", type=Path, default=None, help="directory for logs and data (default runs/...)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    # TEST-ONLY fault injection (never a node.toml option): K of the nodes misbehave in MODE
    parser.add_argument("--faulty", action="append", default=[], metavar="K:MODE", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Build and run the devnet; exit 0 when every attested round matched the independent recomputation.

    SIGTERM or SIGINT ends every child process in any phase; while building, the exit status is 128 + the signal.
    """
    from pmoracle.devnet.cluster import DevnetOptions, run_devnet
    from pmoracle.devnet.processes import StopRequested
    from pmoracle.errors import InputError

    if not 1 <= args.nodes <= 16:
        raise InputError("--nodes", f"must be in [1, 16], got {args.nodes}")
    if args.accounts < 0:
        raise InputError("--accounts", f"must be >= 0, got {args.accounts}")
    faulty = parse_faulty(args.faulty, args.nodes)
    duration = args.duration if args.duration is not None else (None if args.rounds else 60.0)
    options = DevnetOptions(
        nodes=args.nodes, accounts=args.accounts, duration=duration, rounds=args.rounds,
        round_period=args.round_period, finality_depth=args.finality_depth, seed=args.seed, run_dir=args.run_dir,
        quiet=args.quiet, faulty=faulty,
    )  # fmt: skip
    try:
        devnet = run_devnet(options)
    except StopRequested as stop:  # while building: every child process is ended by now
        print(f"devnet: {stop} before the nodes ran", file=sys.stderr)
        return 128 + stop.signum
    return 0 if devnet.attested and all(r.verified for r in devnet.attested) else 1


def parse_faulty(items: list[str], nodes: int) -> tuple[tuple[int, str], ...]:
    """Return the (count, mode) pairs of ``--faulty K:MODE`` items; raise InputError naming a bad one."""
    from pmoracle.devnet.faults import FAULT_MODES
    from pmoracle.errors import InputError

    pairs = []
    for item in items:
        count_text, sep, mode = item.partition(":")
        if not sep or not count_text.isdigit() or mode not in FAULT_MODES:
            raise InputError("--faulty", f"expected K:MODE with MODE in {', '.join(FAULT_MODES)}, got {item!r}")
        pairs.append((int(count_text), mode))
    if sum(count for count, _ in pairs) > nodes:
        raise InputError("--faulty", f"more faulty nodes than --nodes {nodes}")
    return tuple(pairs)
