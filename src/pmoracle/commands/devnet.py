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
    stop.add_argument("--days", type=float, default=None,
                      help="market days to live through: between rounds chain time moves one step, prices follow a "
                           "seeded path, expiries settle and roll, traders trade and withdraw")  # fmt: skip
    parser.add_argument("--step-hours", type=float, default=12.0, help="with --days: market hours per step (12)")
    parser.add_argument("--scenario", choices=("crash", "vol-spike"), default=None,
                        help="with --days: crash drops BTC 25%% with a volatility spike at mid-run (the keeper "
                             "liquidates); vol-spike triples BTC's volatility at mid-run and the nodes run the "
                             "adaptive margin policy (docs/policy.md)")  # fmt: skip
    parser.add_argument("--summary", type=Path, default=None, help="write the JSON summary here")
    parser.add_argument("--round-period", type=int, default=None,
                        help="blocks between anchor blocks (default 5; 32 with --days)")  # fmt: skip
    parser.add_argument("--finality-depth", type=int, default=2, help="blocks an anchor must be buried (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of keys, accounts and market moves")
    parser.add_argument("--run-dir", type=Path, default=None, help="directory for logs and data (default runs/...)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--ecdsa",
        action="store_true",
        help="ECDSA certificates only (default: the nodes run the DKG and install the group key, FROST attestations)",
    )
    parser.add_argument(
        "--dkg-in-process",
        action="store_true",
        help="FROST: run the DKG in this process (the old shortcut) instead of the nodes' own over gossip",
    )
    # TEST-ONLY fault injection (never a node.toml option): K of the nodes misbehave in MODE
    parser.add_argument("--faulty", action="append", default=[], metavar="K:MODE", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Build and run the devnet; exit 0 when every attested round matched the independent recomputation (and, with
    the adaptive policy, every node published the recomputed policy hash).

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
    if args.days is not None and not 0 < args.days <= 365:
        raise InputError("--days", f"must be in (0, 365], got {args.days}")
    if not 1 <= args.step_hours <= 24 * 7:
        raise InputError("--step-hours", f"must be in [1, 168], got {args.step_hours}")
    if args.scenario is not None and args.days is None:
        raise InputError("--scenario", "needs a --days run")
    lives = args.days is not None
    duration = args.duration if args.duration is not None else (None if args.rounds or lives else 60.0)
    round_period = args.round_period if args.round_period is not None else (32 if lives else 5)
    options = DevnetOptions(
        nodes=args.nodes, accounts=args.accounts, duration=duration, rounds=args.rounds,
        round_period=round_period, finality_depth=args.finality_depth, seed=args.seed, run_dir=args.run_dir,
        quiet=args.quiet, faulty=faulty, days=args.days, step_hours=args.step_hours, summary=args.summary,
        scenario=args.scenario, ecdsa=args.ecdsa, dkg_in_process=args.dkg_in_process,
        # FROST needs its shares within the stage (~0.2-0.5 s after the certificate on this machine): a 0.5 s stage
        # made about half the --days rounds fall back to ECDSA; the first transmitter posts at once either way
        block_interval=0.05 if lives else 1.0, stage_delay=0.5 if lives and args.ecdsa else 1.0,
    )  # fmt: skip
    try:
        devnet = run_devnet(options)
    except StopRequested as stop:  # while building: every child process is ended by now
        print(f"devnet: {stop} before the nodes ran", file=sys.stderr)
        return 128 + stop.signum
    # a wrong attested round proven and invalidated on chain (a colluding quorum's) is caught, not missed
    invalidated = set((devnet.accountability or {}).get("invalidated_rounds", ()))
    verified = bool(devnet.attested) and all(
        (r.verified or r.block_number in invalidated) and r.policy_identical for r in devnet.attested
    )
    return 0 if verified and (devnet.lifecycle is None or devnet.finished()) else 1


def parse_faulty(items: list[str], nodes: int) -> tuple[tuple[int | tuple[int, ...], str], ...]:
    """Return the (count or node indices, mode) pairs of ``--faulty K:MODE`` items, K a count (the last K nodes) or
    a comma list of node indices (``0,1,2:collude``); raise InputError naming a bad one."""
    from pmoracle.devnet.faults import FAULT_MODES
    from pmoracle.errors import InputError

    pairs: list[tuple[int | tuple[int, ...], str]] = []
    for item in items:
        count_text, sep, mode = item.partition(":")
        if not sep or mode not in FAULT_MODES:
            raise InputError("--faulty", f"expected K:MODE with MODE in {', '.join(FAULT_MODES)}, got {item!r}")
        if "," in count_text or not count_text.isdigit():
            parts = count_text.split(",")
            if not all(part.isdigit() for part in parts):
                raise InputError("--faulty", f"expected K:MODE with K a count or comma list of nodes, got {item!r}")
            indices = tuple(int(part) for part in parts)
            if len(set(indices)) != len(indices) or max(indices) >= nodes:
                raise InputError("--faulty", f"node indices must be distinct and below --nodes {nodes}, got {item!r}")
            pairs.append((indices, mode))
        else:
            pairs.append((int(count_text), mode))
    listed = [i for spec, _ in pairs if isinstance(spec, tuple) for i in spec]
    if len(set(listed)) != len(listed):
        raise InputError("--faulty", "a node is listed in two faulty modes")
    if sum(spec if isinstance(spec, int) else len(spec) for spec, _ in pairs) > nodes:
        raise InputError("--faulty", f"more faulty nodes than --nodes {nodes}")
    return tuple(pairs)
