"""Run the survival scenarios on real devnets and write the reliability table (docs/reliability.md).

``python -m pmoracle.devnet.reliability --out docs/reliability.md`` runs every scenario of
:mod:`pmoracle.devnet.scenarios` (or those named by ``--only``), prints each row as it is measured, and writes the
page (:mod:`pmoracle.devnet.reliability_table`); it exits 1 when a scenario failed or was unsafe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pmoracle import numba_cache

if __name__ == "__main__":  # run as a program: numba's cache directory is chosen before the kernels are imported
    numba_cache.configure()

from pmoracle.devnet.reliability_table import HEADER, format_table
from pmoracle.devnet.scenarios.byzantine import (
    scenario_equivocate,
    scenario_silent_slow,
    scenario_spam,
    scenario_wrong_value,
)
from pmoracle.devnet.scenarios.common import ScenarioResult
from pmoracle.devnet.scenarios.crash import scenario_crash
from pmoracle.devnet.scenarios.partition import scenario_partition, scenario_partition_netns
from pmoracle.devnet.scenarios.reorg import scenario_reorg
from pmoracle.devnet.scenarios.rpc_faults import scenario_rpc_faults

SCENARIOS: dict[str, Callable[[Path], ScenarioResult]] = {
    "wrong-value-4": lambda d: scenario_wrong_value(d, 4),
    "equivocate-4": lambda d: scenario_equivocate(d, 4),
    "silent-4": lambda d: scenario_silent_slow(d, 4, ("silent",)),
    "slow-4": lambda d: scenario_silent_slow(d, 4, ("slow",)),
    "crash-4": lambda d: scenario_crash(d, 4),
    "rpc-faults-4": lambda d: scenario_rpc_faults(d, 4),
    "reorg-4": lambda d: scenario_reorg(d, 4),
    "partition-4": lambda d: scenario_partition(d, 4),
    "spam-4": lambda d: scenario_spam(d, 4),
    "wrong-value-7": lambda d: scenario_wrong_value(d, 7),
    "silent+slow-7": lambda d: scenario_silent_slow(d, 7, ("silent", "slow")),
    "partition-7": lambda d: scenario_partition(d, 7),
}


def _partition_inside(argv: list[str]) -> int:
    # `partition-inside N ROUNDS RUN_DIR OUT`: scenario_partition's child, inside netlab.run_inside
    n, rounds, run_dir, out = int(argv[0]), int(argv[1]), Path(argv[2]), Path(argv[3])
    result = scenario_partition_netns(run_dir, n, rounds)
    out.write_text(json.dumps(dataclasses.asdict(result)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and write the reliability table (``--out``); exit 1 if any scenario was unsafe."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["partition-inside"]:
        return _partition_inside(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m pmoracle.devnet.reliability", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/reliability.md"))
    parser.add_argument("--only", action="append", default=[], choices=sorted(SCENARIOS), help="repeatable")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/reliability"))
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a scenario that failed (reported)")
    args = parser.parse_args(argv)
    results = []
    failures = []
    retried = []
    for name in args.only or list(SCENARIOS):
        result = None
        for attempt in range(1 + args.retries):
            print(f"reliability: running {name} ...", flush=True)
            try:
                result = SCENARIOS[name](args.run_dir / (name if attempt == 0 else f"{name}-retry{attempt}"))
                break
            except Exception as exc:  # a scenario that fails is reported (and retried), the others still run
                print(f"reliability: {name} FAILED: {exc}", flush=True)
                if attempt < args.retries:
                    retried.append(f"{name}: first attempt failed: {exc}")
                else:
                    failures.append(f"{name}: {exc}")
        if result is None:
            continue
        results.append(result)
        print(format_table([result]).splitlines()[-1], flush=True)
    text = HEADER + format_table(results) + "\n"
    if retried:
        text += "\nScenarios re-run after a failed attempt (the row above is the re-run):\n\n"
        text += "".join(f"- {f}\n" for f in retried)
    if failures:
        text += "\nScenarios that failed in this run:\n\n" + "".join(f"- {f}\n" for f in failures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"reliability: wrote {args.out}")
    return 0 if not failures and all(r.safe for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
