"""Where each bot's REST API answers and with which credentials, as the operator last saw
them: a tripped breaker stops hundreds of bots at once, and reading each bot's pod (for its
IP) and its API Secret (for its credentials) from the API server first cost two reads per bot,
a thousand for 500 bots, before the first deletion.

- Pod IPs come from an informer (controllers/informer.py) of the bot pods alone (label
  `tradebot.dev/kind=livebot`, selected by the server), which keeps of each pod only its IP.
- Credentials are remembered from the reads of the bot-api Secret the LiveBot rounds make
  anyway (bot_control.api_credentials), not from a watch of Secrets: the operator gets and
  creates Secrets by name and lists none, and watching them would mean reading every Secret
  of the namespace, the exchange keys of the users' own Secrets included.

Only a shortcut: absence means nothing (a pod or Secret not seen yet, a watch that lags a
creation, an operator just started), and the caller then reads the API server. A stale entry
costs at most a REST call that fails, after which the stop reads the API server and, failing
again, removes the pod as for a bot that does not answer (bot_control.stop). Nothing here is
logged: the credentials never leave this store but for the REST login.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from tradebot import kube
from tradebot.controllers.informer import Informer, RawObject
from tradebot.domain import bots
from tradebot.domain.naming import LABEL_KIND
from tradebot.settings import Settings

SELECTOR = f"{LABEL_KIND}=livebot"
Key = tuple[str, str]  # (namespace, name)


class PodIps:
    """Each bot pod's IP by (namespace, pod name), as the informer last saw it."""

    def __init__(self) -> None:
        self._ips: dict[Key, str] = {}
        self._lock = threading.Lock()

    def replace(self, namespace: str | None, pods: list[RawObject]) -> None:
        """A complete list of `namespace` (None: every namespace) replaces what was known of
        it: a pod deleted while the watch was down does not survive."""
        fresh = {k: ip for k, ip in map(_entry, pods) if ip}
        with self._lock:
            for key in [k for k in self._ips if namespace is None or k[0] == namespace]:
                del self._ips[key]
            self._ips.update(fresh)

    def event(self, kind: str, pod: RawObject) -> None:
        key, ip = _entry(pod)
        with self._lock:
            if kind == "DELETED" or not ip:
                self._ips.pop(key, None)
            else:
                self._ips[key] = ip

    def ip(self, namespace: str, name: str) -> str | None:
        with self._lock:
            return self._ips.get((namespace, name))

    def clear(self) -> None:
        with self._lock:
            self._ips.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ips)


def _entry(pod: RawObject) -> tuple[Key, str | None]:
    meta = pod.get("metadata") or {}
    ip = (pod.get("status") or {}).get("podIP")
    return (str(meta.get("namespace")), str(meta.get("name"))), ip or None


class Credentials:
    """Each bot's API credentials by (namespace, Secret name), as last read."""

    def __init__(self) -> None:
        self._known: dict[Key, bots.ApiCredentials] = {}
        self._lock = threading.Lock()

    def remember(self, namespace: str, name: str, found: bots.ApiCredentials | None) -> None:
        with self._lock:
            if found is None:
                self._known.pop((namespace, name), None)
            else:
                self._known[(namespace, name)] = found

    def get(self, namespace: str, name: str) -> bots.ApiCredentials | None:
        with self._lock:
            return self._known.get((namespace, name))

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


POD_IPS = PodIps()
CREDENTIALS = Credentials()


def _list_call(namespace: str | None) -> Callable[..., Any]:
    if namespace is None:
        return kube.core().list_pod_for_all_namespaces  # type: ignore[no-any-return]
    fn = kube.core().list_namespaced_pod
    return lambda **kw: fn(namespace, **kw)


class BotPodWatch:
    """The informers that fill POD_IPS: one per watched namespace (or one for all), started
    with the operator and stopped with it (which forgets what they saw)."""

    def __init__(self, settings: Settings) -> None:
        namespaces: list[str | None] = list(settings.namespaces) or [None]
        self._informers = [
            Informer(
                f"bot-pods-{ns or 'all'}",
                _list_call(ns),
                functools.partial(POD_IPS.replace, ns),
                POD_IPS.event,
                SELECTOR,
                watch_timeout=settings.api_watch_timeout_seconds,
            )
            for ns in namespaces
        ]

    def start(self) -> None:
        for informer in self._informers:
            informer.start()

    def synced(self, timeout: float) -> bool:
        return all(i.synced.wait(timeout) for i in self._informers)

    def stop(self) -> None:
        for informer in self._informers:
            informer.stop()
        POD_IPS.clear()
        CREDENTIALS.clear()
