"""A bot's objects edited by hand are put back (issue 23, point 8), on the local cluster with
the kubernetes executor (kwok pods): the ConfigMap's data, the NetworkPolicy's spec and the
pod's image, each edited behind the operator's back, each restored with a DriftCorrected
Event; untouched objects are left alone while the rounds demonstrably run. And the trade
database's claim outliving its deleted LiveBot unless spec.storage.reclaimPolicy is Delete
(point 9)."""

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
BOT = "drifty"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _status(api: Any, namespace: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, "livebots", BOT
    )
    return dict(obj.get("status") or {})


def _drift_events(api: Any, namespace: str) -> list[str]:
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={BOT}"
    )
    return [e.message for e in events.items if e.reason == "DriftCorrected"]


def kube_read(read: Any, name: str, namespace: str) -> Any:
    try:
        return read(name, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def _renewals(api: Any, namespace: str) -> str | None:
    leases = client.CoordinationV1Api(api).list_namespaced_lease(
        namespace, label_selector="tradebot.dev/kind=account-lease"
    )
    times = [str(lease.spec.renew_time) for lease in leases.items]
    return times[0] if len(times) == 1 else None


def test_edited_config_map_network_policy_and_pod_are_restored(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    core = client.CoreV1Api(api_client)
    net = client.NetworkingV1Api(api_client)
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        # A full round every second, and a Lease renewed every two: the renewals show that
        # rounds ran while nothing was called drift.
        bot_poll_seconds=1.0,
        account_lease_seconds=6,
    ):
        bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
        bot["metadata"] = {"name": BOT}
        _apply(kubectl, namespace, bot)
        status = wait_for(
            lambda: (s := _status(api_client, namespace)).get("phase") == "Running" and s,
            90,
            what="bot Running",
        )
        pod = core.read_namespaced_pod(status["podName"], namespace)
        cm_name = next(v.config_map.name for v in pod.spec.volumes if v.config_map is not None)
        original_data = dict(core.read_namespaced_config_map(cm_name, namespace).data)
        (policy,) = net.list_namespaced_network_policy(namespace).items
        original_spec = client.ApiClient().sanitize_for_serialization(policy.spec)
        image = pod.spec.containers[0].image

        # Untouched: several rounds (each renewal is one) and no drift found.
        first = wait_for(lambda: _renewals(api_client, namespace), 30, what="a lease")
        second = wait_for(
            lambda: (r := _renewals(api_client, namespace)) != first and r, 30, what="a renewal"
        )
        wait_for(
            lambda: (r := _renewals(api_client, namespace)) not in (first, second) and r,
            30,
            what="another renewal",
        )
        assert _drift_events(api_client, namespace) == []
        assert core.read_namespaced_pod(pod.metadata.name, namespace).metadata.uid == (
            pod.metadata.uid
        )

        # 1. The strategy swapped in the ConfigMap, and a key added.
        strategy_file = next(k for k in original_data if k.endswith(".py"))
        edited = core.patch_namespaced_config_map(
            cm_name,
            namespace,
            {"data": {strategy_file: "class EmaRsi: pass  # not what was approved", "x": "y"}},
        )
        assert edited.data != original_data  # the edit took
        wait_for(
            lambda: core.read_namespaced_config_map(cm_name, namespace).data == original_data,
            30,
            what="the ConfigMap restored",
        )
        messages = wait_for(lambda: _drift_events(api_client, namespace), 30, what="an Event")
        assert any(f"ConfigMap {cm_name} (edited)" in m for m in messages), messages

        # 1b. The ConfigMap deleted: made again, as it must be.
        core.delete_namespaced_config_map(cm_name, namespace)
        wait_for(
            lambda: (
                (found := kube_read(core.read_namespaced_config_map, cm_name, namespace))
                is not None
                and found.data == original_data
            ),
            30,
            what="the ConfigMap made again",
        )
        wait_for(
            lambda: any(
                f"ConfigMap {cm_name} (deleted)" in m for m in _drift_events(api_client, namespace)
            ),
            30,
            what="the deletion's Event",
        )

        # 2. The NetworkPolicy opened to every pod of the cluster.
        net.patch_namespaced_network_policy(
            policy.metadata.name,
            namespace,
            [{"op": "add", "path": "/spec/ingress/-", "value": {}}],
        )

        def policy_spec() -> Any:
            found = net.read_namespaced_network_policy(policy.metadata.name, namespace)
            return client.ApiClient().sanitize_for_serialization(found.spec)

        assert policy_spec() != original_spec  # the edit took
        wait_for(lambda: policy_spec() == original_spec, 30, what="the NetworkPolicy restored")
        wait_for(
            lambda: any(
                f"NetworkPolicy {policy.metadata.name} (edited)" in m
                for m in _drift_events(api_client, namespace)
            ),
            30,
            what="the NetworkPolicy's Event",
        )
        # Restoring those two left the pod alone.
        assert core.read_namespaced_pod(pod.metadata.name, namespace).metadata.uid == (
            pod.metadata.uid
        )

        # 3. The pod's image edited in place (the one field of a running pod's container
        # that can be): the pod is replaced by one with the operator's image.
        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {"spec": {"containers": [{"name": "freqtrade", "image": "evil.example/ft:latest"}]}},
        )

        def replaced() -> Any:
            found = [
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector="tradebot.dev/kind=livebot"
                ).items
                if p.metadata.uid != pod.metadata.uid and p.metadata.deletion_timestamp is None
            ]
            return found[0] if found else None

        new = wait_for(replaced, 90, what="the drifted pod replaced")
        assert new.spec.containers[0].image == image
        assert any(
            "image of container freqtrade" in m for m in _drift_events(api_client, namespace)
        )
        wait_for(
            lambda: _status(api_client, namespace).get("phase") == "Running",
            90,
            what="Running again",
        )


def test_deleting_a_bot_keeps_its_trade_claim_unless_reclaim_policy_delete(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """The operator's finalizer reads spec.storage.reclaimPolicy: the default bot's claim
    outlives it (released, annotated), the Delete bot's goes with it."""
    core = client.CoreV1Api(api_client)
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"))

    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        for name, storage in (("keeps", None), ("drops", {"reclaimPolicy": "Delete"})):
            doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
            doc["metadata"] = {"name": name}
            if storage is not None:
                doc["spec"]["storage"] = storage
            _apply(kubectl, namespace, doc)
        wait_for(
            lambda: len(core.list_namespaced_persistent_volume_claim(namespace).items) == 2,
            90,
            what="both bots' claims",
        )
        uids = {
            n: client.CustomObjectsApi(api_client).get_namespaced_custom_object(
                G, V, namespace, "livebots", n
            )["metadata"]["uid"]
            for n in ("keeps", "drops")
        }
        kubectl("delete", "livebot", "keeps", "drops", "-n", namespace, "--wait=true")

        def settled() -> Any:
            items = core.list_namespaced_persistent_volume_claim(namespace).items
            return items if len(items) == 1 else None

        (kept,) = wait_for(settled, 120, what="only the retained claim left")
        assert not kept.metadata.owner_references
        assert uids["keeps"] in kept.metadata.annotations["tradebot.dev/retained-from"]
        assert uids["drops"] not in json.dumps(kept.metadata.annotations)
