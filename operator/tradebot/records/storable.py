"""Text every store can keep: one pure function applied to a record at the records boundary
(the SQL stores' writes and the outbox's lines), so no store ever sees a character it refuses.

PostgreSQL refuses NUL in text and `\\u0000` in jsonb (psycopg's DataError,
UntranslatableCharacter), and a lone surrogate cannot be encoded as UTF-8 at all (the outbox
line, psycopg and sqlite3 all raise UnicodeEncodeError). Such text reaches the records from
user input (a Strategy's `timeframe` found by introspection, a failure message carrying a
process's output), and one such record used to stop every record queued behind it.

Each such character becomes its JSON escape as plain text (NUL -> the six characters
`\\u0000`, a lone surrogate U+D800 -> `\\ud800`): readable, stable, and applying the function
again changes nothing (its output holds neither). It is not reversible (a literal `\\u0000`
typed by a user reads the same), which is acceptable for records a person reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from pydantic import BaseModel

T = TypeVar("T")

# NUL and the surrogate range: a well-formed str from UTF-8 has no surrogates, so any here is
# lone (Python's surrogateescape, or JSON "\ud800" without its pair).
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates escaped; the same object when it has none."""
    return _UNSTORABLE.sub(_escape, text) if _UNSTORABLE.search(text) else text


def storable(value: T) -> T:
    """`value` with every string in it (keys, nested values, record fields) made storable;
    anything else (Decimal, datetime, int, None) as it was. Returns `value` itself when
    nothing needed escaping, so the common case costs one scan and no copy."""
    return _storable(value)  # type: ignore[no-any-return]


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, BaseModel):
        changed = {}
        for name in type(value).model_fields:
            field = getattr(value, name)
            clean = _storable(field)
            if clean is not field:
                changed[name] = clean
        # model_copy skips validation: only strings were swapped for strings.
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, Mapping):
        items = [(_storable(k), _storable(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, (list, tuple)):
        cleaned = [_storable(v) for v in value]
        if all(c is v for c, v in zip(cleaned, value, strict=True)):
            return value
        return tuple(cleaned) if isinstance(value, tuple) else cleaned
    return value
