"""``pmoracle import derive-pmrm2 CASE.json --out DIR``: one of Derive's published PMRM_2 portfolio cases as this
project's files, ``DIR/portfolio.json``, ``DIR/market.json`` and ``DIR/params.toml`` (docs/parameters.md).

``pmoracle margin DIR/portfolio.json --market DIR/market.json --params DIR/params.toml --json`` then reports the
case's numbers: ``equity - initial_margin`` is its IM, ``equity - maintenance_margin`` its MM (Derive reports margin
as a signed surplus) and ``equity`` its PortfolioMTM. A case using something this project cannot express names it
and exits with status 2, writing nothing.

A case gives times as seconds to expiry from Derive's test clock; the market time is chosen so that every expiry
falls at 08:00 UTC, where this project's instrument names put it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from fractions import Fraction
from typing import Any

from pmoracle.errors import InputError

SOURCES = ("derive-pmrm2",)
REFERENCE_TIME = 1630000000  # Derive's test clock (TestPMRM_2_PortfolioCasesNEW: REF_TIME)
EXPIRY_SECOND_OF_DAY = 8 * 3600
DAY = 86400
SETTLEMENT_WINDOW = 1800  # the last 30 minutes: the forward's fixed portion grows as the settlement average fills
VOL_DIRECTIONS = {"Up": "up", "None": "none", "Down": "down", "LINEAR": "linear", "ABS": "abs"}
SKEWS = ("LINEAR", "ABS")


class UnsupportedFeatureError(InputError):
    """Raised when a Derive case uses something this project cannot express (the field and the feature named)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the import sub-command's arguments."""
    parser.add_argument("source", choices=SOURCES, help="the venue's case format")
    parser.add_argument("case", type=pathlib.Path, metavar="CASE.json", help="one published case")
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR", help="where to write the files")
    parser.add_argument("--underlying", default="BASE", help="symbol of the case's underlying (default: BASE)")


def run(args: argparse.Namespace) -> int:
    """Convert one case and write its three files.

    Args:
        args: ``source`` (``derive-pmrm2``), ``case``, ``out``, ``underlying``.

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) when the case cannot be read or is malformed, ``UnsupportedFeatureError``
        naming the feature this project cannot express, ``ParamsError`` if the parameters are invalid.
    """
    from pmoracle.config.params import default_params_text
    from pmoracle.files import read_json
    from pmoracle.risk.params import parse_params

    underlying = args.underlying
    if not (underlying.isascii() and underlying.isalnum() and underlying.isupper()):
        raise InputError("--underlying", f"expected an upper-case alphanumeric symbol, got {underlying!r}")
    case = read_json(args.case, "CASE.json")
    portfolio, market, pmrm2_toml = convert_derive_case(case, args.underlying)
    params_text = params_document(default_params_text(), pmrm2_toml, args.case.name)
    parse_params(params_text)  # the section is checked before anything is written
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "portfolio.json").write_text(json.dumps(portfolio, indent=2) + "\n", encoding="utf-8")
        (args.out / "market.json").write_text(json.dumps(market, indent=2) + "\n", encoding="utf-8")
        (args.out / "params.toml").write_text(params_text, encoding="utf-8")
    except OSError as exc:
        raise InputError("--out", f"cannot write into {args.out}: {exc.strerror or exc}") from None
    sys.stdout.write(f"wrote {args.out / 'portfolio.json'}, {args.out / 'market.json'}, {args.out / 'params.toml'}\n")
    return 0


def number(value: float) -> str:
    """Return a binary64 as the decimal string that reads back as exactly it (its shortest repr)."""
    return repr(float(value))


def _get(obj: Any, path: str) -> Any:
    """Return the value at a dotted path of the case; raise ``InputError`` naming a missing or malformed field."""
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise InputError(path, "missing")
        node = node[part]
    return node


def _float(obj: Any, path: str) -> float:
    value = _get(obj, path)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(path, f"expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise InputError(path, f"expected a number, got {value!r}") from None


def _symbol(name: object, path: str) -> str:
    if not (isinstance(name, str) and name.isascii() and name.isalnum() and name.isupper()):
        raise UnsupportedFeatureError(path, f"asset name {name!r} is not an upper-case alphanumeric symbol")
    return name


def market_time(offsets: list[int]) -> int:
    """Return the market time after Derive's test clock at which every offset (seconds) ends at 08:00 UTC."""
    residues = sorted({offset % DAY for offset in offsets})
    if len(residues) > 1:
        raise UnsupportedFeatureError(
            "Scenario.Options", f"expiries at different times of day (seconds mod 1 day: {residues}); names put 08:00"
        )
    if not residues:
        return REFERENCE_TIME
    return REFERENCE_TIME + (EXPIRY_SECOND_OF_DAY - residues[0] - REFERENCE_TIME) % DAY


def convert_derive_case(case: Any, underlying: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Return (portfolio document, market document, ``[pmrm2]`` TOML section) of one Derive PMRM_2 case."""
    from pmoracle.risk.inputs import PRICE_SCALE
    from pmoracle.risk.naming import format_expiry_code, format_strike, format_utc_time

    scenario = _get(case, "Scenario")
    options = _get(case, "Scenario.Options")
    feeds = _get(case, "Scenario.OptionFeeds")
    if not isinstance(options, list) or not isinstance(feeds, list):
        raise InputError("Scenario.Options", "expected lists of options and option feeds")
    offsets = [int(_float(o, "Expiry")) for o in options] + [int(_float(f, "FeedExpiry")) for f in feeds]
    time = market_time(offsets)

    expiries: dict[int, dict[str, Any]] = {}
    for i, feed in enumerate(feeds):
        seconds = int(_float(feed, "FeedExpiry"))
        forward = _float(feed, "Forward")
        if seconds < SETTLEMENT_WINDOW:
            fixed, variable = (
                forward * (SETTLEMENT_WINDOW - seconds) / SETTLEMENT_WINDOW,
                forward * seconds / SETTLEMENT_WINDOW,
            )
        else:
            fixed, variable = 0.0, forward
        if seconds in expiries:
            raise UnsupportedFeatureError(f"Scenario.OptionFeeds[{i}]", f"a second feed for expiry {seconds}")
        expiries[seconds] = {
            "forward_fixed": number(fixed),
            "forward_variable": number(variable),
            "forward_confidence": number(_float(feed, "ForwardConfidence")),
            "rate": number(_float(feed, "Rate")),
            "rate_confidence": number(_float(feed, "RateConfidence")),
            "vol_confidence": number(_float(feed, "OptionVolConfidences")),
            "vols": {},
        }
    positions: list[dict[str, Any]] = []
    for i, option in enumerate(options):
        path = f"Scenario.Options[{i}]"
        seconds = int(_float(option, "Expiry"))
        if seconds not in expiries:
            raise UnsupportedFeatureError(path, f"an option whose expiry ({seconds} s) has no feed")
        strike = Fraction(_float(option, "Strike"))
        if strike <= 0 or (strike * PRICE_SCALE).denominator != 1:
            raise UnsupportedFeatureError(f"{path}.Strike", f"strike {float(strike)!r} is not a multiple of 1e-8")
        strike_text = format_strike(int(strike * PRICE_SCALE))
        code = format_expiry_code(time + seconds)
        vols = expiries[seconds]["vols"]
        vol = number(_float(option, "MarkVol"))
        if vols.setdefault(strike_text, vol) != vol:
            raise UnsupportedFeatureError(f"{path}.MarkVol", f"two vols for strike {strike_text} of one expiry")
        kind = "C" if _get(option, "IsCall") in (1, True) else "P"
        name = f"{underlying}-{code}-{strike_text}-{kind}"
        positions.append({"instrument": name, "size": number(_float(option, "Amount"))})
    perps = _float(scenario, "NumPerps")
    perp_price = _float(scenario, "PerpPrice")
    if perps != 0:
        # the perp's value is size x price - cost - funding owed: Derive's unrealised P&L plus unrealised funding
        cost = perps * perp_price - _float(scenario, "UnrealisedPerpPNL")
        positions.append(
            {
                "instrument": f"{underlying}-PERPETUAL",
                "size": number(perps),
                "cost": number(cost),
                "funding": number(-_float(scenario, "UnrealisedFunding")),
            }
        )
    collaterals = _get(case, "Scenario.Collaterals")
    if not isinstance(collaterals, list):
        raise InputError("Scenario.Collaterals", "expected a list")
    collateral: dict[str, str] = {}
    assets: dict[str, dict[str, str]] = {}
    haircuts: list[str] = []
    for i, entry in enumerate(collaterals):
        path = f"Scenario.Collaterals[{i}]"
        symbol = _symbol(_get(entry, "Name"), f"{path}.Name")
        if symbol in collateral:
            raise UnsupportedFeatureError(f"{path}.Name", f"collateral {symbol} held twice")
        collateral[symbol] = number(_float(entry, "Amount"))
        assets[symbol] = {"price": number(_float(entry, "Price")), "confidence": number(_float(entry, "Confidence"))}
        cancelling = _get(entry, "IsRiskCancelling")
        haircuts += [
            f"[pmrm2.collateral.{symbol}]",
            f"im_haircut = {number(_float(entry, 'IMHaircut'))}",
            f"mm_haircut = {number(_float(entry, 'MMHaircut'))}",
            f"risk_cancelling = {'true' if cancelling in (1, True) else 'false'}",
            "",
        ]
    portfolio = {"positions": positions, "collateral": collateral, "cash": number(_float(scenario, "Cash"))}
    market = {
        "model": "pmrm2",
        "time": format_utc_time(time),
        "underlying": underlying,
        "spot": {
            "price": number(_float(scenario, "SpotPrice")),
            "confidence": number(_float(scenario, "SpotConfidence")),
        },
        "perp": {"price": number(perp_price), "confidence": number(_float(scenario, "PerpConfidence"))},
        "stable": {
            "price": number(_float(scenario, "StablePrice")),
            "confidence": number(_float(scenario, "StableConfidence")),
        },
        "expiries": {format_expiry_code(time + s): spec for s, spec in sorted(expiries.items())},
        "assets": assets,
    }
    return portfolio, market, pmrm2_section(_get(case, "Parameters"), haircuts)


def pmrm2_section(params: Any, collateral_lines: list[str]) -> str:
    """Return the ``[pmrm2]`` TOML section of a case's ``Parameters``."""
    scenarios = _get(params, "Scenarios")
    if not isinstance(scenarios, list):
        raise InputError("Parameters.Scenarios", "expected a list")
    rows = []
    for i, s in enumerate(scenarios):
        path = f"Parameters.Scenarios[{i}]"
        direction = _get(s, "VolShockDirection")
        if direction not in VOL_DIRECTIONS:
            raise UnsupportedFeatureError(f"{path}.VolShockDirection", f"vol shock direction {direction!r}")
        spot = _float(s, "SpotShock")
        if direction in SKEWS and spot != 1.0:
            raise UnsupportedFeatureError(
                f"{path}.SpotShock",
                f"a {direction} skew scenario with a spot move ({spot!r}): PMRM_2 skew scenarios move no spot, and"
                " Derive's own PMRM_2.setScenarios rejects one",
            )
        rows.append(
            f'  {{ spot = {number(spot)}, vol = "{VOL_DIRECTIONS[direction]}", '
            f"dampening = {number(_float(s, 'DampeningFactor'))} }},"
        )

    def line(key: str, path: str) -> str:
        return f"{key} = {number(_float(params, path))}"

    return "\n".join(
        ["[pmrm2]", "scenarios = [", *rows, "]", "", "[pmrm2.vol_shock]",
         line("range_up", "VolShock.VOLRANGEUP"), line("range_down", "VolShock.VOLRANGEDOWN"),
         line("short_term_power", "VolShock.SHORTTERMPOWER"), line("long_term_power", "VolShock.LONGTERMPOWER"),
         line("dte_floor_days", "VolShock.DTE_FLOOR"), line("min_vol_up", "VolShock.MIN_VOL_EVAL_SHOCKED"), "",
         "[pmrm2.skew_shock]",
         line("linear_base_cap", "SkewShock.LINEAR_SCALE_CAP"), line("linear_c_base", "SkewShock.LINEAR_CBASE"),
         line("abs_base_cap", "SkewShock.ABS_SCALE_CAP"), line("abs_c_base", "SkewShock.ABS_CBASE"),
         line("min_k_star", "SkewShock.MIN_K_STAR"), line("width_scale", "SkewShock.MIN_WIDTH_SCALE"),
         line("vol_param_static", "SkewShock.VOL_PARAM_STATIC"), line("vol_param_scale", "SkewShock.VOL_PARAM_SCALE"),
         "", "[pmrm2.margin]",
         line("im_loss_factor", "Margin.IM_LOSS_FACTOR"), line("mm_loss_factor", "Margin.MM_LOSS_FACTOR"),
         line("long_base_static_discount", "Margin.BASE_STATIC_DISCOUNT"),
         line("long_rate_mult_scale", "Margin.LONG_RATE_MULTSCALE"),
         line("long_rate_add_scale", "Margin.LONG_RATE_ADDSCALE"),
         line("short_base_static_discount", "Margin.BASE_STATIC_DISCOUNT_NEG"),
         line("short_rate_mult_scale", "Margin.SHORT_RATE_MULTSCALE"),
         line("short_rate_add_scale", "Margin.SHORT_RATE_ADDSCALE"), "", "[pmrm2.basis]",
         line("spot_up", "BasisContingency.SCENARIO_SPOT_UP"), line("spot_down", "BasisContingency.SCENARIO_SPOT_DOWN"),
         line("add_factor", "BasisContingency.BASIS_CONT_ADD_FACTOR"),
         line("mult_factor", "BasisContingency.BASIS_CONT_MULT_FACTOR"), "", "[pmrm2.contingency]",
         line("peg_loss_threshold", "OtherContingency.PEG_LOSS_THRESHOLD"),
         line("peg_loss_factor", "OtherContingency.PEG_LOSS_FACTOR"),
         line("confidence_threshold", "OtherContingency.CONF_THRESHOLD"),
         line("confidence_margin", "OtherContingency.CONF_MARGIN"),
         line("mm_perp_percent", "OtherContingency.MM_PERP_PERCENT"),
         line("im_perp_percent", "OtherContingency.IM_PERP_PERCENT"),
         line("mm_option_percent", "OtherContingency.MM_OPTION_PERCENT"),
         line("im_option_percent", "OtherContingency.IM_OPTION_PERCENT"), "",
         *collateral_lines]
    )  # fmt: skip


def params_document(base: str, pmrm2_toml: str, case_name: str) -> str:
    """Return a parameters document: the grid sections of ``base`` and the case's ``[pmrm2]`` section."""
    header = f"# Imported by `pmoracle import derive-pmrm2` from {case_name}: the [pmrm2] section is the case's.\n"
    return header + base.rstrip("\n") + "\n\n" + pmrm2_toml.rstrip("\n") + "\n"
