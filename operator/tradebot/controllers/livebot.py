"""LiveBot controller: one operator-owned pod per bot, and only when it is safe.

Each round re-derives everything from the cluster: a tripped breaker, `suspend`, a Strategy
that is not Ready, failing promotion gates, missing credentials or an account held by another
bot all mean no pod (an existing one is stopped). Otherwise the bot's API Secret, ConfigMap,
NetworkPolicy, account Lease and Pod are ensured, in that order, each under a deterministic
name, so a repeated or interrupted round creates nothing twice.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tradebot import kube
from tradebot.api.backtest import BacktestStatus
from tradebot.api.base import GROUP, VERSION
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import (
    bot_control,
    bot_monitoring,
    bot_records,
    bot_storage,
    cache,
    runtime,
)
from tradebot.controllers.status import condition, drop_unchanged, event, status_time
from tradebot.controllers.strategy import CodeUnavailable, read_code
from tradebot.domain import account_lease, bots, evidence, gates
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.observability import metrics
from tradebot.observability.logging import logger

PLURAL = "livebots"
LABEL_ACCOUNT = "tradebot.dev/account"
API_USERNAME = "tradebot-operator"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (
                op == "NotIn" and present and labels[key] in values) or (
                op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


@dataclass(frozen=True)
class OpenBreaker:
    name: str
    action: bot_control.StopAction
    force_exit: bool
    # The breaker is stopping its bots right now (tripped moments ago, incident not yet
    # recorded): a second stop of every bot from here would only compete with it.
    stopping: bool = False


# How long a fresh trip is left to the breaker before each LiveBot stops itself too.
BREAKER_GRACE = dt.timedelta(seconds=10)


def tripped_message(breaker: str) -> str:
    return f"CircuitBreaker {breaker} is open: no pod until it is reset"


def tripped_by(labels: dict[str, str], breakers: list[dict[str, Any]]) -> OpenBreaker | None:
    """An Open CircuitBreaker among `breakers` that selects this bot, if any (one with action
    stop before one with stopEntries: the stricter wins). HalfOpen lets bots run again on
    probation; the breaker opens again if a limit is crossed."""
    now = dt.datetime.now(dt.UTC)

    def stopping(status: dict[str, Any]) -> bool:
        at = status_time(status.get("trippedAt"))
        if at is None:
            return False
        handled = str(status.get("incidentId") or "").endswith(evidence.stamp(at))
        return not handled and now - at < BREAKER_GRACE

    found = [OpenBreaker(str(cb["metadata"]["name"]),
                         "stopEntries" if cb["spec"].get("action") == "stopEntries" else "stop",
                         bool(cb["spec"].get("forceExit")),
                         stopping(cb.get("status") or {}))
             for cb in breakers
             if (cb.get("status") or {}).get("state") == "Open"
             and selects(cb["spec"].get("selector") or {}, labels)]
    found.sort(key=lambda b: (b.action != "stop", b.name))
    return found[0] if found else None


def read_breakers(namespace: str) -> list[dict[str, Any]]:
    """The namespace's CircuitBreakers as the API server has them now (not as last seen)."""
    return list(kube.custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, "circuitbreakers")["items"])


def _create(fn: Any, namespace: str, body: dict[str, Any]) -> None:
    try:
        fn(namespace, body)
    except ApiException as e:
        if not kube.is_conflict(e):
            raise


def _credentials(namespace: str, bot: bots.BotInstance) -> bots.ApiCredentials:
    """The bot API's credentials: generated once, kept in the operator-owned Secret."""
    ref = bot_control.BotRef(namespace, bot.name, bot.uid)
    found = bot_control.api_credentials(ref)
    if found is not None:
        return found
    # A letter first: Freqtrade turns an all-digit environment value into a number.
    credentials = bots.ApiCredentials(
        API_USERNAME, "p" + secrets.token_urlsafe(24), "j" + secrets.token_urlsafe(40),
        "w" + secrets.token_urlsafe(24))
    _create(kube.core().create_namespaced_secret, namespace, bots.api_secret(bot, credentials))
    # A concurrent round may have created it first: what the Secret holds wins.
    return bot_control.api_credentials(ref) or credentials


def _missing_credentials(namespace: str, spec: LiveBotSpec) -> str | None:
    """Why the exchange credentials are unusable, or None. Only key names are looked at:
    the operator never reads a key's value."""
    ref = spec.exchange.credentials_secret_ref
    if spec.mode == "dryRun":
        return None
    if ref is None:
        return "exchange.credentialsSecretRef is required for testnet and live"
    secret = kube.read_or_none(kube.core().read_namespaced_secret, ref.name, namespace)
    if secret is None:
        return f"Secret {namespace}/{ref.name} not found"
    needed = [ref.api_key_key, ref.api_secret_key] + (
        [ref.password_key] if ref.password_key else [])
    missing = [k for k in needed if not (secret.data or {}).get(k)]
    if missing:
        return f"Secret {namespace}/{ref.name} lacks key(s): {', '.join(missing)}"
    return None


def _gates(namespace: str, name: str, uid: str, spec: LiveBotSpec, code_hash: str | None
           ) -> list[gates.GateResult]:
    if spec.mode == "dryRun":
        return []
    backtest = None
    dry_run = gates.DryRunEvidence()
    unreadable: str | None = None
    if spec.promotion is not None:
        ref = spec.promotion.backtest_ref.name
        bt = kube.read_or_none(kube.custom().get_namespaced_custom_object, GROUP, VERSION,
                               namespace, "backtests", ref)
        status = BacktestStatus.model_validate(bt.get("status") or {}) if bt else None
        backtest = gates.BacktestEvidence.from_status(ref, status) if bt else None
        if code_hash is not None and spec.promotion.min_dry_run_hours > 0:
            try:
                dry_run = bot_records.dry_run_evidence(namespace, name, uid, code_hash)
            except bot_records.EvidenceUnavailable as e:
                unreadable = f"dry-run history cannot be read now: {e}"
    results = gates.evaluate_gates(spec, strategy_code_hash=code_hash, backtest=backtest,
                                   dry_run=dry_run, now=dt.datetime.now(dt.UTC))
    if unreadable is not None:
        # Fail shut: evidence that cannot be read is no evidence.
        results = [gates.GateResult(g.name, False, unreadable) if g.name == gates.GATE_DRY_RUN
                   else g for g in results]
    return results


def _lease(namespace: str, name: str, uid: str, spec: LiveBotSpec
           ) -> tuple[account_lease.LeaseDecision, str]:
    ref = spec.exchange.credentials_secret_ref
    key = account_lease.account_key(namespace, spec.exchange.name,
                                    ref.name if ref is not None and spec.mode != "dryRun"
                                    else None, name)
    lease_id = account_lease.lease_name(key)
    coordination = kube.coordination()
    existing = kube.read_or_none(coordination.read_namespaced_lease, lease_id, namespace)
    leases = [account_lease.Lease.from_manifest(kube.to_dict(existing))] if existing else []
    others: list[Any] = []
    if not leases or leases[0].holder_identity != uid:
        # Only a bot that does not hold the Lease needs to know whose pods still run.
        pods = kube.core().list_namespaced_pod(
            namespace, label_selector=f"{LABEL_ACCOUNT}={lease_id}").items
        others = [p for p in pods
                  if (p.metadata.labels or {}).get(bot_control.OWNER_LABEL) != uid
                  and p.status.phase not in ("Succeeded", "Failed")]
    duration = dt.timedelta(seconds=runtime.get().settings.account_lease_seconds)
    now = dt.datetime.now(dt.UTC)
    decision = account_lease.decide_lease(uid, key, leases, now, duration,
                                          live_pods_of_other_holders=len(others))
    if not decision.may_run:
        return decision, lease_id
    body = account_lease.lease_manifest(key, namespace=namespace, bot_name=name, bot_uid=uid,
                                        now=now, lease_duration=duration,
                                        transitions=decision.transitions)
    if decision.action == "renew" and existing.spec.renew_time is not None and \
            now - existing.spec.renew_time < duration / 3:
        # Ours and fresh: renewing every round would be a write per bot every two seconds.
        return decision, lease_id
    if decision.action == "create":
        coordination.create_namespaced_lease(namespace, body)
    else:
        # Replace with the resourceVersion read: of two bots taking over at once, one wins.
        body["metadata"]["resourceVersion"] = existing.metadata.resource_version
        if decision.action == "renew":
            body["spec"]["acquireTime"] = kube.to_dict(existing)["spec"].get("acquireTime")
        coordination.replace_namespaced_lease(lease_id, namespace, body)
    return decision, lease_id


def _phase(patch: kopf.Patch, status: dict[str, Any], phase: str, reason: str, message: str,
           generation: int, ready: bool = False) -> None:
    patch.status.update({"phase": phase, "message": message,
                         "observedGeneration": generation})
    condition(status, patch, "Ready", ready, reason, message, generation)


# uid -> (when its last full round started, what it saw). Only a pacer for running bots: if
# it is lost (a restart), the next round is a full one; nothing is decided from it.
_last_full_round: dict[str, tuple[float, tuple[Any, ...]]] = {}
_pacer_lock = threading.Lock()


def _polled_recently(uid: str, generation: int, meta: kopf.Meta, status: dict[str, Any]
                     ) -> bool:
    """A Running bot whose spec and labels are unchanged gets a full round (checks and
    monitoring) every TRADEBOT_BOT_POLL_SECONDS, not every timer tick: hundreds of bots would
    otherwise keep the API server busy with rounds that change nothing. A breaker does not
    wait for this: it stops its bots itself."""
    seen = (generation, tuple(sorted((meta.get("labels") or {}).items())))
    now = time.monotonic()
    with _pacer_lock:
        last = _last_full_round.get(uid)
        if (status.get("phase") == "Running" and last is not None and last[1] == seen
                and now - last[0] < runtime.get().settings.bot_poll_seconds):
            return True
        _last_full_round[uid] = (now, seen)
    return False


# Namespaces where a breaker is stopping its bots right now -> how many breakers. Only a
# priority: rounds that start meanwhile wait for the next tick (stops first, bookkeeping
# after); lost with the process, and nothing is decided from it.
_fleet_stops: Counter[str] = Counter()
_fleet_lock = threading.Lock()


@contextmanager
def stopping_fleet(namespace: str) -> Iterator[None]:
    with _fleet_lock:
        _fleet_stops[namespace] += 1
    try:
        yield
    finally:
        with _fleet_lock:
            _fleet_stops[namespace] -= 1
            if _fleet_stops[namespace] <= 0:
                del _fleet_stops[namespace]


def fleet_stop_in_progress(namespace: str) -> bool:
    return namespace in _fleet_stops


_rounds: ThreadPoolExecutor | None = None
_rounds_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The threads full rounds run on (TRADEBOT_HANDLER_THREADS): each may wait on a bot's
    API for a second, so hundreds of bots need more than kopf's default."""
    global _rounds
    with _rounds_lock:
        if _rounds is None:
            _rounds = ThreadPoolExecutor(max_workers=runtime.get().settings.handler_threads,
                                         thread_name_prefix="livebot")
        return _rounds


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def livebot_deleted(name: str, namespace: str | None, uid: str, **_: Any) -> None:
    """The pod goes with its owner; a local bot process must be stopped by us."""
    assert namespace is not None
    bot_control.remove_pod(bot_control.BotRef(namespace, name, uid))
    metrics.forget_bot(namespace, name)
    with _pacer_lock:
        _last_full_round.pop(uid, None)


class _TripInProgress(Exception):
    """A breaker began stopping bots in this namespace while this round ran."""


def _give_way(namespace: str) -> None:
    if fleet_stop_in_progress(namespace):
        raise _TripInProgress


class _NeedsFreshRound(Exception):
    """A round that read from the operator's cached view reached a pod creation: that is
    decided again from the API server's answers only."""


@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0)
async def reconcile_livebot(meta: kopf.Meta, status: kopf.Status, namespace: str | None,
                            uid: str, **kwargs: Any) -> None:
    # Deciding to skip is cheap and happens here in kopf's event loop: with hundreds of bots,
    # a thread for every tick that only finds nothing to do would cost more than the rounds.
    assert namespace is not None  # the kinds are namespaced
    if fleet_stop_in_progress(namespace):
        return  # a breaker is stopping bots here: it goes first; the next tick comes in 2 s
    if _polled_recently(uid, int(meta.get("generation") or 0), meta, dict(status)):
        return
    await runtime.in_thread(_pool(), _reconcile, meta=meta, status=status,
                            namespace=namespace, uid=uid, **kwargs)


@metrics.counted("LiveBot")
def _reconcile(patch: kopf.Patch, status: kopf.Status, **kwargs: Any) -> None:
    namespace = str(kwargs["namespace"])
    try:
        try:
            _round(patch=patch, status=status, fresh=False, **kwargs)
        except _NeedsFreshRound:
            _round(patch=patch, status=status, fresh=True, **kwargs)
        _give_way(namespace)
    except _TripInProgress:
        # Its reads and writes would only compete with the breaker's stops for the API
        # server; a later round does it all again.
        patch.clear()
        return
    # A held bot's round mostly restates its status: no write for what is already there.
    drop_unchanged(patch, status)


def _round(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta,
           namespace: str, name: str, uid: str, patch: kopf.Patch, fresh: bool,
           **kwargs: Any) -> None:
    """One round: `fresh` False reads breakers and the Strategy from the operator's cached
    view (controllers/cache.py), True from the API server."""
    _give_way(namespace)
    generation = int(meta.get("generation") or 0)
    current = dict(status)
    correlation_id = f"{uid}/{generation}"
    log = logger(kind="LiveBot", namespace=namespace, name=name, correlation_id=correlation_id)
    ref = bot_control.BotRef(namespace, name, uid)

    def hold(phase: str, reason: str, message: str, warning: bool = True,
             action: bot_control.StopAction = "stop", force_exit: bool = False) -> None:
        # A bot held the same way in an earlier round was stopped then; while nothing of it
        # runs, a stop every round would only be hundreds of deletions a second to the API
        # server, just when a tripped fleet needs it. stopEntries is repeated by design.
        held_before = (status.get("phase") == phase and not status.get("podName")
                       and action != "stopEntries")
        if held_before and not bot_control.still_running(ref):
            outcome = bot_control.StopOutcome()
        else:
            # The API is tried only while the bot was last seen answering: a bot already
            # stopped (or never reached) would only cost the timeout, every round.
            outcome = bot_control.stop(ref, action, force_exit=force_exit,
                                       use_api=bot_control.answered_last(current)
                                       or action == "stopEntries")
        if status.get("phase") != phase or status.get("message") != message:
            event(body, reason, f"{message}; {outcome.describe()}", warning=warning)
            log.info("bot held", phase=phase, reason=reason, message=message,
                     pod_removed=outcome.pod_removed, api_calls=outcome.api_calls,
                     api_error=outcome.api_error)
        if outcome.pod_removed or not status.get("podName") or action != "stopEntries":
            patch.status["podName"] = None
            condition(current, patch, "Reachable", False, "Stopped", "the bot is stopped",
                      generation)
            metrics.forget_bot(namespace, name)
            run_id = current.get("runId")
            if run_id and bot_records.write_run(
                    run_id=run_id, uid=uid, namespace=namespace, name=name,
                    mode=str(current.get("mode") or "dryRun"),
                    status="failed" if phase == "Tripped" else "succeeded",
                    finished_at=dt.datetime.now(dt.UTC),
                    error=message if phase == "Tripped" else None,
                    correlation_id=correlation_id):
                patch.status["runId"] = None
        if phase == "Tripped":
            # A reset accepts the loss: the windows the breaker measures start again from the
            # next heartbeat, or the same figures would trip it again at once.
            patch.status.update(dict.fromkeys(
                ("equity", "peakEquity", "dayStartEquity", "day", "drawdown",
                 "consecutiveLosses", "lastHeartbeat", "runningSince")))
        _phase(patch, current, phase, reason, message, generation)

    try:
        model = LiveBotSpec.model_validate(dict(spec))
    except ValidationError as e:
        hold("Failed", "InvalidSpec", f"invalid spec: {e.errors()[0]['msg']}")
        return
    labels = dict(meta.get("labels") or {})
    breaker = tripped_by(labels, read_breakers(namespace) if fresh
                         else cache.entries(kwargs[cache.BREAKERS], namespace))
    if breaker is not None:
        if breaker.stopping:
            # The breaker is stopping this bot now; no pod is created while it is Open.
            _phase(patch, current, "Tripped", "BreakerOpen", tripped_message(breaker.name),
                   generation)
            return
        hold("Tripped", "BreakerOpen", tripped_message(breaker.name), action=breaker.action,
             force_exit=breaker.force_exit)
        return
    if model.suspend:
        hold("Suspended", "Suspended", "spec.suspend is true", warning=False,
             action="suspend")
        return

    if fresh:
        strategy = kube.read_or_none(kube.custom().get_namespaced_custom_object, GROUP,
                                     VERSION, namespace, "strategies", model.strategy_ref.name)
    else:
        strategy = next(iter(cache.entries(kwargs[cache.STRATEGIES],
                                           (namespace, model.strategy_ref.name))), None)
    strategy_status = (strategy or {}).get("status") or {}
    if strategy is None or strategy_status.get("phase") != "Ready":
        hold("Pending", "StrategyNotReady", f"Strategy {model.strategy_ref.name} is "
             f"{'missing' if strategy is None else strategy_status.get('phase') or 'not ready'}")
        return
    code_hash = strategy_status.get("codeHash")

    results = _gates(namespace, name, uid, model, code_hash)
    patch.status["gates"] = [{"name": g.name, "passed": g.passed, "message": g.message}
                             for g in results] or None
    if not gates.all_passed(results):
        failed = "; ".join(g.message for g in results if not g.passed)
        hold("Blocked", "GatesNotPassed", f"mode {model.mode} blocked: {failed}")
        return
    missing = _missing_credentials(namespace, model)
    if missing is not None:
        hold("Blocked", "CredentialsMissing", missing)
        return

    try:
        strategy_spec = StrategySpec.model_validate(strategy["spec"])
        code = read_code(strategy_spec, namespace)
        # The username, like every credential, reaches the pod from its Secret.
        config = trade_config(model, strategy_spec, api_port=bots.API_PORT, api_username="",
                              exchange_double_url=runtime.get().settings.exchange_double_url)
    except (CodeUnavailable, ValueError) as e:
        hold("Blocked", "InvalidConfig", str(e))
        return
    bot = bots.BotInstance(namespace, name, uid, model, model.strategy_ref.name,
                           strategy_spec.class_name, code, config)

    _give_way(namespace)
    decision, lease_id = _lease(namespace, name, uid, model)
    if not decision.may_run:
        hold("Blocked", "AccountInUse", decision.message)
        return

    settings = runtime.get().settings
    credentials = _credentials(namespace, bot)
    existing = kube.read_or_none(kube.core().read_namespaced_pod, bot.pod_name, namespace)
    if existing is not None:
        have = (existing.metadata.annotations or {}).get(bots.ANNOTATION_CONFIG_HASH)
        if existing.metadata.deletion_timestamp:
            _phase(patch, current, "Pending", "Restarting",
                   f"waiting for pod {bot.pod_name} to terminate", generation)
            return
        if have != bot.config_hash:
            # The config or code changed: the old pod goes first; the next round starts the
            # new one, so two pods never trade the account at once.
            hold("Pending", "Restarting", "config changed; replacing the pod", warning=False)
            return
        pod_phase = existing.status.phase
    else:
        if not fresh:
            raise _NeedsFreshRound
        # The pod's companions first (a pod never starts without its config or its network
        # policy); a running pod with the same config hash has them already.
        _create(kube.core().create_namespaced_config_map, namespace, bots.config_map(bot))
        kube.core().patch_namespaced_config_map(bot.config_map_name, namespace,
                                                {"data": bot.config_data()})
        _create(kube.networking().create_namespaced_network_policy, namespace,
                bots.network_policy(bot, operator_namespace=settings.operator_namespace))
        bot_storage.ensure(bot, settings)  # h-positions: the lead redoes this in the new code
        desired = bots.pod(bot, settings)
        desired["metadata"]["labels"].update({LABEL_ACCOUNT: lease_id,
                                              bot_control.OWNER_LABEL: uid})
        _create(kube.core().create_namespaced_pod, namespace, desired)
        # A breaker that opened after the read above may have stopped its bots before this pod
        # existed. It writes Open before it stops anything, so a second read sees it.
        opened = tripped_by(labels, read_breakers(namespace))
        if opened is not None:
            bot_control.remove_pod(ref)
            log.warning("bot pod removed at once: a breaker opened meanwhile",
                        pod=bot.pod_name, breaker=opened.name)
            _phase(patch, current, "Tripped", "BreakerOpen", tripped_message(opened.name),
                   generation)
            return
        event(body, "PodCreated", f"pod {bot.pod_name} created in mode {model.mode}",
              warning=False)
        log.info("bot pod created", pod=bot.pod_name, mode=model.mode)
        pod_phase = "Pending"
    patch.status.update({"podName": bot.pod_name, "mode": model.mode, "codeHash": code_hash})
    if pod_phase == "Running":
        assert existing is not None
        if settings.executor == "local" and model.mode != "dryRun":
            hold("Blocked", "LocalExecutorDryRunOnly",
                 "the local executor runs dry-run bots only (it never holds exchange keys)")
            return
        _phase(patch, current, "Running", "PodRunning", f"running in mode {model.mode}",
               generation, ready=True)
        started = existing.status.start_time
        patch.status["runningSince"] = started.isoformat().replace("+00:00", "Z") \
            if started else current.get("runningSince")
        _give_way(namespace)
        bot_monitoring.Round(body, current, patch, bot, code_hash, generation,
                             correlation_id).run(strategy_spec, existing, credentials, started)
    else:
        _phase(patch, current, "Pending", "PodStarting", f"pod {bot.pod_name} is {pod_phase}",
               generation)
