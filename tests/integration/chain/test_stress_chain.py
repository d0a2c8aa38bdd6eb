"""``pmoracle stress --rpc --deployment --block`` on anvil: the book and the fund are read at the block, and the
cascade is the one the engine gives on ``read_snapshot`` of that block."""

from __future__ import annotations

import json
import pathlib
from fractions import Fraction
from types import SimpleNamespace

import pytest

from pmoracle.chain.deploy import LIQUIDATION_PARAMS
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.cli import main
from pmoracle.commands.margin import format_wad
from pmoracle.config.params import default_params
from pmoracle.keeper.decision import AuctionParams
from pmoracle.risk.inputs import WAD
from pmoracle.risk.params import StressParams
from pmoracle.risk.stress import LiquidationModel, Shock, run_cascade, run_standard_stress

from .test_snapshot import EXPIRY, Protocol, protocol, setup_market_and_books, sym

__all__ = ["protocol"]  # the module-scoped fixture, shared with the snapshot tests


def test_stress_reads_the_book_and_the_fund_at_a_block(
    protocol: Protocol, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_market_and_books(protocol)
    feeds = protocol.feeds.functions  # the snapshot tests leave ETH without a smile: the engine needs one
    protocol.admin.transact_call(feeds.setSmile(sym("ETH"), EXPIRY, WAD // 50, WAD // 10, -WAD // 3, 0, WAD // 5))
    client = protocol.client
    block = client.block_number()
    path = tmp_path / "deployment.json"
    protocol.deployment.save(path)
    url = client.preferred_endpoints()[0]
    argv = ["stress", "--rpc", url, "--deployment", str(path), "--block", str(block), "--shock", "BTC=0.5",
            "--adv", "BTC=10", "--adv", "ETH=1000", "--json"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)

    snapshot = read_snapshot(client, protocol.deployment, block)
    auction = AuctionParams(*LIQUIDATION_PARAMS)  # what deploy() set on the Liquidator
    section = StressParams(Fraction(1), 10, (("BTC", Fraction(10)), ("ETH", Fraction(1000))), (), ())
    expected = run_cascade(
        snapshot.market, default_params(), snapshot.portfolios, Shock((("BTC", Fraction("0.5")),)), section,
        LiquidationModel(auction, auction.max_discount, insurance_fund=0),
    )  # fmt: skip
    assert expected.steps and expected.steps[0].accounts_breached >= 1  # the short perpetual breaches
    assert doc["cascade_depth"] == expected.cascade_depth
    assert [s["accounts_breached"] for s in doc["steps"]] == [s.accounts_breached for s in expected.steps]
    assert doc["shortfall"] == format_wad(expected.shortfall) and doc["cover2"] == format_wad(expected.cover2)
    assert doc["insurance_fund"] == "0"  # the deployment funds no insurance
    assert dict(doc["price_path"])["BTC"][1] == "90000.00000000"  # 60,000 + 50%


def test_a_node_exports_the_standard_stress_of_a_round(protocol: Protocol) -> None:
    """The round worker's stress step (``SolverNode._stress_round``) against the real Liquidator: its parameters read
    on chain, the document's standard stress run on the round's book, the gauges set."""
    import trio

    from pmoracle.config.params import default_params_text
    from pmoracle.node.daemon import SolverNode, read_auction_params
    from pmoracle.node.metrics import create_node_metrics
    from pmoracle.risk.params import parse_params

    setup_market_and_books(protocol)
    feeds = protocol.feeds.functions
    protocol.admin.transact_call(feeds.setSmile(sym("ETH"), EXPIRY, WAD // 50, WAD // 10, -WAD // 3, 0, WAD // 5))
    client, deployment = protocol.client, protocol.deployment
    assert read_auction_params(client, deployment) == AuctionParams(*LIQUIDATION_PARAMS)
    block = client.block_number()
    snapshot = read_snapshot(client, deployment, block)
    stress_section = '[stress]\nimpact = "1"\nmax_depth = 5\n[stress.adv]\nBTC = "10"\nETH = "1000"\n'
    standard = '[stress.scenarios.standard]\nmoves = { BTC = "0.5" }\n'
    params = parse_params(default_params_text() + stress_section + standard)
    node = SimpleNamespace(client=client, deployment=deployment, params=params, insurance_fund_balance=5 * WAD,
                           metrics=create_node_metrics())  # fmt: skip
    trio.run(SolverNode._stress_round, node, block, snapshot)  # type: ignore[arg-type]
    expected = run_standard_stress(snapshot.market, params, snapshot.portfolios, AuctionParams(*LIQUIDATION_PARAMS),
                                   5 * WAD)  # fmt: skip
    assert expected is not None and expected.cascade_depth >= 1
    exported = {(m.name, s.name): s.value for m in node.metrics.registry.collect() for s in m.samples}
    assert exported[("pmoracle_stress_round", "pmoracle_stress_round")] == block
    assert exported[("pmoracle_stress_cascade_depth", "pmoracle_stress_cascade_depth")] == expected.cascade_depth
    shortfall = exported[("pmoracle_stress_shortfall_usd", "pmoracle_stress_shortfall_usd")]
    assert shortfall == expected.shortfall / 10**18  # as exported: int / int, rounded once (not int -> float / 1e18)
