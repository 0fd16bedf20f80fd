"""`--since`: a date, a date and time, or a duration back from now."""

from __future__ import annotations

import datetime as dt
import re

_UNITS = {
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}
_DURATION = re.compile(r"(\d+)([mhdw])")
FORMS = (
    "a date (2026-01-31), a date and time (2026-01-31T12:00:00Z) or a duration back "
    "from now (90m, 12h, 30d, 2w)"
)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """The instant `text` names, in UTC; a date or time without a zone is taken as UTC."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        return (now - int(match.group(1)) * _UNITS[match.group(2)]).astimezone(dt.UTC)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            parsed = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
        else:
            parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since: expected {FORMS}; got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
