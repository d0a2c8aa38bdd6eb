"""The golden margin vectors: their books (inputs), their JSON form, and the engine's answer for them.

A margin vector is one round's worth of engine inputs and outputs, in the spirit of consensus-specs'
``pre``/``post`` vectors: a market snapshot, a risk-parameters document, a book of accounts, and what the engine
gives for them (each account's leaf in the on-chain unit, its worst scenario, and the Merkle root of the leaves).
Inputs are stored as the engine's own integers (``pmoracle.risk.inputs``), not as the CLI's documents, so a change
to a document parser never moves a vector; only the engine can.

Margins are quantized (P&L to 1e-4 USD per unit), so a change in the last bits of the floating-point maths rarely
moves them for a given book, yet moves some book's margin across a rounding boundary sooner or later: a fork. The
``detmath`` vector therefore pins the maths bit for bit (``det_exp``, ``det_log``, the normal CDF, SVI, Black-76 and
its greeks, as exact ``float.hex`` strings) on a seeded spread of inputs.

``tests/vectors/generate.py`` writes them; ``tests/unit/risk/test_golden_vectors.py`` recomputes them with the numba
kernel and with the pure-Python reference and names every account and field that moved.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_utils import keccak

from pmoracle.config.params import default_params_text
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.node.round import compute_leaves
from pmoracle.risk.detmath import det_exp, det_log, norm_cdf
from pmoracle.risk.inputs import (
    PRICE_SCALE,
    SIZE_SCALE,
    WAD,
    CollateralAsset,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    Smile,
    UnderlyingMarket,
)
from pmoracle.risk.margin import BookResult, compute_book
from pmoracle.risk.params import parse_params
from pmoracle.risk.pricing import black76, svi_total_variance
from pmoracle.risk.version import ENGINE_VERSION

MARGIN_DIR = Path(__file__).resolve().parent / "margin"
T0 = 1_795_680_000  # 2026-11-25T08:00:00Z, the valuation time of every vector
HOUR = 3600
DAY = 86400
E12H, E7, E30, E90, E365 = T0 + 12 * HOUR, T0 + 7 * DAY, T0 + 30 * DAY, T0 + 90 * DAY, T0 + 365 * DAY
# expired, not yet settled: a week ago, yesterday, and exactly at the valuation time (no smile in the market)
X7, X1, X0 = T0 - 7 * DAY, T0 - DAY, T0


# --- inputs ---------------------------------------------------------------------------------------------------------


def _wad(text: str) -> int:
    return int(Decimal(text) * WAD)


def _price(text: str) -> int:
    return int(Decimal(text) * PRICE_SCALE)


def _size(text: str) -> int:
    return int(Decimal(text) * SIZE_SCALE)


def _smile(expiry: int, a: str, b: str, rho: str, m: str, sigma: str) -> Smile:
    return Smile(expiry, _wad(a), _wad(b), _wad(rho), _wad(m), _wad(sigma))


def make_market() -> MarketSnapshot:
    """Return the vectors' market: BTC (a smile expiring inside the horizon, quoted forwards) and ETH, four assets."""
    fresh = T0 - 60  # every feed is a minute old: checked against max_feed_age_seconds, and fresh
    btc = UnderlyingMarket(
        "BTC",
        _price("95000"),
        rate=_wad("0.05"),
        smiles=(
            _smile(E12H, "0.0009", "0.01", "-0.2", "0", "0.03"),
            _smile(E7, "0.0042", "0.03", "-0.25", "0", "0.05"),
            _smile(E30, "0.0159", "0.06", "-0.3", "0", "0.1"),
            _smile(E90, "0.069", "0.12", "-0.35", "0.02", "0.2"),
            _smile(E365, "0.138", "0.15", "-0.4", "0.03", "0.25"),
        ),
        forwards=((E90, _price("96650")), (E365, _price("99850"))),
        updated_at=fresh,
    )
    eth = UnderlyingMarket(
        "ETH",
        _price("3000"),
        rate=_wad("0.04"),
        smiles=(
            _smile(E7, "0.0084", "0.04", "-0.2", "0", "0.05"),
            _smile(E30, "0.029", "0.08", "-0.25", "0", "0.1"),
            _smile(E90, "0.119", "0.15", "-0.3", "0.02", "0.2"),
            _smile(E365, "0.2236", "0.18", "-0.35", "0.03", "0.25"),
        ),
        forwards=((E30, _price("3010.5")),),
        updated_at=fresh,
    )
    assets = (
        CollateralAsset("BTC", _price("95000"), _wad("0.05"), "BTC", fresh),
        CollateralAsset("DAI", _price("0.9995"), _wad("0.02"), None, fresh),
        CollateralAsset("ETH", _price("3000"), _wad("0.1"), "ETH", fresh),
        CollateralAsset("USDC", _price("1"), 0, None, fresh),
    )
    return MarketSnapshot(time=T0, underlyings=(btc, eth), assets=assets)


def call(underlying: str, expiry: int, strike: str) -> Instrument:
    """Return a European call."""
    return Instrument(underlying, InstrumentKind.CALL, expiry=expiry, strike=_price(strike))


def put(underlying: str, expiry: int, strike: str) -> Instrument:
    """Return a European put."""
    return Instrument(underlying, InstrumentKind.PUT, expiry=expiry, strike=_price(strike))


def future(underlying: str, expiry: int) -> Instrument:
    """Return a dated future."""
    return Instrument(underlying, InstrumentKind.FUTURE, expiry=expiry)


def perpetual(underlying: str) -> Instrument:
    """Return a perpetual."""
    return Instrument(underlying, InstrumentKind.PERPETUAL)


# (instrument, size in units[, entry price USD[, funding owed USD]]), decimal texts
Held = tuple[Instrument, str] | tuple[Instrument, str, str] | tuple[Instrument, str, str, str]


@dataclass(frozen=True)
class NamedBook:
    """A hand-made account: what it holds, and a name that says why it is in the vectors."""

    name: str
    positions: tuple[Held, ...] = ()
    collateral: tuple[tuple[str, str], ...] = ()  # (asset, amount in units, decimal text)
    cash: str = "0"  # settlement cash, USD decimal text, signed


def _usd(text: str) -> int:
    """Return a USD decimal text in WAD, exactly."""
    wad = Decimal(text) * WAD
    if wad != int(wad):
        raise ValueError(f"{text} USD is not a whole number of 1e-18 USD")
    return int(wad)


def _position(held: Held) -> Position:
    """Return the position of ``held``: cost = size x entry price, exactly; funding as given."""
    inst, units = held[0], held[1]
    entry = held[2] if len(held) > 2 else "0"
    funding = held[3] if len(held) > 3 else "0"
    return Position(inst, _size(units), cost=_usd(str(Decimal(units) * Decimal(entry))), funding=_usd(funding))


def _account(vector: str, index: int) -> bytes:
    return keccak(text=f"pmoracle golden vector {vector} account {index}")[:20]


def _portfolios(vector: str, books: Sequence[NamedBook]) -> list[tuple[str, Portfolio]]:
    return [
        (
            book.name,
            Portfolio(
                positions=tuple(_position(held) for held in book.positions),
                collateral=tuple(sorted((asset, _size(units)) for asset, units in book.collateral)),
                account=_account(vector, i),
                cash=_usd(book.cash),
            ),
        )
        for i, book in enumerate(books)
    ]


OPTIONS = (
    NamedBook("short BTC 30d ATM straddle on USDC", ((call("BTC", E30, "95000"), "-10"),
              (put("BTC", E30, "95000"), "-10")), (("USDC", "150000"),)),
    NamedBook("long ETH 7d call spread, no collateral", ((call("ETH", E7, "3000"), "3"),
              (call("ETH", E7, "3300"), "-3"))),
    NamedBook("naked short BTC 90d OTM put (quoted forward) on USDC", ((put("BTC", E90, "70000"), "-2.5"),),
              (("USDC", "25000"),)),
    NamedBook("BTC calendar: short 7d call, long 365d call", ((call("BTC", E7, "100000"), "-4"),
              (call("BTC", E365, "100000"), "4")), (("USDC", "10000"),)),
    NamedBook("ETH deep ITM 365d put and a 20x OTM call", ((put("ETH", E365, "6000"), "7"),
              (call("ETH", E365, "60000"), "-50")), (("USDC", "1000"),)),
    NamedBook("short BTC ATM call expiring inside the horizon", ((call("BTC", E12H, "95000"), "-1"),),
              (("USDC", "5000"),)),
    NamedBook("ETH 30d risk reversal on the quoted forward", ((put("ETH", E30, "2700"), "-20"),
              (call("ETH", E30, "3300"), "20")), (("ETH", "5"),)),
    NamedBook("tiny short ETH put: the IM minimum buffer binds", ((put("ETH", E7, "2500"), "-0.0001"),),
              (("USDC", "100"),)),
)  # fmt: skip
FUTURES = (
    NamedBook("long BTC perpetual bought at 93000, funding owed, on USDC", ((perpetual("BTC"), "1.5", "93000",
              "45.5"),), (("USDC", "30000"),)),
    NamedBook("ETH basis: short perpetual (funding received), long 30d future", ((perpetual("ETH"), "-40", "3020",
              "-12.25"), (future("ETH", E30), "40", "2990")), (("USDC", "20000"),)),
    NamedBook("BTC calendar basis: long 90d future, short perpetual", ((future("BTC", E90), "3", "97100"),
              (perpetual("BTC"), "-3", "95400", "8")), (("DAI", "15000"),)),
    NamedBook("BTC 30d call delta-hedged with the perpetual, premium paid from cash", ((call("BTC", E30, "95000"),
              "10"), (perpetual("BTC"), "-5.2", "94250.5")), (("USDC", "40000"),), cash="-42000"),
    NamedBook("short ETH 365d future sold at 2900, no collateral: its loss is negative equity",
              ((future("ETH", E365), "-12", "2900"),)),
    NamedBook("empty account: no leaf"),
    NamedBook("collateral only: no risk, equity only", (), (("USDC", "12345.6789"),)),
)  # fmt: skip
COLLATERAL = (
    NamedBook("ETH collateral alone (haircut, moves with ETH)", (), (("ETH", "10"),)),
    NamedBook("wrong-way risk: short ETH puts on ETH collateral", ((put("ETH", E30, "2800"), "-30"),),
              (("ETH", "12"),)),
    NamedBook("BTC collateral hedged with a short BTC perpetual sold at the index", ((perpetual("BTC"), "-2",
              "95000"),), (("BTC", "2"),)),
    NamedBook("multi-asset: BTC, ETH, USDC, DAI collateral under options on both", (
        (call("BTC", E30, "110000"), "-3"), (put("ETH", E90, "2500"), "-25"), (future("ETH", E30), "10", "3000.25"),
        (put("BTC", E7, "90000"), "2")),
        (("BTC", "0.5"), ("DAI", "20000"), ("ETH", "8"), ("USDC", "15000"))),
    NamedBook("cross-asset hedge: long BTC collateral, short ETH perpetual", ((perpetual("ETH"), "-30", "2950",
              "3.3"),), (("BTC", "1"),)),
    NamedBook("stable collateral with a haircut (DAI) under a short BTC straddle", (
        (call("BTC", E7, "95000"), "-1"), (put("BTC", E7, "95000"), "-1")), (("DAI", "20000"),)),
)  # fmt: skip
NEGATIVE_EQUITY = (
    NamedBook("deep ITM short BTC call, little USDC: insolvent", ((call("BTC", E90, "50000"), "-5"),),
              (("USDC", "10000"),)),
    NamedBook("short ETH puts far in the money, no collateral", ((put("ETH", E365, "9000"), "-10"),)),
    NamedBook("short options only, no collateral", ((call("BTC", E30, "95000"), "-1"), (put("ETH", E7, "3000"), "-8"))),
    NamedBook("insolvent but hedged: short ITM call with a long perpetual", ((call("BTC", E30, "60000"), "-3"),
              (perpetual("BTC"), "3", "96000")), (("USDC", "1000"),)),
    NamedBook("insolvent through cash alone: owes more than its collateral", (), (("ETH", "2"),), cash="-7500"),
)  # fmt: skip

EXPIRED = (
    NamedBook("expired BTC ITM call, long, on USDC", ((call("BTC", X1, "90000"), "2"),), (("USDC", "1000"),)),
    NamedBook("expired BTC ITM call, short: intrinsic owed, no add-on", ((call("BTC", X1, "90000"), "-2"),),
              (("USDC", "20000"),)),
    NamedBook("expired BTC OTM put, short: worthless unless the index falls 16%", ((put("BTC", X1, "80000"), "-5"),),
              (("USDC", "5000"),)),
    NamedBook("expired ETH ITM put and OTM call, long and short", ((put("ETH", X7, "3200"), "10"),
              (call("ETH", X7, "3500"), "-10")), (("ETH", "1"),)),
    NamedBook("BTC ATM call expiring exactly at the valuation time", ((call("BTC", X0, "95000"), "-3"),),
              (("USDC", "30000"),)),
    NamedBook("expired ETH future bought at 2950, long, at the index", ((future("ETH", X1), "25", "2950"),),
              (("USDC", "10000"),)),
    NamedBook("expired BTC future hedged with the perpetual", ((future("BTC", X7), "-3", "94000"),
              (perpetual("BTC"), "3", "94100", "2")), (("DAI", "5000"),)),
    NamedBook("expired short BTC put rolled into a live 30d put", ((put("BTC", X1, "100000"), "-1"),
              (put("BTC", E30, "95000"), "-1")), (("USDC", "20000"),)),
    NamedBook("expired ITM call delta-hedged with a live 7d future", ((call("BTC", X1, "85000"), "4"),
              (future("BTC", E7), "-4", "95500")), (("USDC", "15000"),)),
    NamedBook("expired ETH calls against a live 90d straddle, no collateral", ((call("ETH", X7, "2800"), "-6"),
              (call("ETH", E90, "3000"), "3"), (put("ETH", E90, "3000"), "3"))),
)  # fmt: skip

LEDGER = (
    NamedBook("cash only: deposits of the settlement asset", cash="25000"),
    NamedBook("cash only, owing", cash="-1234.56789"),
    NamedBook("cash of -1 wei: floored toward minus infinity to -1e-8 USD", cash="-0.000000000000000001"),
    NamedBook("cash of 1.9999999999e-8 USD: floored to 1e-8 USD", cash="0.000000019999999999"),
    NamedBook("long 2 BTC perpetual bought at 90000, 120 USD funding owed, on cash",
              ((perpetual("BTC"), "2", "90000", "120"),), cash="10000"),
    NamedBook("short BTC perpetual in profit, funding received", ((perpetual("BTC"), "-1.5", "99000", "-37.5"),),
              cash="5000"),
    NamedBook("short BTC 90d future sold below its quoted forward: insolvent", ((future("BTC", E90), "-10", "90000"),),
              cash="20000"),
    NamedBook("long ETH 30d future at its quoted forward: no unrealized P&L", ((future("ETH", E30), "100", "3010.5"),),
              cash="30000"),
    NamedBook("long ETH 365d future, forward from the rate", ((future("ETH", E365), "8", "3050"),), (("ETH", "1"),)),
    NamedBook("entry price with 14 decimals: a cost to the wei, folded with the cash", ((perpetual("ETH"), "0.0003",
              "3000.12345678901234"),), cash="1"),
    NamedBook("option premium paid from cash: long BTC 30d call", ((call("BTC", E30, "100000"), "2"),), cash="-8000"),
    NamedBook("option premium received: short ETH 7d put on cash", ((put("ETH", E7, "2900"), "-10"),), cash="1500"),
    NamedBook("before settlement: long BTC call expired 5000 in the money at the index", ((call("BTC", X1, "90000"),
              "2"),)),
    NamedBook("after settlement: the same call's payoff in cash, the position gone", cash="10000"),
    NamedBook("before settlement: short BTC future sold at 91000, expired, at the index", ((future("BTC", X1), "-2",
              "91000"),)),
    NamedBook("after settlement: the same future's P&L in cash, the position gone", cash="-8000"),
    NamedBook("funding and futures on both underlyings with haircut collateral", ((perpetual("BTC"), "0.75", "97000",
              "-3.25"), (perpetual("ETH"), "-20", "2800", "41"), (future("BTC", E7), "-0.75", "95800"),
              (put("ETH", E30, "2800"), "20")), (("ETH", "3"), ("DAI", "5000")), cash="-2500.5"),
)  # fmt: skip


def random_portfolios(vector: str, seed: int, n_accounts: int) -> list[tuple[str, Portfolio]]:
    """Return ``n_accounts`` seeded random books over both underlyings, every instrument kind and every asset."""
    rng = random.Random(seed)
    pool: list[Instrument] = []
    for und, spot, step in (("BTC", 95_000, 1_000), ("ETH", 3_000, 50)):
        pool.append(perpetual(und))
        expiries = (E12H, E7, E30, E90, E365) if und == "BTC" else (E7, E30, E90, E365)
        for expiry in expiries:
            pool.append(future(und, expiry))
            for moneyness in (0.5, 0.8, 0.95, 1.0, 1.1, 1.3, 2.0):
                strike = str(max(step, round(spot * moneyness / step) * step))
                pool.append(call(und, expiry, strike) if rng.random() < 0.5 else put(und, expiry, strike))
    assets = ("BTC", "DAI", "ETH", "USDC")
    index = {"BTC": 95_000, "ETH": 3_000}
    books = []
    for i in range(n_accounts):
        held = rng.sample(pool, rng.randint(0, 8)) if i % 17 else []  # every 17th account is empty or collateral only
        positions = []
        for inst in held:
            size = rng.choice((-1, 1)) * rng.randint(1, 10 ** rng.randint(2, 6))
            if inst.is_option:
                positions.append(Position(inst, size))
                continue
            # entry within 20% of the index, to the wei (cost = size x entry in USD WAD); funding on perpetuals
            entry = index[inst.underlying] * 10**18 + rng.randint(-(10**18), 10**18) * index[inst.underlying] // 5
            funding = rng.randint(-(10**22), 10**22) if inst.kind == InstrumentKind.PERPETUAL else 0
            positions.append(Position(inst, size, cost=size * entry // SIZE_SCALE, funding=funding))
        collateral = tuple(
            (asset, rng.randint(1, 10 ** rng.randint(3, 9))) for asset in assets if rng.random() < (0.4 if i else 0.0)
        )
        cash = rng.randint(-(10**23), 10**24) if rng.random() < 0.6 else 0  # -1e5 .. 1e6 USD
        books.append((f"random #{i}", Portfolio(tuple(positions), collateral, _account(vector, i), cash)))
    return books


def _std_params_text() -> str:
    """Return the default document with scan ranges in standard deviations of the nearest expiry's ATM vol."""
    text = default_params_text()
    replaced = text.replace('reference = "fraction"', 'reference = "std"', 1)
    replaced = replaced.replace("scan_range = 0.16", "scan_range = 4.0", 1)
    replaced = replaced.replace("BTC = 0.16", "BTC = 4.5", 1).replace("ETH = 0.20", "ETH = 3.5", 1)
    if replaced.count("std") < 1 or "scan_range = 4.0" not in replaced or "BTC = 4.5" not in replaced:
        raise ValueError("the default parameters no longer have the fields this vector rewrites")
    return replaced


def _concentration_params_text() -> str:
    """Return the default document with a ``[concentration]`` add-on in thin markets (most random books pay it)."""
    return default_params_text() + (
        '\n[concentration]\nimpact = "1"\nthreshold = "0.01"\n\n[concentration.adv]\nBTC = "200"\nETH = "3000"\n\n'
        '[concentration.daily_vol]\nBTC = "0.035"\nETH = "0.04"\n'
    )


def _deribit_extended_params_text() -> str:
    """Return the Deribit preset: extended moves on vol up, each counted at cover / |move| (a cover denominator of
    4125, not 1e6), and the roll shock."""
    return (Path(__file__).resolve().parents[2] / "examples" / "params" / "deribit-pm.toml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class VectorSpec:
    """How to build one vector: its description, parameters text and named books."""

    description: str
    params_text: Callable[[], str]
    books: Callable[[], list[tuple[str, Portfolio]]]


def _hand_made(vector: str, books: Sequence[NamedBook]) -> Callable[[], list[tuple[str, Portfolio]]]:
    return lambda: _portfolios(vector, books)


MARGIN_VECTORS: dict[str, VectorSpec] = {
    "options": VectorSpec("options: straddles, spreads, calendars, deep ITM/OTM, expiry inside the horizon",
                          default_params_text, _hand_made("options", OPTIONS)),
    "futures": VectorSpec("futures and perpetuals: outright, basis, calendar, delta hedges, empty accounts",
                          default_params_text, _hand_made("futures", FUTURES)),
    "collateral": VectorSpec("spot collateral: haircuts, wrong-way risk, multi-asset books, stable collateral",
                             default_params_text, _hand_made("collateral", COLLATERAL)),
    "negative_equity": VectorSpec("insolvent accounts: negative equity in the leaves",
                                  default_params_text, _hand_made("negative_equity", NEGATIVE_EQUITY)),
    "expired": VectorSpec("expired options and futures before settlement, at expiry value on the index, with live "
                          "hedges", default_params_text, _hand_made("expired", EXPIRED)),
    "ledger": VectorSpec("mark-to-market: settlement cash (to the wei), entry prices, perpetual funding, premiums, "
                         "books before and after settlement", default_params_text, _hand_made("ledger", LEDGER)),
    "random": VectorSpec("a seeded random batch of 50 accounts under the default parameters",
                         default_params_text, lambda: random_portfolios("random", 2026, 50)),
    "random_std": VectorSpec("a seeded random batch of 20 accounts, scan ranges in standard deviations",
                             _std_params_text, lambda: random_portfolios("random_std", 7, 20)),
    "concentration": VectorSpec("a seeded random batch of 30 accounts under the concentration add-on (thin markets)",
                                _concentration_params_text, lambda: random_portfolios("concentration", 15, 30)),
    "deribit_extended": VectorSpec("a seeded random batch of 30 accounts under the Deribit preset: extended moves on "
                                   "vol up counted at cover / |move|, and the roll shock",
                                   _deribit_extended_params_text,
                                   lambda: random_portfolios("deribit_extended", 17, 30)),
}  # fmt: skip


# --- JSON form ------------------------------------------------------------------------------------------------------


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def encode_market(market: MarketSnapshot) -> dict[str, Any]:
    """Return the JSON form of a market: the engine's integers, field by field."""
    return {
        "time": market.time,
        "underlyings": [
            {
                "symbol": u.symbol,
                "index": u.index,
                "rate": u.rate,
                "updatedAt": u.updated_at,
                "forwards": [[expiry, price] for expiry, price in u.forwards],
                "smiles": [[s.expiry, s.a, s.b, s.rho, s.m, s.sigma] for s in u.smiles],
            }
            for u in market.underlyings
        ],
        "assets": [
            {
                "symbol": a.symbol,
                "price": a.price,
                "haircut": a.haircut,
                "underlying": a.underlying,
                "updatedAt": a.updated_at,
            }
            for a in market.assets
        ],
    }


def decode_market(obj: dict[str, Any]) -> MarketSnapshot:
    """Return the market of :func:`encode_market`'s form."""
    return MarketSnapshot(
        time=obj["time"],
        underlyings=tuple(
            UnderlyingMarket(
                u["symbol"],
                u["index"],
                rate=u["rate"],
                updated_at=u["updatedAt"],
                forwards=tuple((expiry, price) for expiry, price in u["forwards"]),
                smiles=tuple(Smile(*s) for s in u["smiles"]),
            )
            for u in obj["underlyings"]
        ),
        assets=tuple(
            CollateralAsset(a["symbol"], a["price"], a["haircut"], a["underlying"], a["updatedAt"])
            for a in obj["assets"]
        ),
    )


def encode_instrument(inst: Instrument) -> list[Any]:
    """Return ``[underlying, kind name, expiry, strike]``."""
    return [inst.underlying, inst.kind.name, inst.expiry, inst.strike]


def decode_instrument(obj: list[Any]) -> Instrument:
    """Return the instrument of :func:`encode_instrument`'s form."""
    underlying, kind, expiry, strike = obj
    return Instrument(underlying, InstrumentKind[kind], expiry=expiry, strike=strike)


def encode_book(name: str, portfolio: Portfolio) -> dict[str, Any]:
    """Return the JSON form of one account's book: sizes and amounts in SIZE units (1e-4); cash, and each position's
    cost and funding, in USD WAD (1e-18)."""
    return {
        "name": name,
        "account": _hex(portfolio.account),
        "cash": portfolio.cash,
        "positions": [[*encode_instrument(p.instrument), p.size, p.cost, p.funding] for p in portfolio.positions],
        "collateral": [[asset, amount] for asset, amount in portfolio.collateral],
    }


def decode_book(obj: dict[str, Any]) -> Portfolio:
    """Return the portfolio of :func:`encode_book`'s form."""
    return Portfolio(
        positions=tuple(Position(decode_instrument(p[:4]), p[4], cost=p[5], funding=p[6]) for p in obj["positions"]),
        collateral=tuple((asset, amount) for asset, amount in obj["collateral"]),
        account=bytes.fromhex(obj["account"][2:]),
        cash=obj["cash"],
    )


# --- outputs --------------------------------------------------------------------------------------------------------


def encode_outputs(book: BookResult) -> dict[str, Any]:
    """Return what a vector pins: every account's leaf (or none) and worst scenario, and the root of the leaves."""
    leaves = {leaf.account: leaf for leaf in compute_leaves(book)}
    accounts: list[dict[str, Any]] = []
    for margin in book.accounts:
        leaf = leaves.get(margin.account)
        entry: dict[str, Any] = {"account": _hex(margin.account), "leaf": None}
        if leaf is not None:
            entry["leaf"] = {
                "initialMargin": str(leaf.initial_margin),
                "maintenanceMargin": str(leaf.maintenance_margin),
                "equity": str(leaf.equity),
            }
            entry["worstScenario"] = margin.worst_scenario
            entry["worstScenarioLabel"] = book.scenario_labels[margin.worst_scenario]
        accounts.append(entry)
    tree = MerkleTree(list(leaves.values()))
    return {"root": _hex(tree.root), "leafCount": len(tree), "accounts": accounts}


def params_lines(text: str) -> list[str]:
    """Return the lines of a parameters document without its comments and blank lines (the same paramsHash)."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def build_vector(spec: VectorSpec) -> dict[str, Any]:
    """Return the JSON document of one vector, its outputs computed by this engine (the numba kernel)."""
    text = spec.params_text()
    params = parse_params(text)
    market = make_market()
    books = spec.books()
    result = compute_book(market, params, [portfolio for _, portfolio in books])
    return {
        "description": spec.description,
        "engineVersion": ENGINE_VERSION,
        "params": {"paramsHash": _hex(params.params_hash), "toml": params_lines(text)},
        "market": encode_market(market),
        "books": [encode_book(name, portfolio) for name, portfolio in books],
        "scenarios": list(result.scenario_labels),
        "expected": encode_outputs(result),
    }


# --- the deterministic maths, bit for bit ---------------------------------------------------------------------------

DETMATH = "detmath"
DETMATH_POINTS = 96  # explicit points per function, each named by its input when it moves
SWEEP_SEED = 1989
SWEEP_POINTS = 2**16  # points per function behind each digest: catches a change that flips one result in 10^4


def _spread(rng: random.Random, n: int) -> dict[str, list[Any]]:
    exp_x = [rng.uniform(-30.0, 30.0) for _ in range(n)]
    log_x = [10.0 ** rng.uniform(-12.0, 12.0) for _ in range(n)]
    cdf_x = [rng.uniform(-12.0, 12.0) for _ in range(n)]
    svi = [[rng.uniform(0.0, 0.2), rng.uniform(0.0, 0.5), rng.uniform(-0.9, 0.9), rng.uniform(-0.2, 0.2),
            rng.uniform(0.01, 0.5), rng.uniform(-3.0, 3.0)] for _ in range(n)]  # fmt: skip
    options = []
    for i in range(n):
        forward = 10.0 ** rng.uniform(0.0, 6.0)
        strike = forward * det_exp(rng.uniform(-3.0, 3.0))
        options.append([i % 2 == 0, forward, strike, 10.0 ** rng.uniform(-4.0, 0.7), rng.uniform(0.01, 3.0),
                        rng.uniform(0.8, 1.0)])  # fmt: skip
    return {"det_exp": exp_x, "det_log": log_x, "norm_cdf": cdf_x, "svi_total_variance": svi, "black76": options}


def detmath_inputs(seed: int = 1973, n: int = DETMATH_POINTS) -> dict[str, list[Any]]:
    """Return a seeded spread of inputs over the domains the engine uses, after the edges of each branch."""
    spread = _spread(random.Random(seed), n)
    edges: dict[str, list[Any]] = {
        "det_exp": [0.0, -0.0, 1.0, -1.0, 0.34657359027997264, 1.0397207708399179, 709.0, -745.0, 1e-300],
        "det_log": [1.0, 2.0, 0.5, 1e-300, 1e300, 1.0000000000000002, 0.9999999999999999],
        "norm_cdf": [0.0, 0.46875 * 2**0.5, -0.46875 * 2**0.5, 4.0 * 2**0.5, -4.0 * 2**0.5, 8.0, -8.0, 38.0, -38.0],
        "svi_total_variance": [],
        "black76": [],
    }
    return {function: edges[function] + values for function, values in spread.items()}


def sweep_inputs() -> dict[str, list[Any]]:
    """Return the inputs behind the digests: ``SWEEP_POINTS`` per function from ``SWEEP_SEED``."""
    return _spread(random.Random(SWEEP_SEED), SWEEP_POINTS)


def compute_detmath_outputs(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Return the maths of :func:`detmath_inputs` evaluated by the Python versions of the engine's functions."""
    return {
        "det_exp": [det_exp(x) for x in inputs["det_exp"]],
        "det_log": [det_log(x) for x in inputs["det_log"]],
        "norm_cdf": [norm_cdf(x) for x in inputs["norm_cdf"]],
        "svi_total_variance": [svi_total_variance(*args) for args in inputs["svi_total_variance"]],
        "black76": [list(black76(*args)) for args in inputs["black76"]],
    }


def compute_digests(outputs: dict[str, list[Any]]) -> dict[str, str]:
    """Return per function the sha256 of its outputs' IEEE-754 bits (little-endian doubles, in input order)."""
    digests = {}
    for function, values in outputs.items():
        flat = [x for value in values for x in (value if isinstance(value, list) else [value])]
        digests[function] = hashlib.sha256(struct.pack(f"<{len(flat)}d", *flat)).hexdigest()
    return digests


def encode_floats(obj: Any) -> Any:
    """Return ``obj`` with every float as its exact ``float.hex`` string (booleans and ints unchanged)."""
    if isinstance(obj, float):
        return obj.hex()
    if isinstance(obj, list | tuple):
        return [encode_floats(x) for x in obj]
    if isinstance(obj, dict):
        return {key: encode_floats(value) for key, value in obj.items()}
    return obj


def decode_floats(obj: Any) -> Any:
    """Return ``obj`` with every ``float.hex`` string back as a float."""
    if isinstance(obj, str):
        return float.fromhex(obj)
    if isinstance(obj, list):
        return [decode_floats(x) for x in obj]
    if isinstance(obj, dict):
        return {key: decode_floats(value) for key, value in obj.items()}
    return obj


def build_detmath_vector() -> dict[str, Any]:
    """Return the JSON document of the maths vector (floats as exact hex strings, sweeps as digests)."""
    inputs = detmath_inputs()
    return {
        "description": "det_exp, det_log, norm_cdf, SVI and Black-76 (price, delta, gamma, vega, theta), bit for bit",
        "engineVersion": ENGINE_VERSION,
        "inputs": encode_floats(inputs),
        "expected": encode_floats(compute_detmath_outputs(inputs)),
        "sweep": {
            "seed": SWEEP_SEED,
            "points": SWEEP_POINTS,
            "sha256": compute_digests(compute_detmath_outputs(sweep_inputs())),
        },
    }
