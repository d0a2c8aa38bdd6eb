"""``pmoracle bench risk``: measure the risk engine against the machine's own limits in one run."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the bench sub-command's arguments."""
    parser.add_argument("suite", choices=["risk"], help="which benchmark to run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (100k accounts) for a fast check")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures."""
    from pmoracle.bench.risk import QUICK, RiskBenchConfig, format_risk_bench, run_risk_bench

    results = run_risk_bench(QUICK if args.quick else RiskBenchConfig(), quick=args.quick)
    print(json.dumps(results, indent=2, default=str) if args.json else format_risk_bench(results))
    return 0
