"""Measure the node's work on a full read of a big book, without a chain: decode, convert, engine, round.

Run: ``pmoracle bench book [--accounts 10000,100000,1000000] [--gc-on] [--json]``. For each number of accounts N,
in a fresh process (so that its peak RSS is its own), the bench writes ``MarginAccountsReader``'s packed pages of N
accounts in memory, with the accounts ``pmoracle bench chain`` seeds (trader 2i+1 long one BTC perpetual from
trader 2i+2 at 60,000 USD), in pages of ``DEFAULT_PACKED_PAGE`` accounts as a full read asks for them, and times
each stage the node runs on them:

- ``decode``: ``decode_packed_accounts`` of every page (writing the pages is not timed);
- ``convert``: the accounts into ``Portfolio`` objects, sorted (``convert_accounts``, as ``read_snapshot`` does,
  one page at a time);
- ``engine``: the risk engine's ``Book`` over them (risk arrays, account layout, the kernel);
- ``round``: the rest of ``compute_round`` (``compute_round_from_book``): every account's margin, leaves, Merkle
  tree, risk-array tree and report.

By default the stages run with the cyclic garbage collector paused, as the node runs them
(``pmoracle.node.gcpause``); ``--gc-on`` leaves it on. Either way the bench then times one full collection with the
round's book alive (``gc_after_s``): what the pause defers, and what each later full collection costs while the book
lives; and one more after ``gc.freeze()`` (``gc_after_frozen_s``): what freezing the book would save. Also
reported: the collector's runs and seconds during the stages, the process's RSS before them and its peak (VmHWM).
Nothing here is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

from pmoracle.bench import parse_int_list
from pmoracle.chain.snapshot import (
    DEFAULT_PACKED_PAGE,
    ChainSnapshot,
    RawAccount,
    convert_accounts,
    decode_packed_accounts,
)
from pmoracle.config.params import default_params
from pmoracle.errors import InputError
from pmoracle.node.gcpause import gc_paused
from pmoracle.node.round import compute_round_from_book
from pmoracle.risk.inputs import PRICE_SCALE, WAD, Instrument, InstrumentKind, MarketSnapshot, UnderlyingMarket
from pmoracle.risk.margin import Book
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.packed import encode_packed_accounts

DEFAULT_ACCOUNTS = "10000,100000,1000000"
MAX_ACCOUNTS = 10_000_000
PERPETUAL_ID = 1  # the chain bench lists one instrument: the BTC perpetual, id 1
PRICE = 60_000 * PRICE_SCALE
SIZE = 10_000  # one BTC (SIZE_SCALE units)
TIME = 1_767_225_600  # the book's block timestamp (any)
STAGES = ("decode", "convert", "engine", "round")


def make_raw_accounts(start: int, end: int) -> list[RawAccount]:
    """Return accounts ``start`` to ``end`` - 1 as the chain bench's trades leave them: trader 2i+1 (index 2i) long
    ``SIZE`` of the perpetual at ``PRICE``, trader 2i+2 short as much; no cash, no collateral, no funding."""
    cost = SIZE * PRICE * (WAD // PRICE_SCALE) // 10**4  # size x price in USD WAD, signed like the size
    return [
        (
            (i + 1).to_bytes(20, "big"),
            0,
            [(PERPETUAL_ID, SIZE, cost, 0) if i % 2 == 0 else (PERPETUAL_ID, -SIZE, -cost, 0)],
            [],
        )
        for i in range(start, end)
    ]


def bench_snapshot(portfolios: tuple[Any, ...] = ()) -> ChainSnapshot:
    """Return the snapshot the bench's accounts are read in: a BTC index and the perpetual, nothing else."""
    market = MarketSnapshot(time=TIME, underlyings=(UnderlyingMarket("BTC", PRICE, rate=0, smiles=()),), assets=())
    perpetual = Instrument("BTC", InstrumentKind.PERPETUAL, 0, 0)
    return ChainSnapshot(
        block_number=1_000,
        block_hash=b"\x0b" * 32,
        timestamp=TIME,
        market=market,
        portfolios=portfolios,
        instruments=((PERPETUAL_ID, perpetual),),
        funding=((PERPETUAL_ID, 0),),
    )


def _status_mib(key: str) -> float | None:
    """Return a ``/proc/self/status`` memory line (``VmHWM``, ``VmRSS``) in MiB; None where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Return this process's peak resident set (VmHWM; ru_maxrss where /proc is missing), MiB."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Return this process's resident set now (VmRSS), MiB; 0 where /proc is missing."""
    return _status_mib("VmRSS") or 0.0


class _CollectorClock:
    """Counts the collector's runs and their seconds (``gc.callbacks``) while installed."""

    def __init__(self) -> None:
        self.runs = 0
        self.full_runs = 0
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.runs += 1
        self.full_runs += info["generation"] == 2
        self.seconds += time.perf_counter() - self._started


def measure_book(accounts: int, *, gc_on: bool = False, page: int = DEFAULT_PACKED_PAGE) -> dict[str, Any]:
    """Return the seconds of each stage of a full read and round of ``accounts`` accounts in this process.

    Returns:
        ``accounts``, ``gc_on``, ``{stage}_s`` for each of ``STAGES`` and ``total_s`` (wall), ``{stage}_cpu_s`` and
        ``total_cpu_s`` (the process's CPU, every thread: steadier than wall on a shared machine), ``gc_runs``,
        ``gc_full_runs``,
        ``gc_s`` (the collector during the stages), ``gc_after_s`` (one full collection after them, the book
        alive), ``gc_after_frozen_s`` (the same after ``gc.freeze()``), ``rss_start_mib``, ``peak_rss_mib`` and
        ``report`` (the round's report digest fields, hex).
    """
    head = bench_snapshot()
    instruments, funding = dict(head.instruments), dict(head.funding)
    params = default_params()
    committee = make_test_committee(4).config
    Book(head.market, params, convert_accounts([make_raw_accounts(0, 2)], instruments, {}, funding)).result()  # JIT
    gc.collect()
    rss_start = current_rss_mib()
    clock = _CollectorClock()
    seconds = dict.fromkeys(STAGES, 0.0)  # wall
    cpu = dict.fromkeys(STAGES, 0.0)  # this process's CPU, every thread (the engine's kernel runs on several)

    def add(stage: str, since: tuple[float, float], less: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        seconds[stage] += now[0] - since[0] - less[0]
        cpu[stage] += now[1] - since[1] - less[1]
        return now

    with nullcontext() if gc_on else gc_paused():
        gc.callbacks.append(clock)
        try:
            in_pages = [0.0, 0.0]  # wall and CPU spent writing and decoding pages inside the conversion's loop

            def pages() -> Iterator[list[RawAccount]]:
                for start in range(0, accounts, page):
                    entered = time.perf_counter(), time.process_time()
                    end = min(start + page, accounts)
                    data = encode_packed_accounts(bytes(32), end, accounts, make_raw_accounts(start, end))
                    decoding = time.perf_counter(), time.process_time()
                    raw = decode_packed_accounts(data).accounts
                    done = add("decode", decoding)
                    in_pages[0] += done[0] - entered[0]
                    in_pages[1] += done[1] - entered[1]
                    del data
                    yield raw

            t = time.perf_counter(), time.process_time()
            portfolios = convert_accounts(pages(), instruments, {}, funding)
            t = add("convert", t, (in_pages[0], in_pages[1]))
            snapshot = bench_snapshot(portfolios)
            engine = Book(snapshot.market, params, snapshot.portfolios)
            t = add("engine", t)
            report = compute_round_from_book(snapshot, params, committee, engine, None).report
            add("round", t)
        finally:
            gc.callbacks.remove(clock)
    collecting = time.perf_counter()
    gc.collect()
    gc_after = time.perf_counter() - collecting
    gc.freeze()  # what gc.freeze() after a round would save: the next full collection skips the frozen book
    collecting = time.perf_counter()
    gc.collect()
    gc_after_frozen = time.perf_counter() - collecting
    gc.unfreeze()
    return {
        "accounts": accounts,
        "gc_on": gc_on,
        **{f"{stage}_s": seconds[stage] for stage in STAGES},
        "total_s": sum(seconds.values()),
        **{f"{stage}_cpu_s": cpu[stage] for stage in STAGES},
        "total_cpu_s": sum(cpu.values()),
        "gc_runs": clock.runs,
        "gc_full_runs": clock.full_runs,
        "gc_s": clock.seconds,
        "gc_after_s": gc_after,
        "gc_after_frozen_s": gc_after_frozen,
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
        "report": {
            "accounts_root": "0x" + report.accounts_root.hex(),
            "account_count": report.account_count,
            "risk_arrays_root": "0x" + report.risk_arrays_root.hex(),
        },
    }


def measure_book_in_subprocess(accounts: int, *, gc_on: bool) -> dict[str, Any]:
    """Return :func:`measure_book` of ``accounts`` run in a fresh Python process (its own peak RSS)."""
    # through the command line, which chooses numba's cache directory before the engine is imported (numba_cache)
    command = [sys.executable, "-m", "pmoracle.cli", "bench", "book", "--single", str(accounts)]
    command += ["--gc-on"] if gc_on else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InputError("--accounts", f"the bench of {accounts} accounts failed: {done.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run_book_bench(sizes: tuple[int, ...], *, gc_on: bool) -> dict[str, Any]:
    """Return the figures of every size (each measured in its own process), with the load average around them."""
    load_before = os.getloadavg()
    rows = [measure_book_in_subprocess(n, gc_on=gc_on) for n in sizes]
    return {"sizes": rows, "gc_on": gc_on, "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
            "cpus": os.cpu_count()}  # fmt: skip


def format_book_bench(figures: dict[str, Any]) -> str:
    """Return the figures as a table, one row per size."""
    collector = "on" if figures["gc_on"] else "paused"
    header = f"{'accounts':>10s} {'decode':>8s} {'convert':>8s} {'engine':>8s} {'round':>8s} {'total':>8s} "
    header += (
        f"{'CPU':>8s} {'gc runs':>8s} {'gc s':>7s} {'gc after':>8s} {'frozen':>7s} {'RSS start':>9s} {'peak RSS':>9s}"
    )
    lines = [f"the node's book on a full read (cyclic GC {collector}; wall seconds, and CPU seconds in all; RSS MiB)",
             header]  # fmt: skip
    for row in figures["sizes"]:
        lines.append(
            f"{row['accounts']:10d} {row['decode_s']:8.2f} {row['convert_s']:8.2f} {row['engine_s']:8.2f} "
            f"{row['round_s']:8.2f} {row['total_s']:8.2f} {row['total_cpu_s']:8.2f} {row['gc_runs']:8d} "
            f"{row['gc_s']:7.2f} "
            f"{row['gc_after_s']:8.2f} {row['gc_after_frozen_s']:7.2f} {row['rss_start_mib']:9.0f} "
            f"{row['peak_rss_mib']:9.0f}"
        )
    before, after = figures["loadavg_before"], figures["loadavg_after"]
    lines.append(f"load average before {before[0]:.2f}, after {after[0]:.2f} ({figures['cpus']} CPUs)")
    return "\n".join(lines)


def parse_accounts(text: str) -> tuple[int, ...]:
    """Return the sizes of ``--accounts 10000,100000`` (InputError("--accounts") when malformed or out of range)."""
    return parse_int_list(text, "--accounts", 2, MAX_ACCOUNTS, "numbers of accounts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the book benchmark's arguments."""
    parser.add_argument(
        "--accounts", default=DEFAULT_ACCOUNTS, help=f"numbers of accounts (default {DEFAULT_ACCOUNTS})"
    )
    parser.add_argument("--gc-on", action="store_true", help="leave the cyclic GC on (the node pauses it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # one size in this process: one JSON line


def run(args: argparse.Namespace) -> int:
    """Run the book benchmark and print its table (or JSON)."""
    if args.single is not None:  # the process measure_book_in_subprocess starts
        print(json.dumps(measure_book(parse_accounts(str(args.single))[0], gc_on=args.gc_on)))
        return 0
    figures = run_book_bench(parse_accounts(args.accounts), gc_on=args.gc_on)
    print(json.dumps(figures, indent=2) if args.json else format_book_bench(figures))
    return 0
