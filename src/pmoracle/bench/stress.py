"""The cascade stress benchmark: a seeded book of leveraged accounts under a crash, cascaded for a fixed depth.

Measures on this machine the time of ``run_cascade`` (the book's risk arrays and layout, then per step the risk
arrays on the moved market, every account re-margined by the engine, the breached ones liquidated in Python ints)
and the process's peak RSS. The book is calibrated so that the crash breaches a few percent of the accounts and the
forced sales keep breaching more for every step up to the depth limit: the worst case for the step count.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from pmoracle.errors import InputError
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
    parser.add_argument(
        "--concentration",
        action="store_true",
        help="instead: a book with whales cascaded with and without the concentration add-on, at several shocks",
    )
    parser.add_argument("--plot", type=pathlib.Path, help="with --concentration: write the comparison as a PNG")


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
    if args.concentration:
        comparison = run_concentration_bench(ConcentrationBenchConfig())
        print(json.dumps(comparison, indent=2) if args.json else format_concentration_bench(comparison))
        if args.plot is not None:
            write_concentration_plot(args.plot, comparison)
        return 0
    if args.plot is not None:
        raise InputError("--plot", "only with --concentration")
    config = QUICK if args.quick else StressBenchConfig(accounts=args.accounts, depth=args.depth)
    results = run_stress_bench(config)
    print(json.dumps(results, indent=2) if args.json else format_stress_bench(results))
    return 0


# --- the concentration add-on against the cascade (docs/stress.md, "The concentration add-on") ---------------------


@dataclass(frozen=True)
class ConcentrationBenchConfig:
    """A seeded book of long BTC perpetuals with a heavy tail of whales, each account funded to a multiple of its
    initial margin under the rule in force, cascaded with and without the concentration add-on."""

    accounts: int = 500  # small books, 0.1% to 2% of ADV each
    whales: int = 8  # 10% to 60% of ADV each
    adv: Fraction = Fraction(5_000)  # units a day: a thin market (the impact law's and the add-on's)
    daily_vol: Fraction = Fraction(8, 100)  # and a volatile one
    threshold: Fraction = Fraction(1, 100)
    shocks: tuple[str, ...] = ("-0.12", "-0.14", "-0.16", "-0.18", "-0.20", "-0.22", "-0.25")
    headline: str = "-0.16"  # the shock whose price path the figure shows
    depth: int = 20
    seed: int = 7


def concentration_params_text(config: ConcentrationBenchConfig) -> str:
    """Return the ``[concentration]`` section of the comparison (the impact law of its stress, same Y, ADV, sigma)."""
    return (
        f'\n[concentration]\nimpact = "1"\nthreshold = "{config.threshold}"\n\n'
        f'[concentration.adv]\nBTC = "{config.adv}"\n\n[concentration.daily_vol]\nBTC = "{config.daily_vol}"\n'
    )


def concentration_book(config: ConcentrationBenchConfig) -> tuple[list[int], list[int]]:
    """Return each account's long perpetual (SIZE units) and its funding multiple of IM (percent): ``accounts``
    small books of 0.1 to 2% of ADV and ``whales`` of 10% to 60% of ADV, multiples 100% to 160%."""
    rng = np.random.default_rng(config.seed)
    adv = float(config.adv)
    small = rng.uniform(0.001, 0.02, size=config.accounts) * adv
    whales = rng.uniform(0.1, 0.6, size=config.whales) * adv
    units = np.concatenate([small, whales])
    sizes = np.round(units * SIZE_SCALE).astype(np.int64)
    multiples = rng.integers(100, 161, size=units.size)
    return [int(x) for x in sizes], [int(x) for x in multiples]


def run_concentration_bench(config: ConcentrationBenchConfig) -> dict[str, Any]:
    """Return the cascade figures of the same book with and without the add-on, at every shock of ``config``."""
    from pmoracle.bench.risk import bench_market
    from pmoracle.config.params import default_params_text
    from pmoracle.risk.inputs import Portfolio, Position
    from pmoracle.risk.margin import WAD_PER_MONEY, Book
    from pmoracle.risk.params import parse_params
    from pmoracle.risk.stress import LiquidationModel, Shock, run_cascade

    market, _ = bench_market(0)
    perp = Instrument("BTC", InstrumentKind.PERPETUAL)
    sizes, multiples = concentration_book(config)
    stress = StressParams(Fraction(1), config.depth, (("BTC", config.adv),), (("BTC", config.daily_vol),), ())
    model = LiquidationModel(LIQUIDATION, LIQUIDATION.max_discount, insurance_fund=0)
    index_wad = market.underlying("BTC").index * 10**10
    out: dict[str, Any] = {"accounts": len(sizes), "adv": float(config.adv), "runs": {}}
    for name, text in (
        ("without", default_params_text()),
        ("with", default_params_text() + concentration_params_text(config)),
    ):
        params = parse_params(text)
        positions = [
            Portfolio((Position(perp, s, cost=s * index_wad // SIZE_SCALE),), account=(a + 1).to_bytes(20, "big"))
            for a, s in enumerate(sizes)
        ]
        book = Book(market, params, positions)
        # each account posts its multiple of IM (cash); its perpetual was bought at the index (cost = notional)
        funded = [
            replace(p, cash=book.account_margin(a).initial_margin * multiples[a] // 100 * WAD_PER_MONEY)
            for a, p in enumerate(positions)
        ]
        runs = []
        for move in config.shocks:
            result = run_cascade(market, params, funded, Shock((("BTC", Fraction(move)),)), stress, model)
            runs.append(
                {
                    "shock": move,
                    "cascade_depth": result.cascade_depth,
                    "breached_per_step": [s.accounts_breached for s in result.steps],
                    "whole_books": sum(s.accounts_whole for s in result.steps),
                    "shortfall_usd": result.shortfall / WAD,
                    "btc_path_usd": [p / PRICE_SCALE for p in dict(result.price_path)["BTC"]],
                }
            )
        out["runs"][name] = {
            "params_hash": "0x" + params.params_hash.hex(),
            "margin_posted_usd": sum(
                book.account_margin(a).initial_margin * multiples[a] // 100 for a in range(len(sizes))
            )
            / MONEY_SCALE,
            "addon_usd": sum(book.concentration_addon(a) for a in range(len(sizes))) / MONEY_SCALE,
            "shocks": runs,
        }
    out["btc_held"] = sum(sizes) / SIZE_SCALE
    out["largest_btc"] = max(sizes) / SIZE_SCALE
    return out


def format_concentration_bench(r: dict[str, Any]) -> str:
    """Return the comparison as a text table."""
    without, with_ = r["runs"]["without"], r["runs"]["with"]
    lines = [
        f"Concentration add-on against the cascade: {r['accounts']:,} accounts long {r['btc_held']:,.0f} units "
        f"(largest {r['largest_btc']:,.0f}) against an ADV of {r['adv']:,.0f}, each posting 100-160% of its IM",
        f"  margin posted: {without['margin_posted_usd']:,.0f} USD without the add-on, "
        f"{with_['margin_posted_usd']:,.0f} with it (add-on {with_['addon_usd']:,.0f} USD of MM)",
        "",
        f"{'shock':>7}{'depth':>8}{'whole':>7}{'shortfall (USD)':>18}{'final price':>13}"
        f"{'depth':>9}{'whole':>7}{'shortfall (USD)':>18}{'final price':>13}",
        f"{'':>7}{'--- without the add-on ---':^46}{'--- with the add-on ---':^47}",
    ]
    for a, b in zip(without["shocks"], with_["shocks"], strict=True):
        cells = []
        for run in (a, b):
            cells.append(
                f"{run['cascade_depth']:>8}{run['whole_books']:>7}{run['shortfall_usd']:>18,.0f}"
                f"{run['btc_path_usd'][-1]:>13,.0f}"
            )
        lines.append(f"{float(a['shock']):>7.0%}{cells[0]}{' ':>1}{cells[1]}")
    return "\n".join(lines)


def write_concentration_plot(path: pathlib.Path, r: dict[str, Any]) -> None:
    """Write a PNG: the shortfall against the shock with and without the add-on, and the price path at the headline
    shock.

    Errors: ``InputError`` naming ``--plot`` if the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    headline = ConcentrationBenchConfig.headline
    fig, (losses, prices) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for name, style in (("without", "tab:red"), ("with", "tab:green")):
        runs = r["runs"][name]["shocks"]
        label = f"{name} the add-on"
        losses.plot([-100 * float(x["shock"]) for x in runs], [x["shortfall_usd"] / 1e6 for x in runs], "o-",
                    color=style, label=label)  # fmt: skip
        path_usd = next(x for x in runs if x["shock"] == headline)["btc_path_usd"]
        prices.plot(range(len(path_usd)), [100 * p / path_usd[0] for p in path_usd], "o-", color=style, label=label)
    losses.set_xlabel("initial drop, %")
    losses.set_ylabel("shortfall (insurance fund pays), million USD")
    losses.legend()
    prices.set_xlabel("step (0: before the shock, 1: after it, then each step's impact)")
    prices.set_ylabel("price, % of before the shock")
    prices.set_title(f"price path at a {-100 * float(headline):.0f}% drop", fontsize=10)
    prices.legend()
    fig.suptitle(
        f"{r['accounts']:,} accounts long {r['btc_held']:,.0f} units against an ADV of {r['adv']:,.0f}: "
        "the cascade with and without the concentration add-on"
    )
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError("--plot", f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
