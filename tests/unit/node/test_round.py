"""A round's leaves: the engine's MONEY amounts in the 18-decimal leaf unit, empty accounts skipped, sorted."""

from __future__ import annotations

from pmoracle.config.params import default_params
from pmoracle.consensus.merkle import LEAF_DECIMALS, compute_root
from pmoracle.node.round import MONEY_TO_LEAF, compute_leaves
from pmoracle.risk.inputs import MONEY_DECIMALS, Portfolio, Position
from pmoracle.risk.margin import compute_book
from tests.unit.risk.factories import EXPIRIES, account, make_market, option, size


def test_leaves_skip_empty_accounts_and_convert_exactly() -> None:
    straddle = (
        Position(option("BTC", EXPIRIES[2], 95_000, True), size(-1)),
        Position(option("BTC", EXPIRIES[2], 95_000, False), size(-1)),
    )
    portfolios = [
        Portfolio(positions=straddle, collateral=(("USDC", size(50_000)),), account=account(3)),
        Portfolio(account=account(2)),
        Portfolio(collateral=(("ETH", size(1)),), account=account(1)),
    ]
    book = compute_book(make_market(), default_params(), portfolios)
    leaves = compute_leaves(book)
    assert MONEY_TO_LEAF == 10 ** (LEAF_DECIMALS - MONEY_DECIMALS) == 10**10
    assert [leaf.account for leaf in leaves] == [account(1), account(3)]
    straddle_margin = book.accounts[0]
    assert leaves[1].initial_margin == straddle_margin.initial_margin * MONEY_TO_LEAF > 0
    assert leaves[1].maintenance_margin == straddle_margin.maintenance_margin * MONEY_TO_LEAF > 0
    assert leaves[1].equity == straddle_margin.equity * MONEY_TO_LEAF
    assert leaves[0].equity == book.accounts[2].equity * MONEY_TO_LEAF > 0
    assert len(compute_root(leaves)) == 32
