"""Two operator processes with leader election against the real API server: only the holder
of the leader Lease acts, a standby acts on nothing while the leader renews, and when the
leader is killed with SIGKILL the standby takes over and handles a breaker trip issued right
after the kill."""

from __future__ import annotations

import copy
import datetime as dt
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.config import new_client_from_config
from tests.support.helm import token_kubeconfig
from tests.support.manifests import example
from tests.support.operator import operator_process
from tests.support.wait import wait_for

from tradebot.controllers.leadership import EXIT_LOST, LeaderElector
from tradebot.settings import Settings

G, V = "tradebot.dev", "v1alpha1"
LEASE = "tradebot-operator"


def _settings(tmp_path: Path, namespace: str, name: str) -> dict[str, Any]:
    state = tmp_path / name
    state.mkdir()
    return {
        "leader_election": "true",
        "operator_namespace": namespace,
        "executor": "kubernetes",
        "allowed_modes": "dryRun",
        # One records database for both, as the chart's PostgreSQL would be.
        "database_dsn": f"sqlite://{tmp_path / 'records.db'}",
        "local_state_dir": str(state),
    }


def _lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            out.append({"event": line})  # not ours: counts as something the process did
            continue
        out.append(entry if isinstance(entry, dict) else {"event": line})
    return out


def _before_leading(log: Path) -> list[dict[str, Any]]:
    """The process's log lines before it acquired the Lease."""
    lines = _lines(log)
    for i, entry in enumerate(lines):
        if entry.get("event") == "leader Lease acquired":
            return lines[:i]
    return lines


def _acquired(log: Path) -> bool:
    return any(e.get("event") == "leader Lease acquired" for e in _lines(log))


def _standing_by(log: Path) -> bool:
    return any(e.get("event") == "standing by" for e in _lines(log))


def _holder(api: Any, namespace: str) -> str | None:
    coordination: Any = client.CoordinationV1Api(api)
    holder: str | None = coordination.read_namespaced_lease(LEASE, namespace).spec.holder_identity
    return holder


def _strategy_phase(api: Any, namespace: str, name: str) -> str | None:
    custom: Any = client.CustomObjectsApi(api)
    obj = custom.get_namespaced_custom_object(G, V, namespace, "strategies", name)
    phase: str | None = (obj.get("status") or {}).get("phase")
    return phase


def _strategy(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("Strategy", "ema-rsi"))
    doc["metadata"] = {"name": name}
    return doc


@contextmanager
def _holding_the_lease(api: Any, namespace: str) -> Iterator[LeaderElector]:
    """The test itself holds the leader Lease, renewing it from a thread as a live leader
    would; losing it fails the test."""
    lost = threading.Event()
    elector = LeaderElector(
        Settings(operator_namespace=namespace),
        "the-test",
        api=client.CoordinationV1Api(api),
        on_lost=lost.set,
    )
    gave_up = threading.Event()
    timer = threading.Timer(30, gave_up.set)
    timer.start()
    try:
        assert elector.acquire(gave_up), "the test could not take the Lease within 30 s"
    finally:
        timer.cancel()
    elector.keep()
    try:
        yield elector
    finally:
        elector.release()
    assert not lost.is_set(), "the test's own Lease renewal failed"


def test_a_standby_acts_on_nothing_while_the_leader_renews_then_takes_over(
    cluster: Any, api_client: Any, namespace: str, tmp_path: Path, crds_installed: Any
) -> None:
    custom: Any = client.CustomObjectsApi(api_client)
    log = tmp_path / "standby.log"
    health, metrics = _free_port(), _free_port()
    with (
        _holding_the_lease(api_client, namespace) as leader,
        operator_process(
            cluster.kubeconfig,
            namespace,
            log,
            ("--liveness", f"http://127.0.0.1:{health}/healthz"),
            metrics_port=str(metrics),
            **_settings(tmp_path, namespace, "b"),
        ),
    ):
        wait_for(lambda: _standing_by(log), 60, what="the process standing by")
        # Alive (the kubelet keeps it) and scraped, but not leading.
        assert _get(health, "/healthz") == (200, '{"standby": true}')
        assert "tradebot_operator_leader 0.0" in _get(metrics, "/metrics")[1]
        custom.create_namespaced_custom_object(G, V, namespace, "strategies", _strategy("probe"))
        # Longer than the Lease's duration (10 s): the renewing holder is not taken over.
        time.sleep(15)
        assert _strategy_phase(api_client, namespace, "probe") is None
        # No operator acts here (the test holds the Lease): anything written is the standby's.
        assert _kopf_marks(api_client, namespace, "probe") == ([], [])
        core: Any = client.CoreV1Api(api_client)
        assert not core.list_namespaced_event(namespace).items
        assert _holder(api_client, namespace) == "the-test"
        before = _before_leading(log)
        assert not _acquired(log)
        # Nothing but the election in its log: no kopf, no handler, no start-up.
        assert {e.get("component") for e in before} == {"leadership"}, before[:5]
        assert any(e.get("leader") == "the-test" for e in before)
        leader.release()  # a clean stop gives the Lease up: taken over at the next look
        released = time.monotonic()
        wait_for(lambda: _acquired(log), 15, what="the standby acquiring the released Lease")
        # The positive control: the same process, now leading, reconciles the same object.
        wait_for(
            lambda: _strategy_phase(api_client, namespace, "probe") == "Ready",
            60,
            what="the Strategy reconciled by the new leader",
        )
        assert time.monotonic() - released < 60
        # The same check sees what an acting operator writes.
        assert _kopf_marks(api_client, namespace, "probe") != ([], [])
        # The same ports now served by the leading operator: kopf's probe, the metrics.
        assert wait_for(
            lambda: (
                _get(health, "/healthz")[0] == 200 and "standby" not in _get(health, "/healthz")[1]
            ),
            30,
            what="kopf's probe",
        )
        assert "tradebot_operator_leader 1.0" in _get(metrics, "/metrics")[1]
        assert (_holder(api_client, namespace) or "").split("_")[0] != "the-test"


def test_the_leader_killed_the_standby_takes_over_and_handles_a_trip(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
) -> None:
    custom: Any = client.CustomObjectsApi(api_client)
    core: Any = client.CoreV1Api(api_client)
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "bot-a", "labels": {"tradebot.dev/fleet": "main"}}
    bot["spec"]["resources"] = {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "50m", "memory": "64Mi"},
    }
    breaker = copy.deepcopy(example("CircuitBreaker"))
    breaker["spec"]["limits"] = {"maxDrawdown": 0.5}  # the trip comes from the kill switch
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [example("Strategy", "ema-rsi"), breaker, bot],
            }
        ),
    )
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"

    def bot_pods() -> list[Any]:
        return list(
            core.list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot").items
        )

    with operator_process(
        cluster.kubeconfig, namespace, log_a, **_settings(tmp_path, namespace, "a")
    ) as a:
        wait_for(lambda: _acquired(log_a), 60, what="the first process leading")
        with operator_process(
            cluster.kubeconfig, namespace, log_b, **_settings(tmp_path, namespace, "b")
        ) as b:
            wait_for(lambda: _standing_by(log_b), 60, what="the second process standing by")
            # The leader acts: the bot's pod runs.
            wait_for(
                lambda: [p for p in bot_pods() if p.status.phase == "Running"],
                120,
                what="the bot's pod Running",
            )
            assert not _acquired(log_b)
            assert {e.get("component") for e in _before_leading(log_b)} == {"leadership"}
            a.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            custom.patch_namespaced_custom_object(
                G,
                V,
                namespace,
                "circuitbreakers",
                "main-fleet",
                {"metadata": {"annotations": {"tradebot.dev/trip": "failover"}}},
            )
            custom.create_namespaced_custom_object(
                G, V, namespace, "strategies", _strategy("after-kill")
            )
            assert a.wait(timeout=10) == -signal.SIGKILL
            wait_for(lambda: not bot_pods(), 60, what="the bot's pod gone after the trip")
            stopped = time.monotonic() - killed
            wait_for(
                lambda: _strategy_phase(api_client, namespace, "after-kill") == "Ready",
                60,
                what="the Strategy created after the kill reconciled",
            )
            reconciled = time.monotonic() - killed
            status = wait_for(
                lambda: (
                    (
                        custom.get_namespaced_custom_object(
                            G, V, namespace, "circuitbreakers", "main-fleet"
                        ).get("status")
                        or {}
                    ).get("incidentId")
                    and True
                ),
                30,
                what="the trip recorded",
            )
            assert status
            assert _acquired(log_b)
            assert b.poll() is None
            # Generous for a loaded machine; bench/failover.py measures the figures.
            assert stopped < 45, stopped
            assert reconciled < 60, reconciled


def test_a_leader_whose_lease_is_taken_exits_at_once(
    cluster: Any, api_client: Any, namespace: str, tmp_path: Path, crds_installed: Any
) -> None:
    log = tmp_path / "leader.log"
    custom: Any = client.CustomObjectsApi(api_client)
    coordination: Any = client.CoordinationV1Api(api_client)
    with operator_process(
        cluster.kubeconfig, namespace, log, **_settings(tmp_path, namespace, "a")
    ) as leader:
        wait_for(lambda: _acquired(log), 60, what="the process leading")
        custom.create_namespaced_custom_object(G, V, namespace, "strategies", _strategy("probe"))
        wait_for(
            lambda: _strategy_phase(api_client, namespace, "probe") == "Ready",
            60,
            what="the leader acting",
        )  # the positive control: it was acting
        # Another replica's takeover (as after a partition): the Lease names someone else.
        lease = coordination.read_namespaced_lease(LEASE, namespace)
        lease.spec.holder_identity = "usurper"
        coordination.replace_namespaced_lease(LEASE, namespace, lease)
        taken = time.monotonic()
        assert leader.wait(timeout=30) == EXIT_LOST, log.read_text()[-3000:]
        # Its next renewal (every 2 s) saw it; under load, a few seconds more.
        assert time.monotonic() - taken < 10
    assert any(e.get("event") == "leader Lease taken by another replica" for e in _lines(log))


def test_a_leader_that_cannot_renew_stops_before_its_lease_expires(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path
) -> None:
    """The renew deadline with real failures: the elector's ServiceAccount loses its right to
    the Lease (its RoleBinding deleted), so every renewal is refused (403)."""
    sa = "elector"
    rules = [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    kubectl("create", "serviceaccount", sa, "-n", namespace)
    rbac: Any = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": sa}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
        },
    )
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    kubeconfig = token_kubeconfig(cluster.kubeconfig, token, tmp_path / "sa.kubeconfig")
    api = client.CoordinationV1Api(
        new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
    )
    settings = Settings(operator_namespace=namespace)
    lost = threading.Event()
    elector = LeaderElector(settings, "leader", api=api, on_lost=lost.set)
    gave_up = threading.Event()
    timer = threading.Timer(30, gave_up.set)
    timer.start()
    try:
        assert elector.acquire(gave_up), "no Lease within 30 s"
    finally:
        timer.cancel()
    elector.keep()
    try:
        time.sleep(5)  # renewing: the positive control
        assert not lost.is_set()
        assert _renewed_recently(api_client, namespace, within=5)
        rbac.delete_namespaced_role_binding(sa, namespace)
        revoked = time.monotonic()
        assert lost.wait(settings.leader_lease_seconds + 5), "the leader never stopped"
        stopped = time.monotonic() - revoked
        # Stopped at the renew deadline after its last successful renewal (at most one retry
        # period before the revocation), which is before a standby could take over.
        assert stopped < settings.leader_lease_seconds, stopped
        assert (
            stopped >= settings.leader_renew_deadline_seconds - settings.leader_retry_seconds - 1
        ), stopped
    finally:
        elector.release()


def _renewed_recently(api: Any, namespace: str, within: float) -> bool:
    coordination: Any = client.CoordinationV1Api(api)
    renewed = coordination.read_namespaced_lease(LEASE, namespace).spec.renew_time
    age = (dt.datetime.now(dt.UTC) - renewed).total_seconds()
    return bool(age < within)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def _kopf_marks(api: Any, namespace: str, name: str) -> tuple[list[str], list[str]]:
    """What kopf writes on an object it handles: finalizers, its annotations."""
    custom: Any = client.CustomObjectsApi(api)
    meta = custom.get_namespaced_custom_object(G, V, namespace, "strategies", name)["metadata"]
    return (
        list(meta.get("finalizers") or []),
        sorted(k for k in (meta.get("annotations") or {}) if "tradebot.dev" in k),
    )
