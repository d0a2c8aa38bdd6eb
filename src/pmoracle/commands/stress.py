"""``pmoracle stress``: a liquidation cascade over a whole book, from files or from the chain at a block.

A joint shock (``--shock BTC=-0.30`` repeated, ``--vol-shock 0.5``, or ``--stress NAME`` from the parameters
document's ``[stress.scenarios]``), then re-margin, liquidate with the Liquidator's fractional rule and move prices by
the forced sales until no account breaches (``pmoracle.risk.stress``, docs/stress.md). Prints a table, one JSON
object with ``--json``, and draws the price path and the per-step shortfall with ``--plot FILE.png``. Any invalid
input exits with status 2 and a message naming the field.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from pmoracle.errors import InputError

if TYPE_CHECKING:
    from pmoracle.keeper.decision import AuctionParams
    from pmoracle.risk.inputs import MarketSnapshot, Portfolio
    from pmoracle.risk.params import RiskParams, StressParams
    from pmoracle.risk.stress import Shock, StressResult

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
DEFAULT_IMPACT = Fraction(1)
DEFAULT_DEPTH = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the stress sub-command's arguments."""
    files = parser.add_argument_group("from files")
    files.add_argument("--market", type=pathlib.Path, help="market snapshot JSON (as `pmoracle margin` reads)")
    files.add_argument("--book", type=pathlib.Path, metavar="DIR",
                       help="a directory of portfolio JSON files, one account each (named 0x<address>.json or "
                            "anything: the file's name stands for the account)")  # fmt: skip
    chain = parser.add_argument_group("from the chain")
    chain.add_argument("--rpc", action="append", metavar="URL", help="JSON-RPC endpoint (repeat for fallbacks)")
    chain.add_argument("--deployment", type=pathlib.Path, help="the deployment JSON")
    chain.add_argument("--block", type=int, metavar="B", help="the block to read (default: the latest)")
    parser.add_argument("--params", type=pathlib.Path,
                        help="risk parameters TOML, with its optional [stress] section (default: the bundled "
                             "document)")  # fmt: skip
    parser.add_argument("--shock", action="append", default=[], metavar="SYM=MOVE",
                        help="relative price move of an underlying, e.g. BTC=-0.30 (repeatable)")  # fmt: skip
    parser.add_argument("--vol-shock", metavar="V", help="implied vols x (1 + V), e.g. 0.5")
    parser.add_argument("--stress", metavar="NAME", help="a named stress of the document's [stress.scenarios]")
    parser.add_argument("--impact", metavar="Y", help="Y of the square-root law (default: the document's, else 1)")
    parser.add_argument("--adv", action="append", default=[], metavar="SYM=UNITS",
                        help="average daily volume of an underlying in units (repeatable; overrides the "
                             "document's)")  # fmt: skip
    parser.add_argument("--depth", type=int, help="cascade steps at most (default: the document's, else 10)")
    parser.add_argument("--discount", metavar="D",
                        help="the auction discount bids land at, a fraction of MM (default: the Liquidator's "
                             "maximum, where the keeper bids)")  # fmt: skip
    parser.add_argument("--insurance-fund", metavar="USD",
                        help="the fund's balance (default: the Liquidator's on chain, 0 from files)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--plot", type=pathlib.Path, metavar="FILE.png", help="draw the price path and shortfall")


def run(args: argparse.Namespace) -> int:
    """Run the cascade and print it.

    Args:
        args: the parsed options (``add_arguments``).

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) naming the field: unreadable or malformed files, an unknown underlying in a
        shock, a negative volume, a malformed book; ``ParamsError`` for the parameters document; ``ChainError`` when
        the chain cannot be read.
    """
    from pmoracle.config.params import default_params, load_params_file
    from pmoracle.risk.stress import LiquidationModel, run_cascade

    params = load_params_file(args.params, "params") if args.params is not None else default_params()
    stress = stress_params(params, args)
    shock, shock_name = choose_shock(args, stress)
    market, portfolios, names, auction, fund = _read_inputs(args)
    discount = auction.max_discount if args.discount is None else parse_wad(args.discount, "--discount")
    if args.insurance_fund is not None:
        fund = parse_wad(args.insurance_fund, "--insurance-fund", signed=True)
    model = LiquidationModel(auction, discount=discount, insurance_fund=fund)
    result = run_cascade(market, params, portfolios, shock, stress, model)
    if args.plot is not None:
        write_plot(args.plot, result, shock_name)
    doc = result_to_json(result, shock, shock_name, names, params.params_hash, discount)
    sys.stdout.write((json.dumps(doc, indent=2) if args.json else format_result(doc)) + "\n")
    return 0


# --- inputs -------------------------------------------------------------------------------------------------------


def parse_rational(text: str, field: str) -> Fraction:
    """Return an exact decimal or ratio (``-0.30``, ``1/3``); raise ``InputError`` naming ``field``."""
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise InputError(field, f"{text!r} is not a number") from None


def parse_wad(text: str, field: str, signed: bool = False) -> int:
    """Return a decimal as a WAD integer (18 decimals, exact); raise ``InputError`` if negative unless ``signed``."""
    value = parse_rational(text, field)
    if value < 0 and not signed:
        raise InputError(field, f"{text!r} is negative")
    wad = value * 10**18
    if wad.denominator != 1:
        raise InputError(field, f"{text!r} has more than 18 decimals")
    return int(wad)


def parse_pairs(items: list[str], option: str) -> list[tuple[str, Fraction]]:
    """Return the (SYMBOL, value) pairs of ``SYM=VALUE`` options; raise ``InputError`` naming the option."""
    pairs: dict[str, Fraction] = {}
    for item in items:
        symbol, sep, value = item.partition("=")
        symbol = symbol.strip()
        if not sep or not symbol:
            raise InputError(option, f"expected SYMBOL=VALUE, got {item!r}")
        if symbol in pairs:
            raise InputError(f"{option} {symbol}", "given twice")
        pairs[symbol] = parse_rational(value, f"{option} {symbol}")
    return sorted(pairs.items())


def stress_params(params: RiskParams, args: argparse.Namespace) -> StressParams:
    """Return the document's ``[stress]`` section with the command line's overrides (a default one without it).

    Errors: ``InputError`` naming ``--adv SYM`` for a volume <= 0, ``--impact`` or ``--depth`` out of range.
    """
    from pmoracle.risk.params import MAX_STRESS_DEPTH, StressParams

    base = params.stress or StressParams(DEFAULT_IMPACT, DEFAULT_DEPTH, (), (), ())
    adv = dict(base.adv)
    for symbol, volume in parse_pairs(args.adv, "--adv"):
        if volume <= 0:
            raise InputError(f"--adv {symbol}", f"the average daily volume must be positive, got {volume}")
        adv[symbol] = volume
    impact = base.impact if args.impact is None else parse_rational(args.impact, "--impact")
    if not 0 <= impact <= 10:
        raise InputError("--impact", f"{impact} is outside [0, 10]")
    depth = base.max_depth if args.depth is None else args.depth
    if not 1 <= depth <= MAX_STRESS_DEPTH:
        raise InputError("--depth", f"{depth} is outside [1, {MAX_STRESS_DEPTH}]")
    return StressParams(impact, depth, tuple(sorted(adv.items())), base.daily_vol, base.scenarios)


def choose_shock(args: argparse.Namespace, stress: StressParams) -> tuple[Shock, str]:
    """Return the shock to run and its label: ``--stress NAME``, else ``--shock``/``--vol-shock``, else the
    document's ``standard`` stress.

    Errors: ``InputError`` naming ``--stress`` (unknown name, or given with ``--shock``) or ``--shock`` (none).
    """
    from pmoracle.risk.params import STANDARD_STRESS
    from pmoracle.risk.stress import Shock

    if args.stress is not None:
        if args.shock or args.vol_shock is not None:
            raise InputError("--stress", "give a named stress or --shock/--vol-shock, not both")
        named = stress.scenario(args.stress)
        if named is None:
            known = ", ".join(s.name for s in stress.scenarios) or "none"
            raise InputError("--stress", f"no stress named {args.stress!r} in the parameters document ({known})")
        return Shock.of(named), args.stress
    if args.shock or args.vol_shock is not None:
        vol = Fraction(0) if args.vol_shock is None else parse_rational(args.vol_shock, "--vol-shock")
        moves = tuple(parse_pairs(args.shock, "--shock"))
        label = " ".join(f"{s}{float(m):+.1%}" for s, m in moves) + (f" vol{float(vol):+.0%}" if vol else "")
        return Shock(moves, vol), label.strip()
    standard = stress.scenario(STANDARD_STRESS)
    if standard is None:
        raise InputError("--shock", "give --shock SYM=MOVE, --vol-shock or --stress NAME (the document has no "
                                    f"stress.scenarios.{STANDARD_STRESS})")  # fmt: skip
    return Shock.of(standard), STANDARD_STRESS


def _read_inputs(
    args: argparse.Namespace,
) -> tuple[MarketSnapshot, list[Portfolio], dict[bytes, str], AuctionParams, int]:
    """Return the market, the book, a name per account, the Liquidator's parameters and the fund's balance."""
    from_files = args.market is not None or args.book is not None
    from_chain = args.rpc is not None or args.deployment is not None
    if from_files == from_chain:
        raise InputError("--market", "give either --market and --book, or --rpc and --deployment")
    if from_files:
        if args.market is None or args.book is None:
            raise InputError("--book" if args.book is None else "--market", "missing (--market and --book go together)")
        market, portfolios, names = read_book_files(args.market, args.book)
        return market, portfolios, names, _default_auction(), 0
    if args.rpc is None or args.deployment is None:
        raise InputError(
            "--rpc" if args.rpc is None else "--deployment", "missing (--rpc and --deployment go together)"
        )
    return _read_chain(args)


def _default_auction() -> AuctionParams:
    from pmoracle.chain.deploy import LIQUIDATION_PARAMS
    from pmoracle.keeper.decision import AuctionParams

    return AuctionParams(*LIQUIDATION_PARAMS)


def read_book_files(
    market_path: pathlib.Path, book: pathlib.Path
) -> tuple[MarketSnapshot, list[Portfolio], dict[bytes, str]]:
    """Return the market and every portfolio of ``book`` (``*.json``, sorted by name), each named by its file.

    Errors: ``InputError`` naming ``--book`` for a missing or empty directory, the file and field of a malformed
    portfolio.
    """
    import dataclasses

    from pmoracle.commands.margin import parse_in_file
    from pmoracle.files import read_json
    from pmoracle.risk.documents import parse_market, parse_portfolio

    market = parse_in_file(market_path, parse_market, read_json(market_path))
    if not book.is_dir():
        raise InputError("--book", f"{book} is not a directory")
    files = sorted(book.glob("*.json"))
    if not files:
        raise InputError("--book", f"{book} holds no *.json portfolio")
    portfolios: list[Portfolio] = []
    names: dict[bytes, str] = {}
    for n, path in enumerate(files, start=1):
        stem = path.stem
        account = bytes.fromhex(stem[2:]) if _ADDRESS.fullmatch(stem) else n.to_bytes(20, "big")
        if account in names:
            raise InputError("--book", f"{path.name} names the same account as {names[account]}")
        portfolio = parse_in_file(path, parse_portfolio, read_json(path), market)
        portfolios.append(dataclasses.replace(portfolio, account=account))
        names[account] = stem
    return market, portfolios, names


def _read_chain(args: argparse.Namespace) -> tuple[MarketSnapshot, list[Portfolio], dict[bytes, str], Any, int]:
    from pmoracle.chain.snapshot import read_snapshot
    from pmoracle.commands.chain_args import connect
    from pmoracle.keeper.decision import AuctionParams
    from pmoracle.node.chain_port import OFFLINE_W3

    client, deployment = connect(args.rpc, args.deployment)
    block = client.block_number() if args.block is None else args.block
    if block < 0:
        raise InputError("--block", f"expected a block number, got {block}")
    snapshot = read_snapshot(client, deployment, block)
    names = {p.account: "0x" + p.account.hex() for p in snapshot.portfolios}
    if "Liquidator" not in deployment.contracts:
        return snapshot.market, list(snapshot.portfolios), names, _default_auction(), 0
    liquidator = deployment.contract(OFFLINE_W3, "Liquidator").functions
    auction = AuctionParams(*client.call(liquidator.params(), block))
    fund = int(client.call(liquidator.fundBalance(), block))
    return snapshot.market, list(snapshot.portfolios), names, auction, fund


# --- output -------------------------------------------------------------------------------------------------------


def _usd(wad: int) -> str:
    from pmoracle.commands.margin import format_wad

    return format_wad(wad)


def _price(value: int) -> str:
    from pmoracle.risk.inputs import PRICE_DECIMALS, PRICE_SCALE

    whole, frac = divmod(value, PRICE_SCALE)
    return f"{whole}.{frac:0{PRICE_DECIMALS}d}"


def result_to_json(
    result: StressResult, shock: Shock, label: str, names: dict[bytes, str], params_hash: bytes, discount: int
) -> dict[str, Any]:
    """Return the JSON object of ``--json``: money in USD and fractions as exact decimal strings."""
    from pmoracle.commands.margin import format_money, format_size

    return {
        "stress": label,
        "shock": {"moves": {s: str(m) for s, m in shock.moves}, "vol_shock": str(shock.vol_shock)},
        "params_hash": "0x" + params_hash.hex(),
        "discount": _usd(discount),
        "steps": [
            {
                "step": s.step,
                "accounts_breached": s.accounts_breached,
                "accounts_whole": s.accounts_whole,
                "notional_liquidated": format_money(s.notional_liquidated),
                "forced_volume": {u: format_size(q) for u, q in s.forced_volume},
                "price_moves": {u: _usd(m) for u, m in s.price_moves},
                "shortfall": _usd(s.shortfall),
                "fees": _usd(s.fees),
            }
            for s in result.steps
        ],
        "cascade_depth": result.cascade_depth,
        "truncated": result.truncated,
        "shortfall": _usd(result.shortfall),
        "insurance_fund": _usd(result.insurance_fund),
        "fees": _usd(result.fees),
        "fund_after": _usd(result.fund_after),
        "shortfall_exceeds_fund": result.shortfall > result.insurance_fund + result.fees,
        "cover1": _usd(result.cover1),
        "cover2": _usd(result.cover2),
        "largest_defaults": [
            {"account": names.get(a, "0x" + a.hex()), "shortfall": _usd(x)} for a, x in result.account_shortfall[:2]
        ],
        "price_path": {u: [_price(p) for p in path] for u, path in result.price_path},
    }


def format_result(doc: dict[str, Any]) -> str:
    """Return the text table of a result's JSON object."""
    lines = [
        f"Stress {doc['stress']}   discount {float(doc['discount']):.1%} of MM   params {doc['params_hash'][:18]}…",
        "",
        f"{'step':>4}{'breached':>10}{'whole':>7}{'notional (USD)':>18}{'shortfall (USD)':>18}   price moves",
    ]
    for s in doc["steps"]:
        moves = "  ".join(f"{u} {float(m):+.2%}" for u, m in s["price_moves"].items() if float(m))
        notional, shortfall = float(s["notional_liquidated"]), float(s["shortfall"])
        lines.append(f"{s['step']:>4}{s['accounts_breached']:>10}{s['accounts_whole']:>7}"
                     f"{notional:>18,.2f}{shortfall:>18,.2f}   {moves or '-'}")  # fmt: skip
    lines += [
        "",
        f"Cascade depth {doc['cascade_depth']}" + ("  (stopped at the depth limit)" if doc["truncated"] else ""),
        f"Shortfall {float(doc['shortfall']):,.2f} USD against an insurance fund of "
        f"{float(doc['insurance_fund']):,.2f} (+ fees {float(doc['fees']):,.2f}): after {float(doc['fund_after']):,.2f}"
        + ("  ** exceeds the fund **" if doc["shortfall_exceeds_fund"] else ""),
        f"Cover 1 {float(doc['cover1']):,.2f}   Cover 2 {float(doc['cover2']):,.2f}",
        "Price path: " + "   ".join(
            f"{u} " + " > ".join(f"{float(p):,.0f}" for p in path) for u, path in doc["price_path"].items()
        ),
    ]  # fmt: skip
    return "\n".join(lines)


def write_plot(path: pathlib.Path, result: StressResult, label: str) -> None:
    """Write a PNG: each underlying's price path (relative to before the shock) and the shortfall per step.

    Errors: ``InputError`` naming ``--plot`` if the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (prices, losses) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for underlying, points in result.price_path:
        if len(set(points)) > 1:
            prices.plot(range(len(points)), [100.0 * p / points[0] for p in points], marker="o", label=underlying)
    prices.set_xticks(range(2 + len(result.steps)), ["before", "shock", *(str(s.step) for s in result.steps)])
    prices.set_ylabel("price, % of before the shock")
    prices.set_xlabel("step (impact of its forced sales applied)")
    prices.legend()
    steps = [s.step for s in result.steps]
    losses.bar(steps, [s.shortfall / 1e18 for s in result.steps], color="tab:red", label="shortfall (fund pays)")
    losses.axhline(result.insurance_fund / 1e18, color="tab:blue", linestyle="--", label="insurance fund")
    losses.set_xticks(steps)
    losses.set_xlabel("cascade step")
    losses.set_ylabel("USD")
    losses.legend(loc="upper left")
    counts = losses.twinx()
    counts.plot(steps, [s.accounts_breached for s in result.steps], "ko-", label="accounts breached")
    counts.set_ylabel("accounts breached")
    counts.legend(loc="upper right")
    fig.suptitle(f"Stress {label}: cascade depth {result.cascade_depth}, shortfall {result.shortfall / 1e18:,.0f} USD")
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError("--plot", f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
