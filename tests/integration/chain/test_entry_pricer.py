"""EntryPricer (the pricing challenge's recomputation) on anvil against the engine's own risk arrays, on markets the
seeded protocol never shows: strikes from 0.05 to 20 times the index, expiries from one day (the scenario horizon
exactly: T - horizon = 0) to ten years, flat and skewed smiles, vols from 5% to 300% (shocked vols clamped at
``max_vol``), negative and positive rates; perpetuals, futures and expired instruments, settled or not. Every entry
the engine computes must be within ``Black76.pnlTolerance`` of the contract's recomputation: an honest committee is
never provable.

``pytest -s`` prints the number of entries checked and the largest gap in quanta.
"""

from __future__ import annotations

import dataclasses
import pathlib
import random
from typing import Any

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import connect, open_transmitter
from pmoracle.config.params import default_params
from pmoracle.consensus.commitments import compute_scenario_rows, encode_values, market_abi_value
from pmoracle.devnet.devchain import Devchain
from pmoracle.errors import InputError
from pmoracle.risk.inputs import WAD, Instrument, InstrumentKind, MarketSnapshot
from pmoracle.risk.margin import compute_risk_arrays
from pmoracle.risk.params import parse_params
from pmoracle.risk.scenarios import compute_scenarios
from pmoracle.risk.table import VOL_UNIT_PARAM
from tests.integration.chain.contracts_support import dev_key
from tests.unit.risk.factories import EXPIRED, EXPIRIES, make_market, option, random_instrument

ROOT = pathlib.Path(__file__).resolve().parents[3]
QUANTUM = 10**14  # 1e-4 USD per unit in WAD
OPTIONS = 24  # live options per market
OTHERS = 16  # perpetuals, futures and expired options per market
SCENARIOS = 30  # sampled per instrument (the first option of each market: all)


@pytest.fixture(scope="module")
def pricer(anvil: Devchain) -> Any:
    """EntryPricer from the committed artifact, deployed on the module's anvil."""
    artifact = load_artifact("EntryPricer")
    receipt = open_transmitter(anvil.url, dev_key(0)).transact(None, artifact.bytecode)
    assert receipt.contract_address is not None
    return connect(anvil.url).eth.contract(address=to_checksum_address(receipt.contract_address), abi=artifact.abi)


def random_market(rng: random.Random) -> MarketSnapshot:
    """Return the factories' BTC/ETH market at random prices, vol and rates, the oldest expiry settled."""
    market = make_market(btc=rng.uniform(5e3, 2e5), eth=rng.uniform(1e2, 1e4), vol=rng.choice([0.05, 0.3, 0.8, 3.0]))
    underlyings = tuple(
        dataclasses.replace(u, rate=round(rng.uniform(-0.05, 0.25) * WAD), settlements=((EXPIRED[0], u.index),))
        for u in market.underlyings
    )
    return dataclasses.replace(market, underlyings=underlyings)


def test_every_engine_entry_is_within_the_tolerance(pricer: Any) -> None:
    rng = random.Random(314)
    params = default_params()
    checked, worst, worst_ratio = {"option": 0, "level": 0}, 0.0, 0.0
    for market in (make_market(), random_market(rng), random_market(rng)):
        scenarios = compute_scenarios(params, market)
        drawn = sorted({random_instrument(rng, market) for _ in range(8 * (OPTIONS + OTHERS))})
        live = [inst for inst in drawn if inst.is_option and inst.expiry > market.time][:OPTIONS]
        others = [inst for inst in drawn if not inst.is_option or inst.expiry <= market.time][:OTHERS]
        instruments = live + others
        arrays = compute_risk_arrays(market, params, instruments, scenarios)
        columns = {symbol: u for u, symbol in enumerate(scenarios.underlyings)}
        scenario_rows = compute_scenario_rows(scenarios, arrays.table)
        underlyings = market_abi_value(market)[1]
        assert isinstance(underlyings, list)
        n_scen = len(scenarios)
        for i, inst in enumerate(instruments):
            u = columns[inst.underlying]
            row = scenario_rows[u]
            values = encode_values(row.values)
            picks = range(n_scen) if i == 0 else sorted(rng.sample(range(n_scen), SCENARIOS))
            for s in picks:
                if i < len(live):
                    entry = (inst.kind == InstrumentKind.CALL, inst.strike, inst.expiry, market.time, s, n_scen)
                    call = pricer.functions.optionPnl(underlyings[u], entry, row.base, row.addon, values)
                else:
                    entry = (int(inst.kind), inst.strike, inst.expiry, market.time, s, n_scen)
                    call = pricer.functions.levelPnl(underlyings[u], entry, values)
                malformed, pnl, tolerance = call.call()
                assert not malformed
                gap = abs(int(arrays.r[i, s]) * QUANTUM - pnl)
                assert gap <= tolerance, (inst, s, int(arrays.r[i, s]), pnl, tolerance)
                worst = max(worst, gap / QUANTUM)
                worst_ratio = max(worst_ratio, gap / tolerance)
                checked["option" if i < len(live) else "level"] += 1
    assert checked["level"] > 0
    print(f"\n{checked['option']} engine option entries and {checked['level']} perpetual, future and expired entries "
          f"within the tolerance; largest gap {worst:.4f} quanta ({worst_ratio:.4f} of the tolerance)")  # fmt: skip


def test_an_absolute_vol_shift_would_make_honest_entries_provable(pricer: Any) -> None:
    """Why a node refuses ``vol.shift_unit = "absolute"``: the scenario row carries no unit and EntryPricer shocks a
    vol to vol x (1 + shock x shift), so the engine's honest entries of a vol-shocked scenario fall outside the
    tolerance and the pricing challenge would invalidate the round. The round's rows refuse the document instead."""
    text = (ROOT / "examples" / "params" / "span16.toml").read_text()
    params = parse_params(text.replace("shift = 0.25\n", 'shift = 0.04\nshift_unit = "absolute"\n', 1))
    market = make_market()
    scenarios = compute_scenarios(params, market)
    strikes = (85_500.0, 95_000.0, 104_500.0)  # BTC at 95,000: where the vol moves the value
    options = [option("BTC", e, k, call) for e in EXPIRIES[1:4] for k in strikes for call in (True, False)]
    arrays = compute_risk_arrays(market, params, options, scenarios)
    with pytest.raises(InputError) as info:
        compute_scenario_rows(scenarios, arrays.table)
    assert info.value.field == "vol.shift_unit"
    # the row the round would commit: the same bits without the unit (it is not part of the row)
    flags = arrays.table.vol_params.copy()
    flags[VOL_UNIT_PARAM] = 0.0
    row = compute_scenario_rows(scenarios, dataclasses.replace(arrays.table, vol_params=flags))[0]
    underlying = market_abi_value(market)[1]
    assert isinstance(underlying, list)
    shocked = [s for s in range(len(scenarios)) if scenarios.vol_shock[s, 0] != 0]
    provable = 0
    for i, inst in enumerate(arrays.instruments):
        assert isinstance(inst, Instrument)
        for s in shocked:
            entry = (inst.kind == InstrumentKind.CALL, inst.strike, inst.expiry, market.time, s, len(scenarios))
            malformed, pnl, tolerance = pricer.functions.optionPnl(
                underlying[0], entry, row.base, row.addon, encode_values(row.values)
            ).call()
            assert not malformed
            provable += abs(int(arrays.r[i, s]) * QUANTUM - pnl) > tolerance
    assert provable > len(shocked) * len(arrays.instruments) // 2
    print(f"\n{provable} of {len(shocked) * len(arrays.instruments)} honest vol-shocked entries provable")
