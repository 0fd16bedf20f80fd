"""Operator start-up and shutdown: settings, logging, kopf's storage, the admission loop."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from tradebot.controllers import runtime
from tradebot.controllers.queue import AdmissionLoop
from tradebot.observability.logging import configure_logging, logger

_loop: AdmissionLoop | None = None


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _loop
    # Also here, not only in the CLI: an operator run in-process (kopf's runner in tests) starts
    # here, and kopf's own CLI has just added a plain-text handler of its own.
    configure_logging()
    rt = runtime.get()
    # kopf's bookkeeping goes into annotations of our own prefix, not a shared one.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tradebot.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="tradebot.dev", key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    # kopf reports every timer run at INFO; our own log lines say what happened.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Retries of failing handlers back off instead of hammering a restarting API server.
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    # Sync handlers share one thread pool; its default (cores + 4) would let a few hundred
    # LiveBot rounds (each may wait on a bot's REST API) queue far behind one another.
    settings.execution.max_workers = rt.settings.handler_threads
    logger(component="operator").info(
        "operator starting", executor=rt.settings.executor,
        namespaces=list(rt.settings.namespaces) or "all",
        limits={"total": rt.settings.max_concurrent_backtests,
                "namespace": rt.settings.max_backtests_per_namespace,
                "strategy": rt.settings.max_backtests_per_strategy},
        hold=rt.settings.queue_hold)
    if rt.settings.metrics_port:
        from tradebot.observability.metrics import serve

        serve(rt.settings.metrics_port)
    # Opening the records store starts its outbox flusher, which delivers at once whatever
    # an earlier run of the operator left waiting; the database may still be down.
    try:
        rt.store()
    except Exception as e:  # the outbox file cannot be opened: handlers will say so again
        logger(component="operator").error("records store cannot start", error=str(e))
    _loop = AdmissionLoop(rt.settings)
    _loop.start()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the API server with the same credentials as our own client (in-cluster
    service account, or the kubeconfig's client certificate or token)."""
    from tradebot import kube

    cfg = kube.api_client().configuration
    # The client keeps a service account's or kubeconfig's token under "BearerToken" (with
    # its "Bearer" prefix); older configurations use "authorization".
    token = cfg.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        scheme="Bearer" if token else None,
        token=token.removeprefix("Bearer ").strip() or None,
    )


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    global _loop
    if _loop is not None:
        _loop.stop()
        _loop = None
    runtime.get().close()
