"""Fetching a round's attested leaves from a node's API, as the fraud prover and ``dispute prove --node-api`` do:
``/v1/leaves/B`` (every leaf in one request) against ``/v1/margin`` (one request per account).

Run: ``pmoracle bench leaves [--accounts 60,300,10000,100000] [--margin-up-to 10000] [--json]``. For each size a
seeded tree of that many accounts (amounts of 1e21..1e24, 18-decimal USD, like a real book's) is served by the
node's API server (``run_api`` in a thread on 127.0.0.1, the daemon's providers' shape) and the client times:

- the first ``/v1/leaves/B`` (the server encodes the body in a worker thread, sends it; the client parses it:
  ``fetch_round_leaves``) and a second one (the server's cached body);
- the check that the leaves rebuild the root (``leaves_prove_root``, a full Merkle rebuild);
- up to ``--margin-up-to`` accounts, the old way: ``/v1/margin`` for every account (``fetch_node_leaves``).

Also printed: the body size, and the machine's load average before and after (the figures are wall times on a
possibly shared machine). Nothing here is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import urllib.request
from typing import Any

from pmoracle.bench import parse_int_list
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.errors import InputError
from pmoracle.node.dispute import fetch_node_leaves, fetch_round_leaves, leaves_prove_root
from pmoracle.testing.node_api import serve_node_api

BLOCK = 1_000  # the round's anchor block (any)


def make_tree(accounts: int, seed: int) -> MerkleTree:
    """Return a seeded tree of ``accounts`` leaves with realistic magnitudes (equity signed)."""
    rng = random.Random(seed)
    return MerkleTree([
        AccountLeaf(rng.randbytes(20), rng.randrange(10**21, 10**24), rng.randrange(10**21, 10**24),
                    rng.randrange(-(10**23), 10**24))
        for _ in range(accounts)
    ])  # fmt: skip


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_size(accounts: int, margin_up_to: int, seed: int = 1) -> dict[str, Any]:
    """Return one size's figures (seconds, bytes)."""
    tree = make_tree(accounts, seed)
    figures: dict[str, Any] = {"accounts": accounts}
    with serve_node_api(tree, BLOCK) as url:
        cold, figures["leaves_first_s"] = _timed(lambda: fetch_round_leaves(url, BLOCK, timeout=120.0))
        warm, figures["leaves_cached_s"] = _timed(lambda: fetch_round_leaves(url, BLOCK, timeout=120.0))
        with urllib.request.urlopen(f"{url}/v1/leaves/{BLOCK}", timeout=120.0) as response:
            figures["body_bytes"] = len(response.read())
        assert cold is not None and warm is not None and len(cold) == len(warm) == accounts
        proven, figures["verify_s"] = _timed(lambda: leaves_prove_root(tree.root, cold))
        figures["leaves_rebuild_root"] = proven
        if accounts <= margin_up_to:
            accounts_list = [leaf.account for leaf in tree.leaves]
            one_by_one, figures["margin_per_account_s"] = _timed(
                lambda: fetch_node_leaves(url, accounts_list, BLOCK, timeout=30.0)
            )
            figures["margin_leaves_equal"] = [c.leaf for c in one_by_one] == [c.leaf for c in cold]
    return figures


def run_leaves_bench(sizes: tuple[int, ...], margin_up_to: int) -> dict[str, Any]:
    """Return the figures of every size, with the load average around the run."""
    load_before = os.getloadavg()
    rows = [bench_size(n, margin_up_to) for n in sizes]
    return {"sizes": rows, "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
            "cpus": os.cpu_count()}  # fmt: skip


def format_leaves_bench(figures: dict[str, Any]) -> str:
    """Return the table of ``run_leaves_bench``'s figures."""
    lines = [f"{'accounts':>9} {'body kB':>9} {'/v1/leaves first s':>19} {'cached s':>9} {'verify s':>9} "
             f"{'/v1/margin each s':>18}"]  # fmt: skip
    for row in figures["sizes"]:
        margin = f"{row['margin_per_account_s']:18.3f}" if "margin_per_account_s" in row else f"{'-':>18}"
        lines.append(f"{row['accounts']:>9} {row['body_bytes'] / 1e3:9.1f} {row['leaves_first_s']:19.3f} "
                     f"{row['leaves_cached_s']:9.3f} {row['verify_s']:9.3f} {margin}")  # fmt: skip
    before, after = figures["loadavg_before"], figures["loadavg_after"]
    lines.append(f"load average {before[0]:.2f} before, {after[0]:.2f} after, on {figures['cpus']} CPUs")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the leaves benchmark's arguments."""
    parser.add_argument("--accounts", default="60,300,10000,100000", help="round sizes timed (comma list)")
    parser.add_argument("--margin-up-to", type=int, default=10_000,
                        help="time /v1/margin per account for sizes up to this (default 10000)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object too")


def run(args: argparse.Namespace) -> int:
    """Run the leaves benchmark and print its table."""
    if args.margin_up_to < 0:
        raise InputError("--margin-up-to", f"must be >= 0, got {args.margin_up_to}")
    figures = run_leaves_bench(parse_int_list(args.accounts, "--accounts", 1, 1_000_000, "sizes"), args.margin_up_to)
    print(format_leaves_bench(figures))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0
