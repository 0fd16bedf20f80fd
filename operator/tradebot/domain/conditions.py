"""Standard Kubernetes conditions, updated without losing their transition times."""

from __future__ import annotations

import datetime as dt
from typing import Any


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    at: str | None = None,
) -> list[dict[str, Any]]:
    """Returns the list with condition `type_` set; lastTransitionTime moves only when the
    status itself changes."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    existing = {c.get("type"): c for c in conditions or []}
    old = existing.get(type_)
    changed = old is None or old.get("status") != value
    new = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": (at or now()) if old is None or changed
        else old.get("lastTransitionTime"),
        **({"observedGeneration": generation} if generation is not None else {}),
    }
    result = [c for c in conditions or [] if c.get("type") != type_]
    result.append(new)
    return sorted(result, key=lambda c: str(c.get("type")))
