"""Drift of a bot's ConfigMap and NetworkPolicy: found against the operator's watch of them,
restored from what domain/bots.py builds (domain/bot_drift.py compares).

The round already reads the bot's pod from the API server; reading its ConfigMap and
NetworkPolicy too would be two more reads per running bot every TRADEBOT_BOT_POLL_SECONDS.
Instead one informer per watched namespace and kind follows only the operator's bot objects
(label `tradebot.dev/kind=livebot`, selected by the server, so the users' own ConfigMaps, which
may hold strategy code, are never read), and keeps a fingerprint of each (a sha256 of the
ConfigMap's data, of the NetworkPolicy's spec), never the content.

An object the watch has not seen (the operator just started, a creation not arrived yet, an
object deleted by hand) is read from the API server: absence here means only "ask".
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tradebot import kube
from tradebot.controllers.informer import Informer, RawObject
from tradebot.domain import bot_drift, bots
from tradebot.domain.naming import LABEL_KIND
from tradebot.settings import Settings

SELECTOR = f"{LABEL_KIND}=livebot"
Kind = Literal["ConfigMap", "NetworkPolicy"]
Key = tuple[str, str]  # (namespace, name)


def _fingerprint(kind: Kind, obj: RawObject) -> str:
    if kind == "ConfigMap":
        return bot_drift.config_map_fingerprint(obj.get("data"), obj.get("binaryData"))
    return bot_drift.policy_fingerprint(obj.get("spec"))


class Fingerprints:
    """Each watched object's fingerprint by (namespace, name), as the watch last saw it."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._known: dict[Key, str] = {}
        self._lock = threading.Lock()

    def replace(self, namespace: str | None, objects: list[RawObject]) -> None:
        fresh = dict(self._entry(o) for o in objects)
        with self._lock:
            for key in [k for k in self._known if namespace is None or k[0] == namespace]:
                del self._known[key]
            self._known.update(fresh)

    def event(self, kind: str, obj: RawObject) -> None:
        key, fingerprint = self._entry(obj)
        with self._lock:
            if kind == "DELETED":
                self._known.pop(key, None)
            else:
                self._known[key] = fingerprint

    def remember(self, namespace: str, name: str, fingerprint: str) -> None:
        """What the operator itself just wrote: the next round must not take the watch's lag
        for a second drift."""
        with self._lock:
            self._known[(namespace, name)] = fingerprint

    def get(self, namespace: str, name: str) -> str | None:
        with self._lock:
            return self._known.get((namespace, name))

    def clear(self) -> None:
        with self._lock:
            self._known.clear()

    def _entry(self, obj: RawObject) -> tuple[Key, str]:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace")), str(meta.get("name"))), _fingerprint(self.kind, obj)


CONFIG_MAPS = Fingerprints("ConfigMap")
POLICIES = Fingerprints("NetworkPolicy")


def _list_call(kind: Kind, namespace: str | None) -> Callable[..., Any]:
    if kind == "ConfigMap":
        api, every, one = (
            kube.core(),
            "list_config_map_for_all_namespaces",
            "list_namespaced_config_map",
        )
    else:
        api = kube.networking()
        every, one = "list_network_policy_for_all_namespaces", "list_namespaced_network_policy"
    if namespace is None:
        return getattr(api, every)  # type: ignore[no-any-return]
    fn = getattr(api, one)
    return lambda **kw: fn(namespace, **kw)


class CompanionWatch:
    """The informers that fill CONFIG_MAPS and POLICIES, started and stopped with the
    operator (which forgets what they saw)."""

    def __init__(self, settings: Settings) -> None:
        namespaces: list[str | None] = list(settings.namespaces) or [None]
        self._informers = [
            Informer(
                f"bot-{store.kind.lower()}s-{ns or 'all'}",
                _list_call(store.kind, ns),
                functools.partial(store.replace, ns),
                store.event,
                SELECTOR,
            )
            for store in (CONFIG_MAPS, POLICIES)
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
        CONFIG_MAPS.clear()
        POLICIES.clear()


@dataclass(frozen=True)
class Restored:
    """One object put back as it must be."""

    kind: Kind
    name: str
    # "edited" or "deleted": what was found.
    found: str

    def describe(self) -> str:
        return f"{self.kind} {self.name} ({self.found})"


def _read(kind: Kind, namespace: str, name: str) -> RawObject | None:
    read = (
        kube.core().read_namespaced_config_map
        if kind == "ConfigMap"
        else kube.networking().read_namespaced_network_policy
    )
    found = kube.read_or_none(read, name, namespace)
    return kube.to_dict(found) if found is not None else None


def _seen(store: Fingerprints, namespace: str, name: str, fresh: bool) -> tuple[bool, str | None]:
    """(exists, fingerprint): from the watch (unless `fresh`), else from the API server."""
    known = None if fresh else store.get(namespace, name)
    if known is not None:
        return True, known
    obj = _read(store.kind, namespace, name)
    return (False, None) if obj is None else (True, _fingerprint(store.kind, obj))


def restore(bot: bots.BotInstance, settings: Settings, fresh: bool = False) -> list[Restored]:
    """The bot's ConfigMap and NetworkPolicy compared with what they must be now, and each
    that differs (or is gone) written back whole: data and spec replaced, so nothing added by
    hand stays either. Also how they are made before the bot's first pod (`fresh`: read from
    the API server, not the watch)."""
    namespace, restored = bot.namespace, []
    config_map = bots.config_map(bot)
    policy = bots.network_policy(
        bot,
        operator_namespace=settings.operator_namespace,
        operator_labels=settings.operator_pod_labels,
    )
    wanted_cm = bot_drift.desired_config_map_fingerprint(config_map)
    exists, seen = _seen(CONFIG_MAPS, namespace, bot.config_map_name, fresh)
    if seen != wanted_cm:
        core = kube.core()
        if exists:
            # A JSON patch replaces the whole of data (a merge patch would keep keys added).
            core.patch_namespaced_config_map(
                bot.config_map_name,
                namespace,
                [
                    {"op": "replace", "path": "/data", "value": config_map["data"]},
                    {"op": "remove", "path": "/binaryData"},
                ]
                if _has_binary(namespace, bot.config_map_name)
                else [{"op": "add", "path": "/data", "value": config_map["data"]}],
            )
        else:
            kube.create_if_absent(core.create_namespaced_config_map, namespace, config_map)
        CONFIG_MAPS.remember(namespace, bot.config_map_name, wanted_cm)
        restored.append(
            Restored("ConfigMap", bot.config_map_name, "edited" if exists else "deleted")
        )
    wanted_np = bot_drift.policy_fingerprint(policy["spec"])
    exists, seen = _seen(POLICIES, namespace, bot.network_policy_name, fresh)
    if seen != wanted_np:
        net = kube.networking()
        if exists:
            net.patch_namespaced_network_policy(
                bot.network_policy_name,
                namespace,
                [{"op": "replace", "path": "/spec", "value": policy["spec"]}],
            )
        else:
            kube.create_if_absent(net.create_namespaced_network_policy, namespace, policy)
        POLICIES.remember(namespace, bot.network_policy_name, wanted_np)
        restored.append(
            Restored("NetworkPolicy", bot.network_policy_name, "edited" if exists else "deleted")
        )
    return restored


def _has_binary(namespace: str, name: str) -> bool:
    obj = _read("ConfigMap", namespace, name)
    return bool(obj and obj.get("binaryData"))
