"""The keeper against a real anvil: it finds a breached account in the attested round by recomputing it, starts
the auction, waits while the discount does not pay, and restores the account with one bid; the next attested round
shows the account at or above maintenance margin and the keeper leaves it alone."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest
from eth_utils import keccak

from pmoracle.chain.client import ChainClient
from pmoracle.chain.transmitter import Transmitter
from pmoracle.config.params import default_params
from pmoracle.devnet.devchain import Devchain
from pmoracle.keeper.decision import WAD, Policy
from pmoracle.keeper.keeper import Bidder, Keeper, KeeperError
from pmoracle.keeper.metrics import create_keeper_metrics
from pmoracle.node.keys import LIGHT_KDF_ITERATIONS, write_key_file
from tests.integration.chain.contracts_support import UNIT, USD, System, address_of
from tests.integration.chain.liquidation_support import (
    MAX_DISCOUNT,
    PLATEAU,
    attest_round,
    breach,
    deploy_liquidation_system,
    refresh_index,
    trader,
    warp,
)
from tests.integration.chain.trading import Desk, check_conservation


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    return deploy_liquidation_system(anvil)


@pytest.fixture(scope="module")
def desk(system: System) -> Desk:
    return Desk(system.deployment, system.owner, system.w3)


@pytest.fixture(scope="module")
def maker(system: System, desk: Desk) -> Transmitter:
    return trader(system, desk, usdc=100_000_000)


def make_keeper(system: System, account: Transmitter) -> Keeper:
    client = ChainClient([system.chain.url])
    policy = Policy(min_profit=5 * USD, gas_cost=USD)
    return Keeper(client, system.deployment, account, default_params(), policy, create_keeper_metrics())


def ready_bidders(keeper: Keeper) -> list[Bidder]:
    round_ = keeper.latest_round()
    assert round_ is not None
    return keeper.ready_bidders(round_, keeper.auction_params())


def test_the_keeper_restores_a_breached_account_with_one_bid(system: System, desk: Desk, maker: Transmitter) -> None:
    victim = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
    _, _, values = attest_round(system)
    _, mm, equity = values[victim.address]
    assert 0 < equity < mm
    keeper = make_keeper(system, trader(system, desk, usdc=20_000))
    liquidator = system.contract("Liquidator").functions

    first = keeper.tick()
    assert first.breached == [victim.address] and first.started == [victim.address]
    assert first.bids == [] and "gain" in first.waiting[victim.address]  # no discount yet: it waits
    assert liquidator.auctions(victim.address).call()[0] > 0

    warp(system, PLATEAU)  # the discount reaches its plateau
    refresh_index(system)  # fresh feeds: the keeper also values the book at current marks with the engine
    second = keeper.tick()
    assert second.errors == {} and second.started == []
    (bid,) = second.bids
    assert bid.account == victim.address and bid.restored and not bid.whole_book
    assert bid.discount == MAX_DISCOUNT
    assert bid.fraction == liquidator.maxFraction(equity, mm, MAX_DISCOUNT).call() < WAD
    assert bid.gain > 5 * USD and 0 < bid.gas_used < 1_000_000
    assert liquidator.auctions(victim.address).call()[0] == 0  # the one bid closed the auction
    assert keeper.watched == set()
    metrics = keeper.metrics.exposition().decode()
    assert 'pmoracle_keeper_bids_total{outcome="restored"} 1.0' in metrics
    assert "pmoracle_keeper_auctions_started_total 1.0" in metrics
    assert "valuation" not in metrics  # the engine valued the book at current marks

    # the next attested round shows the account restored, and the keeper (now holding the fraction) does nothing
    _, _, values = attest_round(system)
    _, mm_after, equity_after = values[victim.address]
    assert equity_after >= mm_after
    third = keeper.tick()
    assert victim.address not in third.breached and third.bids == third.started == [] and third.errors == {}


def test_a_keeper_with_other_risk_parameters_refuses_the_round(system: System, desk: Desk) -> None:
    attest_round(system)
    keeper = make_keeper(system, trader(system, desk))
    keeper.risk_params = dataclasses.replace(default_params(), im_multiplier=default_params().im_multiplier * 2)
    with pytest.raises(KeeperError, match="recomputed root"):
        keeper.tick()


def test_after_a_bid_the_keeper_bids_from_its_book_once_a_round_proves_it(
    system: System, desk: Desk, maker: Transmitter
) -> None:
    """A bid hands the bidder a book; its next bid proves its own leaf, so it waits for a round anchored after its
    bid (one bid per account and round), then bids again from the same account."""
    bidder = trader(system, desk, usdc=50_000)
    keeper = make_keeper(system, bidder)
    ledger = system.contract("MarginAccounts").functions
    for _ in range(2):  # two breaches, one after the other
        victim = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
        attest_round(system)
        assert keeper.tick().started == [victim.address]
        warp(system, PLATEAU)
        refresh_index(system)
        (bid,) = keeper.tick().bids
        assert bid.account == victim.address and bid.restored
        assert ledger.openPositionCount(bidder.address).call() == 1  # the second fraction joined the first
        assert ledger.positionOf(bidder.address, 1).call() > 0
        assert ready_bidders(keeper) == []  # its book changed after the latest round: no leaf proves it yet
        attest_round(system)
        (chosen,) = ready_bidders(keeper)
        assert chosen.leaf[1] != [] and chosen.funds.margin > 0
    check_conservation(system.w3, system.deployment)


def test_pmoracle_liquidator_once_starts_the_auction_from_its_config(
    system: System, desk: Desk, maker: Transmitter, tmp_path: pathlib.Path
) -> None:
    victim = breach(system, desk, maker, cash=10_000, size=UNIT, drop_to=96_500)
    block, _, _ = attest_round(system)
    key = keccak(text="pmoracle-keeper-cli-test")
    write_key_file("transmitter", tmp_path / "keeper.json", b"pw", secret=key, kdf_iterations=LIGHT_KDF_ITERATIONS)
    system.chain.rpc("anvil_setBalance", address_of(key), hex(10**21))
    system.deployment.save(tmp_path / "deployment.json")
    example = (pathlib.Path(__file__).parents[3] / "examples" / "keeper.toml").read_text()
    config = example.replace("http://127.0.0.1:8545", system.chain.url).replace("keys/keeper.json", "keeper.json")
    (tmp_path / "keeper.toml").write_text(config)
    done = subprocess.run(
        [sys.executable, "-m", "pmoracle.cli", "liquidator", "--config", str(tmp_path / "keeper.toml"), "--once"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PMORACLE_KEEPER_PASSWORD": "pw"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["round"] == block and report["started"] == 1 and report["errors"] == 0
    assert system.contract("Liquidator").functions.auctions(victim.address).call()[0] > 0
