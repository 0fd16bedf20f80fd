"""A running bot follows its Strategy's code: the operator's index of Strategies holds no code
(controllers/cache.py), so a LiveBot round gets it back by its sha256, and a new code must
reach the bot (its pod replaced, the new code in its ConfigMap), never the one held before."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

G, V = "tradebot.dev", "v1alpha1"


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, plural, name
    )
    return dict(obj.get("status") or {})


def _pods(api: Any, namespace: str) -> list[Any]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )


def _running_pod(api: Any, namespace: str, old: str | None) -> Any:
    pods = [
        p
        for p in _pods(api, namespace)
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and p.metadata.uid != old
    ]
    running = _status(api, namespace, "livebots", "dry").get("phase") == "Running"
    return pods[0] if len(pods) == 1 and running else None


def _bot_code(api: Any, namespace: str, pod: Any) -> str:
    volume = next(v for v in pod.spec.volumes if v.name == "config")
    cm = client.CoreV1Api(api).read_namespaced_config_map(volume.config_map.name, namespace)
    return str((cm.data or {})["EmaRsiStrategy.py"])


def test_a_new_strategy_code_reaches_the_running_bot(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    strategy = example("Strategy", "ema-rsi")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(strategy))
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "dry", "labels": {"tradebot.dev/fleet": "main"}}
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(bot))
        first = wait_for(
            lambda: _running_pod(api_client, namespace, None), 120, what="the bot Running"
        )
        assert strategy["spec"]["code"] in _bot_code(api_client, namespace, first)

        new_code = strategy["spec"]["code"] + "\n# a new revision of the strategy\n"
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
            G, V, namespace, "strategies", "ema-rsi", {"spec": {"code": new_code}}
        )
        second = wait_for(
            lambda: _running_pod(api_client, namespace, first.metadata.uid),
            180,
            what="the bot Running on a new pod",
        )
        assert "# a new revision of the strategy" in _bot_code(api_client, namespace, second)
        assert second.metadata.annotations != first.metadata.annotations
