"""LiveBot controller: one operator-owned pod per bot, and only when it is safe.

Each round re-derives everything from the cluster: a tripped breaker, `suspend`, a Strategy
that is not Ready, failing promotion gates, missing credentials or an account held by another
bot all mean no pod (an existing one is stopped). Otherwise the bot's API Secret, ConfigMap,
NetworkPolicy, account Lease and Pod are ensured, in that order, each under a deterministic
name, so a repeated or interrupted round creates nothing twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tradebot import kube
from tradebot.api.backtest import BacktestStatus
from tradebot.api.base import GROUP, VERSION
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import runtime
from tradebot.controllers.status import condition, event
from tradebot.controllers.strategy import CodeUnavailable, read_code
from tradebot.domain import account_lease, bots, gates, monitoring
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.domain.naming import child_name
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable
from tradebot.observability import metrics
from tradebot.observability.logging import logger

PLURAL = "livebots"
LABEL_ACCOUNT = "tradebot.dev/account"
API_USERNAME = "tradebot-operator"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
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


def tripped_by(namespace: str, labels: dict[str, str]) -> str | None:
    """The name of an Open CircuitBreaker that selects this bot, if any. (HalfOpen lets bots
    run again on probation; the breaker opens again if a limit is crossed.)"""
    breakers = kube.custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, "circuitbreakers")["items"]
    for cb in breakers:
        if (cb.get("status") or {}).get("state") == "Open" and _selects(
                cb["spec"].get("selector") or {}, labels):
            return str(cb["metadata"]["name"])
    return None


def _read(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ApiException as e:
        if kube.is_not_found(e):
            return None
        raise


def _create(fn: Any, namespace: str, body: dict[str, Any]) -> None:
    try:
        fn(namespace, body)
    except ApiException as e:
        if not kube.is_conflict(e):
            raise


def stop_pod(namespace: str, pod_name: str) -> bool:
    """Deletes the bot's pod (Freqtrade shuts down cleanly on SIGTERM). True if one existed."""
    try:
        kube.core().delete_namespaced_pod(pod_name, namespace, grace_period_seconds=30)
    except ApiException as e:
        if kube.is_not_found(e):
            return False
        raise
    return True


def stop_bot(namespace: str, pod_name: str, uid: str) -> bool:
    """Stops the bot wherever it runs: its pod, and its local process (local executor)."""
    stopped = stop_pod(namespace, pod_name)
    settings = runtime.get().settings
    if settings.executor == "local":
        stopped = LocalBotExecutor(settings.local_state_dir).stop(uid) or stopped
    return stopped


def _credentials(namespace: str, bot: bots.BotInstance) -> bots.ApiCredentials:
    """The bot API's credentials: generated once, kept in the operator-owned Secret."""
    secret = _read(kube.core().read_namespaced_secret, bot.api_secret_name, namespace)
    if secret is not None and secret.data:
        data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        return bots.ApiCredentials(data["username"], data["password"],
                                   data["jwt-secret-key"], data["ws-token"])
    # A letter first: Freqtrade turns an all-digit environment value into a number.
    credentials = bots.ApiCredentials(
        API_USERNAME, "p" + secrets.token_urlsafe(24), "j" + secrets.token_urlsafe(40),
        "w" + secrets.token_urlsafe(24))
    _create(kube.core().create_namespaced_secret, namespace, bots.api_secret(bot, credentials))
    return _credentials(namespace, bot) if secret is None else credentials


def _missing_credentials(namespace: str, spec: LiveBotSpec) -> str | None:
    """Why the exchange credentials are unusable, or None. Only key names are looked at:
    the operator never reads a key's value."""
    ref = spec.exchange.credentials_secret_ref
    if spec.mode == "dryRun":
        return None
    if ref is None:
        return "exchange.credentialsSecretRef is required for testnet and live"
    secret = _read(kube.core().read_namespaced_secret, ref.name, namespace)
    if secret is None:
        return f"Secret {namespace}/{ref.name} not found"
    needed = [ref.api_key_key, ref.api_secret_key] + (
        [ref.password_key] if ref.password_key else [])
    missing = [k for k in needed if not (secret.data or {}).get(k)]
    if missing:
        return f"Secret {namespace}/{ref.name} lacks key(s): {', '.join(missing)}"
    return None


def _gates(namespace: str, spec: LiveBotSpec, code_hash: str | None
           ) -> list[gates.GateResult]:
    if spec.mode == "dryRun":
        return []
    backtest = None
    if spec.promotion is not None:
        ref = spec.promotion.backtest_ref.name
        bt = _read(kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace,
                   "backtests", ref)
        status = BacktestStatus.model_validate(bt.get("status") or {}) if bt else None
        backtest = gates.BacktestEvidence.from_status(ref, status) if bt else None
    # Dry-run history comes from the records' bot snapshots (records issue); until they exist
    # the gate sees none, so it can only pass when minDryRunHours is 0.
    return gates.evaluate_gates(spec, strategy_code_hash=code_hash, backtest=backtest,
                                dry_run=gates.DryRunEvidence(), now=dt.datetime.now(dt.UTC))


def _lease(namespace: str, name: str, uid: str, spec: LiveBotSpec
           ) -> tuple[account_lease.LeaseDecision, str]:
    ref = spec.exchange.credentials_secret_ref
    key = account_lease.account_key(namespace, spec.exchange.name,
                                    ref.name if ref is not None and spec.mode != "dryRun"
                                    else None, name)
    lease_id = account_lease.lease_name(key)
    coordination = kube.coordination()
    existing = _read(coordination.read_namespaced_lease, lease_id, namespace)
    leases = [account_lease.Lease.from_manifest(kube.to_dict(existing))] if existing else []
    pods = kube.core().list_namespaced_pod(
        namespace, label_selector=f"{LABEL_ACCOUNT}={lease_id}").items
    others = [p for p in pods if (p.metadata.labels or {}).get("tradebot.dev/owner-uid") != uid
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
    if decision.action == "create":
        coordination.create_namespaced_lease(namespace, body)
    else:
        # Replace with the resourceVersion read: of two bots taking over at once, one wins.
        body["metadata"]["resourceVersion"] = existing.metadata.resource_version
        if decision.action == "renew":
            body["spec"]["acquireTime"] = kube.to_dict(existing)["spec"].get("acquireTime")
        coordination.replace_namespaced_lease(lease_id, namespace, body)
    return decision, lease_id


def _bot_url(bot: bots.BotInstance, strategy: StrategySpec, pod: Any,
             credentials: bots.ApiCredentials) -> str | None:
    settings = runtime.get().settings
    if settings.executor != "local":
        return f"http://{pod.status.pod_ip}:{bots.API_PORT}" if pod.status.pod_ip else None
    # On kwok the pod runs nothing: run the same bot here, against the exchange double.
    config = trade_config(bot.spec, strategy, api_port=bots.API_PORT,
                          api_username=credentials.username,
                          exchange_double_url=settings.exchange_double_url)
    env = {"FREQTRADE__API_SERVER__USERNAME": credentials.username,
           "FREQTRADE__API_SERVER__PASSWORD": credentials.password,
           "FREQTRADE__API_SERVER__JWT_SECRET_KEY": credentials.jwt_secret_key,
           "FREQTRADE__API_SERVER__WS_TOKEN": credentials.ws_token}
    process = LocalBotExecutor(settings.local_state_dir).ensure(
        bot.uid, config, bot.strategy_class, bot.strategy_code, env)
    return process.url


def _monitor(status: dict[str, Any], patch: kopf.Patch, bot: bots.BotInstance,
             strategy: StrategySpec, pod: Any, credentials: bots.ApiCredentials,
             generation: int) -> None:
    """One monitoring round: the bot's figures into status, or a condition saying why not."""
    url = _bot_url(bot, strategy, pod, credentials)
    if url is None:
        return
    try:
        snap = BotClient(url, credentials.username, credentials.password, timeout=1.5).snapshot()
    except (BotUnreachable, BotApiError) as e:
        # The message names the URL and the failure, never the credentials.
        condition(status, patch, "Reachable", False, "BotUnreachable", str(e), generation)
        return
    patch.status.update(monitoring.status_update(status, snap, dt.datetime.now(dt.UTC)))
    condition(status, patch, "Reachable", True, "Heartbeat", f"bot state {snap.state}",
              generation)
    metrics.BOT_EQUITY.labels(bot.namespace, bot.name).set(float(snap.total_balance))
    metrics.BOT_OPEN_TRADES.labels(bot.namespace, bot.name).set(snap.open_trades)


def _phase(patch: kopf.Patch, status: dict[str, Any], phase: str, reason: str, message: str,
           generation: int, ready: bool = False) -> None:
    patch.status.update({"phase": phase, "message": message,
                         "observedGeneration": generation})
    condition(status, patch, "Ready", ready, reason, message, generation)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def livebot_deleted(name: str, namespace: str | None, uid: str, **_: Any) -> None:
    """The pod goes with its owner; a local bot process must be stopped by us."""
    assert namespace is not None
    stop_bot(namespace, child_name("bot", name, uid), uid)


@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0)
@metrics.counted("LiveBot")
def reconcile_livebot(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta,
                      namespace: str | None, name: str, uid: str, patch: kopf.Patch,
                      **_: Any) -> None:
    assert namespace is not None  # the kinds are namespaced
    generation = int(meta.get("generation") or 0)
    current = dict(status)
    log = logger(kind="LiveBot", namespace=namespace, name=name,
                 correlation_id=f"{uid}/{generation}")
    pod_name = child_name("bot", name, uid)  # as bots.BotInstance names it

    def hold(phase: str, reason: str, message: str, warning: bool = True) -> None:
        stopped = stop_bot(namespace, pod_name, uid)
        if status.get("phase") != phase or status.get("message") != message:
            event(body, reason, message + ("; its pod was stopped" if stopped else ""),
                  warning=warning)
            log.info("bot held", phase=phase, reason=reason, message=message, stopped=stopped)
        patch.status["podName"] = None
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
    breaker = tripped_by(namespace, labels)
    if breaker is not None:
        hold("Tripped", "BreakerOpen", f"CircuitBreaker {breaker} is open: no pod until it "
             "is reset")
        return
    if model.suspend:
        hold("Suspended", "Suspended", "spec.suspend is true", warning=False)
        return

    strategy = _read(kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace,
                     "strategies", model.strategy_ref.name)
    strategy_status = (strategy or {}).get("status") or {}
    if strategy is None or strategy_status.get("phase") != "Ready":
        hold("Pending", "StrategyNotReady", f"Strategy {model.strategy_ref.name} is "
             f"{'missing' if strategy is None else strategy_status.get('phase') or 'not ready'}")
        return
    code_hash = strategy_status.get("codeHash")

    results = _gates(namespace, model, code_hash)
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

    decision, lease_id = _lease(namespace, name, uid, model)
    if not decision.may_run:
        hold("Blocked", "AccountInUse", decision.message)
        return

    settings = runtime.get().settings
    credentials = _credentials(namespace, bot)
    _create(kube.core().create_namespaced_config_map, namespace, bots.config_map(bot))
    kube.core().patch_namespaced_config_map(bot.config_map_name, namespace,
                                            {"data": bot.config_data()})
    _create(kube.networking().create_namespaced_network_policy, namespace,
            bots.network_policy(bot, operator_namespace=settings.operator_namespace))
    desired = bots.pod(bot, settings)
    desired["metadata"]["labels"].update({LABEL_ACCOUNT: lease_id,
                                          "tradebot.dev/owner-uid": uid})
    existing = _read(kube.core().read_namespaced_pod, bot.pod_name, namespace)
    if existing is not None:
        have = (existing.metadata.annotations or {}).get(bots.ANNOTATION_CONFIG_HASH)
        if have != bot.config_hash or existing.metadata.deletion_timestamp:
            # The config or code changed: the old pod goes first; the next round starts the
            # new one, so two pods never trade the account at once.
            stop_pod(namespace, bot.pod_name)
            _phase(patch, current, "Pending", "Restarting", "config changed; replacing the pod",
                   generation)
            return
        pod_phase = existing.status.phase
    else:
        _create(kube.core().create_namespaced_pod, namespace, desired)
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
        _monitor(current, patch, bot, strategy_spec, existing, credentials, generation)
    else:
        _phase(patch, current, "Pending", "PodStarting", f"pod {bot.pod_name} is {pod_phase}",
               generation)
