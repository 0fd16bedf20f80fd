"""Standard Kubernetes conditions, updated without losing their transition times. Pure: the
time of a transition comes in as an argument."""

from __future__ import annotations

from typing import Any


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    *,
    at: str,
) -> list[dict[str, Any]]:
    """Returns the list with condition `type_` set; lastTransitionTime moves (to `at`, now in
    RFC 3339) only when the status itself changes."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    existing = {c.get("type"): c for c in conditions or []}
    old = existing.get(type_)
    changed = old is None or old.get("status") != value
    new = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": at if old is None or changed else old.get("lastTransitionTime"),
        **({"observedGeneration": generation} if generation is not None else {}),
    }
    result = [c for c in conditions or [] if c.get("type") != type_]
    result.append(new)
    return sorted(result, key=lambda c: str(c.get("type")))
