"""The 5-field cron parser: what fires when, and what is refused with which field named."""

from __future__ import annotations

import datetime as dt

import pytest

from tradebot.domain.cron import CronError, parse


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def brute_latest(expression: str, moment: dt.datetime) -> dt.datetime:
    """The reference: walk back minute by minute (slow, obviously right)."""
    cron = parse(expression)
    t = moment.replace(second=0, microsecond=0)
    for _ in range(60 * 24 * 400):
        if t.minute in cron.minutes and t.hour in cron.hours and cron.day_matches(t.date()):
            return t
        t -= dt.timedelta(minutes=1)
    raise AssertionError("not found")


@pytest.mark.parametrize(
    ("expression", "moment", "latest", "following"),
    [
        (
            "*/15 * * * *",
            utc(2026, 11, 29, 16, 7, 30),
            utc(2026, 11, 29, 16, 0),
            utc(2026, 11, 29, 16, 15),
        ),
        ("0 8 * * 1", utc(2026, 11, 29, 16, 0), utc(2026, 11, 23, 8, 0), utc(2026, 11, 30, 8, 0)),
        ("0 8 * * mon", utc(2026, 11, 30, 8, 0), utc(2026, 11, 30, 8, 0), utc(2026, 12, 7, 8, 0)),
        ("@daily", utc(2026, 11, 29, 0, 0, 59), utc(2026, 11, 29), utc(2026, 11, 30)),
        ("@hourly", utc(2026, 11, 29, 23, 59), utc(2026, 11, 29, 23), utc(2026, 11, 30)),
        ("@monthly", utc(2026, 11, 29), utc(2026, 11, 1), utc(2026, 12, 1)),
        ("@yearly", utc(2026, 11, 29), utc(2026, 1, 1), utc(2027, 1, 1)),
        ("30 12 29 2 *", utc(2026, 11, 29), utc(2024, 2, 29, 12, 30), utc(2028, 2, 29, 12, 30)),
        ("0 0 * * 7", utc(2026, 11, 29, 12), utc(2026, 11, 29), utc(2026, 12, 6)),  # 7 = Sunday
        (
            "5-10/5 1,3 * jan-mar *",
            utc(2026, 2, 1, 2),
            utc(2026, 2, 1, 1, 10),
            utc(2026, 2, 1, 3, 5),
        ),
        ("5/20 * * * *", utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 25), utc(2026, 1, 1, 0, 45)),
    ],
)
def test_latest_and_next(
    expression: str, moment: dt.datetime, latest: dt.datetime, following: dt.datetime
) -> None:
    cron = parse(expression)
    assert cron.latest_at_or_before(moment) == latest
    assert cron.next_after(moment) == following


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # cron's rule: the 13th OR a Friday, not only Friday the 13th.
    cron = parse("0 0 13 * 5")
    assert cron.day_matches(dt.date(2026, 11, 13))  # a Friday the 13th
    assert cron.day_matches(dt.date(2026, 10, 13))  # a Tuesday
    assert cron.day_matches(dt.date(2026, 11, 20))  # a Friday
    assert not cron.day_matches(dt.date(2026, 11, 19))
    # One side a star: both must hold (the star holds every day).
    assert not parse("0 0 * * 5").day_matches(dt.date(2026, 10, 13))


@pytest.mark.parametrize(
    "expression",
    ["*/7 3 * * *", "0 0 13 * 5", "15 */6 1-7 * 1", "0 12 * feb,aug sun", "59 23 31 * *"],
)
def test_latest_agrees_with_a_minute_by_minute_walk(expression: str) -> None:
    for moment in (utc(2026, 11, 29, 16, 3), utc(2026, 3, 1, 0, 0), utc(2024, 12, 31, 23, 59)):
        assert parse(expression).latest_at_or_before(moment) == brute_latest(expression, moment)


def test_next_is_after_and_latest_is_at_or_before() -> None:
    cron = parse("*/10 * * * *")
    at = utc(2026, 11, 29, 16, 10)
    assert cron.latest_at_or_before(at) == at
    assert cron.next_after(at) == utc(2026, 11, 29, 16, 20)
    assert cron.next_after(at + dt.timedelta(seconds=30)) == utc(2026, 11, 29, 16, 20)


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("0 8 * *", "has 4 fields"),
        ("0 8 * * * *", "has 6 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 0 * *", "day of month: 0 is outside 1-31"),
        ("0 0 * 13 *", "month: 13 is outside 1-12"),
        ("0 0 * * 8", "day of week: 8 is outside 0-7"),
        ("0 0 * foo *", "month: 'foo' is not a number or a name"),
        ("*/0 * * * *", "step '0' must be"),
        ("10-5 * * * *", "runs backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
    ],
)
def test_refused_with_the_field_named(expression: str, named: str) -> None:
    with pytest.raises(CronError, match=named.replace("(", r"\(").replace("*", r"\*")):
        parse(expression)
