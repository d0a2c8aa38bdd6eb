"""Measure the chain layer on a local anvil: per-request latency and snapshot cost versus account count.

Run: ``pmoracle bench chain [--accounts 1000] [--page 200]`` (or ``python -m pmoracle.bench.chain``).
Prints a table; nothing here is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from eth_utils import keccak
from web3 import Web3

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment, deploy_contract, open_transmitter
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.devnet.devchain import devchain

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")  # anvil dev account 0
BTC = b"BTC".ljust(32, b"\0")


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def run_chain_bench(accounts: int = 1000, page: int = 200) -> list[tuple[str, float]]:
    """Deploy feeds and ledger on a fresh anvil, open ``accounts`` accounts, and time reads.

    Returns:
        (measure, median milliseconds) rows, the first one the setup time in seconds x 1000.
    """
    rows: list[tuple[str, float]] = []
    with devchain() as chain:
        tx = open_transmitter(chain.url, KEY)
        client: ChainClient = tx.client
        encoder = Web3()
        feeds_address = deploy_contract(tx, "MarketFeeds", tx.address, tx.address)
        zero = Web3.to_checksum_address(bytes(20))
        usdc = deploy_contract(tx, "MockERC20", "USD Coin (mock)", "USDC", 6)
        accounts_address = deploy_contract(tx, "MarginAccounts", tx.address, feeds_address, zero, usdc)
        feeds = encoder.eth.contract(address=feeds_address, abi=list(load_artifact("MarketFeeds").abi))
        ledger = encoder.eth.contract(address=accounts_address, abi=list(load_artifact("MarginAccounts").abi))
        tx.transact_call(feeds.functions.setIndex(BTC, 60_000 * 10**8, 0))
        tx.transact_call(ledger.functions.listInstrument(BTC, 0, 0, 0))
        # the book is what is measured, not the Exchange: the bench applies its trades itself
        tx.transact_call(ledger.functions.grantRole(keccak(text="EXCHANGE_ROLE"), tx.address))
        t = time.perf_counter()
        pending = []
        for i in range(accounts // 2):
            buyer = Web3.to_checksum_address((2 * i + 1).to_bytes(20, "big"))
            seller = Web3.to_checksum_address((2 * i + 2).to_bytes(20, "big"))
            pending.append(tx.send_call(ledger.functions.applyTrade(buyer, seller, 1, 10_000 + i, 60_000 * 10**8)))
        for p in pending:
            tx.wait(p)
        rows.append((f"setup: {len(pending)} trades sent and mined (ms)", (time.perf_counter() - t) * 1000))
        block = client.block_number()
        deployment = Deployment(client.chain_id, 0, {"MarketFeeds": feeds_address, "MarginAccounts": accounts_address})
        rows.append(("eth_blockNumber (ChainClient.request)", _median_ms(client.block_number, 200)))
        rows.append(("get_block(latest)", _median_ms(lambda: client.get_block("latest"), 200)))
        fn = ledger.functions.accountCount()
        rows.append(("call(accountCount) pinned by number", _median_ms(lambda: client.call(fn, block), 200)))
        for size in sorted({page, 50, 500}):
            snap = read_snapshot(client, deployment, block, account_page_size=size)
            ms = _median_ms(lambda s=size: read_snapshot(client, deployment, block, account_page_size=s), 5)
            rows.append((f"read_snapshot {len(snap.portfolios)} accounts, page {size} ({snap.rpc_calls} calls)", ms))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the chain benchmark's arguments."""
    parser.add_argument("--accounts", type=int, default=1000, help="accounts opened on the ledger")
    parser.add_argument("--page", type=int, default=200, help="snapshot page size (50 and 500 are always timed)")


def run(args: argparse.Namespace) -> int:
    """Run the chain benchmark and print its table."""
    rows = run_chain_bench(args.accounts, args.page)
    print(f"{'measure':60s} {'median ms':>10s}")
    for label, ms in rows:
        print(f"{label:60s} {ms:10.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pmoracle.bench.chain``."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.bench.chain", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
