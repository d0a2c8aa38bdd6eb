"""The risk-parameters document: validation, canonical hash, and the bundled SPAN/Deribit grids."""

from __future__ import annotations

import pathlib
import re

import pytest

from pmoracle.config.params import default_params, default_params_text
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import parse_params
from pmoracle.risk.scenarios import compute_scenarios

from .factories import make_market

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _text(name: str) -> str:
    return (ROOT / "examples" / "params" / name).read_text()


def test_hash_is_stable_under_formatting() -> None:
    text = default_params_text()
    stripped = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert parse_params(stripped).params_hash == default_params().params_hash
    assert parse_params(text.replace('im_multiplier = "1.25"', 'im_multiplier = "5/4"')).params_hash == (
        default_params().params_hash
    )
    assert len(default_params().params_hash) == 32


def _value_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(text.splitlines()) if re.match(r"^[a-zA-Z_A-Z]+ = ", line)]


def _mutate(line: str) -> str:
    key = line.split(" = ", 1)[0]
    replacements = {
        "version": "2",
        "horizon_seconds": "3600",
        "max_feed_age_seconds": "60",
        "reference": '"std"',
        "scan_range": "0.17",
        "BTC": "0.11",
        "ETH": "0.21",
        "moves": '["0", "1"]',
        "min_multiplier": "0.02",
        "shocks": '["1"]',
        "shift": "0.3",
        "tenor_days": "31.0",
        "power": '"3/8"',
        "min_dte_days": "2.0",
        "max_shift": "0.8",
        "min_vol": "0.02",
        "max_vol": "4.0",
        "cover": '"0.3"',
        "modes": '["together"]',
        "stressed_correlation": "0.4",
        "im_multiplier": '"1.3"',
        "im_min_buffer_usd": '"11"',
        "short_option_minimum": "0.006",
        "level": "0.8",
        "extreme_weight": "0.3",
        "short_option_charge": "0.2",
    }
    return f"{key} = {replacements[key]}"


def test_hash_is_sensitive_to_every_field() -> None:
    text = default_params_text()
    lines = text.splitlines()
    base = default_params().params_hash
    seen = set()
    for i in _value_lines(text):
        mutated = [*lines]
        mutated[i] = _mutate(lines[i])
        try:
            params = parse_params("\n".join(mutated))
        except ParamsError as exc:  # version = 2 is invalid: a changed document never passes silently
            assert "version" in str(exc)
            continue
        assert params.params_hash != base, lines[i]
        seen.add(lines[i].split(" = ")[0])
    assert len(seen) >= 25


def test_every_problem_is_listed_at_once() -> None:
    text = (
        default_params_text()
        .replace("horizon_seconds = 86400", "horizon_seconds = -1")
        .replace('power = "1/2"', 'power = "1/3"')
        .replace('cover = "0.35"', "cover = 0.35")
        .replace("[cross_margin]", "bogus = 1\n[cross_margin]")
    )
    with pytest.raises(ParamsError) as info:
        parse_params(text)
    problems = " | ".join(info.value.problems)
    for field in ("horizon_seconds", "vol.power", "extreme.cover", "bogus"):
        assert field in problems
    assert len(info.value.problems) == 4


def test_malformed_toml_is_a_params_error() -> None:
    with pytest.raises(ParamsError, match="malformed TOML"):
        parse_params("version = = 1")


@pytest.mark.parametrize(("name", "count"), [("span16.toml", 16), ("deribit9x3.toml", 27)])
def test_bundled_grids_have_the_expected_scenario_counts(name: str, count: int) -> None:
    params = parse_params(_text(name))
    market = make_market()
    one = type(market)(time=market.time, underlyings=market.underlyings[:1], assets=())
    scenarios = compute_scenarios(params, one)
    assert len(scenarios) == count
    extreme = int(scenarios.is_extreme.sum())
    assert extreme == (2 if name == "span16.toml" else 0)
    assert sorted(set(scenarios.vol_shock[~scenarios.is_extreme, 0].tolist())) == (
        [-1.0, 1.0] if count == 16 else [-1.0, 0.0, 1.0]
    )
    # With two underlyings: "together" + (alone, opposite) per leader; scenarios are distinct.
    both = compute_scenarios(params, market)
    rows = {(tuple(m), tuple(v)) for m, v in zip(both.price_mult.tolist(), both.vol_shock.tolist(), strict=True)}
    assert len(rows) == len(both) > count
    assert len(set(both.labels)) == len(both)


def test_span_extremes_are_counted_at_the_cover_fraction() -> None:
    scenarios = compute_scenarios(parse_params(_text("span16.toml")), make_market())
    assert set(scenarios.cover_num[scenarios.is_extreme].tolist()) == {350_000}
    assert set(scenarios.cover_num[~scenarios.is_extreme].tolist()) == {scenarios.cover_den}


def test_std_reference_scales_moves_by_atm_vol() -> None:
    text = (
        default_params_text()
        .replace('reference = "fraction"', 'reference = "std"')
        .replace("scan_range = 0.16", "scan_range = 3")
    )
    text = re.sub(r"\[price.scan_range_by_underlying\]\n(#.*\n)*BTC = 0.16\nETH = 0.20\n", "", text)
    params = parse_params(text)
    low = compute_scenarios(params, make_market(vol=0.3))
    high = compute_scenarios(params, make_market(vol=0.6))
    assert high.price_range[0] == pytest.approx(2 * low.price_range[0], rel=1e-3)
    assert 0.02 < low.price_range[0] < 0.08  # 3 sd of a 30% vol over one day is about 5%
