"""A bot's stop through its REST API, against a real API server: bot_control finds the bot's
pod IP and API credentials in the cluster, logs in and stops the bot (the Freqtrade API
double answering at the pod's IP), and only then removes the pod; a confirmed stopEntries
leaves the pod running, an unconfirmed one does not."""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tradebot import kube
from tradebot.controllers import bot_control, bot_endpoints, runtime
from tradebot.domain import bots
from tradebot.domain.naming import LABEL_KIND
from tradebot.localcluster.nodes import NodeSpec
from tradebot_testing.freqtrade_api_double import FreqtradeApiDouble

# A node of its own whose pods get loopback IPs (kwok takes them from the node's podCIDR),
# tainted so that no other test's pod lands there.
NODE = "bot-stop-loopback"
CIDR = "127.99.0.0/24"


@pytest.fixture(scope="module")
def loopback_node(api_client: Any) -> Iterator[str]:
    core: Any = client.CoreV1Api(api_client)
    node = NodeSpec(NODE, "10.241.9.9", "8", "16Gi").manifest()
    node["spec"].update(
        {
            "podCIDR": CIDR,
            "podCIDRs": [CIDR],
            "taints": [{"key": "tradebot.dev/test", "value": NODE, "effect": "NoSchedule"}],
        }
    )
    core.create_node(node)
    yield NODE
    core.delete_node(NODE)


@pytest.fixture(autouse=True)
def patient_api(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests check what is called and in which order, not the 1-s bound: on a loaded CI
    # machine a login and a stop at the double took over a second, and the stop fell back to
    # removing the pod alone (api_calls == []).
    monkeypatch.setattr(bot_control, "API_TIMEOUT_SECONDS", 15.0)


@pytest.fixture
def double() -> Iterator[FreqtradeApiDouble]:
    with FreqtradeApiDouble(bots.API_PORT) as d:
        yield d


def _bot(
    api_client: Any, namespace: str, name: str, double: FreqtradeApiDouble
) -> tuple[bot_control.BotRef, str]:
    core: Any = client.CoreV1Api(api_client)
    ref = bot_control.BotRef(namespace, name, str(uuid.uuid4()))
    items = {"username": "u", "password": "p", "jwt-secret-key": "k", "ws-token": "w"}
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": ref.api_secret_name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in items.items()},
        },
    )
    core.create_namespaced_pod(
        namespace,
        {
            # The operator's bot pods' kind label: its watch of bot pods selects on it.
            "metadata": {"name": ref.pod_name, "labels": {LABEL_KIND: "livebot"}},
            "spec": {
                "nodeName": NODE,
                "tolerations": [{"key": "tradebot.dev/test", "operator": "Exists"}],
                "containers": [{"name": "bot", "image": "freqtrade"}],
            },
        },
    )
    deadline = time.monotonic() + 60
    ip = None
    while ip is None:
        assert time.monotonic() < deadline, "the pod got no IP"
        ip = core.read_namespaced_pod(ref.pod_name, namespace).status.pod_ip
        time.sleep(0.2)
    assert ip.startswith("127.99.")
    double.listen([ip])
    return ref, ip


def _deleting(api_client: Any, ref: bot_control.BotRef) -> bool:
    core = client.CoreV1Api(api_client)
    pod = kube.read_or_none(core.read_namespaced_pod, ref.pod_name, ref.namespace)
    return pod is None or pod.metadata.deletion_timestamp is not None


def test_stop_calls_the_api_first_then_removes_the_pod(
    operator_runtime: runtime.Runtime,
    api_client: Any,
    namespace: str,
    loopback_node: str,
    double: FreqtradeApiDouble,
) -> None:
    ref, ip = _bot(api_client, namespace, "b1", double)
    outcome = bot_control.stop(ref, "stop")
    assert outcome.api_calls == ["stop"], outcome
    assert outcome.api_error is None
    assert outcome.pod_removed
    assert [c.path for c in double.calls(ip)] == ["stop"]  # Basic auth, no login
    assert double.state(ip) == "stopped"
    assert _deleting(api_client, ref)


def test_stop_entries_keeps_the_pod_only_when_the_api_confirmed(
    operator_runtime: runtime.Runtime,
    api_client: Any,
    namespace: str,
    loopback_node: str,
    double: FreqtradeApiDouble,
) -> None:
    confirmed, ip = _bot(api_client, namespace, "b2", double)
    outcome = bot_control.stop(confirmed, "stopEntries")
    assert outcome.api_calls == ["stopentry"], outcome
    assert not outcome.pod_removed
    assert double.first(ip, "stopentry") is not None
    assert not _deleting(api_client, confirmed)
    # Unconfirmed (the API not used, as for a bot that did not answer its last round): the
    # pod goes.
    unconfirmed, other_ip = _bot(api_client, namespace, "b3", double)
    outcome = bot_control.stop(unconfirmed, "stopEntries", use_api=False)
    assert outcome.api_calls == []
    assert outcome.pod_removed
    assert double.calls(other_ip) == []
    assert _deleting(api_client, unconfirmed)


class _CountedReads:
    """kube.core() as the stop sees it, counting its reads of pods and Secrets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: Counter[str] = Counter()
        real = kube.core

        def core() -> Any:
            api = real()
            counts = self.reads

            class Counted:
                def __getattr__(self, name: str) -> Any:
                    if name in ("read_namespaced_pod", "read_namespaced_secret"):
                        counts[name] += 1
                    return getattr(api, name)

            return Counted()

        monkeypatch.setattr(kube, "core", core)


def test_stop_uses_the_ip_and_credentials_the_operator_saw(
    operator_runtime: runtime.Runtime,
    api_client: Any,
    namespace: str,
    loopback_node: str,
    double: FreqtradeApiDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the watch of bot pods running and the credentials read once before (as the
    LiveBot rounds read them), a stop reads neither the pod nor the Secret."""
    watch = bot_endpoints.BotPodWatch(operator_runtime.settings)
    watch.start()
    try:
        assert watch.synced(30)
        ref, ip = _bot(api_client, namespace, "b4", double)
        assert bot_control.api_credentials(ref) is not None  # a round's read
        deadline = time.monotonic() + 30
        while bot_endpoints.POD_IPS.ip(namespace, ref.pod_name) != ip:
            assert time.monotonic() < deadline, "the watch never showed the pod's IP"
            time.sleep(0.1)
        counted = _CountedReads(monkeypatch)
        outcome = bot_control.stop(ref, "stop")
    finally:
        watch.stop()
    assert outcome.api_calls == ["stop"], outcome
    assert outcome.pod_removed
    assert [c.path for c in double.calls(ip)] == ["stop"]  # Basic auth, no login
    assert counted.reads == {}
    assert _deleting(api_client, ref)


def test_a_stale_ip_falls_back_to_the_api_server(
    operator_runtime: runtime.Runtime,
    api_client: Any,
    namespace: str,
    loopback_node: str,
    double: FreqtradeApiDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An IP the operator saw that no longer answers (the pod replaced, the watch behind):
    the stop reads the pod and the Secret afresh and reaches the bot there. Also the control
    of the test above: the counter sees the reads a stop makes."""
    ref, ip = _bot(api_client, namespace, "b5", double)
    assert bot_control.api_credentials(ref) is not None
    stale = {"metadata": {"namespace": namespace, "name": ref.pod_name}}
    bot_endpoints.POD_IPS.event("MODIFIED", {**stale, "status": {"podIP": "127.99.0.250"}})
    try:
        counted = _CountedReads(monkeypatch)
        outcome = bot_control.stop(ref, "stop")
    finally:
        bot_endpoints.POD_IPS.event("DELETED", stale)
    assert outcome.api_calls == ["stop"], outcome
    assert outcome.api_error is None
    assert [c.path for c in double.calls(ip)] == ["stop"]  # Basic auth, no login
    assert counted.reads == {"read_namespaced_pod": 1, "read_namespaced_secret": 1}
    assert _deleting(api_client, ref)
