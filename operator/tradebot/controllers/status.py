"""Helpers the controllers use to write status and Events consistently."""

from __future__ import annotations

from typing import Any

import kopf

from tradebot.domain.conditions import set_condition


def condition(status: dict[str, Any], patch: kopf.Patch, type_: str, ok: bool | str,
              reason: str, message: str, generation: int | None) -> None:
    """Sets one condition in the patch, starting from what the patch or status already has."""
    current = patch.status.get("conditions") or status.get("conditions")
    patch.status["conditions"] = set_condition(current, type_, ok, reason, message, generation)


def event(body: kopf.Body, reason: str, message: str, warning: bool = False) -> None:
    if warning:
        kopf.warn(body, reason=reason, message=message)
    else:
        kopf.info(body, reason=reason, message=message)
