"""Operator start-up and shutdown: settings, logging, kopf's storage, the admission loop, the
watch of bot pods."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

import kopf

from tradebot import kube
from tradebot.controllers import kopf_session, runtime
from tradebot.controllers.bot_drift import CompanionWatch
from tradebot.controllers.bot_endpoints import BotPodWatch
from tradebot.controllers.queue import AdmissionLoop
from tradebot.domain.naming import LABEL_KIND
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.observability.logging import configure_logging, logger


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: object) -> None:
    # Also here, not only in the CLI: an operator run in-process (kopf's runner in tests) starts
    # here, and kopf's own CLI has just added a plain-text handler of its own.
    configure_logging()
    rt = runtime.get()
    rt.watching_since = dt.datetime.now(dt.UTC)
    _configure_kopf(settings, rt)
    logger(component="operator").info(
        "operator starting",
        executor=rt.settings.executor,
        namespaces=list(rt.settings.namespaces) or "all",
        limits={
            "total": rt.settings.max_concurrent_backtests,
            "namespace": rt.settings.max_backtests_per_namespace,
            "strategy": rt.settings.max_backtests_per_strategy,
        },
        hold=rt.settings.queue_hold,
    )
    from tradebot.observability.metrics import LEADER, serve

    LEADER.set(1)  # acting: alone, or holding the leader Lease (controllers/leadership.py)
    if rt.settings.metrics_port:
        serve(rt.settings.metrics_port)
    # Opening the records store starts its outbox flusher, which delivers at once whatever
    # an earlier run of the operator left waiting; the database may still be down.
    try:
        rt.store()
    except Exception as e:  # the outbox file cannot be opened: handlers will say so again
        logger(component="operator").error("records store cannot start", error=str(e))
    rt.admission_loop = AdmissionLoop(rt.settings)
    rt.admission_loop.start()
    rt.bot_pod_watch = BotPodWatch(rt.settings)
    rt.bot_pod_watch.start()
    rt.bot_companion_watch = CompanionWatch(rt.settings)
    rt.bot_companion_watch.start()


def _configure_kopf(settings: kopf.OperatorSettings, rt: runtime.Runtime) -> None:
    # kopf's bookkeeping goes into annotations of our own prefix, not a shared one.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tradebot.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="tradebot.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # kopf reports every timer run at INFO; our own log lines say what happened.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Client-side timeouts everywhere (a half-open connection fails, never hangs): our own
    # client's default for every call, and kopf's. kopf's watches keep a long server-side
    # timeout (each ends in a relist of the kind), and the client gives one up 10 s after it.
    s = rt.settings
    kube.set_timeouts(s.api_connect_timeout_seconds, s.api_request_timeout_seconds)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 300 + kube.WATCH_READ_MARGIN
    settings.watching.connect_timeout = s.api_connect_timeout_seconds
    settings.networking.request_timeout = s.api_request_timeout_seconds
    settings.networking.connect_timeout = s.api_connect_timeout_seconds
    # kopf's lists in pages, as the queue's informers do: a restart with 10,000 Backtests
    # waiting never parses one response of them all at once.
    settings.watching.chunk_size = 500
    # Retries of failing handlers back off instead of hammering a restarting API server.
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    # Sync handlers share one thread pool; its default (cores + 4) would let a few hundred
    # LiveBot rounds (each may wait on a bot's REST API) queue far behind one another.
    settings.execution.max_workers = rt.settings.handler_threads
    if isinstance(settings.execution.executor, ThreadPoolExecutor):
        rt.handler_executor = settings.execution.executor  # stopped before the Lease goes


def connection_info() -> kopf.ConnectionInfo:
    """The credentials of our own client (in-cluster service account, or the kubeconfig's
    client certificate or token), for kopf."""
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


@kopf.on.login()
async def login(**_: object) -> kopf.AiohttpSession:
    """kopf talks to the API server with the same credentials as our own client
    (`connection_info`), through a session of bounded connections
    (controllers/kopf_session.py). Async: aiohttp builds its session only in the event
    loop."""
    settings = runtime.get().settings
    return kopf_session.session(
        connection_info(),
        kopf_session.connection_limit(settings.api_connections, settings.namespaces),
    )


@kopf.on.startup()
def adopt_or_stop_local_bots(**_: object) -> None:
    """Local executor: a bot process left by an operator that died without its cleanup
    (SIGKILL, a crash) is adopted when its LiveBot still has a pod, and stopped otherwise:
    nobody would supervise it. Failing to read the cluster fails the start-up, which kopf
    retries: guessing could stop a wanted bot or leave an unwanted one trading."""
    settings = runtime.get().settings
    if settings.executor != "local":
        return
    executor = LocalBotExecutor(settings.local_state_dir)
    executor.resume()  # the last operator's cleanup stopped them all and said so
    running = executor.running_bots()
    if not running:
        return
    wanted = _livebots_with_a_pod(settings.namespaces)
    orphans = sorted(set(running) - wanted)
    stopped = executor.stop_many(orphans)
    logger(component="operator").info(
        "local bots found at start-up", adopted=sorted(set(running) & wanted), stopped=stopped
    )


def _livebots_with_a_pod(namespaces: tuple[str, ...]) -> set[str]:
    """The uids of the LiveBots that exist and own a bot pod not being deleted."""
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION

    selector = f"{LABEL_KIND}=livebot"
    if namespaces:
        pods = [
            p
            for ns in namespaces
            for p in kube.core().list_namespaced_pod(ns, label_selector=selector).items
        ]
        bots = [
            b
            for ns in namespaces
            for b in kube.custom().list_namespaced_custom_object(GROUP, VERSION, ns, "livebots")[
                "items"
            ]
        ]
    else:
        pods = kube.core().list_pod_for_all_namespaces(label_selector=selector).items
        bots = kube.custom().list_cluster_custom_object(GROUP, VERSION, "livebots")["items"]
    existing = {b["metadata"]["uid"] for b in bots}
    owners = {
        ref.uid
        for p in pods
        if p.metadata.deletion_timestamp is None
        for ref in p.metadata.owner_references or []
        if ref.kind == "LiveBot"
    }
    return owners & existing


@kopf.on.cleanup()
def cleanup(**_: object) -> None:
    rt = runtime.get()
    if rt.admission_loop is not None:
        rt.admission_loop.stop()
        rt.admission_loop = None
    if rt.bot_pod_watch is not None:
        rt.bot_pod_watch.stop()
        rt.bot_pod_watch = None
    if rt.bot_companion_watch is not None:
        rt.bot_companion_watch.stop()
        rt.bot_companion_watch = None
    if rt.settings.executor == "local":
        # The local executor's bots are this operator's processes: none may outlive it
        # unsupervised. The next start begins them again where their LiveBots want them.
        stopped = LocalBotExecutor(rt.settings.local_state_dir).stop_all()
        logger(component="operator").info("local bots stopped", bots=stopped)
    rt.stopped_in_time = rt.close(rt.settings.shutdown_grace_seconds)
