"""Deribit-style instrument names and UTC calendar arithmetic, in pure integers.

Names: ``BTC-27DEC26-100000-C`` (option; the strike may carry decimals, written ``0d625`` as Deribit does, or
``0.625``), ``ETH-27DEC26`` (dated future), ``BTC-PERPETUAL``. Expiries are at 08:00 UTC of the named day.
Calendar conversions use Howard Hinnant's days-from-civil algorithm, so nothing here reads a clock or depends
on a platform's ``time``/``datetime``.
"""

from __future__ import annotations

from pmoracle.errors import InputError
from pmoracle.risk.inputs import EXPIRY_HOUR_UTC, PRICE_DECIMALS, PRICE_SCALE, Instrument, InstrumentKind

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SECONDS_PER_DAY = 86400
PERPETUAL_SUFFIX = "PERPETUAL"
# Two-digit years in expiry codes are 20YY.
CENTURY = 2000


class InstrumentNameError(InputError):
    """Raised when an instrument name is malformed; ``part`` names the offending piece of the name."""

    def __init__(self, field: str, name: str, part: str, message: str) -> None:
        super().__init__(field, f"{message} in instrument name {name!r}")
        self.name = name
        self.part = part


def is_leap_year(year: int) -> bool:
    """Check if ``year`` is a leap year of the proleptic Gregorian calendar."""
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year: int, month: int) -> int:
    """Return the number of days of ``month`` (1..12) in ``year``."""
    if month == 2:
        return 29 if is_leap_year(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def days_from_civil(year: int, month: int, day: int) -> int:
    """Return the days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Return (year, month, day) of the day ``days`` after 1970-01-01 (Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def compute_unix_time(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Return the unix seconds of a UTC date and time."""
    return days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second


def format_utc_time(unix_seconds: int) -> str:
    """Return ``unix_seconds`` as ISO-8601 UTC, e.g. ``2026-11-25T08:00:00Z``."""
    days, rem = divmod(unix_seconds, SECONDS_PER_DAY)
    year, month, day = civil_from_days(days)
    return f"{year:04d}-{month:02d}-{day:02d}T{rem // 3600:02d}:{rem // 60 % 60:02d}:{rem % 60:02d}Z"


def parse_expiry_code(code: str, field: str = "expiry") -> int:
    """Return the unix seconds of an expiry code such as ``27DEC26`` (08:00 UTC that day)."""
    if not isinstance(code, str):
        raise InputError(field, f"expected an expiry code like 27DEC26, got {code!r}")
    if not (6 <= len(code) <= 7) or not code[:-5].isdigit() or not code[-2:].isdigit() or not code.isascii():
        raise InputError(field, f"malformed expiry {code!r}, expected DMMMYY like 27DEC26")
    day_text, month_text, year_text = code[:-5], code[-5:-2], code[-2:]
    if month_text not in MONTHS:
        raise InputError(field, f"unknown month {month_text!r} in expiry {code!r}")
    year = CENTURY + int(year_text)
    month = MONTHS.index(month_text) + 1
    day = int(day_text)
    if not 1 <= day <= days_in_month(year, month):
        raise InputError(field, f"day {day_text!r} does not exist in {month_text} {year} (expiry {code!r})")
    return compute_unix_time(year, month, day, EXPIRY_HOUR_UTC)


def format_expiry_code(expiry: int) -> str:
    """Return the expiry code (``27DEC26``, day without a leading zero as Deribit writes it) of ``expiry``."""
    days, rem = divmod(expiry, SECONDS_PER_DAY)
    if rem != EXPIRY_HOUR_UTC * 3600:
        raise InputError("expiry", f"{expiry} is not at {EXPIRY_HOUR_UTC:02d}:00 UTC")
    year, month, day = civil_from_days(days)
    if not CENTURY <= year < CENTURY + 100:
        raise InputError("expiry", f"{expiry} is outside the years {CENTURY}..{CENTURY + 99} of expiry codes")
    return f"{day}{MONTHS[month - 1]}{year % 100:02d}"


def parse_strike(text: str, field: str = "strike") -> int:
    """Return a strike written ``100000``, ``0.625`` or ``0d625`` in PRICE_SCALE units."""
    whole, sep, frac = text.replace("d", ".").partition(".")
    if not whole.isdigit() or not whole.isascii() or (sep and (not frac.isdigit() or not frac.isascii())):
        raise InputError(field, f"malformed strike {text!r}")
    if len(frac) > PRICE_DECIMALS:
        raise InputError(field, f"strike {text!r} has more than {PRICE_DECIMALS} decimals")
    frac_scale: int = 10 ** (PRICE_DECIMALS - len(frac))
    value: int = int(whole) * PRICE_SCALE + (int(frac) * frac_scale if frac else 0)
    if value <= 0:
        raise InputError(field, f"strike {text!r} must be positive")
    return value


def format_strike(strike: int) -> str:
    """Return a PRICE_SCALE strike as Deribit writes it: ``100000`` or ``0d625``."""
    whole, frac = divmod(strike, PRICE_SCALE)
    if frac == 0:
        return str(whole)
    return f"{whole}d{str(frac).rjust(PRICE_DECIMALS, '0').rstrip('0')}"


def parse_instrument_name(name: str, field: str = "instrument") -> Instrument:
    """Return the ``Instrument`` named ``name`` (``BTC-27DEC26-100000-C``, ``ETH-27DEC26``, ``BTC-PERPETUAL``)."""
    if not isinstance(name, str):
        raise InputError(field, f"expected an instrument name string, got {name!r}")
    parts = name.split("-")
    underlying = parts[0]
    if not underlying or not underlying.isascii() or not underlying.isalnum() or not underlying.isupper():
        raise InstrumentNameError(field, name, "underlying", f"malformed underlying {underlying!r}")
    if len(parts) == 2 and parts[1] == PERPETUAL_SUFFIX:
        return Instrument(underlying, InstrumentKind.PERPETUAL)
    if len(parts) not in (2, 4):
        raise InstrumentNameError(
            field, name, "name", "expected UNDERLYING-PERPETUAL, UNDERLYING-DMMMYY or UNDERLYING-DMMMYY-STRIKE-C|P"
        )
    try:
        expiry = parse_expiry_code(parts[1], field)
    except InputError as exc:
        raise InstrumentNameError(field, name, "expiry", exc.message) from None
    if len(parts) == 2:
        return Instrument(underlying, InstrumentKind.FUTURE, expiry)
    try:
        strike = parse_strike(parts[2], field)
    except InputError as exc:
        raise InstrumentNameError(field, name, "strike", exc.message) from None
    if parts[3] not in ("C", "P"):
        raise InstrumentNameError(field, name, "option type", f"option type {parts[3]!r} is not C or P")
    kind = InstrumentKind.CALL if parts[3] == "C" else InstrumentKind.PUT
    return Instrument(underlying, kind, expiry, strike)


def format_instrument_name(instrument: Instrument) -> str:
    """Return the Deribit-style name of ``instrument``."""
    if instrument.kind == InstrumentKind.PERPETUAL:
        return f"{instrument.underlying}-{PERPETUAL_SUFFIX}"
    code = format_expiry_code(instrument.expiry)
    if instrument.kind == InstrumentKind.FUTURE:
        return f"{instrument.underlying}-{code}"
    suffix = "C" if instrument.kind == InstrumentKind.CALL else "P"
    return f"{instrument.underlying}-{code}-{format_strike(instrument.strike)}-{suffix}"
