"""Helpers the controllers use to write status and Events consistently."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import kopf

from tradebot import kube
from tradebot.api.base import GROUP, VERSION
from tradebot.domain.conditions import set_condition
from tradebot.domain.time import format_time, parse_time


def now() -> str:
    """The controllers' clock, in whole seconds as Kubernetes writes times in status."""
    return format_time(dt.datetime.now(dt.UTC).replace(microsecond=0))


def condition(
    status: dict[str, Any],
    patch: kopf.Patch,
    type_: str,
    ok: bool | str,
    reason: str,
    message: str,
    generation: int | None,
) -> None:
    """Sets one condition in the patch, starting from what the patch or status already has."""
    current = patch.status.get("conditions") or status.get("conditions")
    patch.status["conditions"] = set_condition(
        current, type_, ok, reason, message, generation, at=now()
    )


def drop_unchanged(patch: kopf.Patch, status: Mapping[str, Any]) -> None:
    """Removes from the patch every status field it would set to what status already holds
    (a None for an absent field included), and the status patch itself if nothing is left:
    kopf sends any non-empty patch, and a no-op write still costs the API server a request."""
    changes = patch.get("status")
    if not isinstance(changes, dict):
        return
    for key in [k for k, v in changes.items() if status.get(k) == v]:
        del changes[key]
    if not changes:
        del patch["status"]


def event(body: kopf.Body, reason: str, message: str, warning: bool = False) -> None:
    """An Event on the object a kopf handler works on (kopf posts it)."""
    if warning:
        kopf.warn(body, reason=reason, message=message)
    else:
        kopf.info(body, reason=reason, message=message)


def post_event(
    obj: Mapping[str, Any], kind: str, reason: str, message: str, warning: bool = False
) -> None:
    """The same Event as `event`, for code outside kopf's handlers (the admission loop), where
    kopf has no context to post from: written to the API server directly."""
    meta = obj["metadata"]
    stamp = now()
    kube.core().create_namespaced_event(
        meta["namespace"],
        {
            "metadata": {"generateName": f"{meta['name']}."},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "tradebot-operator"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        },
    )


# One time parser for the controllers: status, client objects and Freqtrade's answers.
status_time = parse_time
