"""``pmoracle margin``: portfolio margin of one book from a portfolio file and a market snapshot file.

Prints a readable report (or one JSON object with ``--json``) and can draw the risk array as a heatmap
(``--plot FILE.png``). Any invalid input exits with status 2 and one message naming the field; nothing is
printed to stdout then, and nothing is computed from a partially valid input.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from pmoracle.errors import InputError
from pmoracle.files import read_json

if TYPE_CHECKING:
    from pmoracle.risk.inputs import MarketSnapshot, Portfolio
    from pmoracle.risk.margin import AccountReport
    from pmoracle.risk.params import RiskParams
    from pmoracle.risk.scenarios import ScenarioSet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the margin sub-command's arguments."""
    parser.add_argument("portfolio", type=pathlib.Path, help="portfolio JSON: positions and collateral")
    parser.add_argument("--market", type=pathlib.Path, required=True, help="market snapshot JSON")
    parser.add_argument(
        "--params",
        type=pathlib.Path,
        help="risk parameters TOML (default: the bundled pmoracle/config/default_params.toml)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    parser.add_argument("--plot", type=pathlib.Path, metavar="FILE.png", help="write a heatmap of the risk array")
    parser.add_argument(
        "--crif",
        type=pathlib.Path,
        metavar="FILE.csv",
        help="write the book's delta and vega sensitivities as ISDA CRIF rows (CSV) for SIMM tooling",
    )


def run(args: argparse.Namespace) -> int:
    """Compute and print the margin report of one portfolio.

    Args:
        args: ``portfolio``, ``market``, ``params`` (optional), ``json``, ``plot`` (optional), ``crif``
            (optional).

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) for unreadable files, malformed JSON, or any invalid field;
        ``ParamsError`` for an invalid parameters document; ``AccountOverflowError`` for an unrepresentable book.
    """
    from pmoracle.config.params import default_params, load_params_file
    from pmoracle.risk.documents import parse_market, parse_portfolio
    from pmoracle.risk.margin import compute_account_report

    market_doc = read_json(args.market)
    portfolio_doc = read_json(args.portfolio)
    params = load_params_file(args.params, "params") if args.params is not None else default_params()
    if params.pmrm2 is not None:
        return run_pmrm2(args, params, market_doc, portfolio_doc)
    if isinstance(market_doc, dict) and "model" in market_doc:
        raise InputError("--params", f"{args.market} is a {market_doc['model']!r} market: give parameters with [pmrm2]")
    market = parse_in_file(args.market, parse_market, market_doc)
    portfolio = parse_in_file(args.portfolio, parse_portfolio, portfolio_doc, market)
    report = compute_account_report(market, params, portfolio)
    if args.plot is not None:
        write_heatmap(args.plot, report, market, params, title=args.portfolio.name)
    if args.crif is not None:
        write_crif(args.crif, market, params, portfolio)
    if args.json:
        output = json.dumps(report_to_json(report, market, portfolio), indent=2)
    else:
        output = format_report(report, market, portfolio, source=str(args.portfolio))
    sys.stdout.write(output + "\n")
    return 0


def run_pmrm2(args: argparse.Namespace, params: RiskParams, market_doc: Any, portfolio_doc: Any) -> int:
    """Compute and print the PMRM_2 margin of one book (parameters with a ``[pmrm2]`` section).

    Args:
        args: as :func:`run`; ``--plot`` and ``--crif`` need the scenario grid and are refused.
        params: the parameters document, with its ``pmrm2`` section.
        market_doc: the PMRM_2 market document (``"model": "pmrm2"``).
        portfolio_doc: the portfolio document.

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) naming the invalid field or the refused option.
    """
    from pmoracle.risk.pmrm2 import compute_pmrm2_margin
    from pmoracle.risk.pmrm2_documents import parse_pmrm2_market, parse_pmrm2_portfolio

    for option, value in (("--plot", args.plot), ("--crif", args.crif)):
        if value is not None:
            raise InputError(option, "works on the scenario grid; the parameters select the PMRM_2 model")
    if params.pmrm2 is None:  # unreachable: the caller checked
        raise InputError("--params", "the parameters have no [pmrm2] section")
    market = parse_in_file(args.market, parse_pmrm2_market, market_doc)
    book = parse_in_file(args.portfolio, parse_pmrm2_portfolio, portfolio_doc, market)
    result = compute_pmrm2_margin(params.pmrm2, market, book)
    scenarios = params.pmrm2.scenarios
    labels = [f"spot x{s.spot_shock!r}, vol {s.vol}, dampening {s.dampening!r}" for s in scenarios]
    labels.append("basis contingency")
    worst = result.worst_scenario
    worst_pnl = result.scenario_pnls[worst] if worst < len(scenarios) else result.basis_contingency
    report = {
        "model": "pmrm2",
        "params_hash": "0x" + params.params_hash.hex(),
        "currency": "USD",
        "equity": format_wad(result.equity),
        "initial_margin": format_wad(result.initial_margin),
        "maintenance_margin": format_wad(result.maintenance_margin),
        "free_collateral": format_wad(result.equity - result.initial_margin),
        "maintenance_surplus": format_wad(result.equity - result.maintenance_margin),
        "worst_scenario": {"index": worst, "label": labels[worst], "pnl": repr(worst_pnl)},
        "basis_contingency": repr(result.basis_contingency),
        "risk_array": [
            {"scenario": label, "pnl": repr(pnl)} for label, pnl in zip(labels, result.scenario_pnls, strict=False)
        ],
    }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    rows = [
        ("Equity (mark-to-market)", result.equity),
        ("Initial margin", result.initial_margin),
        ("Maintenance margin", result.maintenance_margin),
        ("Free collateral (equity - initial margin)", result.equity - result.initial_margin),
    ]
    lines = [f"PMRM_2 margin of {args.portfolio}", f"  params 0x{params.params_hash.hex()[:16]}…", "", "Margin (USD)"]
    lines += [f"  {name:<46}{format_usd(value // 10**10):>16}" for name, value in rows]
    lines.append(f"  Worst scenario #{worst}: {labels[worst]} ({worst_pnl:,.2f} USD)")
    if result.equity < result.maintenance_margin:
        lines.append("  ** equity is below maintenance margin: the account is liquidatable **")
    elif result.equity < result.initial_margin:
        lines.append("  ** equity is below initial margin: the account can only reduce risk **")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def parse_in_file(path: pathlib.Path, parse: Any, *args: Any) -> Any:
    """Return ``parse(*args)``; an ``InputError`` keeps its field and gains the file's name."""
    try:
        return parse(*args)
    except InputError as exc:
        raise InputError(exc.field, f"{exc.message} (in {path})") from exc


# --- formatting ---------------------------------------------------------------------------------------------


def format_money(value: int) -> str:
    """Return MONEY (USD with 8 decimals) as an exact decimal string, e.g. ``-1234.50000000``."""
    from pmoracle.risk.inputs import MONEY_DECIMALS, MONEY_SCALE

    whole, frac = divmod(abs(value), MONEY_SCALE)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{MONEY_DECIMALS}d}"


def format_usd(value: int) -> str:
    """Return MONEY for reading: thousands separators, cents (rounded half away from zero)."""
    from pmoracle.risk.inputs import MONEY_SCALE

    cents = (abs(value) * 100 + MONEY_SCALE // 2) // MONEY_SCALE
    return f"{'-' if value < 0 and cents else ''}{cents // 100:,}.{cents % 100:02d}"


def format_wad(value: int) -> str:
    """Return a USD WAD balance (18 decimals) as an exact decimal string without trailing zeros, e.g. ``-12.5``."""
    from pmoracle.risk.inputs import WAD, WAD_DECIMALS

    whole, frac = divmod(abs(value), WAD)
    digits = f"{frac:0{WAD_DECIMALS}d}".rstrip("0")
    return f"{'-' if value < 0 else ''}{whole}" + (f".{digits}" if digits else "")


def format_size(value: int) -> str:
    """Return a SIZE amount as an exact decimal string."""
    from pmoracle.risk.inputs import SIZE_DECIMALS, SIZE_SCALE

    whole, frac = divmod(abs(value), SIZE_SCALE)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{SIZE_DECIMALS}d}"


def held_underlyings(portfolio: Portfolio, market: MarketSnapshot) -> list[str]:
    """Return the underlyings whose moves change the book: its positions' and its collateral's, sorted."""
    held = {p.instrument.underlying for p in portfolio.positions}
    for symbol, _ in portfolio.collateral:
        underlying = market.asset(symbol).underlying
        if underlying is not None:
            held.add(underlying)
    return sorted(held)


def report_to_json(report: AccountReport, market: MarketSnapshot, portfolio: Portfolio) -> dict[str, Any]:
    """Return the JSON object of ``--json``: money as exact decimal strings in USD."""
    from pmoracle.risk.naming import format_instrument_name, format_utc_time

    worst = report.worst_scenario
    addon = report.concentration_addon
    counted = report.counted_risk_array  # with extreme.dampener_usd only: the P&L as MM counts it
    return {
        "account": "0x" + report.account.hex(),
        "market_time": format_utc_time(market.time),
        "params_hash": "0x" + report.params_hash.hex(),
        "currency": "USD",
        "maintenance_margin": format_money(report.maintenance_margin),
        "concentration_addon": None if addon is None else format_money(addon),
        "roll_shock": None if report.roll_shock is None else format_money(report.roll_shock),
        "initial_margin": format_money(report.initial_margin),
        "equity": format_money(report.equity),
        "free_collateral": format_money(report.equity - report.initial_margin),
        "worst_scenario": {
            "index": worst,
            "label": report.worst_scenario_label,
            "pnl": format_money(report.risk_array[worst]),
        },
        "expected_shortfall": format_money(report.expected_shortfall),
        "expected_shortfall_level": report.expected_shortfall_level,
        "isolated_margin": format_money(report.isolated_margin),
        "cross_margin": format_money(report.cross_margin),
        "portfolio_margin": format_money(report.maintenance_margin),
        "capital_released": format_money(report.capital_released),
        "greeks": {
            g.underlying: {"delta": g.delta, "gamma": g.gamma, "vega": g.vega, "theta": g.theta} for g in report.greeks
        },
        "greeks_units": {
            "delta": "units of the underlying",
            "gamma": "delta per 1 USD of the underlying",
            "vega": "USD per vol point",
            "theta": "USD per day",
        },
        "positions": [
            {"instrument": format_instrument_name(p.instrument), "size": format_size(p.size)}
            | ({} if p.instrument.is_option else {"cost": format_wad(p.cost), "funding": format_wad(p.funding)})
            for p in portfolio.positions
        ],
        "collateral": {symbol: format_size(amount) for symbol, amount in portfolio.collateral},
        "cash": format_wad(portfolio.cash),
        "risk_array": [
            {"scenario": label, "pnl": format_money(pnl)}
            | ({} if counted is None else {"counted_pnl": format_money(counted[s])})
            for s, (label, pnl) in enumerate(zip(report.scenario_labels, report.risk_array, strict=True))
        ],
    }


def format_report(report: AccountReport, market: MarketSnapshot, portfolio: Portfolio, source: str) -> str:
    """Return the text report of one account."""
    from pmoracle.risk.naming import format_instrument_name, format_utc_time

    lines = [
        f"Portfolio margin of {source}",
        f"  market {format_utc_time(market.time)}   params 0x{report.params_hash.hex()[:16]}…"
        f"   {len(report.scenario_labels)} scenarios",
        "",
        "Book",
    ]
    for p in portfolio.positions:
        note = "   expired, valued at intrinsic on the index" if p.instrument.is_expired_at(market.time) else ""
        if not p.instrument.is_option and p.size != 0:
            note = f"   entry {format_usd(p.cost // (p.size * 10**6))}" + (  # USD WAD per 1e-4 unit -> MONEY/unit
                f", funding owed {format_wad(p.funding)}" if p.funding else ""
            ) + note  # fmt: skip
        lines.append(f"  {format_instrument_name(p.instrument):<26}{format_size(p.size):>18}{note}")
    for symbol, amount in portfolio.collateral:
        lines.append(f"  {symbol + ' (collateral)':<26}{format_size(amount):>18}")
    if portfolio.cash:
        lines.append(f"  {'Cash (USD)':<26}{format_usd(portfolio.cash // 10**10):>18}")
    worst = report.worst_scenario
    rows = [
        ("Equity (cash, marks, futures P&L, collateral)", report.equity),
        ("Initial margin", report.initial_margin),
        ("Maintenance margin", report.maintenance_margin),
        *(
            []
            if report.concentration_addon is None
            else [("  of which concentration add-on", report.concentration_addon)]
        ),
        *([] if report.roll_shock is None else [("  of which roll shock", report.roll_shock)]),
        ("Free collateral (equity - initial margin)", report.equity - report.initial_margin),
        (f"Expected shortfall ({report.expected_shortfall_level:.0%} level)", report.expected_shortfall),
    ]
    lines += ["", "Margin (USD)"]
    lines += [f"  {name:<46}{format_usd(value):>16}" for name, value in rows]
    lines.append(f"  Worst scenario #{worst}: {report.worst_scenario_label}")
    lines.append(f"  {'  P&L in that scenario':<46}{format_usd(report.risk_array[worst]):>16}")
    if report.concentration_addon is None:
        lines.append("  (MM = the worst loss counted over the scenarios + the short-option minimum; IM is stricter)")
    else:
        lines.append(
            "  (MM = the worst loss counted over the scenarios + the short-option minimum + the cost of closing\n"
            "   net positions large against their market's daily volume; IM is stricter)"
        )
    if report.equity < report.maintenance_margin:
        lines.append("  ** equity is below maintenance margin: the account is liquidatable **")
    elif report.equity < report.initial_margin:
        lines.append("  ** equity is below initial margin: the account can only reduce risk **")

    held = set(held_underlyings(portfolio, market))
    lines += ["", f"Greeks (positions){'':<8}{'delta':>12}{'gamma':>14}{'vega/vol pt':>14}{'theta/day':>14}"]
    for g in report.greeks:
        if g.underlying in held:
            lines.append(f"  {g.underlying:<24}{g.delta:>12.4f}{g.gamma:>14.6f}{g.vega:>14,.2f}{g.theta:>14,.2f}")

    pm = report.maintenance_margin
    lines += ["", f"Capital efficiency{'':<28}{'margin (USD)':>16}{'vs portfolio':>14}"]
    for name, value in (
        ("Isolated (each holding alone)", report.isolated_margin),
        ("Cross (net delta per underlying)", report.cross_margin),
        ("Portfolio (scenario max loss)", pm),
    ):
        ratio = f"{value / pm:.2f}x" if pm > 0 else "-"
        lines.append(f"  {name:<44}{format_usd(value):>16}{ratio:>14}")
    released = report.capital_released
    share = f" ({released / report.isolated_margin:.1%} of isolated)" if report.isolated_margin > 0 else ""
    lines.append(f"  Capital released by portfolio margin: {format_usd(released)} USD{share}")
    return "\n".join(lines)


# --- CRIF ------------------------------------------------------------------------------------------------------


def format_crif(market: MarketSnapshot, params: RiskParams, portfolio: Portfolio) -> str:
    """Return the CRIF CSV of a book: the header, then per holding its delta row and its vega rows (USD)."""
    import csv
    import io

    from pmoracle.risk.exports import CRIF_BUCKET, CRIF_COLUMNS, CRIF_PRODUCT_CLASS, compute_crif_rows
    from pmoracle.risk.naming import format_instrument_name
    from pmoracle.risk.table import CollateralRef, RiskInstrument

    trade_ids: dict[RiskInstrument, str] = {
        p.instrument: format_instrument_name(p.instrument) for p in portfolio.positions
    }
    trade_ids.update({CollateralRef(symbol): f"COLLATERAL-{symbol}" for symbol, _ in portfolio.collateral})
    portfolio_id = "0x" + portfolio.account.hex()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CRIF_COLUMNS)
    for row in compute_crif_rows(market, params, portfolio, trade_ids):
        amount = f"{row.amount:.6f}"
        writer.writerow([row.trade_id, portfolio_id, CRIF_PRODUCT_CLASS, row.risk_type, row.qualifier, CRIF_BUCKET,
                         row.label1, "", "USD", amount, amount, "SIMM"])  # fmt: skip
    return buffer.getvalue()


def write_crif(path: pathlib.Path, market: MarketSnapshot, params: RiskParams, portfolio: Portfolio) -> None:
    """Write the CRIF CSV of a book to ``path``; raise ``InputError`` (field ``--crif``) if it cannot be written."""
    text = format_crif(market, params, portfolio)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError("--crif", f"cannot write {path}: {exc.strerror or exc}") from None


# --- heatmap ------------------------------------------------------------------------------------------------


def compute_heatmap(
    report: AccountReport, scenarios: ScenarioSet, underlying: str
) -> tuple[list[float], list[float], list[list[int | None]]]:
    """Return (price moves, vol shocks, worst P&L per cell) of one underlying over the non-extreme scenarios.

    A cell holds the worst account P&L among the scenarios where ``underlying`` moves by that fraction with
    that vol shock (the other underlyings moving as the joint modes say); None where no scenario falls.
    """
    u = scenarios.underlying_index(underlying)
    cells: dict[tuple[float, float], int] = {}
    for s in range(len(scenarios)):
        if scenarios.is_extreme[s]:
            continue
        key = (round(float(scenarios.price_mult[s, u]) - 1.0, 9), float(scenarios.vol_shock[s, u]))
        pnl = report.risk_array[s]
        cells[key] = min(cells.get(key, pnl), pnl)
    moves = sorted({m for m, _ in cells})
    vols = sorted({v for _, v in cells})
    grid = [[cells.get((m, v)) for m in moves] for v in vols]
    return moves, vols, grid


def write_heatmap(
    path: pathlib.Path, report: AccountReport, market: MarketSnapshot, params: RiskParams, title: str
) -> None:
    """Write a PNG heatmap of the risk array: price shock x vol shock, one panel per underlying the book holds.

    Errors: ``InputError`` naming ``--plot`` if the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    from pmoracle.risk.inputs import MONEY_SCALE
    from pmoracle.risk.scenarios import compute_scenarios

    scenarios = compute_scenarios(params, market)
    if scenarios.labels != report.scenario_labels:
        raise InputError("--plot", "the scenario set does not match the report's (parameters changed?)")
    portfolio_underlyings = sorted({g.underlying for g in report.greeks if any((g.delta, g.gamma, g.vega))})
    underlyings = portfolio_underlyings or list(scenarios.underlyings)
    panels = [(u, *compute_heatmap(report, scenarios, u)) for u in underlyings]
    values = [c for _, _, _, grid in panels for row in grid for c in row if c is not None]
    lo = min(min(values), -1) / MONEY_SCALE
    hi = max(max(values), 1) / MONEY_SCALE
    norm = TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 1.2 + 2.4 * len(panels)), squeeze=False, layout="constrained")
    image = None
    for ax, (underlying, moves, vols, grid) in zip(axes[:, 0], panels, strict=True):
        data = np.array([[np.nan if c is None else c / MONEY_SCALE for c in row] for row in grid])
        image = ax.imshow(np.ma.masked_invalid(data), cmap="RdYlGn", norm=norm, aspect="auto", origin="lower")
        ax.set_xticks(range(len(moves)), [f"{100 * m:+.3g}%" if m else "0" for m in moves])
        ax.set_yticks(range(len(vols)), [_vol_tick(v) for v in vols])
        ax.set_xlabel(f"{underlying} price shock")
        ax.set_ylabel("vol shock")
        ax.set_title(
            f"{underlying}: worst P&L per (price, vol) cell over the joint modes (the other underlyings move"
            " with it, alone or opposite), USD",
            fontsize=10,
            loc="left",
        )
        for y, row in enumerate(grid):
            for x, cell in enumerate(row):
                if cell is not None:
                    usd = cell / MONEY_SCALE
                    strong = abs(norm(usd) - 0.5) > 0.35  # white text on the darkest reds and greens
                    color = "white" if strong else "black"
                    ax.text(x, y, _short_usd(usd), ha="center", va="center", fontsize=8, color=color)
        worst = report.worst_scenario
        if not scenarios.is_extreme[worst]:
            u = scenarios.underlying_index(underlying)
            wx = moves.index(round(float(scenarios.price_mult[worst, u]) - 1.0, 9))
            wy = vols.index(float(scenarios.vol_shock[worst, u]))
            ax.add_patch(plt.Rectangle((wx - 0.5, wy - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.0))
    fig.suptitle(
        f"{title} — risk array P&L (USD)   MM {format_usd(report.maintenance_margin)}   "
        f"IM {format_usd(report.initial_margin)}   equity {format_usd(report.equity)}\n"
        f"worst scenario (boxed): {report.worst_scenario_label}",
        fontsize=10,
    )
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="P&L (USD)", shrink=0.9)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError("--plot", f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _vol_tick(shock: float) -> str:
    if shock == 0:
        return "none"
    return ("up" if shock > 0 else "down") + ("" if abs(shock) == 1 else f" x{abs(shock):g}")


def _short_usd(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:+.2f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:+.1f}k"
    return f"{value:+.0f}"
