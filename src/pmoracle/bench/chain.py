"""Measure the chain layer on a local anvil: per-request latency, and full and incremental snapshot reads versus the
number of accounts.

Run: ``pmoracle bench chain [--accounts 1000] [--page 200] [--workers 1,2,4] [--changed 10000] [--json]`` (or
``python -m pmoracle.bench.chain``). The ledger is seeded directly (the bench holds the Exchange role and applies
trades itself, two new accounts per trade, sent in JSON-RPC batches and mined in bulk). Then it times:

- a full read (``read_snapshot``) packed (``MarginAccountsReader`` under a state override) and through the ABI
  pages of ``--page`` accounts, checking that both give the same snapshot, and packed with each number of pages in
  flight;
- an incremental read (``read_snapshot_since``) packed from the ledger's logs, packed scanning every account, and
  through the ABI views, after ``--changed`` accounts traded, and checks that each equals the full read of the same
  block;
- an incremental read over a funding payment of the perpetual every account holds (each is re-read, or every
  account is read when they are more than ``FULL_READ_SHARE`` of the ledger), checked the same way.

Prints a table (and with ``--json`` one JSON object); nothing here is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from eth_utils import keccak
from web3 import Web3

from pmoracle.bench import parse_int_list
from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment, deploy_contract, open_transmitter
from pmoracle.chain.snapshot import ChainSnapshot, read_snapshot, read_snapshot_since
from pmoracle.devnet.devchain import devchain
from pmoracle.devnet.world import World, encode_call
from pmoracle.errors import InputError

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")  # anvil dev account 0
BTC = b"BTC".ljust(32, b"\0")
PRICE = 60_000 * 10**8


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def _trader(index: int) -> str:
    """Return the bench's trader ``index`` (1-based): a plain address, never a key (the ledger needs none)."""
    return Web3.to_checksum_address(index.to_bytes(20, "big"))


def _trades(world: World, pairs: range, size: int) -> list[tuple[str, list[Any]]]:
    """Return ``applyTrade`` transactions: trader 2i+1 buys ``size`` from trader 2i+2 for each i of ``pairs``."""
    return [
        world._tx(world.admin, "MarginAccounts", "applyTrade", _trader(2 * i + 1), _trader(2 * i + 2), 1, size, PRICE)
        for i in pairs
    ]


def _comparable(snapshot: ChainSnapshot) -> ChainSnapshot:
    return replace(snapshot, rpc_calls=0, changed_accounts=None)


def run_chain_bench(
    accounts: int = 1000, page: int = 200, workers: tuple[int, ...] = (1, 2, 4), changed: int = 10_000
) -> dict[str, Any]:
    """Deploy feeds and ledger on a fresh anvil, open ``accounts`` accounts, and time reads.

    Args:
        accounts: accounts opened (two per trade).
        page: accounts per ``accountsPage`` call of the ABI full read.
        workers: numbers of pages in flight timed for the packed full read (in four pages).
        changed: accounts that trade between the base block and the incrementally read block (at most
            ``accounts``).

    Returns:
        The figures: ``rows`` ((measure, median ms) pairs, as the table prints them) and named keys
        (``setup_s``, ``accounts_per_s``, ``full_read_s`` (packed), ``full_read_abi_s``, ``full_read_best_s``,
        ``incremental_read_s`` (packed, from logs), ``incremental_read_scan_s``, ``incremental_read_abi_s``,
        ``packed_equals_abi``, ...).
    """
    rows: list[tuple[str, float]] = []
    figures: dict[str, Any] = {"accounts": accounts, "page": page}
    with devchain(prune_history=64) as chain:
        tx = open_transmitter(chain.url, KEY)
        client: ChainClient = tx.client
        feeds = deploy_contract(tx, "MarketFeeds", tx.address, tx.address)
        zero = Web3.to_checksum_address(bytes(20))
        usdc = deploy_contract(tx, "MockERC20", "USD Coin (mock)", "USDC", 6)
        ledger = deploy_contract(tx, "MarginAccounts", tx.address, feeds, zero, usdc)
        deployment = Deployment(client.chain_id, 0, {"MarketFeeds": feeds, "MarginAccounts": ledger})
        world = World(chain.url, deployment, tx.address)
        world.rpc("evm_setBlockGasLimit", [hex(6_000_000_000)])  # the world's batches: ~2,000 per block
        world.send_all([
            world._tx(tx.address, "MarketFeeds", "setIndex", BTC, PRICE, 0),
            world._tx(tx.address, "MarginAccounts", "listInstrument", BTC, 0, 0, 0),
            # the book is what is measured, not the Exchange: the bench applies its trades itself
            world._tx(tx.address, "MarginAccounts", "grantRole", keccak(text="EXCHANGE_ROLE"), tx.address),
            world._tx(tx.address, "MarginAccounts", "grantRole", keccak(text="FEEDER_ROLE"), tx.address),
        ])  # fmt: skip
        t = time.perf_counter()
        world.send_all(_trades(world, range(accounts // 2), 10_000))
        setup_s = time.perf_counter() - t
        figures |= {"setup_s": setup_s, "accounts_per_s": accounts / setup_s if setup_s else 0.0}
        rows.append((f"setup: {accounts // 2} trades sent and mined (ms)", setup_s * 1000))
        block = client.block_number()
        rows.append(("eth_blockNumber (ChainClient.request)", _median_ms(client.block_number, 200)))
        rows.append(("get_block(latest)", _median_ms(lambda: client.get_block("latest"), 200)))
        count = bytes.fromhex(encode_call("MarginAccounts", "accountCount")[2:])
        rows.append(
            ("call(accountCount) pinned by number", _median_ms(lambda: client.call_raw(ledger, count, block), 200))
        )
        repeat = 5 if accounts <= 20_000 else 1
        full = read_snapshot(client, deployment, block)
        ms = _median_ms(lambda: read_snapshot(client, deployment, block), repeat)
        rows.append((f"read_snapshot packed, {len(full.portfolios)} accounts ({full.rpc_calls} calls)", ms))
        figures["full_read_s"] = best = ms / 1000
        abi = read_snapshot(client, deployment, block, account_page_size=page, packed=False)
        ms = _median_ms(lambda: read_snapshot(client, deployment, block, account_page_size=page, packed=False), repeat)
        label = f"read_snapshot ABI pages, {len(abi.portfolios)} accounts, page {page} ({abi.rpc_calls} calls)"
        rows.append((label, ms))
        figures |= {"full_read_abi_s": ms / 1000, "packed_equals_abi": full == replace(abi, rpc_calls=full.rpc_calls)}
        packed_page = max(1, -(-accounts // 4))  # four packed pages, to have pages to put in flight
        for n in workers:
            ms = _median_ms(
                lambda n=n: read_snapshot(client, deployment, block, packed_page_size=packed_page, workers=n), repeat
            )
            rows.append((f"read_snapshot packed, pages of {packed_page}, {n} pages in flight", ms))
            figures[f"full_read_workers_{n}_s"] = ms / 1000
            best = min(best, ms / 1000)
        figures["full_read_best_s"] = best
        base = read_snapshot(client, deployment, block)
        moved = min(changed, accounts) // 2
        world.send_all(_trades(world, range(moved), 1))  # each trade changes two accounts
        head = client.block_number()
        full = read_snapshot(client, deployment, head)
        variants = (("incremental_read", "packed, from logs", True, True),
                    ("incremental_read_scan", "packed, scan", True, False),
                    ("incremental_read_abi", "ABI scan", False, False))  # fmt: skip
        for key, name, packed, from_logs in variants:
            t = time.perf_counter()
            incremental = read_snapshot_since(client, deployment, head, base, packed=packed, from_logs=from_logs)
            incremental_s = time.perf_counter() - t
            if incremental is None:
                raise InputError("--changed", f"the base block {base.block_number} could not be extended to {head}")
            figures |= {
                f"{key}_s": incremental_s,
                f"{key}_calls": incremental.rpc_calls,
                f"{key}_equals_full": _comparable(incremental) == _comparable(full),
            }
            label = f"read_snapshot_since {name}: {incremental.changed_accounts} changed"
            rows.append((f"{label} of {accounts} ({incremental.rpc_calls} calls)", incremental_s * 1000))
        figures |= {
            "changed_accounts": incremental.changed_accounts,
            "incremental_calls": figures["incremental_read_calls"],
            "incremental_equals_full": all(figures[f"{key}_equals_full"] for key, *_ in variants),
        }
        # a funding payment: every account holds the perpetual, owes more, and no log names it: all are re-read
        world.send_all([world._tx(tx.address, "MarginAccounts", "setFundingRate", 1, 10**15)])  # 0.1% a day
        world.rpc("evm_increaseTime", [3_600])
        world.send_all([world._tx(tx.address, "MarginAccounts", "payFunding", 1)])
        paid = client.block_number()
        t = time.perf_counter()
        after = read_snapshot_since(client, deployment, paid, full)
        if after is None:  # the holders are most of the ledger (FULL_READ_SHARE): what a node reads instead
            after = read_snapshot(client, deployment, paid)
        funding_s = time.perf_counter() - t
        figures |= {
            "funding_read_s": funding_s,
            "funding_read_calls": after.rpc_calls,
            "funding_read_accounts": after.changed_accounts,  # None: read in full
            "funding_read_equals_full": _comparable(after) == _comparable(read_snapshot(client, deployment, paid)),
        }
        how = "in full" if after.changed_accounts is None else f"{after.changed_accounts} holders re-read"
        label = f"read_snapshot_since packed, over a funding payment: {how}"
        rows.append((f"{label} ({after.rpc_calls} calls)", funding_s * 1000))
    figures["rows"] = rows
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the chain benchmark's arguments."""
    parser.add_argument("--accounts", type=int, default=1000, help="accounts opened on the ledger")
    parser.add_argument("--page", type=int, default=200, help="accounts per ABI page of the ABI full read")
    parser.add_argument("--workers", default="1,2,4", help="packed pages in flight timed (default 1,2,4)")
    parser.add_argument("--changed", type=int, default=10_000, help="accounts changed before the incremental read")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object too")


def parse_workers(text: str) -> tuple[int, ...]:
    """Return the worker counts of ``--workers 1,2,4`` (InputError("--workers") when malformed or outside [1, 64])."""
    return parse_int_list(text, "--workers", 1, 64, "counts")


def run(args: argparse.Namespace) -> int:
    """Run the chain benchmark and print its table."""
    if args.accounts < 2 or args.page < 1 or args.changed < 0:
        raise InputError("--accounts", f"need --accounts >= 2, --page >= 1, --changed >= 0, got {args}")
    figures = run_chain_bench(args.accounts, args.page, parse_workers(args.workers), args.changed)
    print(f"{'measure':72s} {'median ms':>10s}")
    for label, ms in figures["rows"]:
        print(f"{label:72s} {ms:10.2f}")
    print(f"packed full read equals the ABI full read: {figures['packed_equals_abi']}")
    print(f"incremental reads equal the full read of their block: {figures['incremental_equals_full']}")
    print(f"the read over a funding payment equals the full read of its block: {figures['funding_read_equals_full']}")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pmoracle.bench.chain``."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.bench.chain", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
