"""One monitoring round of a running bot: its REST API's figures into status and metrics, a
run record per pod life, a snapshot per interval (the dry-run evidence), and an incident when
its API stays silent for longer than spec.staleHeartbeat."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import kopf
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from kubernetes.client import V1Pod

from tradebot import kube
from tradebot.api.strategy import StrategySpec
from tradebot.api.types import parse_duration
from tradebot.controllers import bot_records, bot_storage, runtime
from tradebot.controllers.status import condition, event, status_time
from tradebot.domain import bots, evidence, monitoring, supervision
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable, Snapshot
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records import BotSnapshot

_log = logger(component="bot-monitoring")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def bot_url(
    bot: bots.BotInstance, strategy: StrategySpec, pod: V1Pod, credentials: bots.ApiCredentials
) -> str | None:
    settings = runtime.get().settings
    if settings.executor != "local":
        ip = pod.status.pod_ip if pod.status is not None else None
        return f"http://{ip}:{bots.API_PORT}" if ip else None
    # On kwok the pod runs nothing: run what it would run here (its config, code and trade
    # storage), against the exchange double.
    try:
        storage, storage_env = bot_storage.local_storage(kube.to_dict(pod))
    except bot_storage.StorageNotReady:
        return None
    env = {
        "FREQTRADE__API_SERVER__USERNAME": credentials.username,
        "FREQTRADE__API_SERVER__PASSWORD": credentials.password,
        "FREQTRADE__API_SERVER__JWT_SECRET_KEY": credentials.jwt_secret_key,
        "FREQTRADE__API_SERVER__WS_TOKEN": credentials.ws_token,
        **storage_env,
    }
    process = LocalBotExecutor(settings.local_state_dir).ensure(
        bot.uid, bot.config, bot.strategy_class, bot.strategy_code, env, storage
    )
    return process.url


class Round:
    """One round for one bot; `status` is what kopf read, `patch` what it will write."""

    def __init__(
        self,
        body: kopf.Body,
        status: dict[str, Any],
        patch: kopf.Patch,
        bot: bots.BotInstance,
        code_hash: str | None,
        generation: int,
        correlation_id: str,
    ) -> None:
        self.body = body
        self.status = status
        self.patch = patch
        self.bot = bot
        self.code_hash = code_hash
        self.generation = generation
        self.correlation_id = correlation_id
        self.now = dt.datetime.now(dt.UTC)

    def run(
        self,
        strategy: StrategySpec,
        pod: V1Pod,
        credentials: bots.ApiCredentials,
        running_since: dt.datetime | None,
    ) -> None:
        url = bot_url(self.bot, strategy, pod, credentials)
        if url is None:
            return
        self.supervise(pod, credentials)
        try:
            snap = BotClient(
                url, credentials.username, credentials.password, timeout=1.5
            ).snapshot()
        except (BotUnreachable, BotApiError) as e:
            # The message names the URL and the failure, never the credentials.
            condition(
                self.status,
                self.patch,
                "Reachable",
                False,
                "BotUnreachable",
                str(e),
                self.generation,
            )
            self._silence(str(e), running_since)
            return
        update = monitoring.status_update(self.status, snap, self.now)
        self.patch.status.update(update)
        self.patch.status["staleIncidentId"] = None
        condition(
            self.status,
            self.patch,
            "Reachable",
            True,
            "Heartbeat",
            f"bot state {snap.state}",
            self.generation,
        )
        self._metrics(snap, update)
        if running_since is not None and self.code_hash:
            self._record(snap, update, running_since, self.code_hash)

    def supervise(self, pod: V1Pod, credentials: bots.ApiCredentials) -> None:
        """Marks the pod supervised (the dead-man's switch), whether or not the bot's API
        answers: the operator is here and watching it either way."""
        deadline = parse_duration(self.bot.spec.supervision.deadline)
        annotations = dict((pod.metadata.annotations if pod.metadata else None) or {})
        if supervision.needs_mark(annotations, self.now, deadline):
            body = supervision.mark_patch(self.now)
            try:
                kube.core().patch_namespaced_pod(self.bot.pod_name, self.bot.namespace, body)
                annotations.update(body["metadata"]["annotations"])
            except ApiException as e:
                # The next round tries again: a mark is due long before the deadline.
                _log.warning(
                    "supervision mark not written",
                    namespace=self.bot.namespace,
                    bot=self.bot.name,
                    status=e.status,
                    reason=e.reason,
                    correlation_id=self.correlation_id,
                )
        settings = runtime.get().settings
        if settings.executor == "local":
            LocalBotExecutor(settings.local_state_dir).supervise(
                self.bot.uid,
                annotations,
                deadline,
                {
                    bots.API_SECRET_ITEMS["username"]: credentials.username,
                    bots.API_SECRET_ITEMS["password"]: credentials.password,
                },
            )

    def _metrics(self, snap: Snapshot, update: dict[str, Any]) -> None:
        labels = (self.bot.namespace, self.bot.name)
        metrics.BOT_EQUITY.labels(*labels).set(float(snap.total_balance))
        metrics.BOT_OPEN_TRADES.labels(*labels).set(snap.open_trades)
        metrics.BOT_PROFIT.labels(*labels).set(float(snap.closed_profit))
        metrics.BOT_DRAWDOWN.labels(*labels).set(float(update.get("drawdown") or 0))
        metrics.BOT_HEARTBEAT.labels(*labels).set(self.now.timestamp())

    def _record(
        self, snap: Snapshot, update: dict[str, Any], running_since: dt.datetime, code_hash: str
    ) -> None:
        bot = self.bot
        run_id = evidence.bot_run_id(bot.uid, running_since)
        if self.status.get("runId") != run_id and bot_records.write_run(
            run_id=run_id,
            uid=bot.uid,
            namespace=bot.namespace,
            name=bot.name,
            mode=bot.spec.mode,
            status="running",
            code_hash=code_hash,
            config_hash=bot.config_hash,
            started_at=running_since,
            correlation_id=self.correlation_id,
        ):
            self.patch.status["runId"] = run_id
        interval = runtime.get().settings.snapshot_interval_seconds
        taken_at = evidence.floor_to(self.now, interval)
        if status_time(self.status.get("lastSnapshotAt")) == taken_at:
            return
        # The status figures: already exact to 8 places.
        written = bot_records.write_snapshot(
            BotSnapshot(
                bot_uid=bot.uid,
                namespace=bot.namespace,
                name=bot.name,
                run_id=run_id,
                code_hash=code_hash,
                mode=bot.spec.mode,
                taken_at=taken_at,
                profit=Decimal(update["profit"]),
                drawdown=Decimal(update["drawdown"]),
                open_trades=snap.open_trades,
                equity=Decimal(update["equity"]),
            )
        )
        if written:
            self.patch.status["lastSnapshotAt"] = _iso(taken_at)

    def _silence(self, error: str, running_since: dt.datetime | None) -> None:
        """An incident once the API has been silent for longer than spec.staleHeartbeat."""
        bot = self.bot
        # Counted from when this process began watching at the earliest: a heartbeat left by
        # an operator that was down says nothing of how long the bot itself was silent.
        marks = [
            m
            for m in (status_time(self.status.get("lastHeartbeat")), running_since)
            if m is not None
        ]
        if not marks:
            return
        since = max(marks)
        silent = self.now - max(since, runtime.get().watching_since)
        if silent <= parse_duration(bot.spec.stale_heartbeat):
            return
        incident_id = evidence.stale_incident_id(bot.uid, since)
        if self.status.get("staleIncidentId") == incident_id:
            return
        description = (
            f"LiveBot {bot.name}: its API has not answered for "
            f"{int(silent.total_seconds())}s (since {_iso(since)}, limit "
            f"{bot.spec.stale_heartbeat}): {error}"
        )
        recorded = bot_records.write_incident(
            bot_records.incident(
                incident_id=incident_id,
                namespace=bot.namespace,
                source_kind="LiveBot",
                source_name=bot.name,
                source_uid=bot.uid,
                severity="warning",
                reason="staleHeartbeat",
                description=description,
                bots=(bot.name,),
                run_id=self.status.get("runId"),
                figures={"silentSeconds": Decimal(int(silent.total_seconds()))},
                created_at=self.now,
                correlation_id=self.correlation_id,
            )
        )
        if recorded:
            self.patch.status["staleIncidentId"] = incident_id
            event(self.body, "HeartbeatStale", description, warning=True)
            _log.warning(
                "bot heartbeat stale",
                namespace=bot.namespace,
                bot=bot.name,
                incident=incident_id,
                silent_seconds=int(silent.total_seconds()),
                correlation_id=self.correlation_id,
            )
