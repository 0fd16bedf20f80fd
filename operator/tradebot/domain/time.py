"""RFC 3339 times as Kubernetes and Freqtrade write them. Pure: the clock is never read here;
`now` comes in as an argument."""

from __future__ import annotations

import datetime as dt


def utc(moment: dt.datetime) -> dt.datetime:
    """Naive times are taken as UTC, so that comparing them with aware ones cannot raise."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def parse_time(value: object) -> dt.datetime | None:
    """A timestamp from status, a client object or Freqtrade ("2024-01-02",
    "2024-01-02 00:00:00", RFC 3339); naive ones are UTC."""
    if not value:
        return None
    parsed = (
        value
        if isinstance(value, dt.datetime)
        else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes it."""
    return utc(moment).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def format_micro_time(moment: dt.datetime) -> str:
    """Kubernetes' MicroTime (a Lease's renewTime): always six digits of microseconds."""
    return utc(moment).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
