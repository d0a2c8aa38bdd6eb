"""A round's leaves: the engine's MONEY amounts in the 18-decimal leaf unit, empty accounts skipped, sorted; a round
past an expiry is computed, not refused."""

from __future__ import annotations

import dataclasses

from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.config.params import default_params, default_params_text
from pmoracle.consensus.merkle import LEAF_DECIMALS, compute_root
from pmoracle.node.round import MONEY_TO_LEAF, compute_leaves, compute_round
from pmoracle.risk.inputs import MONEY_DECIMALS, MONEY_SCALE, Instrument, InstrumentKind, Portfolio, Position
from pmoracle.risk.margin import compute_book
from pmoracle.testing.committees import make_test_committee
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


def test_a_round_past_an_expiry_is_computed_not_refused() -> None:
    """The valuation time passed an expiry held in the book (no settlement yet): the round still has a report, and
    the expired positions are in its leaves at expiry value on the index."""
    expired_call = option("BTC", EXPIRIES[0], 90_000, True)
    expired_future = Instrument("ETH", InstrumentKind.FUTURE, expiry=EXPIRIES[0])
    live_put = option("BTC", EXPIRIES[2], 95_000, False)
    portfolios = (
        Portfolio(
            positions=(Position(expired_call, size(-2)),), collateral=(("USDC", size(20_000)),), account=account(1)
        ),
        Portfolio(positions=(Position(expired_future, size(5)), Position(live_put, size(1))), account=account(2)),
    )
    market = make_market(btc=95_000.0, time=EXPIRIES[0] + 3600)  # an hour after the first expiry
    snapshot = ChainSnapshot(
        block_number=120,
        block_hash=b"\x07" * 32,
        timestamp=market.time,
        market=market,
        portfolios=portfolios,
        instruments=((1, expired_call), (2, expired_future), (3, live_put)),
    )
    committee = make_test_committee(4).config
    output = compute_round(snapshot, default_params(), committee)
    assert output.report.block_number == 120
    assert output.report.account_count == 2
    assert output.report.accounts_root == compute_root(output.tree.leaves)
    short_call = output.book.accounts[0]
    # owes its intrinsic 2 x (95000 - 90000), undiscounted, against 20000 USDC; no short-option minimum
    assert short_call.equity == (20_000 - 2 * 5_000) * MONEY_SCALE
    assert short_call.maintenance_margin > 0
    assert compute_round(snapshot, default_params(), committee).report == output.report  # deterministic


def test_a_round_under_the_policy_uses_its_ranges_and_keeps_the_documents_hash() -> None:
    from pmoracle.consensus.commitments import NO_POLICY, compute_market_hash
    from pmoracle.risk.params import parse_params
    from pmoracle.risk.policy import PolicyRound, max_range
    from tests.unit.risk.test_policy import POLICY_TOML, round_states

    params = parse_params(default_params_text() + POLICY_TOML.split("[policy.vol]")[0])
    straddle = (
        Position(option("BTC", EXPIRIES[2], 95_000, True), size(-1)),
        Position(option("BTC", EXPIRIES[2], 95_000, False), size(-1)),
    )
    market = make_market()
    snapshot = ChainSnapshot(
        block_number=64, block_hash=b"\x01" * 32, timestamp=market.time, market=market,
        portfolios=(Portfolio(positions=straddle, collateral=(("USDC", size(90_000)),), account=account(1)),),
        instruments=((1, straddle[0].instrument), (2, straddle[1].instrument)),
    )  # fmt: skip
    committee = make_test_committee(4).config
    btc, eth = round_states()
    calm = PolicyRound(64, (dataclasses.replace(btc, scan_range=2 * 10**7), eth))  # 2%
    wild = PolicyRound(64, (dataclasses.replace(btc, scan_range=max_range(params.policy)), eth))  # type: ignore[arg-type]
    outputs = [compute_round(snapshot, params, committee, policy) for policy in (None, calm, wild)]
    assert {o.report.params_hash for o in outputs} == {params.params_hash}  # the document's hash, always
    assert [o.policy for o in outputs] == [None, calm, wild]
    mm = [o.book.accounts[0].maintenance_margin for o in outputs]
    assert mm[1] < mm[0] < mm[2]  # 2% < the document's 16% < the policy's 60%
    assert compute_round(snapshot, params, committee, wild).report == outputs[2].report  # deterministic
    # the report signs the policy's states through its market hash: other states, another report
    hashes = [o.report.market_hash for o in outputs]
    assert hashes == [
        compute_market_hash(snapshot.market, NO_POLICY),
        compute_market_hash(snapshot.market, calm.policy_hash),
        compute_market_hash(snapshot.market, wild.policy_hash),
    ]
    assert len(set(hashes)) == 3
