"""Objects the API server takes but whose Jobs it would refuse: each runs or ends with a
reason, never waits in silence. The operator in-process on the local cluster, kubernetes
executor (kwok runs no container: a pod is cued to finish)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.domain.naming import label_value

G, V = "tradebot.dev", "v1alpha1"
LONG = "a-backtest-whose-name-is-far-longer-than-a-label-value-may-be-" + "x" * 120


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _strategy(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("Strategy", "ema-rsi"))
    doc["metadata"] = {"name": name}
    return doc


def _large_strategy(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    """A Strategy whose code (from a ConfigMap: inline code is capped at 256 KiB) fills its
    own ConfigMap almost to Kubernetes' 1 MiB: with the run's config beside it, the run's
    ConfigMap cannot be made."""
    doc = _strategy(name)
    code = doc["spec"].pop("code")
    room = 1024 * 1024 - len("strategy.py") - len(code.encode()) - 64
    # A model's weights inlined, say: one long comment line.
    code += "\n# " + "w" * room + "\n"
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace,
        {"metadata": {"name": f"{name}-code"}, "data": {"strategy.py": code}},
    )
    doc["spec"]["configMapRef"] = {"name": f"{name}-code", "key": "strategy.py"}
    return doc


def _backtest(name: str, strategy: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    doc["metadata"] = {"name": name}
    doc["spec"]["strategyRef"] = {"name": strategy}
    return doc


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(G, V, namespace, plural, name)
    return dict(obj.get("status") or {})


def _events(api_client: Any, namespace: str, name: str) -> list[Any]:
    return [
        e
        for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
        if e.involved_object.name == name
    ]


def test_long_names_run_and_end(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """Before: the 183-character Backtest name (and its Strategy's) went into the Job's labels
    as it was; the API server refused the Job (422) and the queue retried every 5 s with
    nothing in the Backtest's status: Queued for good."""
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    strategy = "strategy-" + "s" * 100
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, _strategy(strategy), _backtest(LONG, strategy))
        pod = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace, label_selector=f"tradebot.dev/backtest={label_value(LONG)}"
                    ).items
                ),
                None,
            ),
            90,
            what="the long-named Backtest's pod",
        )
        assert pod.metadata.annotations["tradebot.dev/backtest"] == LONG
        assert _status(api, namespace, "backtests", LONG)["phase"] in ("Queued", "Running")
        summary = {"ok": False, "strategy": "EmaRsiStrategy", "exitCode": 2, "error": "cued"}
        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {
                "metadata": {
                    "annotations": {
                        "kwok.tradebot.dev/outcome": "Failed",
                        "kwok.tradebot.dev/exit-code": "2",
                        "kwok.tradebot.dev/termination-message": json.dumps(summary),
                    }
                }
            },
        )
        # The pod's end reaches the Backtest through the Job's labels read back (the watch
        # and the queue take the whole name from the annotation, not the hashed label).
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "backtests", LONG)).get("phase") == "Failed" and s
            ),
            90,
            what="the long-named Backtest Failed as cued",
        )
    assert status["message"] == "cued"


def test_a_run_too_large_for_a_configmap_fails_at_its_first_round(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """Before: the run's ConfigMap (config + 1 MiB of code) was refused by the API server (422),
    the queue retried every 5 s, and the Backtest said only "waiting for admission"."""
    api = client.CustomObjectsApi(api_client)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(
            kubectl,
            namespace,
            _large_strategy(api_client, namespace, "big"),
            _strategy("small"),
            _backtest("too-large", "big"),
            _backtest("fits", "small"),  # positive control: the same queue admits this one
        )
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "backtests", "too-large")).get("phase") == "Failed"
                and s
            ),
            90,
            what="the oversized run Failed",
        )
        wait_for(
            lambda: _status(api, namespace, "backtests", "fits").get("phase") == "Running",
            90,
            what="the control Backtest Running",
        )
    assert "a ConfigMap holds at most 1048576" in status["message"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert (complete["status"], complete["reason"]) == ("False", "RunTooLarge")
    events = _events(api_client, namespace, "too-large")
    assert any(e.reason == "RunTooLarge" and e.type == "Warning" for e in events), [
        (e.reason, e.message) for e in events
    ]
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace).items
    assert [j.metadata.annotations["tradebot.dev/backtest"] for j in jobs] == ["fits"]


def test_a_job_the_api_server_refuses_fails_the_backtest_with_its_message(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """Requests above limits pass the Backtest's own schema but not the Job's validation.
    Before: the 422 was logged with a traceback and retried every 5 s; the Backtest said
    "waiting for admission" for good."""
    api = client.CustomObjectsApi(api_client)
    bad = _backtest("requests-over-limits", "ema-rsi")
    bad["spec"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, _strategy("ema-rsi"), bad)
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "backtests", "requests-over-limits")).get("phase")
                == "Failed"
                and s
            ),
            90,
            what="the refused Backtest Failed",
        )
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert (complete["status"], complete["reason"]) == ("False", "CreateRefused")
    # The API server's own words, naming the field.
    assert "must be less than or equal to cpu limit" in status["message"], status["message"]
    events = _events(api_client, namespace, "requests-over-limits")
    assert any(e.reason == "CreateRefused" and e.type == "Warning" for e in events)


def test_a_long_named_marketdata_downloads_and_ends(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """Before: the 200-character name was the download Job's label value (422): the
    MarketData said Downloading for good."""
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    name = "m" * 200
    md = {
        "apiVersion": f"{G}/{V}",
        "kind": "MarketData",
        "metadata": {"name": name},
        "spec": {
            "pairs": ["SOL/USDT"],
            "timeframes": ["1h"],
            "days": 3,
            "storage": {"volumeClaimTemplate": {"storage": "1Gi"}},
        },
    }
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, md)
        pod = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace, label_selector=f"tradebot.dev/marketdata={label_value(name)}"
                    ).items
                ),
                None,
            ),
            90,
            what="the long-named MarketData's download pod",
        )
        assert pod.metadata.annotations["tradebot.dev/marketdata"] == name
        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {
                "metadata": {
                    "annotations": {
                        "kwok.tradebot.dev/outcome": "Failed",
                        "kwok.tradebot.dev/exit-code": "1",
                    }
                }
            },
        )
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", name)).get("phase") == "Failed" and s
            ),
            90,
            what="the long-named MarketData's download ended",
        )
    assert status["message"]
