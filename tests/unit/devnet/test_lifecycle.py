"""The --days devnet's calendar: which expiries are listed at a given time."""

from __future__ import annotations

import datetime

from pmoracle.devnet.lifecycle import friday_expiries


def _utc(expiry: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(expiry, datetime.UTC)


def test_the_next_two_fridays_and_the_next_two_month_ends_are_listed_at_08_utc() -> None:
    now = int(datetime.datetime(2026, 12, 3, 13, 0, tzinfo=datetime.UTC).timestamp())  # a Thursday
    days = [_utc(e).date().isoformat() for e in friday_expiries(now)]
    # Fri 4 and 11 Dec; the last Fridays of December and January
    assert days == ["2026-12-04", "2026-12-11", "2026-12-25", "2027-01-29"]
    assert all(_utc(e).hour == 8 and _utc(e).weekday() == 4 for e in friday_expiries(now))


def test_a_month_end_that_is_also_a_weekly_is_listed_once() -> None:
    now = int(datetime.datetime(2027, 1, 20, tzinfo=datetime.UTC).timestamp())  # Wed; Fri 22 and 29 Jan
    days = [_utc(e).date().isoformat() for e in friday_expiries(now)]
    assert days == ["2027-01-22", "2027-01-29", "2027-02-26"]
    assert friday_expiries(now) == sorted(set(friday_expiries(now)))


def test_on_a_friday_after_08_utc_the_listing_starts_the_next_day() -> None:
    now = int(datetime.datetime(2026, 12, 4, 9, 0, tzinfo=datetime.UTC).timestamp())
    assert _utc(friday_expiries(now)[0]).date().isoformat() == "2026-12-11"


def test_on_a_friday_before_08_utc_that_morning_is_the_first_expiry() -> None:
    now = int(datetime.datetime(2026, 12, 4, 7, 0, tzinfo=datetime.UTC).timestamp())
    first = friday_expiries(now)[0]
    assert _utc(first).isoformat() == "2026-12-04T08:00:00+00:00" and first > now


def test_a_week_can_pass_with_nothing_new_to_list() -> None:
    # From Fri 4 Dec 2026 (afternoon) a week later the new second Friday is 25 Dec, already listed as December's
    # month end: the schedule is kept without a listing, so a week's run cannot require one (it requires the
    # schedule, `expiry_schedule_kept` in the --days summary).
    start = int(datetime.datetime(2026, 12, 4, 15, 0, tzinfo=datetime.UTC).timestamp())
    week_later = start + 7 * 86400
    assert set(friday_expiries(week_later)) <= set(friday_expiries(start))
    # the week after, 1 Jan 2027 enters the window and must be listed
    assert not set(friday_expiries(week_later + 7 * 86400)) <= set(friday_expiries(start))
