"""The risk engine's input types: integers only, the same whether read from JSON files or from the chain.

Fixed-point units (the protocol's; the chain layer converts token amounts into them):

- prices (index, forwards, strikes, collateral prices): USD with ``PRICE_DECIMALS`` = 8;
- dimensionless parameters (rates, SVI parameters, haircuts): ``WAD`` = 1e18, signed where the quantity is;
- sizes (positions and collateral amounts): units of the underlying or asset with ``SIZE_DECIMALS`` = 4;
- money out of the engine (margins, equity, P&L): USD with ``MONEY_DECIMALS`` = 8 in int64 (the round turns it
  into the 18-decimal leaves of the chain, an exact conversion: ``pmoracle.node.round``);
- balances of the ledger (an account's settlement ``cash``, a position's ``cost`` and accrued ``funding``): USD with
  ``WAD`` = 18 decimals, signed, exactly as the chain stores them; the engine folds them into MONEY once per
  account, rounding toward minus infinity (``pmoracle.risk.margin.compute_account_cash``);
- times: unix seconds. Option expiries are at 08:00 UTC (Deribit convention).

Every value is validated on construction, so an object that exists is a valid input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from pmoracle.errors import InputError

PRICE_DECIMALS = 8
PRICE_SCALE = 10**PRICE_DECIMALS
WAD_DECIMALS = 18
WAD: int = 10**WAD_DECIMALS
SIZE_DECIMALS = 4
SIZE_SCALE = 10**SIZE_DECIMALS
MONEY_DECIMALS = 8
MONEY_SCALE = 10**MONEY_DECIMALS

# Largest accepted magnitudes: far beyond any real market, small enough that the kernel's int64 paths
# cannot overflow without the overflow check noticing (see risk/kernel.py).
MAX_PRICE = 10**12 * PRICE_SCALE  # 1e12 USD per unit
MAX_SIZE = 10**12 * SIZE_SCALE  # 1e12 units of an asset
# A ledger balance (cash, cost, funding) is at most 1e10 USD in magnitude: one balance alone then folds to at most
# 1e18 MONEY, below the kernel's account limit (2**62 MONEY, about 4.6e10 USD); a sum of several that does not fit is
# reported by the account overflow check (risk/kernel.py), never wrapped.
MAX_BALANCE_USD = 10**10
MAX_BALANCE = MAX_BALANCE_USD * WAD
SECONDS_PER_YEAR = 365 * 86400
EXPIRY_HOUR_UTC = 8


class InstrumentKind(IntEnum):
    """What an instrument is; the values are the on-chain encoding."""

    PERPETUAL = 0
    FUTURE = 1
    CALL = 2
    PUT = 3


def _check_symbol(field_name: str, symbol: str) -> None:
    if not isinstance(symbol, str) or not symbol.isascii() or not symbol.isalnum() or not symbol.isupper():
        raise InputError(field_name, f"expected an upper-case alphanumeric symbol, got {symbol!r}")


def _check_int(field_name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(field_name, f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InputError(field_name, f"{value} is outside [{lo}, {hi}]")


@dataclass(frozen=True, slots=True, order=True)
class Instrument:
    """A derivative on one underlying: perpetual, dated future, or European call/put."""

    underlying: str
    kind: InstrumentKind
    expiry: int = 0  # unix seconds; 0 for a perpetual
    strike: int = 0  # PRICE_SCALE; 0 for futures and perpetuals

    def __post_init__(self) -> None:
        _check_symbol("underlying", self.underlying)
        if not isinstance(self.kind, InstrumentKind):
            raise InputError("kind", f"expected an InstrumentKind, got {self.kind!r}")
        if self.kind == InstrumentKind.PERPETUAL:
            if self.expiry != 0 or self.strike != 0:
                raise InputError("expiry", "a perpetual has no expiry or strike")
        else:
            _check_int("expiry", self.expiry, 1, 2**40)
        if self.kind in (InstrumentKind.CALL, InstrumentKind.PUT):
            _check_int("strike", self.strike, 1, MAX_PRICE)
        elif self.strike != 0:
            raise InputError("strike", "only options have a strike")

    @property
    def is_option(self) -> bool:
        """Check if the instrument is a call or a put."""
        return self.kind in (InstrumentKind.CALL, InstrumentKind.PUT)

    def is_expired_at(self, time: int) -> bool:
        """Check if this is an option or dated future whose expiry is at or before ``time`` (unix seconds)."""
        return self.kind != InstrumentKind.PERPETUAL and self.expiry <= time


@dataclass(frozen=True, slots=True)
class Smile:
    """An implied-volatility smile for one expiry: SVI raw parameters of total implied variance (WAD).

    ``w(k) = a + b * (rho * (k - m) + sqrt((k - m)**2 + sigma**2))`` with ``k = ln(K / F)``.
    """

    expiry: int
    a: int
    b: int
    rho: int
    m: int
    sigma: int

    def __post_init__(self) -> None:
        _check_int("expiry", self.expiry, 1, 2**40)
        _check_int("a", self.a, -10 * WAD, 10 * WAD)
        _check_int("b", self.b, 0, 10 * WAD)
        _check_int("rho", self.rho, -WAD + 1, WAD - 1)
        _check_int("m", self.m, -10 * WAD, 10 * WAD)
        _check_int("sigma", self.sigma, 0, 10 * WAD)
        # The minimum total variance a + b*sigma*sqrt(1 - rho^2) must be positive; checked exactly in integers:
        # b^2 sigma^2 (WAD^2 - rho^2) > a^2 WAD^4 when a < 0.
        if self.a < 0:
            lhs = self.b * self.b * self.sigma * self.sigma * (WAD * WAD - self.rho * self.rho)
            if lhs <= self.a * self.a * WAD**4:
                raise InputError("a", f"smile has non-positive total variance at its minimum (a={self.a})")
        elif self.a == 0 and (self.b == 0 or self.sigma == 0):
            raise InputError("a", "smile has zero total variance")


@dataclass(frozen=True, slots=True)
class UnderlyingMarket:
    """Market data of one underlying: index price, rate, optional forwards, and a smile per expiry."""

    symbol: str
    index: int  # PRICE_SCALE
    rate: int = 0  # WAD, continuously compounded per year
    smiles: tuple[Smile, ...] = ()
    forwards: tuple[tuple[int, int], ...] = ()  # (expiry, forward price PRICE_SCALE), overrides the rate
    updated_at: int = 0  # unix seconds of the feed's last update
    # (expiry, settlement price PRICE_SCALE) fixed on chain: an expired instrument of that expiry is worth its
    # settlement value, a constant (docs/risk-model.md, "Expired instruments")
    settlements: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        _check_symbol("symbol", self.symbol)
        _check_int(f"{self.symbol}.index", self.index, 1, MAX_PRICE)
        _check_int(f"{self.symbol}.rate", self.rate, -WAD, WAD)
        expiries = [s.expiry for s in self.smiles]
        if expiries != sorted(set(expiries)):
            raise InputError(f"{self.symbol}.smiles", "expiries must be unique and sorted")
        fwd_expiries = [e for e, _ in self.forwards]
        if fwd_expiries != sorted(set(fwd_expiries)):
            raise InputError(f"{self.symbol}.forwards", "expiries must be unique and sorted")
        for expiry, price in self.forwards:
            _check_int(f"{self.symbol}.forwards[{expiry}]", price, 1, MAX_PRICE)
        settled = [e for e, _ in self.settlements]
        if settled != sorted(set(settled)):
            raise InputError(f"{self.symbol}.settlements", "expiries must be unique and sorted")
        for expiry, price in self.settlements:
            _check_int(f"{self.symbol}.settlements[{expiry}]", price, 1, MAX_PRICE)

    def smile(self, expiry: int) -> Smile | None:
        """Return the smile of ``expiry`` or None."""
        for s in self.smiles:
            if s.expiry == expiry:
                return s
        return None

    def settlement(self, expiry: int) -> int | None:
        """Return the settlement price fixed for ``expiry`` or None."""
        for e, price in self.settlements:
            if e == expiry:
                return price
        return None

    def forward(self, expiry: int) -> int | None:
        """Return the quoted forward of ``expiry`` or None (then F = index * exp(rate * T))."""
        for e, price in self.forwards:
            if e == expiry:
                return price
        return None


@dataclass(frozen=True, slots=True)
class CollateralAsset:
    """A collateral asset: its price, haircut, and the underlying whose scenarios move it (None: stable)."""

    symbol: str
    price: int  # PRICE_SCALE
    haircut: int  # WAD in [0, 1)
    underlying: str | None = None
    updated_at: int = 0

    def __post_init__(self) -> None:
        _check_symbol("symbol", self.symbol)
        _check_int(f"{self.symbol}.price", self.price, 1, MAX_PRICE)
        _check_int(f"{self.symbol}.haircut", self.haircut, 0, WAD - 1)
        if self.underlying is not None:
            _check_symbol(f"{self.symbol}.underlying", self.underlying)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything the engine needs to know of the market at one valuation time."""

    time: int  # unix seconds: the valuation time (block timestamp on chain)
    underlyings: tuple[UnderlyingMarket, ...]
    assets: tuple[CollateralAsset, ...] = ()

    def __post_init__(self) -> None:
        _check_int("time", self.time, 0, 2**40)
        symbols = [u.symbol for u in self.underlyings]
        if symbols != sorted(set(symbols)):
            raise InputError("underlyings", "symbols must be unique and sorted")
        assets = [a.symbol for a in self.assets]
        if assets != sorted(set(assets)):
            raise InputError("assets", "symbols must be unique and sorted")
        for a in self.assets:
            if a.underlying is not None and a.underlying not in symbols:
                raise InputError(f"assets.{a.symbol}.underlying", f"unknown underlying {a.underlying!r}")

    def underlying(self, symbol: str) -> UnderlyingMarket:
        """Return the market of ``symbol``; raise ``InputError`` if it is missing."""
        for u in self.underlyings:
            if u.symbol == symbol:
                return u
        raise InputError("underlyings", f"no market data for underlying {symbol!r}")

    def asset(self, symbol: str) -> CollateralAsset:
        """Return the collateral asset ``symbol``; raise ``InputError`` if it is missing."""
        for a in self.assets:
            if a.symbol == symbol:
                return a
        raise InputError("assets", f"no price for collateral asset {symbol!r}")


@dataclass(frozen=True, slots=True)
class Position:
    """A signed position in one instrument (SIZE_SCALE units of the underlying; negative is short).

    ``cost`` (futures and perpetuals): size x average entry price, signed like the size, USD WAD; the position's
    unrealized P&L is ``size x mark - cost``. ``funding`` (perpetuals): funding accrued and not yet realized into
    cash, USD WAD, positive when the account owes it. Both are 0 for every other instrument.
    """

    instrument: Instrument
    size: int
    cost: int = 0
    funding: int = 0

    def __post_init__(self) -> None:
        _check_int("size", self.size, -MAX_SIZE, MAX_SIZE)
        _check_int("cost", self.cost, -MAX_BALANCE, MAX_BALANCE)
        _check_int("funding", self.funding, -MAX_BALANCE, MAX_BALANCE)
        if self.cost != 0 and self.instrument.is_option:
            raise InputError("cost", f"only futures and perpetuals carry a cost, got {self.cost} on an option")
        if self.funding != 0 and self.instrument.kind != InstrumentKind.PERPETUAL:
            raise InputError("funding", f"only perpetuals accrue funding, got {self.funding} on a dated instrument")


@dataclass(frozen=True, slots=True)
class Portfolio:
    """One account's book: positions, collateral (asset symbol -> SIZE_SCALE amount) and settlement cash.

    ``cash`` is the signed settlement balance, USD WAD: deposits of the settlement asset, option premiums, realized
    futures P&L and funding, fees and expiry settlements; negative when the account owes.
    """

    positions: tuple[Position, ...] = ()
    collateral: tuple[tuple[str, int], ...] = ()
    account: bytes = field(default=b"\x00" * 20)  # 20-byte address; zero for a local file
    cash: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.account, bytes) or len(self.account) != 20:
            raise InputError("account", f"expected a 20-byte address, got {self.account!r}")
        _check_int("cash", self.cash, -MAX_BALANCE, MAX_BALANCE)
        symbols = [s for s, _ in self.collateral]
        if symbols != sorted(set(symbols)):
            raise InputError("collateral", "asset symbols must be unique and sorted")
        for symbol, amount in self.collateral:
            _check_symbol("collateral", symbol)
            _check_int(f"collateral.{symbol}", amount, 0, MAX_SIZE)
