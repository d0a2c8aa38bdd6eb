"""Small factories of risk inputs for tests: a two-underlying market and portfolios, seeded random books."""

from __future__ import annotations

import random

import pytest

from pmoracle.config.params import default_params_text
from pmoracle.risk.errors import ParamsError
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
from pmoracle.risk.params import RiskParams, parse_params

T0 = 1_795_680_000  # 2026-11-25T08:00:00Z
DAY = 86400


def flat_smile(expiry: int, vol: float) -> Smile:
    """Return a smile of flat implied vol ``vol`` (total variance vol^2 T, b = 0 is a flat smile)."""
    t = (expiry - T0) / (365 * DAY)
    return Smile(expiry=expiry, a=round(vol * vol * t * WAD), b=0, rho=0, m=0, sigma=0)


def skew_smile(expiry: int, vol: float) -> Smile:
    """Return an SVI smile with ATM vol about ``vol`` and a negative skew."""
    t = (expiry - T0) / (365 * DAY)
    w = min(vol * vol * t, 8.0)  # the input range caps total variance (a, b <= 10)
    return Smile(
        expiry=expiry, a=round(0.6 * w * WAD), b=round(0.8 * w * WAD), rho=round(-0.3 * WAD), m=0, sigma=WAD // 2
    )


EXPIRIES = (T0 + DAY, T0 + 7 * DAY, T0 + 30 * DAY, T0 + 90 * DAY, T0 + 3650 * DAY)
# expired at or before T0 (the last one exactly at T0), no smile: valued at expiry value on the index
EXPIRED = (T0 - 30 * DAY, T0 - DAY, T0)


def make_market(btc: float = 95_000.0, eth: float = 3_000.0, time: int = T0, vol: float = 0.6) -> MarketSnapshot:
    """Return a BTC/ETH market with skewed smiles at every test expiry and USDC/ETH collateral."""
    return MarketSnapshot(
        time=time,
        underlyings=(
            UnderlyingMarket(
                "BTC",
                round(btc * PRICE_SCALE),
                rate=round(0.03 * WAD),
                smiles=tuple(skew_smile(e, vol) for e in EXPIRIES),
            ),
            UnderlyingMarket(
                "ETH",
                round(eth * PRICE_SCALE),
                rate=0,
                smiles=tuple(skew_smile(e, vol * 1.2) for e in EXPIRIES),
                forwards=((EXPIRIES[2], round(eth * 1.01 * PRICE_SCALE)),),
            ),
        ),
        assets=(
            CollateralAsset("ETH", round(eth * PRICE_SCALE), haircut=WAD // 10, underlying="ETH"),
            CollateralAsset("USDC", PRICE_SCALE, haircut=0),
        ),
    )


def option(underlying: str, expiry: int, strike: float, call: bool) -> Instrument:
    """Return a European option."""
    kind = InstrumentKind.CALL if call else InstrumentKind.PUT
    return Instrument(underlying, kind, expiry=expiry, strike=round(strike * PRICE_SCALE))


def size(units: float) -> int:
    """Return ``units`` in SIZE_SCALE."""
    return round(units * SIZE_SCALE)


def account(n: int) -> bytes:
    """Return a deterministic 20-byte address."""
    return n.to_bytes(20, "big")


def random_instrument(rng: random.Random, market: MarketSnapshot) -> Instrument:
    """Return a random instrument, options with strikes from deep ITM to deep OTM; about one option or future in six
    has expired (``EXPIRED``)."""
    und = rng.choice(market.underlyings)
    kind = rng.choice(
        [
            InstrumentKind.CALL,
            InstrumentKind.PUT,
            InstrumentKind.CALL,
            InstrumentKind.PUT,
            InstrumentKind.FUTURE,
            InstrumentKind.PERPETUAL,
        ]
    )
    if kind == InstrumentKind.PERPETUAL:
        return Instrument(und.symbol, kind)
    expiry = rng.choice([s.expiry for s in und.smiles]) if rng.random() < 5 / 6 else rng.choice(EXPIRED)
    if kind == InstrumentKind.FUTURE:
        return Instrument(und.symbol, kind, expiry=expiry)
    strike = und.index * rng.choice([0.05, 0.3, 0.7, 0.9, 1.0, 1.1, 1.5, 3.0, 20.0]) * rng.uniform(0.95, 1.05)
    return Instrument(und.symbol, kind, expiry=expiry, strike=max(1, round(strike / PRICE_SCALE) * PRICE_SCALE))


def random_balance(rng: random.Random, magnitude_usd: float) -> int:
    """Return a signed USD WAD balance up to about ``magnitude_usd``, with wei-level digits (not a MONEY multiple)."""
    digits = rng.randint(0, len(str(int(magnitude_usd))) + 18)
    return rng.choice([-1, 1]) * rng.randint(0, 10**digits)


def random_position(rng: random.Random, market: MarketSnapshot, instrument: Instrument) -> Position:
    """Return a random position in ``instrument``: a futures/perpetual cost near size x index x [0.5, 1.5] (to the
    wei), accrued funding on a perpetual."""
    sz = rng.choice([-1, 1]) * rng.randint(1, 10 ** rng.randint(1, 7))
    if instrument.is_option:
        return Position(instrument, sz)
    index = market.underlying(instrument.underlying).index
    entry = index * 10**10 * rng.uniform(0.5, 1.5)  # USD 1e18 per unit
    cost = round(sz * entry / SIZE_SCALE) + rng.randint(-(10**12), 10**12)
    funding = random_balance(rng, abs(sz) * 10) if instrument.kind == InstrumentKind.PERPETUAL else 0
    return Position(instrument, sz, cost=cost, funding=funding)


def random_portfolio(
    rng: random.Random, market: MarketSnapshot, instruments: list[Instrument], n: int, acct: int
) -> Portfolio:
    """Return a random portfolio of up to ``n`` positions from ``instruments`` with random collateral and cash."""
    positions = tuple(random_position(rng, market, rng.choice(instruments)) for _ in range(rng.randint(0, n)))
    collateral = tuple(
        sorted((a.symbol, rng.randint(0, 10 ** rng.randint(1, 9))) for a in market.assets if rng.random() < 0.5)
    )
    cash = random_balance(rng, 10**7) if rng.random() < 0.7 else 0
    return Portfolio(positions=positions, collateral=collateral, account=account(acct), cash=cash)


def folded_cash(portfolio: Portfolio) -> int:
    """Return the portfolio's ledger balances in MONEY, written out here: floor((cash - costs - funding) / 1e10)."""
    owed = sum(p.cost + p.funding for p in portfolio.positions)
    return (portfolio.cash - owed) // 10**10


def concentration_params(
    adv_btc: str = "200", adv_eth: str = "3000", threshold: str = "0.01", impact: str = "1"
) -> RiskParams:
    """Return the default document with a ``[concentration]`` section (thin markets by default: 1% of 200 BTC and of
    3,000 ETH a day is free, so most random books pay)."""
    return parse_params(
        default_params_text()
        + f"""
[concentration]
impact = "{impact}"
threshold = "{threshold}"

[concentration.adv]
BTC = "{adv_btc}"
ETH = "{adv_eth}"

[concentration.daily_vol]
BTC = "0.035"
ETH = "0.04"
"""
    )


def with_table_lines(text: str, table: str, extra: str) -> str:
    """Return the parameters document ``text`` with ``extra`` lines added at the top of its ``[table]``."""
    header = f"[{table}]\n"
    assert text.count(header) == 1
    return text.replace(header, f"{header}{extra}", 1)


def params_problems(text: str) -> tuple[str, ...]:
    """Return every problem the parser finds in ``text`` (it must find one)."""
    with pytest.raises(ParamsError) as info:
        parse_params(text)
    return info.value.problems
