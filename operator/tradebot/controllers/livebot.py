"""LiveBot controller: one operator-owned pod per bot, and only when it is safe.

Each round observes the cluster in stages and asks domain/livebot_round.decide what to do: a
tripped breaker, `suspend`, a mode the operator does not allow, a Strategy that is not Ready,
credentials the bot may not use, failing promotion gates, unvetted code or an account held by
another bot all mean no pod (an existing one is stopped). Otherwise the bot's API Secret,
ConfigMap, NetworkPolicy, storage, account Lease and Pod are ensured, each under a
deterministic name, so a repeated or interrupted round creates nothing twice.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from tradebot import kube
from tradebot.api import exchanges
from tradebot.api.base import GROUP, VERSION
from tradebot.api.circuitbreaker import BreakerLimits
from tradebot.api.livebot import InvalidSpec, LiveBotSpec, no_sandbox_message, parse_spec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import (
    bot_control,
    bot_drift,
    bot_monitoring,
    bot_records,
    bot_storage,
    cache,
    runtime,
)
from tradebot.controllers.status import condition, drop_unchanged, event
from tradebot.controllers.strategy import CodeUnavailable, read_code
from tradebot.domain import account_lease, bias, bots, gates, images, livebot_round
from tradebot.domain import bot_drift as domain_drift
from tradebot.domain.bot_credentials import (
    CredentialsSeen,
    api_key_fingerprint,
    operator_managed,
    secret_fingerprint,
)
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.domain.livebot_round import (
    ConfigSeen,
    CreatePod,
    Evidence,
    Hold,
    LeaseSeen,
    Observation,
    Observe,
    Outcome,
    PodSeen,
    Run,
    Stage,
    StatusOnly,
)
from tradebot.domain.protections import guarded_code
from tradebot.domain.strategy_parameters import run_parameter_file
from tradebot.domain.time import format_time
from tradebot.freqtrade.introspect import code_hash as hash_code
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records import RecordsUnavailable
from tradebot.settings import Settings

PLURAL = "livebots"
LABEL_ACCOUNT = "tradebot.dev/account"
API_USERNAME = "tradebot-operator"


def read_breakers(namespace: str) -> list[dict[str, Any]]:
    """The namespace's CircuitBreakers as the API server has them now (not as last seen)."""
    return list(
        kube.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, "circuitbreakers")[
            "items"
        ]
    )


def _credentials(namespace: str, bot: bots.BotInstance) -> bots.ApiCredentials:
    """The bot API's credentials: generated once, kept in the operator-owned Secret."""
    ref = bot_control.BotRef(namespace, bot.name, bot.uid)
    found = bot_control.api_credentials(ref)
    if found is not None:
        return found
    # A letter first: Freqtrade turns an all-digit environment value into a number.
    credentials = bots.ApiCredentials(
        API_USERNAME,
        "p" + secrets.token_urlsafe(24),
        "j" + secrets.token_urlsafe(40),
        "w" + secrets.token_urlsafe(24),
    )
    kube.create_if_absent(
        kube.core().create_namespaced_secret, namespace, bots.api_secret(bot, credentials)
    )
    # A concurrent round may have created it first: what the Secret holds wins.
    return bot_control.api_credentials(ref) or credentials


def _phase(
    patch: kopf.Patch,
    status: dict[str, Any],
    phase: str,
    reason: str,
    message: str,
    generation: int,
    ready: bool = False,
) -> None:
    patch.status.update({"phase": phase, "message": message, "observedGeneration": generation})
    condition(status, patch, "Ready", ready, reason, message, generation)


def _image(spec: LiveBotSpec | None, settings: Settings) -> str | None:
    """The image the bot's pod runs (None: the spec does not validate)."""
    if spec is None:
        return None
    return images.bot_image(spec.image, spec.gpu is not None and spec.gpu.vendor == "amd", settings)


def stopping_fleet(namespace: str) -> AbstractContextManager[None]:
    """While a breaker stops bots in `namespace`, LiveBot rounds there give way."""
    return runtime.get().fleet.stopping(namespace)


def fleet_stop_in_progress(namespace: str) -> bool:
    return runtime.get().fleet.in_progress(namespace)


def _polled_recently(uid: str, generation: int, meta: kopf.Meta, status: dict[str, Any]) -> bool:
    """A Running bot whose spec and labels are unchanged gets a full round (checks and
    monitoring) every TRADEBOT_BOT_POLL_SECONDS, not every timer tick: hundreds of bots would
    otherwise keep the API server busy with rounds that change nothing. A breaker does not
    wait for this: it stops its bots itself."""
    rt = runtime.get()
    seen = (generation, tuple(sorted((meta.get("labels") or {}).items())))
    return rt.pacer.recently(
        uid, seen, status.get("phase") == "Running", rt.settings.bot_poll_seconds
    )


def _pool() -> ThreadPoolExecutor:
    """The threads full rounds run on (TRADEBOT_HANDLER_THREADS): each may wait on a bot's
    API for a second, so hundreds of bots need more than kopf's default."""
    rt = runtime.get()
    return rt.pool("livebot", rt.settings.handler_threads)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def livebot_deleted(
    name: str,
    namespace: str | None,
    uid: str,
    status: kopf.Status,
    spec: kopf.Spec,
    **_: object,
) -> None:
    """A finalizer: the bot is stopped before its LiveBot goes. Without it, a deletion with
    --cascade=orphan (or a garbage collector that lags) would leave a trading pod that no
    operator supervises any more."""
    assert namespace is not None
    ref = bot_control.BotRef(namespace, name, uid)
    outcome = bot_control.stop(ref, "stop", use_api=bot_control.answered_last(dict(status)))
    # Read raw, not through the model: a spec that no longer validates must still go, and
    # anything but an explicit Delete keeps the trades.
    reclaim = str((dict(spec).get("storage") or {}).get("reclaimPolicy") or "Retain")
    bot_storage.remove(ref, runtime.get().settings, reclaim)
    bot_control.forget(ref)
    metrics.forget_bot(namespace, name)
    runtime.get().pacer.forget(uid)
    logger(kind="LiveBot", namespace=namespace, name=name).info(
        "bot deleted", outcome=outcome.describe(), trade_database=reclaim
    )


class _TripInProgress(Exception):
    """A breaker began stopping bots in this namespace while this round ran."""


def _give_way(namespace: str) -> None:
    if fleet_stop_in_progress(namespace):
        raise _TripInProgress


class _NeedsFreshRound(Exception):
    """A round that read from the operator's cached view reached a pod creation: that is
    decided again from the API server's answers only."""


@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0)
async def reconcile_livebot(
    meta: kopf.Meta, status: kopf.Status, namespace: str | None, uid: str, **kwargs: object
) -> None:
    # Deciding to skip is cheap and happens here in kopf's event loop: with hundreds of bots,
    # a thread for every tick that only finds nothing to do would cost more than the rounds.
    assert namespace is not None  # the kinds are namespaced
    if fleet_stop_in_progress(namespace):
        return  # a breaker is stopping bots here: it goes first; the next tick comes in 2 s
    if _polled_recently(uid, int(meta.get("generation") or 0), meta, dict(status)):
        return
    await runtime.in_thread(
        _pool(), _reconcile, meta=meta, status=status, namespace=namespace, uid=uid, **kwargs
    )


@metrics.counted("LiveBot")
def _reconcile(patch: kopf.Patch, status: kopf.Status, **kwargs: Any) -> None:  # noqa: ANN401 - kopf's handler kwargs, passed on whole
    namespace = str(kwargs["namespace"])
    try:
        try:
            _Round(patch=patch, status=status, fresh=False, **kwargs).run()
        except _NeedsFreshRound:
            _Round(patch=patch, status=status, fresh=True, **kwargs).run()
        _give_way(namespace)
    except _TripInProgress:
        # Its reads and writes would only compete with the breaker's stops for the API
        # server; a later round does it all again.
        patch.clear()
        return
    # A held bot's round mostly restates its status: no write for what is already there.
    drop_unchanged(patch, status)


class _Round:
    """One round: observe (in the stages the decision asks for), decide, act. `fresh` False
    reads breakers and the Strategy from the operator's cached view (controllers/cache.py),
    True from the API server."""

    def __init__(
        self,
        body: kopf.Body,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        namespace: str,
        name: str,
        uid: str,
        patch: kopf.Patch,
        fresh: bool,
        **kwargs: object,
    ) -> None:
        self.body, self.patch, self.fresh = body, patch, fresh
        self.namespace, self.name, self.uid = namespace, name, uid
        self.status = dict(status)
        self.generation = int(meta.get("generation") or 0)
        self.labels = dict(meta.get("labels") or {})
        self.correlation_id = f"{uid}/{self.generation}"
        self.log = logger(
            kind="LiveBot", namespace=namespace, name=name, correlation_id=self.correlation_id
        )
        self.ref = bot_control.BotRef(namespace, name, uid)
        self.raw_spec = dict(spec)
        # kopf's indices (the cached view) are among the handler's kwargs.
        self.indices: dict[str, Any] = kwargs
        self.settings = runtime.get().settings
        # What the stages found, for carrying out the decision.
        self.bot: bots.BotInstance | None = None
        self.strategy_spec: StrategySpec | None = None
        self.lease_object: Any = None
        self.pod: Any = None
        # The evidence Backtest as read (promotion.backtestRef).
        self.evidence_backtest: dict[str, Any] | None = None

    def run(self) -> None:
        _give_way(self.namespace)
        observation = self._first_look()
        outcome = livebot_round.decide(observation)
        while isinstance(outcome.decision, Observe):
            stage = outcome.decision.stage
            if stage in ("lease", "pod"):
                _give_way(self.namespace)
            observation = self._observe(stage, observation)
            outcome = livebot_round.decide(observation)
        self._act(outcome, observation)

    def _first_look(self) -> Observation:
        reason = "InvalidSpec"
        try:
            model: LiveBotSpec | None = parse_spec(self.raw_spec)
            error = None
        except InvalidSpec as e:
            model, error = None, str(e)
            exchange = str((self.raw_spec.get("exchange") or {}).get("name") or "binance")
            if self.raw_spec.get("mode") == "testnet" and not exchanges.has_sandbox(exchange):
                reason, error = "NoSandbox", no_sandbox_message(exchange)
        strategy = None
        if model is not None:
            strategy = (
                kube.read_or_none(
                    kube.custom().get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    "strategies",
                    model.strategy_ref.name,
                )
                if self.fresh
                else cache.strategy(
                    self.indices[cache.STRATEGIES], self.namespace, model.strategy_ref.name
                )
            )
        breakers = (
            read_breakers(self.namespace)
            if self.fresh
            else cache.entries(self.indices[cache.BREAKERS], self.namespace)
        )
        s = self.settings
        return Observation(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            generation=self.generation,
            labels=self.labels,
            status=self.status,
            spec=model,
            spec_error=error,
            spec_error_reason=reason,
            breakers=breakers,
            strategy=strategy,
            now=dt.datetime.now(dt.UTC),
            allowed_modes=tuple(s.allowed_modes),
            floors={
                m: f
                for m in ("testnet", "live")
                if (f := s.promotion_floors.for_mode(m)) is not None
            },
            lease_duration=dt.timedelta(seconds=s.account_lease_seconds),
            local_executor=s.executor == "local",
            has_sandbox=exchanges.has_sandbox,
            image=_image(model, s),
            allowed_images=images.allowed(s),
        )

    def _observe(self, stage: Stage, o: Observation) -> Observation:
        assert o.spec is not None
        seen: dict[str, Any] = {
            "credentials": self._credentials_seen,
            "evidence": self._evidence_seen,
            "config": self._config_seen,
            "lease": self._lease_seen,
            "pod": self._pod_seen,
        }
        value = seen[stage](o)
        return replace(o, **{stage: value}, observed=o.observed | {stage})

    def _credentials_seen(self, o: Observation) -> CredentialsSeen | None:
        assert o.spec is not None
        ref = o.spec.exchange.credentials_secret_ref
        if ref is None:
            return None
        secret = kube.read_or_none(kube.core().read_namespaced_secret, ref.name, self.namespace)
        if secret is None:
            return CredentialsSeen(ref.name, False, {}, False, frozenset())
        meta = secret.metadata
        owners = [str(r.api_version) for r in meta.owner_references or []]
        data = secret.data or {}
        # Of the values, only one-way fingerprints are kept: the whole Secret's (what the
        # approval digest binds) and the API key's (the account lock's key); the rest are names.
        raw_key = data.get(ref.api_key_key)
        fingerprint = (
            api_key_fingerprint(base64.b64decode(raw_key).decode(errors="replace"))
            if raw_key
            else None
        )
        return CredentialsSeen(
            ref.name,
            True,
            dict(meta.labels or {}),
            operator_managed(meta.labels or {}, owners),
            frozenset(k for k, v in data.items() if v),
            secret_fingerprint({k: base64.b64decode(v or "") for k, v in data.items()}),
            fingerprint,
        )

    def _evidence_seen(self, o: Observation) -> Evidence:
        evidence = self._with_bias(o, self._backtest_and_dry_run_seen(o))
        assert o.spec is not None
        ref = o.spec.promotion.hyperopt_ref if o.spec.promotion is not None else None
        if ref is None:
            return evidence
        hyperopt = kube.read_or_none(
            kube.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            "hyperopts",
            ref.name,
        )
        return dataclasses.replace(
            evidence, hyperopt=gates.HyperoptEvidence.from_object(ref.name, hyperopt)
        )

    def _with_bias(self, o: Observation, evidence: Evidence) -> Evidence:
        """The Backtest holding the bias analyses of the evidence Backtest, when the mode's
        floor asks for them (read only then: most bots never need it)."""
        assert o.spec is not None
        floor = o.floors.get(o.spec.mode)
        source = self.evidence_backtest
        if o.spec.promotion is None or floor is None or not floor.require_bias_analysis:
            return evidence
        if source is None:
            return evidence
        name = bias.analysis_source(o.spec.promotion.backtest_ref.name, source)
        found = source if name == source["metadata"]["name"] else None
        if found is None:
            found = kube.read_or_none(
                kube.custom().get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                "backtests",
                name,
            )
        return dataclasses.replace(
            evidence, bias=bias.BiasEvidence.from_object(name, found), bias_source=source
        )

    def _backtest_and_dry_run_seen(self, o: Observation) -> Evidence:
        spec = o.spec
        assert spec is not None
        if spec.promotion is None:
            return Evidence(None, gates.DryRunEvidence())
        ref = spec.promotion.backtest_ref.name
        bt = kube.read_or_none(
            kube.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            "backtests",
            ref,
        )
        self.evidence_backtest = bt
        backtest = gates.BacktestEvidence.from_object(ref, bt)
        promotion = gates.effective_promotion(spec.promotion, o.floors.get(spec.mode))
        code = o.strategy_code_hash
        if code is None or promotion.min_dry_run_hours <= 0:
            return Evidence(backtest, gates.DryRunEvidence())
        try:
            return Evidence(
                backtest, bot_records.dry_run_evidence(self.namespace, self.name, self.uid, code)
            )
        except bot_records.EvidenceUnavailable as e:
            return Evidence(
                backtest,
                gates.DryRunEvidence(),
                unreadable=f"dry-run history cannot be read now: {e}",
            )

    def _config_seen(self, o: Observation) -> ConfigSeen:
        spec = o.spec
        assert spec is not None
        assert o.strategy is not None
        try:
            strategy_spec = StrategySpec.model_validate(o.strategy["spec"])
            code = read_code(strategy_spec, self.namespace)
            # The bot protects itself with the limits of its own and of every breaker that
            # selects it, even when the operator is gone.
            limits = [
                BreakerLimits.model_validate(cb["spec"]["limits"])
                for cb in livebot_round.guarding_breakers(o.labels, o.breakers)
            ]
            # The username, like every credential, reaches the pod from its Secret.
            config = trade_config(
                spec,
                strategy_spec,
                api_port=bots.API_PORT,
                api_username="",
                exchange_double_url=self.settings.exchange_double_url,
                breakers=limits,
                parameter_file=run_parameter_file(o.strategy),
            )
            guarded = guarded_code(code, strategy_spec.class_name)
        except (CodeUnavailable, ValueError) as e:
            return ConfigSeen(error=str(e))
        self.strategy_spec = strategy_spec
        self.bot = bots.BotInstance(
            self.namespace,
            self.name,
            self.uid,
            spec,
            spec.strategy_ref.name,
            strategy_spec.class_name,
            guarded,
            config,
            image=o.image or "",
        )
        return ConfigSeen(code_hash=hash_code(code), config_hash=self.bot.config_hash)

    def _lease_seen(self, o: Observation) -> LeaseSeen:
        lease_id = account_lease.lease_name(livebot_round.lease_key(o))
        existing = kube.read_or_none(
            kube.coordination().read_namespaced_lease, lease_id, self.namespace
        )
        self.lease_object = existing
        lease = account_lease.Lease.from_manifest(kube.to_dict(existing)) if existing else None
        if lease is not None and lease.holder_identity == self.uid:
            return LeaseSeen(lease)
        # Only a bot that does not hold the Lease needs to know whose pods still run.
        pods = (
            kube.core()
            .list_namespaced_pod(self.namespace, label_selector=f"{LABEL_ACCOUNT}={lease_id}")
            .items
        )
        others = [
            p
            for p in pods
            if (p.metadata.labels or {}).get(bot_control.OWNER_LABEL) != self.uid
            and p.status.phase not in ("Succeeded", "Failed")
        ]
        return LeaseSeen(lease, len(others))

    def _pod_seen(self, o: Observation) -> PodSeen | None:
        pod = kube.read_or_none(kube.core().read_namespaced_pod, self.ref.pod_name, self.namespace)
        self.pod = pod
        if pod is None:
            return None
        drift: tuple[str, ...] = ()
        if self.bot is not None:
            lease = account_lease.lease_name(livebot_round.lease_key(o))
            try:
                desired = self._desired_pod(lease)
            except (ValueError, OverflowError) as e:
                # The spec cannot build a pod (the config stage let it through): nothing
                # to compare with; the creation of a new pod would fail the same way.
                self.log.warning("desired pod cannot be built", error=str(e))
            else:
                # The hash annotation is compared by the decision itself (a changed config).
                drift = tuple(
                    d
                    for d in domain_drift.pod_drift(desired, kube.to_dict(pod))
                    if not d.startswith("annotation ")
                )
        return PodSeen(
            self.ref.pod_name,
            (pod.metadata.annotations or {}).get(bots.ANNOTATION_CONFIG_HASH),
            pod.metadata.deletion_timestamp is not None,
            pod.status.phase,
            drift,
        )

    def _desired_pod(self, lease_name: str) -> dict[str, Any]:
        """The pod as the operator creates it, and as every round compares it."""
        assert self.bot is not None
        desired = bots.pod(self.bot, self.settings)
        desired["metadata"]["labels"].update(
            {LABEL_ACCOUNT: lease_name, bot_control.OWNER_LABEL: self.uid}
        )
        return desired

    # -- acting ------------------------------------------------------------------------

    def _act(self, outcome: Outcome, o: Observation) -> None:
        self.patch.status.update(outcome.status)
        if outcome.create_backtest is not None:
            self._create_analysis(outcome.create_backtest)
        if o.image is not None:
            # What the bot runs or would run (blocked ones too: the status says which image).
            self.patch.status["image"] = o.image
        decision = outcome.decision
        if isinstance(decision, Hold):
            self._hold(decision)
            return
        if outcome.lease is not None:
            self._write_lease(outcome, o)
        if isinstance(decision, StatusOnly):
            if decision.reason == "PodStarting":
                self._correct_drift()
                self._pod_fields(o)
            if (
                decision.reason == "ApprovalStale"
                and self.status.get("message") != decision.message
            ):
                event(self.body, decision.reason, decision.message, warning=True)
                self.log.warning("change waits for an approval", message=decision.message)
            self._phase(decision.phase, decision.reason, decision.message, decision.ready)
        elif isinstance(decision, CreatePod):
            self._create_pod(decision, o)
        elif isinstance(decision, Run):
            if decision.stale is None:
                # While a change waits for its approval the ConfigMap stays as approved: a
                # restore from the new spec would hand the running pod the unapproved config.
                self._correct_drift()
            self._run(o, decision.stale)

    def _correct_drift(self) -> None:
        """The pod's ConfigMap and NetworkPolicy put back as they must be, when edited or
        deleted by hand (a drifted pod is replaced by the decision itself)."""
        assert self.bot is not None
        restored = bot_drift.restore(self.bot, self.settings)
        if not restored:
            return
        what = ", ".join(r.describe() for r in restored)
        event(
            self.body,
            "DriftCorrected",
            f"restored to what the operator built: {what}",
            warning=True,
        )
        self.log.warning(
            "bot objects drifted; restored",
            restored=[r.describe() for r in restored],
            pod=self.bot.pod_name,
        )

    def _create_analysis(self, manifest: Mapping[str, Any]) -> None:
        """Create-if-absent by its deterministic name: a second round, or a second bot on the
        same evidence, finds it there and creates nothing."""
        name = manifest["metadata"]["name"]
        try:
            kube.custom().create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "backtests", dict(manifest)
            )
        except ApiException as e:
            if not kube.is_conflict(e):
                raise
        else:
            message = (
                f"created Backtest {name} to run the bias analyses the promotion needs "
                f"(of {manifest['metadata']['labels'][bias.LABEL_BIAS_OF]})"
            )
            event(self.body, "BiasAnalysisCreated", message)
            self.log.info("bias analysis created", backtest=name)

    def _phase(self, phase: str, reason: str, message: str, ready: bool = False) -> None:
        _phase(self.patch, self.status, phase, reason, message, self.generation, ready)

    def _pod_fields(self, o: Observation) -> None:
        assert o.spec is not None
        self.patch.status.update(
            {
                "podName": self.ref.pod_name,
                "mode": o.spec.mode,
                "codeHash": o.strategy_code_hash,
                "parametersHash": o.strategy_parameters_hash,
            }
        )

    def _hold(self, d: Hold) -> None:
        status, ref = self.status, self.ref
        # A bot held the same way in an earlier round was stopped then; while nothing of it
        # runs, a stop every round would only be hundreds of deletions a second to the API
        # server, just when a tripped fleet needs it. stopEntries is repeated by design.
        held_before = (
            status.get("phase") == d.phase
            and not status.get("podName")
            and d.action != "stopEntries"
        )
        if held_before and not bot_control.still_running(ref):
            outcome = bot_control.StopOutcome()
        else:
            # The API is tried only while the bot was last seen answering: a bot already
            # stopped (or never reached) would only cost the timeout, every round.
            outcome = bot_control.stop(
                ref,
                d.action,
                force_exit=d.force_exit,
                use_api=bot_control.answered_last(status) or d.action == "stopEntries",
            )
        if status.get("phase") != d.phase or status.get("message") != d.message:
            event(self.body, d.reason, f"{d.message}; {outcome.describe()}", warning=d.warning)
            self.log.info(
                "bot held",
                phase=d.phase,
                reason=d.reason,
                message=d.message,
                pod_removed=outcome.pod_removed,
                api_calls=outcome.api_calls,
                api_error=outcome.api_error,
            )
        if outcome.pod_removed or not status.get("podName") or d.action != "stopEntries":
            self._stopped(d)
        if d.phase == "Tripped":
            # A reset accepts the loss: the windows the breaker measures start again from the
            # next heartbeat, or the same figures would trip it again at once.
            self.patch.status.update(
                dict.fromkeys(
                    (
                        "equity",
                        "peakEquity",
                        "dayStartEquity",
                        "day",
                        "drawdown",
                        "consecutiveLosses",
                        "lastHeartbeat",
                        "runningSince",
                    )
                )
            )
        self._phase(d.phase, d.reason, d.message)

    def _stopped(self, d: Hold) -> None:
        """Status and records of a bot of which nothing runs any more."""
        self.patch.status["podName"] = None
        condition(
            self.status,
            self.patch,
            "Reachable",
            False,
            "Stopped",
            "the bot is stopped",
            self.generation,
        )
        metrics.forget_bot(self.namespace, self.name)
        run_id = self.status.get("runId")
        if run_id and bot_records.write_run(
            run_id=run_id,
            uid=self.uid,
            namespace=self.namespace,
            name=self.name,
            mode=str(self.status.get("mode") or "dryRun"),
            status="failed" if d.phase == "Tripped" else "succeeded",
            finished_at=dt.datetime.now(dt.UTC),
            error=d.message if d.phase == "Tripped" else None,
            correlation_id=self.correlation_id,
        ):
            self.patch.status["runId"] = None

    def _write_lease(self, outcome: Outcome, o: Observation) -> None:
        write = outcome.lease
        assert write is not None
        key = livebot_round.lease_key(o)
        body = account_lease.lease_manifest(
            key,
            namespace=self.namespace,
            bot_name=self.name,
            bot_uid=self.uid,
            now=o.now,
            lease_duration=o.lease_duration,
            transitions=write.transitions,
        )
        coordination = kube.coordination()
        if write.action == "create":
            coordination.create_namespaced_lease(self.namespace, body)
            return
        existing = self.lease_object
        # Replace with the resourceVersion read: of two bots taking over at once, one wins.
        body["metadata"]["resourceVersion"] = existing.metadata.resource_version
        if write.action == "renew":
            body["spec"]["acquireTime"] = kube.to_dict(existing)["spec"].get("acquireTime")
        coordination.replace_namespaced_lease(body["metadata"]["name"], self.namespace, body)

    def _create_pod(self, d: CreatePod, o: Observation) -> None:
        if not self.fresh:
            raise _NeedsFreshRound
        bot, settings = self.bot, self.settings
        assert bot is not None
        assert o.spec is not None
        _credentials(self.namespace, bot)
        if not self._companions(bot, settings):
            return
        desired = self._desired_pod(d.lease_name)
        kube.create_if_absent(kube.core().create_namespaced_pod, self.namespace, desired)
        # A breaker that opened after the read above may have stopped its bots before this pod
        # existed. It writes Open before it stops anything, so a second read sees it.
        opened = livebot_round.tripped_by(
            self.name, self.labels, read_breakers(self.namespace), dt.datetime.now(dt.UTC)
        )
        if opened is not None:
            bot_control.remove_pod(self.ref)
            self.log.warning(
                "bot pod removed at once: a breaker opened meanwhile",
                pod=bot.pod_name,
                breaker=opened.name,
            )
            self._phase("Tripped", "BreakerOpen", livebot_round.tripped_message(opened.name))
            return
        event(
            self.body,
            "PodCreated",
            f"pod {bot.pod_name} created in mode {o.spec.mode}",
            warning=False,
        )
        self.log.info("bot pod created", pod=bot.pod_name, mode=o.spec.mode)
        self._pod_fields(o)
        self._phase("Pending", "PodStarting", f"pod {bot.pod_name} is Pending")

    def _companions(self, bot: bots.BotInstance, settings: Settings) -> bool:
        """The pod's companions, before the pod (it never starts without its config, its
        network policy or its trade database); False when the database can't be prepared."""
        # Read from the API server, not the watch: a new pod starts from what is there now.
        bot_drift.restore(bot, settings, fresh=True)
        try:
            bot_storage.ensure(bot, settings)
        except RecordsUnavailable as e:
            # Its open trades would be kept nowhere: no pod until the database answers.
            self._phase(
                "Pending",
                "StorageUnavailable",
                f"the bot's trade database cannot be prepared now: {e}",
            )
            return False
        return True

    def _run(self, o: Observation, stale: str | None) -> None:
        bot, pod, strategy_spec = self.bot, self.pod, self.strategy_spec
        assert bot is not None
        assert pod is not None
        assert strategy_spec is not None
        credentials = _credentials(self.namespace, bot)
        assert o.spec is not None
        code_hash = o.strategy_code_hash
        if stale is None:
            self._pod_fields(o)
            self._phase("Running", "PodRunning", f"running in mode {o.spec.mode}", ready=True)
        else:
            # The pod runs what was approved: its fields (code, mode) stay those it started
            # with; the change is not in force.
            code_hash = self.status.get("codeHash") or code_hash
            if self.status.get("message") != stale:
                event(self.body, "ApprovalStale", stale, warning=True)
                self.log.warning("change waits for an approval", message=stale)
            self._phase("Running", "ApprovalStale", stale)
        started = pod.status.start_time
        self.patch.status["runningSince"] = (
            format_time(started) if started else self.status.get("runningSince")
        )
        _give_way(self.namespace)
        bot_monitoring.Round(
            self.body,
            self.status,
            self.patch,
            bot,
            code_hash,
            self.generation,
            self.correlation_id,
        ).run(strategy_spec, pod, credentials, started)
