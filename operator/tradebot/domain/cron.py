"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Pure: times come in as arguments. The syntax is Vixie cron's, as Kubernetes CronJobs take it:
`*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month and weekday names
(`jan`, `mon`), weekday 7 as Sunday, and the macros @yearly, @annually, @monthly, @weekly,
@daily, @midnight and @hourly. As in cron, when both day-of-month and day-of-week are
restricted (neither is `*`), a day matches if either does.

A small parser of our own rather than a dependency: the operator needs only "the latest
slot at or before now" and "the next slot after", both answered here by walking days, not
minutes, so a yearly schedule costs a few hundred steps, not half a million.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)
# Every 5-field expression that can ever fire does so within 8 years (29 February on a given
# weekday may take up to 28 years, but such a day-of-month AND weekday restriction is an OR
# in cron, so it fires far sooner). The search stops there: an expression that never fires
# (30 February) is refused when parsed, not searched for forever.
_HORIZON_DAYS = 8 * 366


class CronError(ValueError):
    """An expression that is not a valid 5-field cron schedule; the message says which field."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    expression: str

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime | None:
        """The latest firing time at or before `moment` (aware, UTC), or None if there is none
        within the search horizon."""
        moment = _utc(moment).replace(second=0, microsecond=0)
        day = moment.date()
        for step in range(_HORIZON_DAYS):
            if self.day_matches(day):
                limit = (moment.hour, moment.minute) if step == 0 else (23, 59)
                found = max(
                    ((h, m) for h in self.hours for m in self.minutes if (h, m) <= limit),
                    default=None,
                )
                if found is not None:
                    return dt.datetime(day.year, day.month, day.day, *found, tzinfo=dt.UTC)
            day -= dt.timedelta(days=1)
        return None

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first firing time strictly after `moment`, or None within the horizon."""
        start = _utc(moment).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for step in range(_HORIZON_DAYS):
            if self.day_matches(day):
                floor = (start.hour, start.minute) if step == 0 else (0, 0)
                found = min(
                    ((h, m) for h in self.hours for m in self.minutes if (h, m) >= floor),
                    default=None,
                )
                if found is not None:
                    return dt.datetime(day.year, day.month, day.day, *found, tzinfo=dt.UTC)
            day += dt.timedelta(days=1)
        return None


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise CronError(
            f"{name}: {text!r} is not a number"
            + (f" or a name ({', '.join(names)})" if names else "")
        )
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{name}: {number} is outside {low}-{high}")
    return number


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise CronError(f"{name}: range {base!r} runs backwards")
        else:
            first = _value(base, name, low, high, names)
            # "5/15" is cron's "from 5 to the end, every 15".
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse(expression: str) -> Cron:
    """A Cron from its text, or CronError naming the field that is wrong."""
    text = " ".join(expression.split())
    fields = MACROS.get(text.lower(), text).split(" ")
    if len(fields) != 5:
        raise CronError(
            f"{expression!r} has {len(fields)} fields; a cron schedule has 5: "
            "minute hour day-of-month month day-of-week (e.g. '0 8 * * 1')"
        )
    parsed = [_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[4])
    days, months = parsed[2], parsed[3]
    # A day that no month has (30 February, 31 April) never fires unless weekdays may.
    longest = max(calendar.monthrange(2024, m)[1] for m in months)  # 2024: a leap year
    day_restricted = not fields[2].startswith("*")
    weekday_restricted = not fields[4].startswith("*")
    if min(days) > longest and not weekday_restricted:
        raise CronError(
            f"{expression!r} never fires: no month of {sorted(months)} has day {min(days)}"
        )
    return Cron(
        parsed[0],
        parsed[1],
        days,
        months,
        weekdays,
        days_restricted=day_restricted,
        weekdays_restricted=weekday_restricted,
        expression=text,
    )
