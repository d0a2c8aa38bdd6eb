"""Market and portfolio documents (the JSON formats of the CLI) -> the engine's integer input types.

Numbers are decimal strings (or JSON numbers, read through their shortest repr) converted exactly into the
fixed-point units of :mod:`pmoracle.risk.inputs`; a value with more decimals than its unit allows is rejected,
never rounded. Every problem is reported with the path of the field (``positions[2].size``,
``underlyings.BTC.smiles.27DEC26.svi.b``); all problems of a document are collected and raised together as one
:class:`DocumentError`, so nothing is ever computed from a partially valid input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pmoracle.errors import InputError
from pmoracle.risk.errors import UnknownCollateralError, UnknownUnderlyingError
from pmoracle.risk.inputs import (
    MAX_BALANCE,
    MAX_BALANCE_USD,
    MAX_PRICE,
    MAX_SIZE,
    PRICE_DECIMALS,
    SECONDS_PER_YEAR,
    SIZE_DECIMALS,
    SIZE_SCALE,
    WAD,
    WAD_DECIMALS,
    CollateralAsset,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    Smile,
    UnderlyingMarket,
)
from pmoracle.risk.naming import (
    compute_unix_time,
    days_in_month,
    format_utc_time,
    parse_expiry_code,
    parse_instrument_name,
)

T = TypeVar("T")

# Largest accepted implied volatility (1000 vol points) and SVI magnitude; far outside any real market.
MAX_VOL = 10 * WAD
_ISO_UTC = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(Z|[+-]\d{2}:\d{2})")
SVI_PARAMETERS = ("a", "b", "rho", "m", "sigma")
# An entry price has at most 14 decimals, so that size (4 decimals) x entry price is a whole number of 1e-18 USD:
# the cost it gives is exact, as on chain.
ENTRY_PRICE_DECIMALS = WAD_DECIMALS - SIZE_DECIMALS
POSITION_FIELDS = ("instrument", "size", "entry_price", "cost", "funding")


class DocumentError(InputError):
    """Raised when a document has one or more invalid fields; ``errors`` lists every one, in document order."""

    def __init__(self, errors: list[InputError]) -> None:
        first = errors[0]
        message = first.message
        if len(errors) > 1:
            rest = "; ".join(str(e) for e in errors[1:])
            message = f"{message} (and {len(errors) - 1} more: {rest})"
        super().__init__(first.field, message)
        self.errors = tuple(errors)


class MissingMarketDataError(InputError):
    """Raised when a position or asset refers to an underlying, smile or asset the market does not hold."""


class _Collector:
    """Accumulates errors while a document is read, so that all of them are reported at once."""

    def __init__(self) -> None:
        self.errors: list[InputError] = []

    def add(self, error: InputError) -> None:
        self.errors.append(error)

    def attempt(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Return ``fn(*args)``, or record its ``InputError`` (each one of a ``DocumentError``) and return None."""
        try:
            return fn(*args)
        except DocumentError as exc:
            self.errors.extend(exc.errors)
            return None
        except InputError as exc:
            self.errors.append(exc)
            return None

    def raise_if_any(self) -> None:
        if self.errors:
            raise DocumentError(self.errors)


def _prefixed(path: str, exc: InputError) -> InputError:
    """Return ``exc`` re-rooted under the document path ``path``."""
    return InputError(f"{path}.{exc.field}" if path else exc.field, exc.message)


def parse_decimal(value: object, field: str) -> Decimal:
    """Return the exact decimal of a JSON string, integer or float (read through its shortest repr)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(field, f"expected a decimal number or string, got {value!r}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InputError(field, f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise InputError(field, f"{value!r} is not finite")
    return number


def to_fixed(value: object, decimals: int, field: str) -> int:
    """Return ``value`` exactly in units of 10**-decimals; reject more decimals than that or absurd sizes."""
    number = parse_decimal(value, field)
    if number.is_zero():
        return 0
    if number.adjusted() > 40:
        raise InputError(field, f"{value!r} is too large")
    sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # unreachable for finite numbers; keeps the types exact
        raise InputError(field, f"{value!r} is not finite")
    mantissa = int("".join(map(str, digits)))
    shift = exponent + decimals
    scaled: int
    if shift >= 0:
        scaled = mantissa * 10**shift
    else:
        # Exact only if the digits below the unit are all zero.
        if -shift > len(digits):
            raise InputError(field, f"{value!r} has more than {decimals} decimals")
        dropped: int = 10**-shift
        if mantissa % dropped:
            raise InputError(field, f"{value!r} has more than {decimals} decimals")
        scaled = mantissa // dropped
    return -scaled if sign else scaled


def parse_utc_time(value: object, field: str = "time") -> int:
    """Return the unix seconds of an ISO-8601 time ``2026-11-25T08:00:00Z`` (or an integer of unix seconds)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 2**40:
            raise InputError(field, f"unix time {value} is out of range")
        return value
    if value is None:
        raise InputError(field, "missing")
    if not isinstance(value, str):
        raise InputError(field, f"expected an ISO-8601 UTC time like 2026-11-25T08:00:00Z, got {value!r}")
    match = _ISO_UTC.fullmatch(value)
    if match is None:
        raise InputError(field, f"malformed time {value!r}, expected YYYY-MM-DDTHH:MM:SSZ")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not (year >= 1970 and 1 <= month <= 12 and 1 <= day <= days_in_month(year, month)):
        raise InputError(field, f"{value!r} is not a valid date")
    if hour > 23 or minute > 59 or second > 59:
        raise InputError(field, f"{value!r} is not a valid time of day")
    offset = 0
    zone = match.group(7)
    if zone != "Z":
        offset_hours, offset_minutes = int(zone[1:3]), int(zone[4:6])
        if offset_hours > 23 or offset_minutes > 59:
            raise InputError(field, f"{value!r} has an invalid UTC offset")
        offset = (offset_hours * 3600 + offset_minutes * 60) * (1 if zone[0] == "+" else -1)
    return compute_unix_time(year, month, day, hour, minute, second) - offset


def _optional_time(spec: Mapping[str, Any], path: str) -> int:
    """Return the optional ``updated_at`` feed time of ``spec`` (0: not timestamped, never stale)."""
    return parse_utc_time(spec["updated_at"], f"{path}.updated_at") if "updated_at" in spec else 0


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        raise InputError(field, "missing")
    if not isinstance(value, Mapping):
        raise InputError(field, f"expected an object, got {type(value).__name__}")
    return value


def _positive(value: object, decimals: int, hi: int, field: str) -> int:
    """Return a fixed-point value that must be in (0, hi]."""
    fixed = to_fixed(value, decimals, field)
    if fixed <= 0:
        raise InputError(field, f"{value!r} must be positive")
    if fixed > hi:
        raise InputError(field, f"{value!r} is too large")
    return fixed


def _field_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _required(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise InputError(_field_path(path, key), "missing")
    return obj[key]


def _fixed_field(obj: Mapping[str, Any], key: str, decimals: int, path: str, default: object = None) -> int:
    """Return the fixed-point value of ``obj[key]`` (``default`` if absent and not None)."""
    value = obj.get(key, default) if default is not None else _required(obj, key, path)
    return to_fixed(value, decimals, _field_path(path, key))


def _positive_field(obj: Mapping[str, Any], key: str, decimals: int, hi: int, path: str) -> int:
    """Return the fixed-point value of ``obj[key]``, which must be in (0, hi]."""
    return _positive(_required(obj, key, path), decimals, hi, _field_path(path, key))


def _instrument_field(entry: Mapping[str, Any], path: str) -> Instrument:
    return parse_instrument_name(_required(entry, "instrument", path), f"{path}.instrument")


def _check_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], path: str, errors: _Collector) -> None:
    """Record an error for every key of ``obj`` not in ``allowed`` (a typo must not silently drop data)."""
    for key in obj:
        if key not in allowed:
            shown = str(key) if key else repr(key)  # an empty key still gets a visible name
            errors.add(InputError(_field_path(path, shown), f"unknown field (expected one of {allowed})"))


def _parse_smile(obj: object, expiry: int, time: int, path: str) -> Smile:
    """Return the smile of one expiry: raw SVI parameters, or a flat ``vol`` as total variance vol^2 * T."""
    spec = _mapping(obj, path)
    if expiry <= time:
        raise InputError(path, f"expiry {format_utc_time(expiry)} is not after the market time {format_utc_time(time)}")
    if "svi" in spec and "vol" in spec:
        raise InputError(path, "give either svi or vol, not both")
    if "vol" in spec:
        vol = _positive(spec["vol"], WAD_DECIMALS, MAX_VOL, f"{path}.vol")
        # Total variance vol^2 * T in WAD, rounded half up: vol^2 * dt / (WAD * year).
        num = vol * vol * (expiry - time)
        den = WAD * SECONDS_PER_YEAR
        return Smile(expiry, (2 * num + den) // (2 * den), 0, 0, 0, 0)
    svi = _mapping(_required(spec, "svi", path), f"{path}.svi")
    errors = _Collector()
    _check_keys(svi, SVI_PARAMETERS, f"{path}.svi", errors)
    values: dict[str, int] = {}
    for name in SVI_PARAMETERS:
        fixed = errors.attempt(_fixed_field, svi, name, WAD_DECIMALS, f"{path}.svi")
        if fixed is not None:
            values[name] = fixed
    errors.raise_if_any()
    try:
        return Smile(expiry, values["a"], values["b"], values["rho"], values["m"], values["sigma"])
    except InputError as exc:
        raise _prefixed(f"{path}.svi", exc) from None


def _parse_prices_by_expiry(spec: Mapping[str, Any], key: str, path: str, errors: _Collector) -> list[tuple[int, int]]:
    """Return the (expiry, price) pairs of an optional ``{"27DEC26": "95000"}`` map (forwards, settlement prices)."""
    pairs: list[tuple[int, int]] = []
    obj = errors.attempt(_mapping, spec.get(key, {}), f"{path}.{key}")
    for code, price_obj in (obj or {}).items():
        item_path = f"{path}.{key}.{code}"
        expiry = errors.attempt(parse_expiry_code, code, item_path)
        price = errors.attempt(_positive, price_obj, PRICE_DECIMALS, MAX_PRICE, item_path)
        if expiry is not None and price is not None:
            pairs.append((expiry, price))
    return pairs


def _parse_underlying(symbol: str, obj: object, time: int, path: str, errors: _Collector) -> UnderlyingMarket | None:
    spec = errors.attempt(_mapping, obj, path)
    if spec is None:
        return None
    _check_keys(spec, ("index", "rate", "smiles", "forwards", "settlements", "updated_at"), path, errors)
    updated_at = errors.attempt(_optional_time, spec, path)
    index = errors.attempt(_positive_field, spec, "index", PRICE_DECIMALS, MAX_PRICE, path)
    rate = errors.attempt(_fixed_field, spec, "rate", WAD_DECIMALS, path, "0")
    if rate is not None and not -WAD <= rate <= WAD:
        errors.add(InputError(f"{path}.rate", f"{spec.get('rate')!r} is outside [-1, 1]"))
    smiles: list[Smile] = []
    smiles_obj = errors.attempt(_mapping, spec.get("smiles", {}), f"{path}.smiles")
    for code, smile_obj in (smiles_obj or {}).items():
        smile_path = f"{path}.smiles.{code}"
        expiry = errors.attempt(parse_expiry_code, code, smile_path)
        if expiry is None:
            continue
        smile = errors.attempt(_parse_smile, smile_obj, expiry, time, smile_path)
        if isinstance(smile, Smile):
            smiles.append(smile)
    forwards = _parse_prices_by_expiry(spec, "forwards", path, errors)
    settlements = _parse_prices_by_expiry(spec, "settlements", path, errors)
    if index is None or rate is None or errors.errors:
        return None
    try:
        return UnderlyingMarket(
            symbol,
            index,
            rate,
            tuple(sorted(smiles, key=lambda s: s.expiry)),
            tuple(sorted(forwards)),
            updated_at or 0,
            tuple(sorted(settlements)),
        )
    except InputError as exc:
        errors.add(_prefixed(path, exc))
        return None


def parse_market(obj: object) -> MarketSnapshot:
    """Return the market snapshot of a market document; raise ``DocumentError`` listing every invalid field."""
    errors = _Collector()
    doc = _mapping(obj, "market")
    _check_keys(doc, ("time", "underlyings", "assets"), "", errors)
    time = errors.attempt(parse_utc_time, doc.get("time"), "time")
    underlyings: list[UnderlyingMarket] = []
    underlyings_obj = errors.attempt(_mapping, doc.get("underlyings"), "underlyings")
    for symbol, spec in (underlyings_obj or {}).items():
        path = f"underlyings.{symbol}"
        if not (isinstance(symbol, str) and symbol.isascii() and symbol.isalnum() and symbol.isupper()):
            errors.add(InputError(path, f"expected an upper-case alphanumeric symbol, got {symbol!r}"))
            continue
        if time is None:
            continue
        market = _parse_underlying(symbol, spec, time, path, errors)
        if market is not None:
            underlyings.append(market)
    symbols = {u for u in (underlyings_obj or {})}
    assets: list[CollateralAsset] = []
    assets_obj = errors.attempt(_mapping, doc.get("assets", {}), "assets")
    for symbol, spec in (assets_obj or {}).items():
        asset = errors.attempt(_parse_asset, symbol, spec, symbols)
        if isinstance(asset, CollateralAsset):
            assets.append(asset)
    errors.raise_if_any()
    if time is None:  # unreachable: a missing time is an error raised above
        raise InputError("time", "missing")
    return MarketSnapshot(
        time,
        tuple(sorted(underlyings, key=lambda u: u.symbol)),
        tuple(sorted(assets, key=lambda a: a.symbol)),
    )


def _parse_asset(symbol: object, obj: object, underlyings: set[str]) -> CollateralAsset:
    path = f"assets.{symbol}"
    if not (isinstance(symbol, str) and symbol.isascii() and symbol.isalnum() and symbol.isupper()):
        raise InputError(path, f"expected an upper-case alphanumeric symbol, got {symbol!r}")
    spec = _mapping(obj, path)
    errors = _Collector()
    _check_keys(spec, ("price", "haircut", "underlying", "updated_at"), path, errors)
    updated_at = errors.attempt(_optional_time, spec, path)
    price = errors.attempt(_positive_field, spec, "price", PRICE_DECIMALS, MAX_PRICE, path)
    haircut = errors.attempt(_fixed_field, spec, "haircut", WAD_DECIMALS, path, "0")
    if haircut is not None and not 0 <= haircut < WAD:
        errors.add(InputError(f"{path}.haircut", f"{spec.get('haircut')!r} is outside [0, 1)"))
    underlying = spec.get("underlying")
    if underlying is not None and (not isinstance(underlying, str) or underlying not in underlyings):
        errors.add(MissingMarketDataError(f"{path}.underlying", f"unknown underlying {underlying!r}"))
    errors.raise_if_any()
    if price is None or haircut is None:  # unreachable: recorded as errors above
        raise InputError(path, "invalid")
    return CollateralAsset(symbol, price, haircut, underlying, updated_at or 0)


def _balance(value: object, field: str) -> int:
    """Return a signed USD amount in WAD (18 decimals at most), within the largest ledger balance."""
    wad = to_fixed(value, WAD_DECIMALS, field)
    if abs(wad) > MAX_BALANCE:
        raise InputError(field, f"{value!r} exceeds the largest balance, {MAX_BALANCE_USD:.0e} USD")
    return wad


def parse_portfolio(obj: object, market: MarketSnapshot) -> Portfolio:
    """Return the portfolio of a portfolio document checked against ``market``; raise ``DocumentError``.

    Checked: instrument names, market data (underlying, and a smile for options not yet expired) present for every
    position, sizes within MAX_SIZE, collateral assets known and amounts non-negative; the ledger: ``cash`` (signed
    USD), and per future or perpetual its ``entry_price`` (USD, cost = size x entry price exactly) or its ``cost``
    (signed USD), one of them required, and per perpetual the accrued ``funding`` it owes (signed USD, optional).
    An expired option or future is accepted: it is valued at expiry value on the index (docs/risk-model.md,
    "Expired instruments"). Positions keep document order so that ``positions[i]`` in a message is the i-th entry
    of the file.
    """
    errors = _Collector()
    doc = _mapping(obj, "portfolio")
    _check_keys(doc, ("positions", "collateral", "cash"), "", errors)
    cash = errors.attempt(_balance, doc.get("cash", "0"), "cash")
    positions: list[Position] = []
    positions_obj = doc.get("positions", [])
    if not isinstance(positions_obj, list):
        errors.add(InputError("positions", f"expected a list, got {type(positions_obj).__name__}"))
        positions_obj = []
    for i, entry in enumerate(positions_obj):
        position = errors.attempt(_parse_position, entry, f"positions[{i}]", market)
        if isinstance(position, Position):
            positions.append(position)
    collateral: list[tuple[str, int]] = []
    collateral_obj = errors.attempt(_mapping, doc.get("collateral", {}), "collateral")
    known_assets = {a.symbol for a in market.assets}
    for symbol, amount_obj in (collateral_obj or {}).items():
        path = f"collateral.{symbol}"
        if symbol not in known_assets:
            errors.add(UnknownCollateralError(symbol))
            continue
        amount = errors.attempt(to_fixed, amount_obj, SIZE_DECIMALS, path)
        if amount is None:
            continue
        if amount < 0:
            errors.add(InputError(path, f"{amount_obj!r} is negative"))
        elif amount > MAX_SIZE:
            errors.add(InputError(path, f"{amount_obj!r} exceeds the largest amount {MAX_SIZE // SIZE_SCALE}"))
        else:
            collateral.append((symbol, amount))
    errors.raise_if_any()
    return Portfolio(tuple(positions), tuple(sorted(collateral)), cash=cash or 0)


def _parse_position(obj: object, path: str, market: MarketSnapshot) -> Position:
    entry = _mapping(obj, path)
    errors = _Collector()
    _check_keys(entry, POSITION_FIELDS, path, errors)
    instrument = errors.attempt(_instrument_field, entry, path)
    if instrument is not None:
        field = f"{path}.instrument"
        name = entry["instrument"]
        if instrument.underlying not in {u.symbol for u in market.underlyings}:
            errors.add(UnknownUnderlyingError(field, instrument.underlying))
        elif (
            instrument.is_option
            and not instrument.is_expired_at(market.time)  # expired: valued at intrinsic on the index, no smile
            and market.underlying(instrument.underlying).smile(instrument.expiry) is None
        ):
            errors.add(MissingMarketDataError(field, f"the market has no smile for the expiry of {name}"))
    size = errors.attempt(_fixed_field, entry, "size", SIZE_DECIMALS, path)
    if size is not None and abs(size) > MAX_SIZE:
        errors.add(InputError(f"{path}.size", f"{entry['size']!r} exceeds the largest size {MAX_SIZE // SIZE_SCALE}"))
    cost, funding = 0, 0
    if instrument is not None:
        cost, funding = _parse_ledger(entry, instrument, size, path, errors)
    errors.raise_if_any()
    if instrument is None or size is None:  # unreachable: recorded as errors above
        raise InputError(path, "invalid")
    return Position(instrument, size, cost=cost, funding=funding)


def _parse_ledger(
    entry: Mapping[str, Any], instrument: Instrument, size: int | None, path: str, errors: _Collector
) -> tuple[int, int]:
    """Return (cost, funding) in USD WAD of one position; record an error for each field the instrument cannot
    carry, for both or neither of ``cost`` and ``entry_price`` on a future or perpetual."""
    if instrument.is_option:
        for key in ("entry_price", "cost", "funding"):
            if key in entry:
                errors.add(InputError(f"{path}.{key}", "an option has none: its premium is paid in cash"))
        return 0, 0
    funding = 0
    if instrument.kind != InstrumentKind.PERPETUAL:
        if "funding" in entry:
            errors.add(InputError(f"{path}.funding", "only perpetuals accrue funding"))
    elif "funding" in entry:
        funding = errors.attempt(_balance, entry["funding"], f"{path}.funding") or 0
    if "cost" in entry and "entry_price" in entry:
        errors.add(InputError(f"{path}.entry_price", "give either entry_price or cost, not both"))
        return 0, funding
    if "cost" in entry:
        return errors.attempt(_balance, entry["cost"], f"{path}.cost") or 0, funding
    if "entry_price" not in entry:
        errors.add(InputError(path, "a future or perpetual needs its entry_price (or its cost: size x entry price)"))
        return 0, funding
    field = f"{path}.entry_price"
    price = errors.attempt(_positive, entry["entry_price"], ENTRY_PRICE_DECIMALS, MAX_PRICE * 10**6, field)
    if price is None or size is None:
        return 0, funding
    cost = size * price  # 1e-4 units x 1e-14 USD: exactly USD WAD
    if abs(cost) > MAX_BALANCE:
        errors.add(InputError(field, f"size x entry price exceeds the largest balance, {MAX_BALANCE_USD:.0e} USD"))
        return 0, funding
    return cost, funding
