"""Operator replicas: only the holder of the leader Lease acts. A standby starts nothing of
kopf's (no watches, handlers, timers, admission loop): it only reads the Lease every retry
period and answers its liveness probe. Once it holds the Lease it starts the operator and
renews in a thread; a leader that cannot renew before its deadline exits at once (the pod
restarts as a standby), so it has stopped acting before any standby may take over. A leader
stopped cleanly (SIGTERM) gives the Lease up, and a standby takes over at its next look.

The decisions are domain/leader_election.py's; here are the reads, writes and threads.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tradebot import kube
from tradebot.domain.leader_election import (
    LeaderRecord,
    Observed,
    decide,
    must_stop,
    observe,
    released,
    work_stalled,
)
from tradebot.domain.naming import MANAGED_BY
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.settings import Settings

_log = logger(component="leadership")
# The exit status of a leader that lost its Lease: the container restarts as a standby.
EXIT_LOST = 75


def identity() -> str:
    """This process's holderIdentity: the pod's name (POD_NAME, from the downward API; the
    host name outside a cluster) and a suffix of its own, so that a restarted container is a
    new candidate rather than the old leader come back."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _own_client() -> client.CoordinationV1Api:
    """A client of the elector's own: renewals never queue behind the handlers' requests in
    the shared connection pool."""
    configuration = copy.deepcopy(kube.api_client().configuration)
    configuration.connection_pool_maxsize = 2
    return client.CoordinationV1Api(kube.TimedApiClient(configuration))


def _left(deadline: float) -> float:
    """Seconds until a monotonic deadline, as a request timeout (never zero: that would mean
    no timeout to the client)."""
    return max(0.05, deadline - time.monotonic())


def _lost() -> None:
    _log.error("leader Lease lost: exiting so that no two replicas act")
    sys.stderr.flush()
    os._exit(EXIT_LOST)


class LeaderElector:
    def __init__(
        self,
        settings: Settings,
        me: str,
        api: client.CoordinationV1Api | None = None,
        on_lost: Callable[[], None] = _lost,
        last_beat: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.settings, self.me, self.on_lost = settings, me, on_lost
        # When the guarded work loops last completed a turn (the oldest of them; monotonic).
        self.last_beat = last_beat
        self.namespace, self.name = settings.operator_namespace, settings.leader_lease_name
        # Typed for model objects; plain dicts go in and raw JSON comes out.
        self._api: Any = api if api is not None else _own_client()
        self._observed: Observed | None = None
        self._last_renewed = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.waiting_for: str | None = None

    def try_once(self, deadline: float) -> float | None:
        """One look at the Lease, writing what `decide` says, given up (an exception) at the
        monotonic `deadline`. None when this replica holds the Lease afterwards; otherwise
        the seconds until the holder's Lease expires as seen here."""
        started = time.monotonic()
        manifest = self._read(_left(deadline))
        if manifest is None:
            self._observed = None
        else:
            self._observed = observe(
                self._observed, LeaderRecord.from_manifest(manifest), time.monotonic()
            )
        d = decide(
            self.me,
            self._observed,
            time.monotonic(),
            dt.datetime.now(dt.UTC),
            self.settings.leader_lease_seconds,
        )
        if d.record is None:
            self.waiting_for = d.holder
            return d.expires_in
        try:
            self._write(d.record, manifest, _left(deadline))
        except ApiException as e:
            if e.status == 409:  # another replica wrote first: it holds the Lease, not us
                return self.settings.leader_retry_seconds
            raise
        self._last_renewed = started
        if d.action != "renew":
            _log.info(
                "leader Lease acquired",
                identity=self.me,
                lease=self.name,
                namespace=self.namespace,
                action=d.action,
                previous=self.waiting_for,
            )
        return None

    def _read(self, timeout: float) -> dict[str, Any] | None:
        try:
            response = self._api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=timeout
            )
        except ApiException as e:
            if kube.is_not_found(e):
                return None
            raise
        manifest: dict[str, Any] = json.loads(response.data)
        return manifest

    def _write(self, record: LeaderRecord, current: dict[str, Any] | None, timeout: float) -> None:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(MANAGED_BY),
            },
            "spec": record.spec(),
        }
        if current is None:
            self._api.create_namespaced_lease(self.namespace, body, _request_timeout=timeout)
            return
        # Replaced under the resourceVersion read: a write in between is a 409, not lost.
        body["metadata"] = {
            **current["metadata"],
            **{
                "labels": {
                    **(current["metadata"].get("labels") or {}),
                    **body["metadata"]["labels"],
                }
            },
        }
        self._api.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=timeout
        )

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Waits until this replica holds the Lease (True), or `stop` is set (False). Looks
        every retry period, and right when the holder's Lease is due to expire."""
        retry = self.settings.leader_retry_seconds
        announced: str | None = None
        while stop is None or not stop.is_set():
            try:
                expires_in = self.try_once(time.monotonic() + max(1.0, 2 * retry))
            except Exception as e:  # the API server may be restarting: keep looking
                _log.warning("leader Lease unreadable; still standing by", error=str(e))
                expires_in = retry
            if expires_in is None:
                return True
            if self.waiting_for != announced:
                announced = self.waiting_for
                _log.info("standing by", identity=self.me, leader=announced, lease=self.name)
            pause = min(retry, max(0.05, expires_in + 0.01))
            if stop is not None:
                stop.wait(pause)
            else:
                time.sleep(pause)
        return False

    def keep(self) -> None:
        """Renews from a thread until `release`; calls `on_lost` when the Lease is gone."""
        self._renewer = threading.Thread(target=self._renew_loop, name="leader-renew", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        s = self.settings
        while True:
            # Every wait and request ends by the deadline: no hung call outlives it.
            deadline = self._last_renewed + s.leader_renew_deadline_seconds
            if self._stop.wait(min(s.leader_retry_seconds, _left(deadline))):
                return
            beat = self.last_beat()
            if work_stalled(beat, time.monotonic(), s.leader_work_stall_seconds):
                # Not released: a stuck thread may still write, and this process ends now;
                # the Lease expires after its duration and a standby takes over.
                _log.error(
                    "work loop stalled: giving the leader Lease up",
                    stalled_seconds=round(time.monotonic() - (beat or 0.0), 1),
                    bound_seconds=s.leader_work_stall_seconds,
                )
                self.on_lost()
                return
            if must_stop(self._last_renewed, time.monotonic(), s.leader_renew_deadline_seconds):
                _log.error(
                    "leader Lease not renewed within the deadline",
                    deadline_seconds=s.leader_renew_deadline_seconds,
                )
                self.on_lost()
                return
            try:
                if self.try_once(deadline) is not None:
                    _log.error("leader Lease taken by another replica", holder=self.waiting_for)
                    self.on_lost()
                    return
            except Exception as e:  # retried until the deadline
                _log.warning("leader Lease renewal failed", error=str(e))

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=2 * self.settings.leader_retry_seconds + 1)

    def release(self) -> None:
        """Stops renewing and gives the Lease up (a clean stop): a standby takes over at its
        next look instead of after the Lease's duration."""
        self.stop_renewing()
        try:
            manifest = self._read(timeout=5)
            if manifest is None:
                return
            record = LeaderRecord.from_manifest(manifest)
            if record.holder == self.me:
                self._write(released(record, dt.datetime.now(dt.UTC)), manifest, timeout=5)
                _log.info("leader Lease released", identity=self.me, lease=self.name)
        except Exception as e:  # the standby takes over after the duration instead
            _log.warning("leader Lease not released", error=str(e))


def step_down(
    elector: LeaderElector, work_stopped: bool, on_stuck: Callable[[], None] = _lost
) -> None:
    """The end of a clean stop, once the operator has stopped its work (`work_stopped`: all of
    it ended within the grace period). Only then is the Lease given up, so that no standby
    starts while this process still writes. Otherwise the Lease is kept until this process is
    gone (`on_stuck` exits at once: the threads die with it) and then expires."""
    if work_stopped:
        elector.release()
        return
    elector.stop_renewing()
    _log.error(
        "work still running after the grace period: exiting without releasing the leader "
        "Lease, which expires after its duration",
        grace_seconds=elector.settings.shutdown_grace_seconds,
    )
    on_stuck()


class _Standby(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"standby": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # probes are not news
        return


def wait_to_lead(settings: Settings, liveness: str | None) -> LeaderElector:
    """Stands by until this process holds the leader Lease, answering the liveness probe
    meanwhile (kopf serves it once the operator starts); then renews from a thread."""
    from tradebot.controllers import runtime

    elector = LeaderElector(settings, identity(), last_beat=runtime.get().liveness.oldest)
    server = None
    if liveness:
        url = urlparse(liveness)
        # Where the liveness URL says, as kopf's own endpoint will be: the kubelet probes it.
        address = (url.hostname or "0.0.0.0", url.port or 80)  # noqa: S104
        server = ThreadingHTTPServer(address, _Standby)
        threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    if settings.metrics_port:  # a standby answers its scrape too: it is up, not leading
        metrics.LEADER.set(0)
        metrics.serve(settings.metrics_port)
    _log.info(
        "leader election",
        identity=elector.me,
        lease=settings.leader_lease_name,
        namespace=settings.operator_namespace,
    )
    try:
        elector.acquire()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()  # kopf serves the same port from now on
    metrics.LEADER.set(1)
    elector.keep()
    return elector
