"""Measure the devnet world's seeding versus the number of accounts: ``World.setup`` on a fresh anvil.

Run: ``pmoracle bench seeding [--accounts 1000,10000,100000] [--seed 1] [--json]`` (or
``python -m pmoracle.bench.seeding``). For each N a fresh anvil (the devnet's settings) gets the protocol's
contracts and the world seeds N accounts (deposits and matches through the devnet-only DevnetSeeder). Reported per N:
the setup's seconds, the transactions and blocks it mined, accounts per second, anvil's resident and peak memory
after it, and the median time anvil takes to mine an empty block afterwards (its work per block grows with the
state, and every devnet round mines blocks). Nothing here is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from eth_account import Account

from pmoracle.bench import parse_int_list
from pmoracle.bench.devnet import read_proc_usage
from pmoracle.chain.deploy import deploy
from pmoracle.config.params import default_params_text, parse_params
from pmoracle.devnet.cluster import DEPLOYER_KEY
from pmoracle.devnet.devchain import devchain
from pmoracle.devnet.world import World

EMPTY_BLOCKS = 5  # empty blocks timed after the seeding (the median is reported)
MAX_ACCOUNTS = 1_000_000


def parse_accounts(text: str) -> tuple[int, ...]:
    """Return the account counts of ``--accounts 1000,10000`` (InputError("--accounts") when malformed or outside
    [1, MAX_ACCOUNTS])."""
    return parse_int_list(text, "--accounts", 1, MAX_ACCOUNTS, "account counts")


def _resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_seeding(accounts: int, seed: int = 1) -> dict[str, Any]:
    """Seed ``accounts`` accounts on a fresh anvil; return the figures of one row (see the module's docstring)."""
    params = parse_params(default_params_text())
    with devchain(prune_history=1024) as chain:  # as the devnet's anvil
        deployment = deploy(chain.url, DEPLOYER_KEY, params_hash=params.params_hash, round_period=5, finality_depth=2)
        world = World(chain.url, deployment, Account.from_key(DEPLOYER_KEY).address, seed=seed)
        first = int(world.rpc("eth_blockNumber", []), 16) + 1
        started = time.perf_counter()
        world.setup(accounts)
        setup_s = time.perf_counter() - started
        head = int(world.rpc("eth_blockNumber", []), 16)
        counts = world.batch([("eth_getBlockTransactionCountByNumber", [hex(b)]) for b in range(first, head + 1)])
        _, peak_mib = read_proc_usage(chain.process.pid)
        rss_mib = _resident_mib(chain.process.pid)
        empty = []
        for _ in range(EMPTY_BLOCKS):
            t = time.perf_counter()
            world.rpc("evm_mine", [])
            empty.append(time.perf_counter() - t)
    return {
        "accounts": accounts,
        "trades": world.trades,
        "setup_s": round(setup_s, 2),
        "transactions": sum(int(c, 16) for c in counts),
        "blocks": head - first + 1,
        "accounts_per_s": round(accounts / setup_s, 1),
        "anvil_rss_mib": round(rss_mib),
        "anvil_peak_rss_mib": round(peak_mib),
        "empty_block_ms": round(statistics.median(empty) * 1000, 1),
    }


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Return the rows as a markdown table."""
    lines = [
        "| accounts | trades | setup | transactions | blocks | accounts/s | anvil RSS (peak) | empty block |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['accounts']:,} | {r['trades']:,} | {r['setup_s']:.1f} s | {r['transactions']:,} | {r['blocks']} "
            f"| {r['accounts_per_s']:,.0f} | {r['anvil_rss_mib']:,} MiB ({r['anvil_peak_rss_mib']:,}) "
            f"| {r['empty_block_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the seeding benchmark's arguments."""
    parser.add_argument("--accounts", default="1000,10000", help="account counts, one fresh anvil each")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object too")


def run(args: argparse.Namespace) -> int:
    """Run the seeding benchmark and print its table."""
    counts = parse_accounts(args.accounts)
    rows = []
    for n in counts:
        rows.append(measure_seeding(n, args.seed))
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print(format_rows(rows))
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pmoracle.bench.seeding``."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.bench.seeding", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
