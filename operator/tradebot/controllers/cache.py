"""What the operator has seen of its own kinds: kopf indices (informers) of LiveBots,
CircuitBreakers and Strategies, filled from the watch streams kopf keeps open anyway.

Hot paths read these instead of the API server: a breaker evaluates its bots every second and
each running bot checks its breakers and its Strategy every round, which at hundreds of bots
would otherwise be hundreds of reads a second. kopf fills every index before any handler
runs, so a restarted operator never acts on a half-filled one. The views may lag the cluster
by one watch event; whatever could make a bot trade (a pod created) is decided again from a
fresh read, never from here.

Each index keeps only what its readers read. A Strategy's code (up to 256 KiB) is not in its
index: a round needs the code only to build its bot's config, so `strategy()` puts it back
from a small store keyed by the code's sha256, filled by a read of the API server the first
time a round needs that code. Strategies no bot runs (those of Backtests) cost no code here.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from tradebot import kube
from tradebot.api.base import GROUP, VERSION

# The kwargs under which kopf hands each index to every handler.
LIVEBOTS = "livebots_by_namespace"
BREAKERS = "breakers_by_namespace"
STRATEGIES = "strategies_by_name"
# In a Strategy's view instead of its code: the code's sha256 (hex).
CODE_SHA256 = "codeSha256"
# What a LiveBot round reads of a Strategy's status (domain/livebot_round.py, and the
# resolved parameter set of domain/strategy_parameters.py: a few KiB at most).
_STRATEGY_STATUS = ("phase", "codeHash", "parameters", "parametersHash")
# Codes held at most, the least recently used dropped first: 64 x 256 KiB is 16 MiB at worst.
CODES_HELD = 64


def _view(body: kopf.Body, *, spec: bool) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    view: dict[str, Any] = {
        "metadata": {
            k: copy.deepcopy(meta[k])
            for k in ("name", "namespace", "uid", "generation", "labels")
            if k in meta
        },
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }
    if spec:
        view["spec"] = copy.deepcopy(dict(body.get("spec") or {}))
    return view


# Async, so that kopf runs them in its event loop as each event arrives: a sync index
# handler would take a trip through a thread pool for every bot status patch.
@kopf.index(GROUP, VERSION, "livebots")
async def livebots_by_namespace(
    body: kopf.Body, namespace: str | None, **_: object
) -> dict[str | None, dict[str, Any]]:
    # A breaker reads its bots' labels and monitored figures, never their spec.
    return {namespace: _view(body, spec=False)}


@kopf.index(GROUP, VERSION, "circuitbreakers")
async def breakers_by_namespace(
    body: kopf.Body, namespace: str | None, **_: object
) -> dict[str | None, dict[str, Any]]:
    return {namespace: _view(body, spec=True)}


def strategy_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Strategy as its index keeps it: its spec but for the code (the code's sha256
    instead), and of its status the phase, the introspected code hash and the resolved
    parameter set."""
    meta = body.get("metadata") or {}
    spec = {k: copy.deepcopy(v) for k, v in (body.get("spec") or {}).items() if k != "code"}
    status = body.get("status") or {}
    view: dict[str, Any] = {
        "metadata": {
            k: copy.deepcopy(meta[k])
            for k in ("name", "namespace", "uid", "generation", "labels")
            if k in meta
        },
        "spec": spec,
        "status": {k: status[k] for k in _STRATEGY_STATUS if k in status},
    }
    code = (body.get("spec") or {}).get("code")
    if isinstance(code, str):
        view[CODE_SHA256] = _sha256(code)
    return view


@kopf.index(GROUP, VERSION, "strategies")
async def strategies_by_name(
    body: kopf.Body, namespace: str | None, name: str | None, **_: object
) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    return {(namespace, name): strategy_view(body)}


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class _Codes:
    """Strategy codes by their sha256, the least recently used dropped beyond `size`. By
    content, so an entry is never stale, and one code is held once whatever uses it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._codes: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha: str) -> str | None:
        with self._lock:
            code = self._codes.get(sha)
            if code is not None:
                self._codes.move_to_end(sha)
            return code

    def put(self, code: str) -> None:
        with self._lock:
            sha = _sha256(code)
            self._codes[sha] = code
            self._codes.move_to_end(sha)
            while len(self._codes) > self.size:
                self._codes.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._codes.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._codes)


CODES = _Codes(CODES_HELD)


def strategy(
    index: Mapping[Any, Iterable[dict[str, Any]]], namespace: str, name: str
) -> dict[str, Any] | None:
    """The Strategy as a LiveBot round reads it: its indexed view with its code. The code
    comes from CODES by the sha256 the view holds; a code not held there is read with the
    whole Strategy from the API server, and that fresher answer is what is returned."""
    view = next(iter(entries(index, (namespace, name))), None)
    if view is None or CODE_SHA256 not in view:
        return view  # missing, or its code is in a ConfigMap (read by the round itself)
    code = CODES.get(view[CODE_SHA256])
    if code is not None:
        return {**view, "spec": {**view["spec"], "code": code}}
    found = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, "strategies", name
    )
    if found is None:
        return None
    fresh = strategy_view(found)
    code = (found.get("spec") or {}).get("code")
    if isinstance(code, str):
        CODES.put(code)
        fresh["spec"]["code"] = code
    return fresh


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
