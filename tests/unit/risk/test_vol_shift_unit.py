"""The vol shift's unit (``vol.shift_unit``): "absolute" shocks a vol by vol points (SPAN's usual volatility scan
range), "relative" (the default) by a fraction of itself; documents without the field keep their bytes and hash."""

from __future__ import annotations

import math
import pathlib

import pytest

from pmoracle.config.params import default_params_text
from pmoracle.risk.inputs import MONEY_SCALE, PRICE_SCALE, SIZE_SCALE, MarketSnapshot, UnderlyingMarket
from pmoracle.risk.margin import compute_risk_arrays
from pmoracle.risk.params import parse_params
from pmoracle.risk.scenarios import compute_scenarios

from .factories import EXPIRIES, T0, flat_smile, option, params_problems, with_table_lines

ROOT = pathlib.Path(__file__).resolve().parents[3]
PRESETS = sorted((ROOT / "examples" / "params").glob("*.toml"))
SPAN = (ROOT / "examples" / "params" / "span16.toml").read_text()


@pytest.mark.parametrize("path", [*PRESETS, None], ids=lambda p: "default" if p is None else p.name)
def test_a_document_without_the_field_keeps_its_canonical_bytes(path: pathlib.Path | None) -> None:
    text = default_params_text() if path is None else path.read_text()
    params = parse_params(text)
    assert params.vol_shift_unit is None and not params.is_absolute_vol_shift
    assert b"shift_unit" not in params.canonical_bytes
    # the default written out: the same document
    relative = parse_params(with_table_lines(text, "vol", 'shift_unit = "relative"\n'))
    assert (relative.canonical_bytes, relative.params_hash) == (params.canonical_bytes, params.params_hash)


def test_absolute_is_in_the_canonical_bytes_and_the_hash() -> None:
    base = parse_params(SPAN)
    absolute = parse_params(with_table_lines(SPAN, "vol", 'shift_unit = "absolute"\n'))
    assert absolute.is_absolute_vol_shift
    assert b'"vol_shift_unit":"absolute"' in absolute.canonical_bytes
    assert absolute.params_hash != base.params_hash


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('shift_unit = "points"\n', "vol.shift_unit: expected one of relative, absolute, got 'points'"),
        ("shift_unit = 1\n", "vol.shift_unit: expected one of relative, absolute, got 1"),
    ],
)
def test_bad_values_are_refused_naming_the_field(extra: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in params_problems(with_table_lines(SPAN, "vol", extra)))


def test_absolute_excludes_the_policys_relative_vol_shift() -> None:
    from tests.unit.risk.test_policy import POLICY_TOML

    text = default_params_text() + POLICY_TOML
    assert parse_params(text).policy is not None
    problems = params_problems(with_table_lines(text, "vol", 'shift_unit = "absolute"\n'))
    assert any(p.startswith('vol.shift_unit: "absolute" cannot take [policy.vol]') for p in problems), problems
    without_vol = text.split("[policy.vol]")[0]  # a policy without [policy.vol] takes it
    parse_params(with_table_lines(without_vol, "vol", 'shift_unit = "absolute"\n'))


def _black76(is_call: bool, f: float, k: float, t: float, vol: float) -> float:
    """Return the undiscounted Black-76 value (rate 0), written out here independently of the engine."""
    sd = vol * math.sqrt(t)
    d1 = (math.log(f / k) + sd * sd / 2) / sd
    cdf = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    if is_call:
        return f * cdf(d1) - k * cdf(d1 - sd)
    return k * cdf(sd - d1) - f * cdf(-d1)


@pytest.mark.parametrize("vol", [0.03, 0.6])  # 3%: the absolute vol-down state (-1%) is clamped to min_vol
@pytest.mark.parametrize(("unit", "shift"), [("absolute", 0.04), ("relative", 0.25)])
def test_each_scenario_prices_at_the_shocked_vol(unit: str, shift: float, vol: float) -> None:
    """span16 (vol power 0: one shift at every expiry) with a flat smile: an option's P&L in each scenario is Black-76
    at ``vol + shock x k`` (absolute) or ``vol x (1 + shock x k)`` (relative), clamped to [min_vol, max_vol]."""
    text = with_table_lines(SPAN, "vol", f'shift_unit = "{unit}"\n').replace("shift = 0.25\n", f"shift = {shift}\n", 1)
    params = parse_params(text)
    expiry = EXPIRIES[3]  # 90 days
    btc = UnderlyingMarket("BTC", 100_000 * PRICE_SCALE, smiles=(flat_smile(expiry, vol),))
    market = MarketSnapshot(time=T0, underlyings=(btc,))
    scenarios = compute_scenarios(params, market)
    inst = option("BTC", expiry, 110_000.0, call=True)
    arrays = compute_risk_arrays(market, params, [inst], scenarios)
    t0 = (expiry - T0) / (365 * 86400)
    ts = t0 - params.horizon_seconds / (365 * 86400)
    v0 = _black76(True, 100_000.0, 110_000.0, t0, vol)
    for s in range(len(scenarios)):
        shock = float(scenarios.vol_shock[s, 0])
        moved = vol + shock * shift if unit == "absolute" else vol * (1 + shock * shift)
        vol_s = min(max(moved, params.min_vol), params.max_vol) if shock else vol
        want = _black76(True, 100_000.0 * float(scenarios.price_mult[s, 0]), 110_000.0, ts, vol_s) - v0
        got = int(arrays.r[0, s]) * SIZE_SCALE / MONEY_SCALE  # USD per unit
        assert got == pytest.approx(want, rel=1e-9, abs=1e-3), (s, scenarios.labels[s])


def test_the_units_differ_exactly_where_the_vol_moves() -> None:
    expiry = EXPIRIES[2]
    btc = UnderlyingMarket("BTC", 100_000 * PRICE_SCALE, smiles=(flat_smile(expiry, 0.5),))
    market = MarketSnapshot(time=T0, underlyings=(btc,))
    inst = option("BTC", expiry, 95_000.0, call=False)
    rows = {}
    for unit in ("relative", "absolute"):
        params = parse_params(with_table_lines(SPAN, "vol", f'shift_unit = "{unit}"\n'))
        scenarios = compute_scenarios(params, market)
        rows[unit] = [int(x) for x in compute_risk_arrays(market, params, [inst], scenarios).r[0]]
    moved = [bool(v) for v in scenarios.vol_shock[:, 0]]
    for rel, ab, m in zip(rows["relative"], rows["absolute"], moved, strict=True):
        assert (rel != ab) == m  # 0.5 x 1.25 = 0.625 against 0.5 + 0.25 = 0.75: every vol-shocked scenario differs
