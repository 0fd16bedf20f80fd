"""Where a LiveBot's trade database lives, so that its open trades outlive its pod: a database
and role of its own on the records' PostgreSQL server (its URL in an operator-owned Secret), or
else a PersistentVolumeClaim of its own. Both are owned by the LiveBot, not by a pod.

`ensure` runs before every pod creation; `remove` when the LiveBot is deleted. `local_storage`
tells the local executor what the pod's storage is, so its process keeps trades exactly as
long as the pod would.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tradebot import kube
from tradebot.controllers.bot_control import BotRef
from tradebot.domain import bots
from tradebot.domain.naming import child_name
from tradebot.executors.local_bots import PodStorage
from tradebot.records.bot_databases import (
    bot_database_name,
    bot_dsn,
    drop_bot_database,
    ensure_bot_database,
)
from tradebot.settings import Settings

USER_DATA_VOLUME = "user-data"


class StorageNotReady(Exception):
    """The pod's volume is not there yet (its claim is not bound)."""


def _secret_value(namespace: str, name: str, item: str) -> str | None:
    secret = kube.read_or_none(kube.core().read_namespaced_secret, name, namespace)
    raw = (secret.data or {}).get(item) if secret is not None else None
    return base64.b64decode(raw).decode() if raw else None


def _password(url: str) -> str | None:
    return unquote(urlsplit(url).password or "") or None


def ensure(bot: bots.BotInstance, settings: Settings) -> None:
    """The bot's trade storage exists (idempotent; safe to repeat after a crash anywhere).

    On PostgreSQL the password is generated once and kept first in the bot's Secret, then set
    on the role: a crash in between leaves a Secret whose password the next call sets."""
    if not bots.trade_db_on_postgres(settings):
        kube.create_if_absent(
            kube.core().create_namespaced_persistent_volume_claim,
            bot.namespace,
            bots.pvc(bot, settings),
        )
        return
    database = bot_database_name(bot.uid)
    stored = _secret_value(bot.namespace, bot.db_secret_name, bots.DB_URL_ITEM)
    password = _password(stored) if stored else None
    if password is None:
        # A letter first: Freqtrade turns an all-digit environment value into a number.
        password = "p" + secrets.token_urlsafe(32)
        kube.create_if_absent(
            kube.core().create_namespaced_secret,
            bot.namespace,
            bots.db_secret(bot, bot_dsn(settings.database_dsn, database, password)),
        )
        # A concurrent call may have created it first: what the Secret holds wins.
        stored = _secret_value(bot.namespace, bot.db_secret_name, bots.DB_URL_ITEM)
        password = (_password(stored) if stored else None) or password
    url = bot_dsn(settings.database_dsn, database, password)
    if stored != url:
        # The records server moved (host, port or options): the bot follows it.
        kube.core().patch_namespaced_secret(
            bot.db_secret_name, bot.namespace, {"stringData": {bots.DB_URL_ITEM: url}}
        )
    ensure_bot_database(settings.database_dsn, database, password, settings.bot_db_connection_limit)


ANNOTATION_RETAINED_FROM = "tradebot.dev/retained-from"


def remove(ref: BotRef, settings: Settings, reclaim_policy: str) -> bool:
    """The deleted LiveBot's trade database, as its spec.storage.reclaimPolicy says.

    Delete: its PostgreSQL database and role are dropped (its claim goes by garbage
    collection). Retain (the default, and whatever else is found in a spec that no longer
    validates): the database stays, and the claim is released from its owner, so open
    positions are never forgotten by a deletion. True if a database was dropped. Raises
    RecordsUnavailable while the server cannot be reached: retry then."""
    if reclaim_policy != "Delete":
        _retain_claim(ref)
        return False
    if not bots.trade_db_on_postgres(settings):
        return False
    return drop_bot_database(settings.database_dsn, bot_database_name(ref.uid))


def _retain_claim(ref: BotRef) -> None:
    """The claim without its owner reference (the garbage collector leaves it then), and
    annotated with the bot it held the trades of."""
    claim = child_name("bot-data", ref.name, ref.uid)
    core = kube.core()
    found = kube.read_or_none(core.read_namespaced_persistent_volume_claim, claim, ref.namespace)
    if found is None:
        return
    core.patch_namespaced_persistent_volume_claim(
        claim,
        ref.namespace,
        {
            "metadata": {
                "ownerReferences": None,
                "annotations": {ANNOTATION_RETAINED_FROM: f"LiveBot {ref.name} ({ref.uid})"},
            }
        },
    )


def _claim_dir(namespace: str, claim: str) -> Path:
    """The directory of the claim's volume: the local cluster provisions hostPath volumes."""
    core = kube.core()
    pvc = kube.read_or_none(core.read_namespaced_persistent_volume_claim, claim, namespace)
    volume = pvc.spec.volume_name if pvc is not None else None
    if not volume:
        raise StorageNotReady(f"claim {namespace}/{claim} is not bound")
    pv = kube.read_or_none(core.read_persistent_volume, volume)
    if pv is None or pv.spec.host_path is None:
        raise StorageNotReady(
            f"volume {volume} of claim {namespace}/{claim} is not a hostPath volume on this machine"
        )
    return Path(pv.spec.host_path.path)


def local_storage(pod: dict[str, Any]) -> tuple[PodStorage, dict[str, str]]:
    """The pod's trade storage as the local executor must play it, and the environment it
    adds (the DB URL read from its Secret). Raises StorageNotReady before the claim is bound."""
    namespace = str(pod["metadata"]["namespace"])
    spec = pod["spec"]
    container = next(c for c in spec["containers"] if c["name"] == bots.CONTAINER)
    args: list[str] = list(container.get("args") or [])
    db_url_arg = args[args.index("--db-url") + 1] if "--db-url" in args else None
    volume: dict[str, Any] = next(
        (v for v in spec.get("volumes") or [] if v["name"] == USER_DATA_VOLUME), {}
    )
    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if entry["name"] == bots.DB_URL_ENV and ref:
            value = _secret_value(namespace, ref["name"], ref["key"])
            if value is None:
                raise StorageNotReady(f"Secret {namespace}/{ref['name']} has no {ref['key']}")
            env[entry["name"]] = value
    return (
        PodStorage(
            str(pod["metadata"]["uid"]), _claim_dir(namespace, claim) if claim else None, db_url_arg
        ),
        env,
    )
