"""``pmoracle risk-arrays``: the per-instrument risk arrays of a market and a parameters document.

Like a SPAN risk parameter file: for each instrument, the P&L of one unit in every scenario of the parameters'
scenario set, its base value and its short-option add-on, exactly as a round computes them, as CSV or JSON. The
instruments are those named with ``--instrument`` and those held by the ``--portfolio`` files (each once, in that
order; the perpetual of every underlying when neither is given), then every collateral asset of the market.
Invalid input exits with status 2 and one message naming the field; nothing is written then.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from pmoracle.errors import InputError
from pmoracle.files import read_json

if TYPE_CHECKING:
    from pmoracle.risk.inputs import MarketSnapshot
    from pmoracle.risk.margin import RiskArrays
    from pmoracle.risk.params import RiskParams
    from pmoracle.risk.table import RiskInstrument

FORMATS = ("csv", "json")
UNITS = {
    "base_value": "USD per unit of the instrument: its mark (an option's premium, a perpetual's or future's level,"
    " an asset's haircut price)",
    "short_option_addon": "USD per unit, added to maintenance margin for each unit held short (options only)",
    "risk_array": "USD per unit: the value change in each scenario (valued after the horizon, at the shocked"
    " price and vol); a scenario's loss counts at its cover fraction",
    "price_multiplier": "the scenario's price over today's, per underlying (index, forwards, collateral)",
    "vol_shock": "a multiple of the tenor-scaled vol shift (vol.shift): -1 down, 0 none, 1 up",
}
# With extreme.dampener_usd only: each scenario's dampening amount, which no per-unit row can hold.
DAMPENER_UNIT = (
    "USD per account: an account's counted P&L in the scenario (all its positions, after the cover) moves toward zero"
    " by this much, at most to zero (extreme.dampener_usd); not in the per-unit rows, as it does not scale with size"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the risk-arrays sub-command's arguments."""
    parser.add_argument("--market", type=pathlib.Path, required=True, help="market snapshot JSON")
    parser.add_argument(
        "--params",
        type=pathlib.Path,
        help="risk parameters TOML (default: the bundled pmoracle/config/default_params.toml)",
    )
    parser.add_argument(
        "--instrument",
        action="append",
        default=[],
        metavar="NAME",
        help="an instrument to include, e.g. BTC-27DEC26-100000-C (repeatable)",
    )
    parser.add_argument(
        "--portfolio",
        action="append",
        default=[],
        type=pathlib.Path,
        metavar="FILE",
        help="include every instrument this portfolio JSON holds (repeatable)",
    )
    parser.add_argument("--format", choices=FORMATS, default="csv", help="output format (default: csv)")
    parser.add_argument("--out", type=pathlib.Path, metavar="FILE", help="write here instead of stdout")


def run(args: argparse.Namespace) -> int:
    """Compute and write the risk arrays.

    Args:
        args: ``market``, ``params`` (optional), ``instrument`` and ``portfolio`` (lists), ``format``, ``out``.

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) for unreadable files, malformed JSON, a malformed instrument name (field
        ``--instrument``), an instrument the market cannot value, or an unwritable ``--out``; ``ParamsError``
        for an invalid parameters document.
    """
    from pmoracle.commands.margin import parse_in_file
    from pmoracle.config.params import default_params, load_params_file
    from pmoracle.risk.documents import parse_market, parse_portfolio
    from pmoracle.risk.exports import compute_instrument_arrays, list_market_instruments
    from pmoracle.risk.inputs import Instrument, InstrumentKind
    from pmoracle.risk.naming import parse_instrument_name

    market = parse_in_file(args.market, parse_market, read_json(args.market))
    params = load_params_file(args.params, "--params") if args.params is not None else default_params()
    named: list[Instrument] = [parse_instrument_name(name, "--instrument") for name in args.instrument]
    for path in args.portfolio:
        portfolio = parse_in_file(path, parse_portfolio, read_json(path), market)
        named.extend(p.instrument for p in portfolio.positions)
    if not args.instrument and not args.portfolio:
        named = [Instrument(u.symbol, InstrumentKind.PERPETUAL) for u in market.underlyings]
    arrays = compute_instrument_arrays(market, params, list_market_instruments(market, named))
    if args.format == "json":
        output = json.dumps(arrays_to_json(arrays, market, params), indent=2) + "\n"
    else:
        output = arrays_to_csv(arrays, market)
    if args.out is None:
        sys.stdout.write(output)
        return 0
    try:
        args.out.write_text(output, encoding="utf-8")
    except OSError as exc:
        raise InputError("--out", f"cannot write {args.out}: {exc.strerror or exc}") from None
    return 0


def format_unit_value(value: int) -> str:
    """Return a kernel value (USD per unit x 1e4, an int) as an exact decimal string with 4 decimals."""
    whole, frac = divmod(abs(int(value)), 10**4)
    return f"{'-' if value < 0 else ''}{whole}.{frac:04d}"


def instrument_label(inst: RiskInstrument, market: MarketSnapshot) -> tuple[str, str, str]:
    """Return (name, kind, underlying) of a risk-array row; a collateral asset is named by its symbol (a stable
    asset has no underlying: "")."""
    from pmoracle.risk.naming import format_instrument_name
    from pmoracle.risk.table import CollateralRef

    if isinstance(inst, CollateralRef):
        return inst.symbol, "asset", market.asset(inst.symbol).underlying or ""
    return format_instrument_name(inst), inst.kind.name.lower(), inst.underlying


def arrays_to_csv(arrays: RiskArrays, market: MarketSnapshot) -> str:
    """Return the CSV: one row per instrument, one column per scenario (headed by its label), values exact."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["instrument", "kind", "underlying", "base_value_usd", "short_option_addon_usd",
                     *arrays.scenarios.labels])  # fmt: skip
    for i, inst in enumerate(arrays.instruments):
        name, kind, underlying = instrument_label(inst, market)
        values = [format_unit_value(v) for v in arrays.r[i]]
        writer.writerow([name, kind, underlying, format_unit_value(arrays.base[i]),
                         format_unit_value(arrays.addon[i]), *values])  # fmt: skip
    return buffer.getvalue()


def arrays_to_json(arrays: RiskArrays, market: MarketSnapshot, params: RiskParams) -> dict[str, Any]:
    """Return the JSON document: the scenarios (label, price multipliers, vol shocks, cover), units, and rows."""
    from fractions import Fraction

    from pmoracle.commands.margin import format_money
    from pmoracle.risk.naming import format_utc_time

    scenarios = arrays.scenarios
    symbols = scenarios.underlyings
    dampened = params.extreme_dampener is not None
    return {
        "market_time": format_utc_time(market.time),
        "params_hash": "0x" + params.params_hash.hex(),
        "currency": "USD",
        "units": {**UNITS, "dampener_usd": DAMPENER_UNIT} if dampened else UNITS,
        "underlyings": [
            {"symbol": symbol, "scan_range": float(scenarios.price_range[u])} for u, symbol in enumerate(symbols)
        ],
        "scenarios": [
            {
                "index": s,
                "label": label,
                "price_multiplier": {symbol: float(scenarios.price_mult[s, u]) for u, symbol in enumerate(symbols)},
                "vol_shock": {symbol: float(scenarios.vol_shock[s, u]) for u, symbol in enumerate(symbols)},
                "cover": str(Fraction(int(scenarios.cover_num[s]), scenarios.cover_den)),
                "extreme": bool(scenarios.is_extreme[s]),
                **({"dampener_usd": format_money(int(scenarios.damp[s]))} if dampened else {}),
            }
            for s, label in enumerate(scenarios.labels)
        ],
        "instruments": [
            dict(
                zip(("instrument", "kind", "underlying"), instrument_label(inst, market), strict=True),
                base_value=format_unit_value(arrays.base[i]),
                short_option_addon=format_unit_value(arrays.addon[i]),
                risk_array=[format_unit_value(v) for v in arrays.r[i]],
            )
            for i, inst in enumerate(arrays.instruments)
        ],
    }
