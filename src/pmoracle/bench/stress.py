"""The cascade stress benchmark: a seeded book of leveraged accounts under a crash, cascaded for a fixed depth.

Measures on this machine the time of ``run_cascade`` (the book's risk arrays and layout, then per step the risk
arrays on the moved market, every account re-margined by the engine, the breached ones liquidated in Python ints)
and the process's peak RSS. The book is calibrated so that the crash breaches a few percent of the accounts and the
forced sales keep breaching more for every step up to the depth limit: the worst case for the step count.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from pmoracle.keeper.decision import AuctionParams
from pmoracle.risk.inputs import MONEY_SCALE, PRICE_SCALE, SIZE_SCALE, WAD, Instrument, InstrumentKind
from pmoracle.risk.params import StressParams

if TYPE_CHECKING:  # the engine's modules load numba kernels: imported once the CLI configured numba's cache
    from pmoracle.risk import kernel
    from pmoracle.risk.stress import StressResult

INDEX_USD = 95_000  # bench_market's BTC index
LIQUIDATION = AuctionParams(10**17, 2 * 10**16, 10**17, 300, 3_600, 2 * 10**17, 5 * 10**16)  # the devnet's


@dataclass(frozen=True)
class StressBenchConfig:
    """Sizes of one benchmark run."""

    accounts: int = 100_000
    options: int = 200  # listed options; each account holds a few
    positions: int = 6  # options per account, besides its perpetual
    scenarios: int = 200
    depth: int = 10
    shock: str = "-0.08"
    # BTC traded a day per account of the book: small enough that the forced sales keep breaching accounts
    adv_per_account: Fraction = Fraction(1, 2)
    seed: int = 1


QUICK = StressBenchConfig(accounts=10_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the stress benchmark's options."""
    parser.add_argument("--accounts", type=int, default=StressBenchConfig.accounts, help="accounts in the book")
    parser.add_argument("--depth", type=int, default=StressBenchConfig.depth, help="cascade steps at most")
    parser.add_argument("--quick", action="store_true", help="10,000 accounts, for a fast check")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def bench_layout(config: StressBenchConfig, n_options: int) -> tuple[kernel.Positions, list[bytes]]:
    """Return the seeded book laid out for the kernel (row 0: the BTC perpetual, rows 1..: the options): per account
    a long perpetual bought at the index, ``positions`` options long or short, and cash of 15% to 60% of the
    perpetual's notional (folded with its cost into MONEY, as ``compute_account_cash`` does)."""
    from pmoracle.risk import kernel

    rng = np.random.default_rng(config.seed)
    n, k = config.accounts, config.positions + 1
    units = rng.integers(1, 41, size=n, dtype=np.int64) * (SIZE_SCALE // 10)
    options = np.argsort(rng.random((n, n_options)), axis=1)[:, : k - 1] + 1  # distinct options per account
    sizes = rng.choice([-1, 1], size=(n, k - 1)) * rng.integers(1, 21, size=(n, k - 1)) * (SIZE_SCALE // 100)
    inst = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.sort(options, axis=1)], axis=1).reshape(-1)
    size = np.concatenate([units[:, None], sizes], axis=1).astype(np.int64).reshape(-1)
    notional_money = units * INDEX_USD * MONEY_SCALE // SIZE_SCALE
    cash = notional_money * rng.integers(15, 61, size=n) // 100 - notional_money  # cash less the perpetual's cost
    starts = np.arange(n, dtype=np.int64) * k
    layout = kernel.Positions(starts, starts + k, inst, size, cash.astype(np.int64))
    return layout, [(a + 1).to_bytes(20, "big") for a in range(n)]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stress_bench(config: StressBenchConfig) -> dict[str, Any]:
    """Run the cascade once to compile, then time it; return the figures."""
    from pmoracle.bench.risk import bench_market, bench_params
    from pmoracle.risk.stress import LiquidationModel, Shock, run_cascade_on_layout

    params = bench_params(config.scenarios)
    market, options = bench_market(config.options)
    instruments = [Instrument("BTC", InstrumentKind.PERPETUAL), *options]
    stress = StressParams(Fraction(1), config.depth, (("BTC", config.adv_per_account * config.accounts),), (), ())
    model = LiquidationModel(LIQUIDATION, LIQUIDATION.max_discount, insurance_fund=10**6 * WAD)
    shock = Shock((("BTC", Fraction(config.shock)),), Fraction("0.25"))
    small = replace(config, accounts=100)
    run_cascade_on_layout(market, params, instruments, *bench_layout(small, len(options)), shock, stress, model)
    layout, accounts = bench_layout(config, len(options))
    start = time.perf_counter()
    result = run_cascade_on_layout(market, params, instruments, layout, accounts, shock, stress, model)
    elapsed = time.perf_counter() - start
    return figures(config, result, elapsed)


def figures(config: StressBenchConfig, result: StressResult, elapsed: float) -> dict[str, Any]:
    """Return the benchmark's figures of one timed cascade."""
    import numba

    btc = dict(result.price_path)["BTC"]
    return {
        "accounts": config.accounts,
        "positions_per_account": config.positions + 1,
        "scenarios": config.scenarios,
        "depth_limit": config.depth,
        "steps": len(result.steps),
        "cascade_depth": result.cascade_depth,
        "breached_per_step": [s.accounts_breached for s in result.steps],
        "btc_path_usd": [round(p / PRICE_SCALE) for p in btc],
        "shortfall_usd": result.shortfall // WAD,
        "seconds": round(elapsed, 3),
        "seconds_per_step": round(elapsed / max(1, len(result.steps)), 3),
        "accounts_liquidated": sum(s.accounts_breached for s in result.steps),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "numba_threads": numba.get_num_threads(),
    }


def format_stress_bench(r: dict[str, Any]) -> str:
    """Return the figures as text."""
    return "\n".join(
        [
            f"Cascade stress: {r['accounts']:,} accounts x {r['positions_per_account']} positions x "
            f"{r['scenarios']} scenarios, depth limit {r['depth_limit']}, {r['numba_threads']} numba threads",
            f"  {r['steps']} steps (cascade depth {r['cascade_depth']}) in {r['seconds']:.2f} s "
            f"({r['seconds_per_step']:.2f} s per step), {r['accounts_liquidated']:,} liquidations",
            f"  breached per step: {r['breached_per_step']}",
            f"  BTC: {' > '.join(f'{p:,}' for p in r['btc_path_usd'])}   shortfall {r['shortfall_usd']:,} USD",
            f"  peak RSS {r['peak_rss_mib']:,.0f} MiB",
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures."""
    config = QUICK if args.quick else StressBenchConfig(accounts=args.accounts, depth=args.depth)
    results = run_stress_bench(config)
    print(json.dumps(results, indent=2) if args.json else format_stress_bench(results))
    return 0
