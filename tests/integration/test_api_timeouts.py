"""Client-side timeouts against a real API server behind a freezing TCP proxy
(tests/support/tcp_proxy.py): a frozen connection is half-open, it neither delivers nor fails.

Bounds stated here (with the test's settings: connect 2 s, read 4 s, watches of 3 s server-side
plus a 2 s margin): a call through a frozen connection fails within its read timeout; an
informer whose watch is frozen gives it up within the watch's read timeout, and once the path
works again lists afresh and delivers what changed meanwhile within RECOVERY seconds; a
leader whose admission loop is stuck stops renewing within the stall bound plus one retry
period, and a standby takes the Lease once it has expired."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from tests.support.tcp_proxy import FreezingProxy, proxied_kubeconfig
from tests.support.wait import wait_for

from tradebot import kube
from tradebot.controllers import runtime
from tradebot.controllers.informer import Informer
from tradebot.controllers.leadership import LeaderElector
from tradebot.controllers.queue import AdmissionLoop
from tradebot.settings import Settings

CONNECT, READ = 2.0, 4.0
WATCH_SECONDS, MARGIN = 3, 2.0
# After the thaw: at most one frozen list still to time out (urllib3 tries it 4 times: 16 s),
# the informer's backoff (at most 10 s after repeated failures) and a list.
RECOVERY = 45.0
LABELS = {"test": "timeouts"}


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "_timeouts", (CONNECT, READ))
    monkeypatch.setattr(kube, "WATCH_READ_MARGIN", MARGIN)


@pytest.fixture
def proxy(cluster: Any, tmp_path: Path) -> Iterator[tuple[FreezingProxy, Path]]:
    with proxied_kubeconfig(cluster.kubeconfig, tmp_path / "proxied.kubeconfig") as p:
        yield p


def _client(kubeconfig: Path, timed: bool) -> Any:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    if timed:
        return kube.TimedApiClient(configuration)
    return client.ApiClient(configuration)


def _cm(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": LABELS}}


def test_a_call_through_a_frozen_connection_fails_within_its_timeout(
    short_timeouts: None, proxy: tuple[FreezingProxy, Path], namespace: str
) -> None:
    fp, kubeconfig = proxy
    timed: Any = client.CoreV1Api(_client(kubeconfig, timed=True))
    untimed: Any = client.CoreV1Api(_client(kubeconfig, timed=False))
    timed.list_namespaced_config_map(namespace)  # both work through the proxy
    untimed.list_namespaced_config_map(namespace)
    fp.freeze()

    # Positive control: the client's own default (no timeout) hangs on the frozen path.
    def hang() -> None:
        with contextlib.suppress(Exception):  # ends only when the proxy closes, after the test
            untimed.list_namespaced_config_map(namespace)

    hung = threading.Thread(target=hang, daemon=True)
    hung.start()
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError, match=r"(?i)timed out"):
        timed.list_namespaced_config_map(namespace)
    took = time.monotonic() - started
    # urllib3 retries an idempotent request 3 times, each on a fresh connection (as frozen).
    assert took < (1 + 3) * READ + 5, took
    assert hung.is_alive(), "the call without a timeout ended: the proxy did not freeze"


def test_an_informer_recovers_from_a_frozen_watch(
    short_timeouts: None,
    proxy: tuple[FreezingProxy, Path],
    api_client: Any,
    namespace: str,
) -> None:
    fp, kubeconfig = proxy
    direct: Any = client.CoreV1Api(api_client)  # the test's own writes never pass the proxy
    proxied: Any = client.CoreV1Api(_client(kubeconfig, timed=True))
    seen: set[str] = set()
    lock = threading.Lock()

    def on_list(objs: list[dict[str, Any]]) -> None:
        with lock:
            seen.update(o["metadata"]["name"] for o in objs)

    def on_event(_: str, obj: dict[str, Any]) -> None:
        with lock:
            seen.add(obj["metadata"]["name"])

    def has(name: str) -> bool:
        with lock:
            return name in seen

    inf = Informer(
        "timeouts",
        lambda **kw: proxied.list_namespaced_config_map(namespace, **kw),
        on_list,
        on_event,
        label_selector="test=timeouts",
        watch_timeout=WATCH_SECONDS,
    )
    # Positive control: the same watch without a client-side read timeout, as before.
    untimed: Any = client.CoreV1Api(_client(kubeconfig, timed=False))
    control: set[str] = set()

    def follow_untimed() -> None:
        with contextlib.suppress(Exception):  # ends only when the proxy closes, after the test
            for ev in watch.Watch().stream(  # type: ignore[no-untyped-call]
                untimed.list_namespaced_config_map,
                namespace,
                label_selector="test=timeouts",
                timeout_seconds=3600,
            ):
                control.add(ev["object"].metadata.name)

    inf.start()
    threading.Thread(target=follow_untimed, daemon=True).start()
    try:
        assert inf.synced.wait(30), "the first list never completed"
        direct.create_namespaced_config_map(namespace, _cm("before"))
        wait_for(lambda: has("before") and "before" in control, 20, what="both watches")
        fp.freeze()
        accepted = fp.accepted
        direct.create_namespaced_config_map(namespace, _cm("during"))
        # The informer gives its frozen watch up (read timeout) and tries a new connection.
        wait_for(
            lambda: fp.accepted > accepted,
            WATCH_SECONDS + MARGIN + READ + 10,
            what="a new connection from the informer after its watch timed out",
        )
        assert not has("during")  # frozen: nothing arrives meanwhile
        fp.thaw()
        thawed = time.monotonic()
        wait_for(lambda: has("during"), RECOVERY, what="the informer to recover after the thaw")
        recovered = time.monotonic() - thawed
        direct.create_namespaced_config_map(namespace, _cm("after"))
        wait_for(lambda: has("after"), 20, what="the informer's watch after recovery")
        # The watch without a timeout is still stuck on its half-open connection.
        assert "during" not in control, control
        assert "after" not in control, control
        print(f"informer recovered {recovered:.1f} s after the thaw")
    finally:
        inf.stop()


def _lease_renew_time(api_client: Any, namespace: str, name: str) -> dt.datetime | None:
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease(name, namespace)
    renewed: dt.datetime | None = lease.spec.renew_time
    return renewed


def _holder(api_client: Any, namespace: str, name: str) -> str | None:
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease(name, namespace)
    holder: str | None = lease.spec.holder_identity
    return holder


def _acquire(elector: LeaderElector, within: float) -> bool:
    gave_up = threading.Event()
    timer = threading.Timer(within, gave_up.set)
    timer.start()
    try:
        return elector.acquire(gave_up)
    finally:
        timer.cancel()


def test_a_leader_whose_admission_loop_is_stuck_gives_its_lease_up(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str, crds_installed: Any
) -> None:
    stall = 3.0
    settings = Settings(
        operator_namespace=namespace,
        namespaces=(namespace,),
        leader_lease_name="stall",
        leader_lease_seconds=4,
        leader_renew_deadline_seconds=3,
        leader_retry_seconds=0.5,
        leader_work_stall_seconds=stall,
    )
    loop = AdmissionLoop(settings)
    lost = threading.Event()
    leader = LeaderElector(
        settings,
        "leader",
        api=client.CoordinationV1Api(api_client),
        on_lost=lost.set,
        last_beat=operator_runtime.liveness.oldest,
    )
    standby = LeaderElector(settings, "standby", api=client.CoordinationV1Api(api_client))
    loop.start()
    try:
        wait_for(loop.synced, 30, what="the admission loop's first lists")
        assert _acquire(leader, 30)
        leader.keep()
        # Positive control: with the loop turning, the leader renews past the stall bound.
        first = _lease_renew_time(api_client, namespace, "stall")
        time.sleep(2 * stall)
        assert not lost.is_set()
        assert _lease_renew_time(api_client, namespace, "stall") != first
        with loop.state.lock:  # the admission pass waits on this lock: the loop is stuck
            stuck = time.monotonic()
            assert lost.wait(stall + settings.reconcile_interval_seconds + 5), "kept the Lease"
            gave_up = time.monotonic() - stuck
            # Its last turn was at most one reconcile interval before; then the stall bound,
            # then the next renewal look.
            assert gave_up <= stall + settings.reconcile_interval_seconds + 2, gave_up
            last = _lease_renew_time(api_client, namespace, "stall")
            assert _acquire(standby, settings.leader_lease_seconds + 10), "no takeover"
            assert _holder(api_client, namespace, "stall") == "standby"
            assert _lease_renew_time(api_client, namespace, "stall") != last
    finally:
        loop.stop()
        standby.release()


def test_the_lease_is_released_only_after_guarded_work_stopped(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str
) -> None:
    from tradebot.controllers.leadership import step_down

    settings = Settings(
        operator_namespace=namespace,
        leader_lease_name="guarded",
        leader_lease_seconds=4,
        leader_renew_deadline_seconds=3,
        leader_retry_seconds=0.5,
    )
    leader = LeaderElector(settings, "leader", api=client.CoordinationV1Api(api_client))
    assert _acquire(leader, 30)
    leader.keep()
    writing, finish = threading.Event(), threading.Event()
    handling, finish_handler = threading.Event(), threading.Event()

    def guarded_work() -> None:  # a trip's stop mid-write when SIGTERM arrives
        writing.set()
        finish.wait(60)

    def kopf_handler() -> None:  # a sync handler on kopf's own pool
        handling.set()
        finish_handler.wait(60)

    operator_runtime.pool("guarded", 2).submit(guarded_work)
    operator_runtime.handler_executor = ThreadPoolExecutor(2)
    operator_runtime.handler_executor.submit(kopf_handler)
    assert writing.wait(10)
    assert handling.wait(10)
    stopped: list[bool] = []

    def shut_down() -> None:  # what kopf's cleanup and then cli.py do
        pools = operator_runtime.close(timeout=30)
        stopped.append(pools and operator_runtime.stop_handlers(30))

    shutdown = threading.Thread(target=shut_down, daemon=True)
    shutdown.start()
    for release in (finish, finish_handler):
        shutdown.join(3 * settings.leader_retry_seconds + 1)
        # Still running: the shutdown waits, and the Lease is held (and renewed) meanwhile.
        assert shutdown.is_alive()
        assert not stopped
        assert _holder(api_client, namespace, "guarded") == "leader"
        release.set()
    shutdown.join(10)
    assert stopped == [True]
    step_down(leader, stopped[0], on_stuck=lambda: pytest.fail("work had stopped"))
    assert _holder(api_client, namespace, "guarded") is None  # released: the positive control


def test_work_that_outlives_the_grace_period_keeps_the_lease_until_the_process_ends(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str
) -> None:
    from tradebot.controllers.leadership import step_down

    settings = Settings(
        operator_namespace=namespace,
        leader_lease_name="stuck",
        leader_lease_seconds=4,
        leader_renew_deadline_seconds=3,
        leader_retry_seconds=0.5,
    )
    leader = LeaderElector(settings, "leader", api=client.CoordinationV1Api(api_client))
    assert _acquire(leader, 30)
    leader.keep()
    finish = threading.Event()
    operator_runtime.pool("stuck", 1).submit(lambda: finish.wait(60))
    try:
        assert operator_runtime.close(timeout=1) is False
        exited = threading.Event()
        step_down(leader, False, on_stuck=exited.set)
        assert exited.is_set()
        assert _holder(api_client, namespace, "stuck") == "leader"  # not released
    finally:
        finish.set()


def _job(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"tradebot.dev/kind": "backtest", "tradebot.dev/backtest": name},
        },
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }
        },
    }


def test_the_admission_loop_turns_through_a_freeze_and_its_informers_recover(
    short_timeouts: None,
    proxy: tuple[FreezingProxy, Path],
    operator_runtime: runtime.Runtime,
    api_client: Any,
    namespace: str,
    crds_installed: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real admission loop, its informers through the proxy: frozen, the loop still
    turns (its heartbeat stays fresh, so the leader keeps its Lease for a good reason), and
    after the thaw a Job created meanwhile holds its slot in the queue's view."""
    fp, kubeconfig = proxy
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    kube.reset()
    settings = Settings(namespaces=(namespace,), api_watch_timeout_seconds=WATCH_SECONDS)
    loop = AdmissionLoop(settings)
    batch: Any = client.BatchV1Api(api_client)  # the test's writes never pass the proxy

    def holds(name: str) -> bool:
        with loop.state.lock:
            return (namespace, name) in loop.state.jobs

    loop.start()
    try:
        wait_for(loop.synced, 30, what="the admission loop's first lists")
        batch.create_namespaced_job(namespace, _job("before"))
        wait_for(lambda: holds("before"), 20, what="the Job seen before the freeze")
        fp.freeze()
        frozen = time.monotonic()
        batch.create_namespaced_job(namespace, _job("during"))
        while time.monotonic() - frozen < WATCH_SECONDS + MARGIN + READ:
            beat = operator_runtime.liveness.oldest()
            assert beat is not None
            assert time.monotonic() - beat < settings.reconcile_interval_seconds + 3
            time.sleep(0.5)
        assert not holds("during")  # positive evidence the freeze held the informers
        fp.thaw()
        thawed = time.monotonic()
        wait_for(lambda: holds("during"), RECOVERY, what="the Job informer to recover")
        print(f"admission loop's Job informer recovered {time.monotonic() - thawed:.1f} s after")
    finally:
        loop.stop()
        kube.reset()
