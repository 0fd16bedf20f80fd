"""The reason a Freqtrade run failed, read from its log.

Freqtrade reports most failures as one generic ERROR line and gives the cause in WARNING lines
before it (a strategy that does not import) or in a traceback after it (an exception in the
strategy). A person should get the cause in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - (?P<logger>\S+) - (?P<level>[A-Z]+) - "
    r"(?P<message>.*)$"
)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
_IMPORT_FAILURE = re.compile(r"^Could not import (?P<path>.+?) due to '(?P<reason>.*)'$")
_COVERAGE = ("data starts at", "data ends at", "No history for")
MAX_REASON = 1000


@dataclass
class Record:
    logger: str
    level: str
    message: str
    continuation: list[str] = field(default_factory=list)


def records(text: str) -> list[Record]:
    """Log records; lines that start no record (tracebacks, message continuations, Freqtrade's
    printed tables) belong to the record before them."""
    found: list[Record] = []
    for line in text.splitlines():
        match = _RECORD.match(line)
        if match:
            found.append(Record(match["logger"], match["level"], match["message"]))
        elif found:
            found[-1].continuation.append(line)
    return found


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 3] + "..."


def _traceback_reason(record: Record, strategy_file: str | None) -> str:
    lines = [ln for ln in record.continuation if ln.strip()]
    exception = next(
        (ln.strip() for ln in reversed(lines) if not ln.startswith((" ", "\t", "Traceback"))), ""
    )
    where = ""
    if strategy_file:
        frames = [
            m
            for m in (_FRAME.match(ln) for ln in lines)
            if m and m["file"].endswith("/" + strategy_file)
        ]
        if frames:
            last = frames[-1]
            where = f" ({strategy_file} line {last['line']}, in {last['func']})"
    return f"{exception or record.message}{where}"


def failure_reason(
    text: str, *, strategy_file: str | None = None, timerange: str | None = None
) -> str | None:
    """One line saying why the run failed, or None when the log has no error."""
    found = records(text)
    errors = [r for r in found if r.level in ("ERROR", "CRITICAL")]
    if not errors:
        return None
    last = errors[-1]
    reason = last.message
    if reason.startswith("Fatal exception"):
        reason = _traceback_reason(last, strategy_file)
    elif reason.startswith("Impossible to load Strategy"):
        causes = []
        for r in found:
            m = _IMPORT_FAILURE.match(r.message) if r.level == "WARNING" else None
            if m and m["reason"] not in causes:
                causes.append(m["reason"])
        if causes:
            reason = f"{reason} Cause: {'; '.join(causes)}"
    elif reason.startswith("No data found"):
        coverage = [
            r.message
            for r in found
            if r.level == "WARNING"
            and any(c in r.message for c in _COVERAGE)
            and "download-data" not in r.message
        ]
        if timerange:
            reason = f"{reason} Requested timerange: {timerange}."
        if coverage:
            reason = f"{reason} The data has: {'; '.join(coverage)}"
    return _one_line(reason)


def last_line(text: str) -> str | None:
    """The last non-empty line, for output that is no Freqtrade log at all."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return _one_line(lines[-1]) if lines else None
