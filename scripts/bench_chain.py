"""Measure the chain layer on a local anvil: per-request latency and snapshot cost versus account count.

Run: PYTHONPATH=src .venv/bin/python scripts/bench_chain.py [--accounts 1000] [--page 200]
Prints a table; nothing here is asserted (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import statistics
import time

from eth_abi import encode as abi_encode
from web3 import Web3

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.devchain import devchain
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Transmitter

KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ENCODER = Web3()


def deploy(tx: Transmitter, name: str, types: list[str], args: list[object]):
    artifact = load_artifact(name)
    receipt = tx.transact(None, artifact.bytecode + abi_encode(types, args))
    return ENCODER.eth.contract(address=receipt.contract_address, abi=list(artifact.abi))


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--page", type=int, default=200)
    args = parser.parse_args()
    with devchain() as chain:
        client = ChainClient([chain.url])
        tx = Transmitter(client, KEY)
        feeds = deploy(tx, "MarketFeeds", ["address", "address"], [tx.address, tx.address])
        accounts = deploy(
            tx, "MarginAccounts", ["address"] * 4, [tx.address, tx.address, feeds.address, "0x" + "00" * 20]
        )
        tx.transact_call(feeds.functions.setIndex(b"BTC".ljust(32, b"\0"), 60_000 * 10**8, 0))
        tx.transact_call(accounts.functions.listInstrument(b"BTC".ljust(32, b"\0"), 0, 0, 0))
        t = time.perf_counter()
        pending = []
        for i in range(args.accounts // 2):
            buyer = Web3.to_checksum_address((2 * i + 1).to_bytes(20, "big"))
            seller = Web3.to_checksum_address((2 * i + 2).to_bytes(20, "big"))
            pending.append(tx.send_call(accounts.functions.trade(buyer, seller, 1, 10_000 + i)))
        for p in pending:
            tx.wait(p)
        setup_s = time.perf_counter() - t
        block = client.block_number()
        deployment = Deployment(client.chain_id, 0, {"MarketFeeds": feeds.address, "MarginAccounts": accounts.address})
        print(f"setup: {len(pending)} trades sent and mined in {setup_s:.2f} s")
        print(f"{'measure':48s} {'median ms':>10s}")
        print(f"{'eth_blockNumber (ChainClient.request)':48s} {timed(client.block_number, 200):10.2f}")
        print(f"{'get_block(latest)':48s} {timed(lambda: client.get_block('latest'), 200):10.2f}")
        fn = accounts.functions.accountCount()
        print(f"{'call(accountCount) pinned by number':48s} {timed(lambda: client.call(fn, block), 200):10.2f}")
        for page in sorted({args.page, 50, 500}):
            snap = read_snapshot(client, deployment, block, account_page_size=page)
            ms = timed(lambda p=page: read_snapshot(client, deployment, block, account_page_size=p), 5)
            label = f"read_snapshot {len(snap.portfolios)} accounts, page {page} ({snap.rpc_calls} calls)"
            print(f"{label:48s} {ms:10.2f}")


if __name__ == "__main__":
    main()
