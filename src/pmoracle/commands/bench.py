"""``pmoracle bench SUITE``: measure one part of the system on this machine (nothing is asserted).

Suites: ``risk`` (risk engine), ``gossip`` (libp2p report exchange), ``gas`` (contract gas table), ``chain``
(RPC and snapshot cost), ``seeding`` (the devnet world's setup versus accounts), ``devnet`` (round latency of a real
multi-node devnet), ``policy`` (the adaptive margin policy's backtest), ``stress`` (the liquidation cascade),
``leaves`` (fetching a round's attested leaves from a node API) and ``book`` (the node's work on a full read of 10k
to 1M accounts, no chain).
"""

from __future__ import annotations

import argparse
import importlib
import json

# suite -> (module with add_arguments/run, one-line help); risk keeps its options here.
SUITES: dict[str, tuple[str | None, str]] = {
    "risk": (None, "risk engine: arrays, full book recompute, updates"),
    "gossip": ("pmoracle.bench.gossip", "libp2p gossip: report exchange latency and validator throughput"),
    "gas": ("pmoracle.bench.gas", "gas of attest, verifyMargin and slashing on anvil"),
    "chain": ("pmoracle.bench.chain", "chain layer: RPC latency and snapshot cost versus accounts"),
    "seeding": ("pmoracle.bench.seeding", "devnet world seeding: setup time, transactions, anvil memory vs accounts"),
    "devnet": ("pmoracle.bench.devnet", "devnet round latency, CPU and memory per node for n nodes"),
    "policy": ("pmoracle.bench.policy", "adaptive margin policy backtest on seeded GARCH paths"),
    "stress": ("pmoracle.bench.stress", "liquidation cascade: 100k accounts x 200 scenarios x 10 steps"),
    "leaves": ("pmoracle.bench.leaves", "fetching a round's attested leaves: /v1/leaves/B against /v1/margin each"),
    "book": ("pmoracle.bench.book", "the node's full read and round without a chain: decode, convert, engine, round"),
}


def _add_risk_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (100k accounts) for a fast check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one sub-parser per suite, each with that suite's own options."""
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, (module_name, help_text) in SUITES.items():
        sub = suites.add_parser(name, help=help_text, description=help_text)
        if module_name is None:
            _add_risk_arguments(sub)
        else:
            importlib.import_module(module_name).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print its figures."""
    module_name = SUITES[args.suite][0]
    if module_name is not None:
        return int(importlib.import_module(module_name).run(args))
    from pmoracle.bench.risk import QUICK, RiskBenchConfig, format_risk_bench, run_risk_bench

    results = run_risk_bench(QUICK if args.quick else RiskBenchConfig(), quick=args.quick)
    print(json.dumps(results, indent=2, default=str) if args.json else format_risk_bench(results))
    return 0
