"""The PMRM_2 market and portfolio documents (docs/parameters.md, "PMRM_2 inputs") -> the model's input types.

The portfolio document has the fields of the project's portfolio document (``positions`` with ``instrument``,
``size``, ``cost``, ``funding``; ``collateral``; ``cash``); the market document is ``"model": "pmrm2"`` with the
feeds Derive's model reads (spot, perp and stable prices with their oracle confidences, per expiry the forward's
fixed and variable portions, the rate and the implied vols by strike). Numbers are decimal strings (or JSON
numbers) read as the nearest binary64, because the model computes in binary64 (risk/pmrm2.py): a decimal string of
a double's shortest repr reads back as exactly that double. Every problem is reported with its path, all at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from pmoracle.errors import InputError
from pmoracle.risk.documents import (
    DocumentError,
    _check_keys,
    _Collector,
    _mapping,
    _required,
    parse_decimal,
    parse_utc_time,
)
from pmoracle.risk.inputs import PRICE_SCALE, InstrumentKind
from pmoracle.risk.naming import parse_expiry_code, parse_instrument_name, parse_strike
from pmoracle.risk.pmrm2 import Pmrm2Book, Pmrm2ExpiryMarket, Pmrm2Feed, Pmrm2Market, Pmrm2Option

MARKET_MODEL = "pmrm2"
MARKET_FIELDS = ("model", "time", "underlying", "spot", "perp", "stable", "expiries", "assets")
FEED_FIELDS = ("price", "confidence")
EXPIRY_FIELDS = (
    "forward_fixed",
    "forward_variable",
    "forward_confidence",
    "rate",
    "rate_confidence",
    "vol_confidence",
    "vols",
)
MAX_MAGNITUDE = 1e15  # far beyond any price, amount or balance; keeps every product finite


def parse_number(value: object, field: str, lo: float = -MAX_MAGNITUDE, hi: float = MAX_MAGNITUDE) -> float:
    """Return the nearest binary64 to a decimal string or JSON number, which must lie in [lo, hi]."""
    number = float(parse_decimal(value, field))
    if not lo <= number <= hi:
        raise InputError(field, f"{value!r} is outside [{lo:g}, {hi:g}]")
    return number


def strike_value(strike: int) -> float:
    """Return a PRICE_SCALE strike as the nearest binary64."""
    return float(Fraction(strike, PRICE_SCALE))


def _number_field(
    obj: Mapping[str, Any], key: str, path: str, lo: float = -MAX_MAGNITUDE, hi: float = MAX_MAGNITUDE
) -> float:
    return parse_number(_required(obj, key, path), f"{path}.{key}" if path else key, lo, hi)


def _parse_feed(obj: object, path: str) -> Pmrm2Feed:
    spec = _mapping(obj, path)
    errors = _Collector()
    _check_keys(spec, FEED_FIELDS, path, errors)
    price = errors.attempt(_number_field, spec, "price", path, 0.0)
    confidence = errors.attempt(_number_field, spec, "confidence", path, 0.0, 1.0)
    errors.raise_if_any()
    if price is None or confidence is None:  # unreachable: recorded as errors above
        raise InputError(path, "invalid")
    return Pmrm2Feed(price, confidence)


def _parse_expiry(code: str, obj: object, path: str) -> Pmrm2ExpiryMarket:
    spec = _mapping(obj, path)
    errors = _Collector()
    _check_keys(spec, EXPIRY_FIELDS, path, errors)
    expiry = errors.attempt(parse_expiry_code, code, path)
    numbers = {}
    for key in EXPIRY_FIELDS[:-1]:
        lo, hi = (
            (0.0, 1.0) if key.endswith("confidence") else ((-10.0, 10.0) if key == "rate" else (0.0, MAX_MAGNITUDE))
        )
        numbers[key] = errors.attempt(_number_field, spec, key, path, lo, hi)
    vols: list[tuple[float, float]] = []
    vols_obj = errors.attempt(_mapping, spec.get("vols"), f"{path}.vols")
    for strike_text, vol_obj in (vols_obj or {}).items():
        field = f"{path}.vols.{strike_text}"
        strike = errors.attempt(parse_strike, strike_text, field)
        vol = errors.attempt(parse_number, vol_obj, field, 0.0, 1e4)
        if strike is not None and vol is not None:
            vols.append((strike_value(strike), vol))
    if len({k for k, _ in vols}) != len(vols):
        errors.add(InputError(f"{path}.vols", "a strike is quoted twice"))
    fixed, variable = numbers["forward_fixed"], numbers["forward_variable"]
    if fixed is not None and variable is not None and fixed + variable <= 0.0:
        errors.add(InputError(f"{path}.forward_variable", "the forward (fixed + variable portions) must be positive"))
    errors.raise_if_any()
    if expiry is None or any(v is None for v in numbers.values()):  # unreachable: recorded as errors above
        raise InputError(path, "invalid")
    return Pmrm2ExpiryMarket(
        expiry=expiry,
        forward_fixed=numbers["forward_fixed"] or 0.0,
        forward_variable=numbers["forward_variable"] or 0.0,
        forward_confidence=numbers["forward_confidence"] or 0.0,
        rate=numbers["rate"] or 0.0,
        rate_confidence=numbers["rate_confidence"] or 0.0,
        vol_confidence=numbers["vol_confidence"] or 0.0,
        vols=tuple(sorted(vols)),
    )


def is_pmrm2_market(obj: object) -> bool:
    """Check if a market document is a PMRM_2 one (``"model": "pmrm2"``)."""
    return isinstance(obj, Mapping) and obj.get("model") == MARKET_MODEL


def parse_pmrm2_market(obj: object) -> Pmrm2Market:
    """Return the PMRM_2 market of a market document; raise ``DocumentError`` listing every invalid field."""
    doc = _mapping(obj, "market")
    errors = _Collector()
    _check_keys(doc, MARKET_FIELDS, "", errors)
    if doc.get("model") != MARKET_MODEL:
        errors.add(InputError("model", f"expected {MARKET_MODEL!r}, got {doc.get('model')!r}"))
    time = errors.attempt(parse_utc_time, doc.get("time"), "time")
    underlying = doc.get("underlying")
    if not (isinstance(underlying, str) and underlying.isascii() and underlying.isalnum() and underlying.isupper()):
        errors.add(InputError("underlying", f"expected an upper-case alphanumeric symbol, got {underlying!r}"))
    feeds = {key: errors.attempt(_parse_feed, doc.get(key), key) for key in ("spot", "perp", "stable")}
    stable = feeds["stable"]
    if stable is not None and stable.price <= 0.0:
        errors.add(InputError("stable.price", "must be positive: collateral is valued in the stable asset"))
    expiries = []
    for code, spec in (errors.attempt(_mapping, doc.get("expiries", {}), "expiries") or {}).items():
        parsed = errors.attempt(_parse_expiry, code, spec, f"expiries.{code}")
        if parsed is not None:
            expiries.append(parsed)
    assets = []
    for symbol, spec in (errors.attempt(_mapping, doc.get("assets", {}), "assets") or {}).items():
        if not (isinstance(symbol, str) and symbol.isascii() and symbol.isalnum() and symbol.isupper()):
            errors.add(InputError(f"assets.{symbol}", f"expected an upper-case alphanumeric symbol, got {symbol!r}"))
            continue
        feed = errors.attempt(_parse_feed, spec, f"assets.{symbol}")
        if feed is not None:
            assets.append((symbol, feed))
    errors.raise_if_any()
    spot, perp = feeds["spot"], feeds["perp"]
    if time is None or spot is None or perp is None or stable is None or not isinstance(underlying, str):
        raise InputError("market", "invalid")  # unreachable: recorded as errors above
    return Pmrm2Market(
        time=time,
        underlying=underlying,
        spot=spot,
        perp=perp,
        stable=stable,
        expiries=tuple(sorted(expiries, key=lambda e: e.expiry)),
        assets=tuple(sorted(assets)),
    )


def _parse_position(entry: object, path: str, market: Pmrm2Market, book: dict[str, Any], errors: _Collector) -> None:
    """Add one position of the document to ``book`` (options in order; one perpetual at most)."""
    spec = errors.attempt(_mapping, entry, path)
    if spec is None:
        return
    _check_keys(spec, ("instrument", "size", "cost", "funding"), path, errors)
    instrument = errors.attempt(parse_instrument_name, spec.get("instrument"), f"{path}.instrument")
    size = errors.attempt(_number_field, spec, "size", path)
    if instrument is None or size is None:
        return
    if instrument.underlying != market.underlying:
        errors.add(InputError(f"{path}.instrument", f"PMRM_2 margins one underlying, {market.underlying!r}"))
    elif instrument.kind == InstrumentKind.FUTURE:
        errors.add(InputError(f"{path}.instrument", "PMRM_2 has no dated futures"))
    elif instrument.kind == InstrumentKind.PERPETUAL:
        if book["perp"] is not None:
            errors.add(InputError(f"{path}.instrument", "a second position in the perpetual"))
        cost = errors.attempt(parse_number, spec.get("cost", 0), f"{path}.cost")
        funding = errors.attempt(parse_number, spec.get("funding", 0), f"{path}.funding")
        book["perp"] = (size, cost or 0.0, funding or 0.0)
    else:
        for key in ("cost", "funding"):
            if key in spec:
                errors.add(InputError(f"{path}.{key}", "an option has none: its premium is paid in cash"))
        strike = strike_value(instrument.strike)
        feeds = market.expiry(instrument.expiry)
        if feeds is None or feeds.vol_at(strike) is None:
            errors.add(InputError(f"{path}.instrument", f"the market has no vol for {spec['instrument']}"))
        option = Pmrm2Option(instrument.expiry, strike, instrument.kind == InstrumentKind.CALL, size)
        book["options"].append(option)


def parse_pmrm2_portfolio(obj: object, market: Pmrm2Market) -> Pmrm2Book:
    """Return the PMRM_2 book of a portfolio document checked against ``market``; raise ``DocumentError``."""
    doc = _mapping(obj, "portfolio")
    errors = _Collector()
    _check_keys(doc, ("positions", "collateral", "cash"), "", errors)
    cash = errors.attempt(parse_number, doc.get("cash", "0"), "cash")
    book: dict[str, Any] = {"options": [], "perp": None}
    positions = doc.get("positions", [])
    if not isinstance(positions, list):
        errors.add(InputError("positions", f"expected a list, got {type(positions).__name__}"))
        positions = []
    for i, entry in enumerate(positions):
        _parse_position(entry, f"positions[{i}]", market, book, errors)
    collateral = []
    for symbol, amount_obj in (errors.attempt(_mapping, doc.get("collateral", {}), "collateral") or {}).items():
        if market.asset(symbol) is None:
            errors.add(InputError(f"collateral.{symbol}", f"the market has no price for collateral {symbol!r}"))
            continue
        amount = errors.attempt(parse_number, amount_obj, f"collateral.{symbol}", 0.0)
        if amount is not None:
            collateral.append((symbol, amount))
    errors.raise_if_any()
    if cash is None:  # unreachable: recorded as an error above
        raise DocumentError([InputError("cash", "invalid")])
    perp_amount, perp_cost, perp_funding = book["perp"] or (0.0, 0.0, 0.0)
    return Pmrm2Book(
        options=tuple(book["options"]),
        perp_amount=perp_amount,
        perp_cost=perp_cost,
        perp_funding=perp_funding,
        collateral=tuple(sorted(collateral)),
        cash=cash,
    )
