"""Strategy controller: read the code, introspect it (never run it), hash and register it."""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger

from tradebot import kube
from tradebot.api.base import GROUP, VERSION
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import runtime
from tradebot.controllers.status import condition, event
from tradebot.domain import strategy_parameters
from tradebot.freqtrade.introspect import Introspection, IntrospectionError, introspect
from tradebot.freqtrade.strategy_doc import describe
from tradebot.observability import metrics
from tradebot.observability.logging import logger

PLURAL = "strategies"


class CodeUnavailable(Exception):
    """The code cannot be read yet (e.g. its ConfigMap is missing); the reason says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_code(spec: StrategySpec, namespace: str) -> str:
    if spec.code is not None:
        return spec.code
    ref = spec.config_map_ref
    assert ref is not None  # the model guarantees exactly one source
    try:
        cm = kube.core().read_namespaced_config_map(ref.name, namespace)
    except ApiException as e:
        if kube.is_not_found(e):
            raise CodeUnavailable(
                "ConfigMapNotFound", f"ConfigMap {namespace}/{ref.name} not found"
            ) from None
        raise
    data = cm.data or {}
    if ref.key not in data and ref.key in (cm.binary_data or {}):
        # binaryData is how a ConfigMap holds what is not UTF-8: not Python source.
        raise CodeUnavailable(
            "CodeNotText",
            f"ConfigMap {namespace}/{ref.name} holds {ref.key!r} in binaryData: strategy code "
            "must be UTF-8 text under data",
        )
    if ref.key not in data:
        raise CodeUnavailable(
            "ConfigMapKeyMissing",
            f"ConfigMap {namespace}/{ref.name} has no key {ref.key!r} "
            f"(keys: {', '.join(sorted(data)) or 'none'})",
        )
    return str(data[ref.key])


def _set_phase(
    status: dict[str, Any],
    patch: kopf.Patch,
    phase: str,
    ready: bool,
    reason: str,
    message: str,
    generation: int,
) -> None:
    patch.status["phase"] = phase
    patch.status["message"] = message
    patch.status["observedGeneration"] = generation
    condition(status, patch, "Ready", ready, reason, message, generation)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.timer(GROUP, VERSION, PLURAL, interval=15, initial_delay=15)
@metrics.counted("Strategy")
def reconcile_strategy(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str | None,
    name: str,
    uid: str,
    patch: kopf.Patch,
    **_: object,
) -> None:
    assert namespace is not None  # the kinds are namespaced
    generation = int(meta.get("generation") or 0)
    current = dict(status)
    log = logger(
        kind="Strategy", namespace=namespace, name=name, correlation_id=f"{uid}/{generation}"
    )
    old_phase, old_hash = status.get("phase"), status.get("codeHash")
    try:
        model = StrategySpec.model_validate(dict(spec))
        code = read_code(model, namespace)
        found = introspect(code, model.class_name)
    except ValidationError as e:
        message = f"invalid spec: {e.errors()[0]['msg']}"
        _set_phase(current, patch, "Invalid", False, "InvalidSpec", message, generation)
    except CodeUnavailable as e:
        _set_phase(current, patch, "Pending", False, e.reason, str(e), generation)
        if old_phase != "Pending" or status.get("message") != str(e):
            event(body, e.reason, str(e), warning=True)
            log.warning("strategy code unavailable", reason=e.reason, error=str(e))
        return
    except IntrospectionError as e:
        _invalid_code(body, current, patch, e, generation, log)
        return
    else:
        patch.status["codeHash"] = found.code_hash
        patch.status["interface"] = found.interface.to_wire()
        if _parameters_resolved(
            body, current, patch, model, namespace, name, found.code_hash, generation, log
        ):
            _ready(body, current, patch, model, found, old_phase, old_hash, generation, log)
        _register(
            body,
            current,
            patch,
            namespace,
            name,
            uid,
            model.class_name,
            found,
            generation,
            describe(code, model.class_name),
        )
        return
    if old_phase != "Invalid" or status.get("message") != message:
        event(body, "InvalidSpec", message, warning=True)
        log.warning("strategy spec invalid", error=message)


def _invalid_code(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    error: IntrospectionError,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    old_phase, old_message = status.get("phase"), status.get("message")
    _set_phase(status, patch, "Invalid", False, "InvalidCode", str(error), generation)
    patch.status["codeHash"] = None
    patch.status["interface"] = None
    if old_phase != "Invalid" or old_message != str(error):
        event(body, "InvalidCode", str(error), warning=True)
        log.warning("strategy invalid", error=str(error))


def _ready(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    model: StrategySpec,
    found: Introspection,
    old_phase: str | None,
    old_hash: str | None,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    message = f"{model.class_name} introspected"
    if found.warnings:
        message += "; " + "; ".join(found.warnings)
    _set_phase(status, patch, "Ready", True, "Introspected", message, generation)
    if old_phase != "Ready" or old_hash != found.code_hash:
        event(body, "Ready", f"{model.class_name} ready, code sha256 {found.code_hash[:12]}")
        log.info("strategy ready", code_hash=found.code_hash)


def _parameters_resolved(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    model: StrategySpec,
    namespace: str,
    name: str,
    code_hash: str,
    generation: int,
    log: FilteringBoundLogger,
) -> bool:
    """Resolves the parameter set into status; False (the phase set to why) when it cannot
    be used yet, so no Backtest or LiveBot runs the Strategy without its set."""
    hyperopt = None
    if model.parameters_from is not None:
        hyperopt = kube.read_or_none(
            kube.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "hyperopts",
            model.parameters_from.hyperopt_ref.name,
        )
    resolved = strategy_parameters.resolve(model, name, code_hash, hyperopt)
    if isinstance(resolved, strategy_parameters.Unresolved):
        _unresolved(body, status, patch, resolved, generation, log)
        return False
    fields = resolved.to_status() if resolved is not None else strategy_parameters.NO_PARAMETERS
    patch.status.update(fields)
    described = (
        "the strategy's own values"
        if resolved is None
        else f"{resolved.source}, sha256 {resolved.hash[:12]}"
    )
    condition(
        status,
        patch,
        "ParametersResolved",
        True,
        "NoParameters" if resolved is None else "Resolved",
        f"parameters: {described}",
        generation,
    )
    if resolved is not None and status.get("parametersHash") != resolved.hash:
        event(body, "ParametersResolved", f"parameters from {described}")
        log.info("strategy parameters resolved", source=resolved.source, hash=resolved.hash)
    return True


def _unresolved(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    resolved: strategy_parameters.Unresolved,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    old_phase, old_message = status.get("phase"), status.get("message")
    patch.status.update(strategy_parameters.NO_PARAMETERS)
    _set_phase(status, patch, resolved.phase, False, resolved.reason, resolved.message, generation)
    condition(
        status, patch, "ParametersResolved", False, resolved.reason, resolved.message, generation
    )
    if old_phase != resolved.phase or old_message != resolved.message:
        event(body, resolved.reason, resolved.message, warning=True)
        log.warning(
            "strategy parameters unresolved", reason=resolved.reason, error=resolved.message
        )


def _register(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    namespace: str,
    name: str,
    uid: str,
    class_name: str,
    found: Introspection,
    generation: int,
    described: dict[str, Any],
) -> None:
    from tradebot.records import RecordsError

    try:
        store = runtime.get().store()
        # Kept even while the database is down: the outbox delivers it later.
        # The interface plus what the docs show: hyperopt parameter declarations, indicators,
        # entry and exit signals (strategy_doc.describe).
        store.register_strategy(
            namespace,
            name,
            uid,
            class_name,
            found.code_hash,
            {**found.interface.to_wire(), **described},
        )
    except RecordsError as e:  # the outbox file itself failed
        condition(status, patch, "Recorded", False, "RecordsUnavailable", str(e), generation)
        return
    condition(
        status,
        patch,
        "Recorded",
        True,
        "Registered",
        f"code {found.code_hash[:12]} in the strategy registry",
        generation,
    )
