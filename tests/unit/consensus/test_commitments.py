"""The risk-array and market commitments of a report: leaf layout, proofs, and the soundness of the fraud bound.

The bound ``compute_scenario_margin`` (what ``MarginOracle.proveFraud`` sums on chain from committed rows) must
never exceed an honest account's MM in any scenario and must reach it in the worst one; otherwise the proof would
slash an honest committee, or miss a lie.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import struct
import subprocess
import sys

import pytest

from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.config.params import default_params, default_params_text, load_params_file
from pmoracle.consensus.commitments import (
    COLLATERAL_FLAG,
    COVER_KEY,
    SCENARIO_FLAG,
    SCENARIO_VOL_PARAMS,
    RiskRow,
    collateral_key,
    collateral_size,
    compute_fraud_proof,
    compute_market_hash,
    compute_row_hash,
    compute_scenario_margin,
    decode_collateral_key,
    encode_market,
    encode_row,
    instrument_key,
    scenario_key,
)
from pmoracle.consensus.hashing import keccak
from pmoracle.consensus.merkle import compute_proof_root
from pmoracle.errors import InputError
from pmoracle.node.round import MONEY_TO_LEAF, RoundOutput, compute_round
from pmoracle.risk.inputs import Instrument, Portfolio
from pmoracle.risk.margin import Book
from pmoracle.risk.params import parse_params
from pmoracle.risk.scenarios import compute_scenarios
from pmoracle.testing.committees import make_test_committee
from tests.unit.risk.factories import make_market, random_instrument, random_portfolio

TOKENS = ((b"\xee" * 20, "ETH", 18), (b"\x0c" * 20, "USDC", 6))


def make_snapshot(seed: int, accounts: int = 60) -> ChainSnapshot:
    """Return a random chain snapshot: instruments with ledger ids, books over them, two collateral tokens."""
    rng = random.Random(seed)
    market = make_market()
    instruments = sorted({random_instrument(rng, market) for _ in range(25)})
    portfolios = tuple(random_portfolio(rng, market, instruments, 8, acct) for acct in range(1, accounts + 1))
    return ChainSnapshot(
        block_number=640,
        block_hash=keccak(b"block 640"),
        timestamp=market.time,
        market=market,
        portfolios=portfolios,
        instruments=tuple((i + 1, inst) for i, inst in enumerate(instruments)),
        tokens=TOKENS,
    )


def holdings_of(output: RoundOutput, snapshot: ChainSnapshot, portfolio: Portfolio) -> list[tuple[RiskRow, int]]:
    """Return an account's (row, size) list as the contract builds it: ledger ids and token balances."""
    ids = {inst: iid for iid, inst in snapshot.instruments}
    merged: dict[Instrument, int] = {}
    for p in portfolio.positions:
        merged[p.instrument] = merged.get(p.instrument, 0) + p.size
    held = [(output.risk_tree.row_of(instrument_key(ids[i])), s) for i, s in merged.items() if s]
    decimals = {symbol: (token, d) for token, symbol, d in TOKENS}
    for symbol, amount in portfolio.collateral:
        token, d = decimals[symbol]
        balance = amount * 10 ** (d - 4)
        assert collateral_size(balance, d) == amount
        held.append((output.risk_tree.row_of(collateral_key(token, d)), amount))
    return held


def test_row_preimage_layout() -> None:
    row = RiskRow(key=7, base=-2, addon=3, values=(1, -1))
    data = encode_row(row)
    assert len(data) == 32 + 8 + 8 + 2 * 8
    assert data[:32] == (7).to_bytes(32, "big")
    assert data[32:40] == (-2).to_bytes(8, "big", signed=True)
    assert data[-8:] == b"\xff" * 8
    assert compute_row_hash(row) == keccak(keccak(data))


def test_keys_are_disjoint_and_decode() -> None:
    key = collateral_key(b"\x12" * 20, 6)
    assert key & COLLATERAL_FLAG and key != COVER_KEY and key > 2**32
    assert decode_collateral_key(key) == (b"\x12" * 20, 6)
    with pytest.raises(InputError):
        decode_collateral_key(instrument_key(5))
    with pytest.raises(InputError):
        instrument_key(0)
    with pytest.raises(InputError):
        RiskRow(key=1, base=2**63, addon=0, values=())


def test_every_row_proves_under_the_reported_root() -> None:
    snapshot = make_snapshot(1)
    output = compute_round(snapshot, default_params(), make_test_committee(4).config)
    tree = output.risk_tree
    assert output.report.risk_arrays_root == tree.root
    assert tree.row_of(COVER_KEY).base == 10**6
    n_scen = len(tree.row_of(COVER_KEY).values)
    for row in tree.rows:
        width = 2 * n_scen + SCENARIO_VOL_PARAMS if row.key & SCENARIO_FLAG and row.key != COVER_KEY else n_scen
        assert len(row.values) == width
        assert compute_proof_root(compute_row_hash(row), tree.proof(row.key)) == tree.root
    assert output.report.market_hash == compute_market_hash(snapshot.market)


def test_scenario_rows_commit_the_engines_floats_bit_for_bit() -> None:
    snapshot = make_snapshot(2)
    params = default_params()
    output = compute_round(snapshot, params, make_test_committee(4).config)
    scenarios = compute_scenarios(params, snapshot.market)
    n_scen = len(scenarios)
    keys = [row.key for row in output.risk_tree.rows if row.key & SCENARIO_FLAG and row.key != COVER_KEY]
    assert keys == [scenario_key(u) for u in range(len(snapshot.market.underlyings))]
    for u in range(len(snapshot.market.underlyings)):
        row = output.risk_tree.row_of(scenario_key(u))
        words = struct.pack(f">{len(row.values)}q", *row.values)
        floats = struct.unpack(f">{len(row.values)}d", words)
        assert floats[:n_scen] == tuple(scenarios.price_mult[:, u].tolist())
        assert floats[n_scen : 2 * n_scen] == tuple(scenarios.vol_shock[:, u].tolist())
        vol = (params.vol_shift, params.vol_tenor_days, params.vol_min_dte_days, params.vol_max_shift)
        assert floats[2 * n_scen :] == (*vol, params.min_vol, params.max_vol)
        assert struct.unpack(">d", struct.pack(">q", row.base))[0] == scenarios.horizon_years
        assert row.addon == params.vol_power_eighths
    assert len(floats) == 2 * n_scen + SCENARIO_VOL_PARAMS
    with pytest.raises(InputError):
        scenario_key(-1)


def test_a_round_with_an_absolute_vol_shift_is_refused_naming_the_field() -> None:
    """The scenario row does not carry the vol shift's unit and EntryPricer recomputes a relative shift: a round
    committing an absolute one could be invalidated although honest, so none is computed."""
    snapshot = make_snapshot(2)
    text = default_params_text().replace("[vol]\n", '[vol]\nshift_unit = "absolute"\n', 1)
    with pytest.raises(InputError) as info:
        compute_round(snapshot, parse_params(text), make_test_committee(4).config)
    assert info.value.field == "vol.shift_unit"
    relative = parse_params(text.replace('"absolute"', '"relative"'))  # the default unit, written out: computed
    written, plain = (compute_round(snapshot, p, make_test_committee(4).config) for p in (relative, default_params()))
    assert written.report == plain.report


def test_the_market_hash_commits_to_the_market_and_the_policy_hash() -> None:
    market = make_snapshot(1).market
    plain = compute_market_hash(market)
    # abi.encode(market, policyHash): the market's offset (0x40), the hash, then the market's tail
    body = encode_market(market)[32:]
    assert plain == keccak((0x40).to_bytes(32, "big") + bytes(32) + body)
    policy = b"\x07" * 32
    assert compute_market_hash(market, policy) == keccak((0x40).to_bytes(32, "big") + policy + body)
    assert compute_market_hash(market, b"\x01" * 32) != plain
    assert compute_market_hash(dataclasses.replace(market, time=market.time + 1)) != plain
    with pytest.raises(InputError, match="policy_hash"):
        compute_market_hash(market, b"\x01" * 31)


# Deribit's extended table: extreme moves on vol up at cover / |move|, a cover row whose base is 4125, not 1e6
DERIBIT = pathlib.Path(__file__).resolve().parents[3] / "examples" / "params" / "deribit-pm.toml"


@pytest.mark.parametrize("preset", ["default", "deribit-pm"])
def test_the_fraud_bound_never_exceeds_an_honest_mm_and_reaches_it(preset: str) -> None:
    snapshot = make_snapshot(2, accounts=120)
    params = default_params() if preset == "default" else load_params_file(DERIBIT)
    output = compute_round(snapshot, params, make_test_committee(4).config)
    cover = output.risk_tree.row_of(COVER_KEY)
    assert cover.base == (10**6 if preset == "default" else 4125)
    # the roll shock adds to MM what the rows do not show: the bound stays sound, and reaches MM without it
    linear = compute_round(snapshot, dataclasses.replace(params, roll_shock=None), make_test_committee(4).config)
    checked = rolled = 0
    for portfolio, margin, plain in zip(snapshot.portfolios, output.book.accounts, linear.book.accounts, strict=True):
        held = holdings_of(output, snapshot, portfolio)
        bounds = [compute_scenario_margin(held, cover, s) for s in range(len(cover.values))]
        assert max(bounds, default=0) == plain.maintenance_margin <= margin.maintenance_margin  # sound and tight
        checked += margin.maintenance_margin > 0
        rolled += margin.maintenance_margin > plain.maintenance_margin
    assert checked > 50
    assert (rolled == 0) if preset == "default" else (rolled > 50)


def test_a_dampened_mm_would_be_provably_fraudulent_so_a_round_refuses_the_dampener() -> None:
    """The attack an honest node would suffer: with ``extreme.dampener_usd`` its MM is below what
    ``MarginOracle.proveFraud`` sums from the committed rows (the dampener changes no row), so anyone could prove
    the honest round fraudulent. Building the round therefore raises, naming the field."""
    snapshot = make_snapshot(2, accounts=120)
    params = dataclasses.replace(load_params_file(DERIBIT), roll_shock=None)
    damped = dataclasses.replace(params, extreme_dampener=1_000 * 10**8)  # 1,000 USD
    output = compute_round(snapshot, params, make_test_committee(4).config)  # the rows a dampened round commits
    cover = output.risk_tree.row_of(COVER_KEY)
    honest = Book(snapshot.market, damped, snapshot.portfolios)
    provable = 0
    for k, portfolio in enumerate(snapshot.portfolios):
        held = holdings_of(output, snapshot, portfolio)
        bound = max((compute_scenario_margin(held, cover, s) for s in range(len(cover.values))), default=0)
        provable += bound > honest.account_margin(k).maintenance_margin
    assert provable > 20
    with pytest.raises(InputError, match="a dampened extended move cannot be committed") as info:
        compute_round(snapshot, damped, make_test_committee(4).config)
    assert info.value.field == "extreme.dampener_usd"


def test_an_understated_mm_is_caught_in_the_worst_scenario() -> None:
    snapshot = make_snapshot(3)
    output = compute_round(snapshot, default_params(), make_test_committee(4).config)
    cover = output.risk_tree.row_of(COVER_KEY)
    k, margin = next((k, m) for k, m in enumerate(output.book.accounts) if m.maintenance_margin > 0)
    held = holdings_of(output, snapshot, snapshot.portfolios[k])
    lie = margin.maintenance_margin - 1
    assert compute_scenario_margin(held, cover, margin.worst_scenario) > lie
    assert output.tree.leaf_of(margin.account).maintenance_margin == margin.maintenance_margin * MONEY_TO_LEAF


_CHILD = """
import json, sys, numba
from tests.unit.consensus.test_commitments import make_snapshot
from pmoracle.config.params import default_params
from pmoracle.node.round import compute_round
from pmoracle.testing.committees import make_test_committee
numba.set_num_threads(int(sys.argv[1]))
report = compute_round(make_snapshot(4), default_params(), make_test_committee(4).config).report
print(json.dumps(report.to_json()))
"""


def test_commitments_are_identical_across_processes_and_thread_counts() -> None:
    here = compute_round(make_snapshot(4), default_params(), make_test_committee(4).config).report.to_json()
    root = pathlib.Path(__file__).resolve().parents[3]  # the children import this checkout's sources and tests
    path = os.pathsep.join([str(root / "src"), str(root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "PYTHONHASHSEED": "random", "PYTHONPATH": path}
    for threads in ("1", "2"):
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, threads], env=env, cwd=root, capture_output=True, text=True, check=True,
            timeout=600,
        )  # fmt: skip
        assert json.loads(child.stdout.strip().splitlines()[-1]) == here


def test_compute_fraud_proof_names_the_worst_scenario_and_only_for_a_lie() -> None:
    snapshot = make_snapshot(5)
    output = compute_round(snapshot, default_params(), make_test_committee(4).config)
    k, margin = max(enumerate(output.book.accounts), key=lambda x: x[1].maintenance_margin)
    leaf = output.tree.leaf_of(margin.account)
    held = {row.key: size for row, size in holdings_of(output, snapshot, snapshot.portfolios[k])}
    account_proof = output.tree.proof(margin.account)
    assert compute_fraud_proof(leaf, account_proof, output.risk_tree, held, MONEY_TO_LEAF) is None
    lie = dataclasses.replace(leaf, maintenance_margin=leaf.maintenance_margin - 1)
    proof = compute_fraud_proof(lie, account_proof, output.risk_tree, held, MONEY_TO_LEAF)
    assert proof is not None
    assert proof.scenario == margin.worst_scenario and proof.required == leaf.maintenance_margin
    assert [row.key for row, _ in proof.rows] == sorted(held)
    for row, row_proof in proof.rows:
        assert compute_proof_root(compute_row_hash(row), row_proof) == output.report.risk_arrays_root
    assert compute_proof_root(compute_row_hash(proof.cover), proof.cover_proof) == output.report.risk_arrays_root
