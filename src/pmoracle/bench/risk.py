"""The risk-engine benchmark: risk arrays, a full book recompute, the int64 multiply-add limit, one update.

Every figure is measured in this run on this machine; ratios compare against the limit measured alongside.
The pricing figures (deterministic Black-76 against numpy+scipy and QuantLib) come from ``bench/pricing.py``.
"""

from __future__ import annotations

import math
import os
import pathlib
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from pmoracle.bench.pricing import format_pricing_bench, run_pricing_bench
from pmoracle.config.params import default_params_text
from pmoracle.risk.inputs import (
    MONEY_SCALE,
    PRICE_SCALE,
    SIZE_SCALE,
    WAD,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    Smile,
    UnderlyingMarket,
)
from pmoracle.risk.margin import Book, compute_accounts, compute_risk_arrays
from pmoracle.risk.params import RiskParams, parse_params
from pmoracle.risk.pmrm2 import (
    Pmrm2Book,
    Pmrm2ExpiryMarket,
    Pmrm2Feed,
    Pmrm2Market,
    Pmrm2Option,
    compute_pmrm2_margin,
)
from pmoracle.risk.scenarios import compute_scenarios

T0 = 1_795_680_000
DAY = 86400
MADD_ROWS = 16
PMRM2_PRESET = pathlib.Path(__file__).resolve().parents[3] / "examples" / "params" / "derive-pmrm2.toml"


@dataclass(frozen=True)
class RiskBenchConfig:
    """Sizes of one benchmark run."""

    options: int = 2000
    accounts: int = 1_000_000
    positions: int = 20
    scenarios: int = 200
    update_accounts: int = 2000
    repeats: int = 3
    pmrm2_accounts: int = 200


QUICK = RiskBenchConfig(options=500, accounts=100_000, update_accounts=500, repeats=2, pmrm2_accounts=50)


def bench_params(n_scenarios: int) -> RiskParams:
    """Return the default model with a price grid giving exactly ``n_scenarios`` (3 vol states + 2 extremes)."""
    n_moves = (n_scenarios - 2) // 3
    if n_moves * 3 + 2 != n_scenarios:
        raise ValueError(f"scenario count {n_scenarios} is not 3 * moves + 2")
    moves = ", ".join(f'"{k - n_moves // 2}/{n_moves // 2}"' for k in range(n_moves))
    text = default_params_text()
    start = text.index("moves = [", text.index("[price]"))
    end = text.index("\n", start)
    return parse_params(text[:start] + f"moves = [{moves}]" + text[end:])


def bench_market(n_options: int) -> tuple[MarketSnapshot, list[Instrument]]:
    """Return a one-underlying market with 12 expiries and ``n_options`` options across strikes."""
    expiries = [T0 + d * DAY for d in (1, 2, 7, 14, 30, 60, 90, 120, 180, 270, 365, 730)]
    smiles = []
    for e in expiries:
        t = (e - T0) / (365 * DAY)
        w = 0.36 * t
        smiles.append(Smile(e, round(0.6 * w * WAD), round(0.8 * w * WAD), -WAD * 3 // 10, 0, WAD // 2))
    market = MarketSnapshot(
        time=T0, underlyings=(UnderlyingMarket("BTC", 95_000 * PRICE_SCALE, WAD * 3 // 100, tuple(smiles)),)
    )
    per_expiry = math.ceil(n_options / (2 * len(expiries)))
    instruments = []
    for e in expiries:
        for j in range(per_expiry):
            strike = round(95_000 * (0.5 + 1.5 * j / per_expiry)) * PRICE_SCALE
            instruments.append(Instrument("BTC", InstrumentKind.CALL, e, strike))
            instruments.append(Instrument("BTC", InstrumentKind.PUT, e, strike))
    return market, instruments[:n_options]


def bench_pmrm2_market(market: MarketSnapshot, instruments: list[Instrument]) -> Pmrm2Market:
    """Return the PMRM_2 view of the bench market: forwards from the rate, each listed strike's vol from its smile."""
    u = market.underlyings[0]
    index, rate = u.index / PRICE_SCALE, u.rate / WAD
    expiries = []
    for smile in u.smiles:
        t = (smile.expiry - T0) / (365 * DAY)
        forward = index * math.exp(rate * t)
        vols = []
        for strike in sorted({i.strike / PRICE_SCALE for i in instruments if i.expiry == smile.expiry}):
            k = math.log(strike / forward)
            a, b, rho, m, sigma = (x / WAD for x in (smile.a, smile.b, smile.rho, smile.m, smile.sigma))
            w = a + b * (rho * (k - m) + math.sqrt((k - m) ** 2 + sigma**2))
            vols.append((strike, math.sqrt(w / t)))
        expiries.append(Pmrm2ExpiryMarket(smile.expiry, 0.0, forward, 1.0, rate, 1.0, 1.0, tuple(sorted(set(vols)))))
    feed = Pmrm2Feed(index, 1.0)
    return Pmrm2Market(T0, u.symbol, feed, feed, Pmrm2Feed(1.0, 1.0), tuple(expiries), ())


def run_pmrm2_bench(config: RiskBenchConfig, market: MarketSnapshot, instruments: list[Instrument]) -> dict[str, Any]:
    """Return the PMRM_2 preset's time per account on books like the grid's (same options and positions)."""
    params = parse_params(PMRM2_PRESET.read_text(encoding="utf-8")).pmrm2
    if params is None:
        raise ValueError(f"{PMRM2_PRESET} has no [pmrm2] section")
    pmrm2_market = bench_pmrm2_market(market, instruments)
    options = instruments
    rng = np.random.default_rng(13)
    samples = []
    for _ in range(config.pmrm2_accounts):
        picks = rng.integers(0, len(options), size=config.positions)
        sizes = rng.integers(-100, 100, size=config.positions)
        book = Pmrm2Book(
            tuple(
                Pmrm2Option(o.expiry, o.strike / PRICE_SCALE, o.kind == InstrumentKind.CALL, float(s))
                for o, s in ((options[int(i)], s) for i, s in zip(picks, sizes, strict=True))
            ),
            0.0, 0.0, 0.0, (), 0.0,
        )  # fmt: skip
        start = time.perf_counter()
        compute_pmrm2_margin(params, pmrm2_market, book)
        samples.append(time.perf_counter() - start)
    return {
        "preset": "examples/params/derive-pmrm2.toml",
        "scenarios": len(params.scenarios),
        "accounts": config.pmrm2_accounts,
        "positions": config.positions,
        "median_us": statistics.median(samples) * 1e6,
        "accounts_per_second": len(samples) / sum(samples),
    }


@njit(cache=True, parallel=True)
def _madd_limit(rows, iterations, out):  # type: ignore[no-untyped-def]
    """The account loop's arithmetic (4 int32 rows x int64 sizes per pass) on L1-resident rows: the limit."""
    n_threads = out.shape[0]
    n_scen = rows.shape[1]
    for t in prange(n_threads):
        acc = np.zeros(n_scen, dtype=np.int64)
        for it in range(iterations):
            base = (it * 4) & (MADD_ROWS - 1)
            row0 = rows[base]
            row1 = rows[base + 1]
            row2 = rows[base + 2]
            row3 = rows[base + 3]
            sz0 = np.int64(it - 7)
            sz1 = np.int64(it + 3)
            sz2 = np.int64(5 - it)
            sz3 = np.int64(it)
            for s in range(n_scen):
                acc[s] += (sz0 * row0[s] + sz1 * row1[s]) + (sz2 * row2[s] + sz3 * row3[s])
        total = 0
        for s in range(n_scen):
            total ^= acc[s]
        out[t] = total


def measure_madd_rate(n_threads: int, n_scen: int) -> float:
    """Return int64 multiply-adds per second on ``n_threads`` threads (best of 3)."""
    numba.set_num_threads(n_threads)
    rng = np.random.default_rng(1)
    rows = rng.integers(-(10**9), 10**9, size=(MADD_ROWS, n_scen), dtype=np.int64).astype(np.int32)
    out = np.zeros(n_threads, dtype=np.int64)
    _madd_limit(rows, 10, out)
    iterations = 50_000
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        _madd_limit(rows, iterations, out)
        best = min(best, time.perf_counter() - start)
    return n_threads * iterations * 4 * n_scen / best


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_risk_bench(config: RiskBenchConfig, quick: bool = False) -> dict[str, Any]:
    """Run every risk benchmark once and return the figures."""
    threads = numba.config.NUMBA_NUM_THREADS
    results: dict[str, Any] = {"threads_available": threads, "config": config.__dict__}
    params = bench_params(config.scenarios)
    market, instruments = bench_market(config.options)
    scenarios = compute_scenarios(params, market)
    compute_risk_arrays(market, params, instruments[:4], scenarios)  # compile / load the cache
    times = []
    for _ in range(config.repeats):
        start = time.perf_counter()
        arrays = compute_risk_arrays(market, params, instruments, scenarios)
        times.append(time.perf_counter() - start)
    results["risk_arrays"] = {
        "options": len(instruments),
        "scenarios": len(scenarios),
        "seconds": min(times),
        "valuations_per_second": len(instruments) * (len(scenarios) + 1) / min(times),
    }

    rss_before = _peak_rss_bytes()
    rng = np.random.default_rng(7)
    n_acc, n_pos = config.accounts, config.positions
    inst = np.sort(rng.integers(0, len(instruments), size=(n_acc, n_pos), dtype=np.int64), axis=1).reshape(-1)
    size = rng.integers(-100 * SIZE_SCALE, 100 * SIZE_SCALE, size=n_acc * n_pos, dtype=np.int64)
    starts = np.arange(n_acc, dtype=np.int64) * n_pos
    ends = starts + n_pos
    # settlement cash per account (MONEY, folded), +-1e6 USD: equity counts it, margins never read it
    cash = rng.integers(-(10**6) * MONEY_SCALE, 10**6 * MONEY_SCALE, size=n_acc, dtype=np.int64)
    compute_accounts(arrays, params, starts[:10], ends[:10], inst, size, cash[:10])
    madds = n_acc * n_pos * len(scenarios)
    book: dict[str, Any] = {"accounts": n_acc, "positions_per_account": n_pos, "multiply_adds": madds}
    reference = None
    per_core_limit = math.nan
    for n_threads in sorted({1, min(2, threads), threads}):
        numba.set_num_threads(n_threads)
        best = math.inf
        best_cpu = math.inf
        for _ in range(config.repeats):
            start_cpu = time.process_time()
            start = time.perf_counter()
            out = compute_accounts(arrays, params, starts, ends, inst, size, cash)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
        digest = (out.maintenance_margin.sum(), out.initial_margin.sum(), out.equity.sum(), out.worst.sum())
        if reference is None:
            reference = digest
        limit = measure_madd_rate(n_threads, len(scenarios))
        if n_threads == 1:
            per_core_limit = limit
        book[f"threads_{n_threads}"] = {
            "seconds": best,
            "cpu_seconds": best_cpu,  # all threads together: the work, much less inflated by other processes
            "load_average_1min": os.getloadavg()[0],
            "multiply_adds_per_second": madds / best,
            "madd_limit_per_second": limit,
            "fraction_of_limit": madds / best / limit,
            # per core-second of CPU time against the 1-thread limit: the load-robust form of the same figure
            "fraction_of_limit_cpu": madds / best_cpu / per_core_limit,
            "identical_to_1_thread": digest == reference,
        }
    book["peak_rss_delta_bytes"] = _peak_rss_bytes() - rss_before
    book["input_bytes"] = inst.nbytes + size.nbytes + starts.nbytes + ends.nbytes + cash.nbytes + arrays.r.nbytes
    results["full_recompute"] = book
    numba.set_num_threads(threads)

    prng = np.random.default_rng(11)
    picks = prng.integers(0, len(instruments), size=(config.update_accounts + 200, n_pos))
    sizes = prng.integers(-100 * SIZE_SCALE, 100 * SIZE_SCALE, size=(config.update_accounts + 200, n_pos))

    def portfolio(k: int) -> Portfolio:
        return Portfolio(
            positions=tuple(Position(instruments[int(i)], int(s)) for i, s in zip(picks[k], sizes[k], strict=True))
        )

    live = Book(market, params, [portfolio(k) for k in range(config.update_accounts)])
    updates = [portfolio(config.update_accounts + k) for k in range(200)]
    live.update_account(0, updates[0])
    samples = []
    for k, p in enumerate(updates):
        start = time.perf_counter()
        live.update_account(k % config.update_accounts, p)
        samples.append(time.perf_counter() - start)
    results["incremental_update"] = {
        "book_accounts": config.update_accounts,
        "positions": n_pos,
        "median_us": statistics.median(samples) * 1e6,
    }
    results["pmrm2"] = run_pmrm2_bench(config, market, instruments)
    results["pricing"] = run_pricing_bench(quick=quick)
    return results


def format_risk_bench(results: dict[str, Any]) -> str:
    """Return the figures as readable lines with their targets."""
    ra = results["risk_arrays"]
    lines = [
        f"risk arrays: {ra['options']} options x {ra['scenarios']} scenarios in {ra['seconds'] * 1e3:.1f} ms "
        f"({ra['valuations_per_second'] / 1e6:.2f} M valuations/s)",
    ]
    book = results["full_recompute"]
    lines.append(
        f"full recompute: {book['accounts']:,} accounts x {book['positions_per_account']} positions x "
        f"{ra['scenarios']} scenarios = {book['multiply_adds'] / 1e9:.1f} G int64 multiply-adds"
    )
    for key in sorted(k for k in book if k.startswith("threads_")):
        fig = book[key]
        lines.append(
            f"  {key.split('_')[1]} thread(s): {fig['seconds']:.3f} s, {fig['multiply_adds_per_second'] / 1e9:.2f} G/s"
            f" (CPU {fig['cpu_seconds']:.3f} s = {fig['fraction_of_limit_cpu'] * 100:.0f}% of the 1-core limit per"
            f" core-second; load {fig['load_average_1min']:.1f})"
            f" = {fig['fraction_of_limit'] * 100:.0f}% of the measured limit"
            f" {fig['madd_limit_per_second'] / 1e9:.2f} G/s"
            f" (target <= 0.5 s on 2 cores, >= 40%); identical to 1 thread: {fig['identical_to_1_thread']}"
        )
    lines.append(
        f"  memory: peak RSS +{book['peak_rss_delta_bytes'] / 2**20:.0f} MiB"
        f" (inputs {book['input_bytes'] / 2**20:.0f} MiB;"
        " target <= 2 GiB)"
    )
    inc = results["incremental_update"]
    lines.append(
        f"incremental update: median {inc['median_us']:.1f} us per account of {inc['positions']} positions "
        "(target < 50 us)"
    )
    pm = results["pmrm2"]
    lines.append(
        f"PMRM_2 preset ({pm['preset']}, {pm['scenarios']} scenarios): median {pm['median_us']:,.0f} us per account"
        f" of {pm['positions']} options ({pm['accounts_per_second']:,.0f} accounts/s on 1 core, binary64 Python:"
        " every account prices its own options in every scenario) against the default grid's"
        f" {inc['median_us']:.1f} us per account update ({ra['scenarios']} scenarios, risk arrays priced once)"
    )
    return format_pricing_bench(results["pricing"]) + "\n" + "\n".join(lines)
