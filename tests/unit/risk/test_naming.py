"""Deribit instrument names and pure calendar arithmetic."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.errors import InputError
from pmoracle.risk.inputs import PRICE_SCALE, Instrument, InstrumentKind
from pmoracle.risk.naming import (
    InstrumentNameError,
    civil_from_days,
    days_from_civil,
    format_expiry_code,
    format_instrument_name,
    format_utc_time,
    parse_expiry_code,
    parse_instrument_name,
)

DEC27_2026_0800 = int(datetime.datetime(2026, 12, 27, 8, tzinfo=datetime.UTC).timestamp())


def test_option_name_parses_to_expiry_at_0800_utc() -> None:
    inst = parse_instrument_name("BTC-27DEC26-100000-C")
    assert inst == Instrument("BTC", InstrumentKind.CALL, DEC27_2026_0800, 100000 * PRICE_SCALE)


def test_put_future_and_perpetual() -> None:
    assert parse_instrument_name("ETH-27DEC26-3000-P").kind == InstrumentKind.PUT
    assert parse_instrument_name("ETH-27DEC26") == Instrument("ETH", InstrumentKind.FUTURE, DEC27_2026_0800)
    assert parse_instrument_name("BTC-PERPETUAL") == Instrument("BTC", InstrumentKind.PERPETUAL)


def test_decimal_strikes_in_both_notations() -> None:
    assert parse_instrument_name("XRP-27DEC26-0d625-C").strike == 62_500_000
    assert parse_instrument_name("XRP-27DEC26-0.625-C").strike == 62_500_000
    assert format_instrument_name(parse_instrument_name("XRP-27DEC26-0.625-C")) == "XRP-27DEC26-0d625-C"


def test_single_digit_day_is_written_without_leading_zero() -> None:
    inst = parse_instrument_name("BTC-04DEC26-90000-P")
    assert format_instrument_name(inst) == "BTC-4DEC26-90000-P"


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("btc-27DEC26-100000-C", "underlying"),
        ("-27DEC26", "underlying"),
        ("BTC-27DEC26-100000", "name"),
        ("BTC", "name"),
        ("BTC-PERP", "expiry"),
        ("BTC-27DXC26-100000-C", "expiry"),
        ("BTC-31NOV26-100000-C", "expiry"),
        ("BTC-29FEB27", "expiry"),
        ("BTC-27DEC26-abc-C", "strike"),
        ("BTC-27DEC26-0-C", "strike"),
        ("BTC-27DEC26-1.000000001-C", "strike"),
        ("BTC-27DEC26-100000-X", "option type"),
    ],
)
def test_malformed_names_name_the_offending_part(name: str, part: str) -> None:
    with pytest.raises(InstrumentNameError) as info:
        parse_instrument_name(name, "positions[3].instrument")
    assert info.value.part == part
    assert info.value.field == "positions[3].instrument"
    assert name in str(info.value)


def test_leap_day_exists_in_leap_years() -> None:
    assert format_expiry_code(parse_expiry_code("29FEB28")) == "29FEB28"


def test_format_rejects_expiry_not_at_0800() -> None:
    with pytest.raises(InputError, match="08:00"):
        format_instrument_name(Instrument("BTC", InstrumentKind.FUTURE, DEC27_2026_0800 + 1))


@settings(derandomize=True)
@given(st.integers(min_value=-719_162, max_value=2_932_896))
def test_civil_calendar_matches_datetime(days: int) -> None:
    expected = datetime.date(1970, 1, 1) + datetime.timedelta(days=days)
    assert civil_from_days(days) == (expected.year, expected.month, expected.day)
    assert days_from_civil(expected.year, expected.month, expected.day) == days


@settings(derandomize=True)
@given(st.integers(min_value=0, max_value=2**34))
def test_format_utc_time_matches_datetime(seconds: int) -> None:
    expected = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert format_utc_time(seconds) == expected


EXPIRIES = st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2099, 12, 31)).map(
    lambda d: days_from_civil(d.year, d.month, d.day) * 86400 + 8 * 3600
)
INSTRUMENTS = st.one_of(
    st.builds(
        Instrument,
        st.sampled_from(["BTC", "ETH", "SOL", "XRP", "BTC2"]),
        st.just(InstrumentKind.PERPETUAL),
    ),
    st.builds(Instrument, st.sampled_from(["BTC", "ETH"]), st.just(InstrumentKind.FUTURE), EXPIRIES),
    st.builds(
        Instrument,
        st.sampled_from(["BTC", "ETH", "XRP"]),
        st.sampled_from([InstrumentKind.CALL, InstrumentKind.PUT]),
        EXPIRIES,
        st.integers(min_value=1, max_value=10**8 * PRICE_SCALE),
    ),
)


@settings(derandomize=True)
@given(INSTRUMENTS)
def test_name_round_trip(inst: Instrument) -> None:
    name = format_instrument_name(inst)
    assert parse_instrument_name(name) == inst
    assert format_instrument_name(parse_instrument_name(name)) == name
