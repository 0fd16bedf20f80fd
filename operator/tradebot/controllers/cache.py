"""What the operator has seen of its own kinds: kopf indices (informers) of LiveBots,
CircuitBreakers and Strategies, filled from the watch streams kopf keeps open anyway.

Hot paths read these instead of the API server: a breaker evaluates its bots every second and
each running bot checks its breakers and its Strategy every round, which at hundreds of bots
would otherwise be hundreds of reads a second. kopf fills every index before any handler
runs, so a restarted operator never acts on a half-filled one. The views may lag the cluster
by one watch event; whatever could make a bot trade (a pod created) is decided again from a
fresh read, never from here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from tradebot.api.base import GROUP, VERSION

# The kwargs under which kopf hands each index to every handler.
LIVEBOTS = "livebots_by_namespace"
BREAKERS = "breakers_by_namespace"
STRATEGIES = "strategies_by_name"


def _view(body: kopf.Body, *, spec: bool) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    view: dict[str, Any] = {
        "metadata": {k: copy.deepcopy(meta[k]) for k in
                     ("name", "namespace", "uid", "generation", "labels") if k in meta},
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }
    if spec:
        view["spec"] = copy.deepcopy(dict(body.get("spec") or {}))
    return view


# Async, so that kopf runs them in its event loop as each event arrives: a sync index
# handler would take a trip through a thread pool for every bot status patch.
@kopf.index(GROUP, VERSION, "livebots")
async def livebots_by_namespace(body: kopf.Body, namespace: str | None, **_: object
                                ) -> dict[str | None, dict[str, Any]]:
    # A breaker reads its bots' labels and monitored figures, never their spec.
    return {namespace: _view(body, spec=False)}


@kopf.index(GROUP, VERSION, "circuitbreakers")
async def breakers_by_namespace(body: kopf.Body, namespace: str | None, **_: object
                                ) -> dict[str | None, dict[str, Any]]:
    return {namespace: _view(body, spec=True)}


@kopf.index(GROUP, VERSION, "strategies")
async def strategies_by_name(body: kopf.Body, namespace: str | None, name: str | None,
                             **_: object) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    return {(namespace, name): _view(body, spec=True)}


def entries(index: Mapping[Any, Iterable[dict[str, Any]]], key: object) -> list[dict[str, Any]]:
    """A snapshot of the objects under `key`. kopf changes its index in the event loop while
    handlers read it from threads; a copy that raced a change is simply taken again."""
    for _ in range(5):
        try:
            store = index.get(key)
            return list(store) if store is not None else []
        except RuntimeError:  # "changed size during iteration"
            continue
    raise RuntimeError(f"the operator's view of {key!r} kept changing while read")
