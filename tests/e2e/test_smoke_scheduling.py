"""The whole local cluster: controller-manager, scheduler and kwok nodes act for real."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from tests.support.wait import wait_for

PAUSE = "registry.k8s.io/pause:3.10"
GPU_TOLERATION = {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _pod(
    name: str, gpus: int = 0, tolerate: bool = False, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": PAUSE}
    if gpus:
        container["resources"] = {"limits": {"amd.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {"containers": [container], "restartPolicy": "Never"}
    if tolerate:
        spec["tolerations"] = [GPU_TOLERATION]
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def _nodes_by_label(api_client: Any, label: str) -> set[str]:
    items = client.CoreV1Api(api_client).list_node(label_selector=label).items
    return {n.metadata.name for n in items}


def test_deployment_gets_three_running_pods_placed_by_the_scheduler(
    api_client: Any, namespace: str
):
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    labels = {"app": "probe"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "probe"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": PAUSE}]},
                },
            },
        },
    )

    def running() -> list[Any] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=probe").items
        ok = [p for p in pods if p.status.phase == "Running" and p.spec.node_name]
        return ok if len(ok) == 3 else None

    pods = wait_for(running, 60, what="3 Running pods of the Deployment")
    cpu_nodes = _nodes_by_label(api_client, "type=kwok,!tradebot.dev/gpu-vendor")
    # Untolerating pods never land on tainted GPU nodes: the scheduler placed them.
    assert {p.spec.node_name for p in pods} <= cpu_nodes
    dep = wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment("probe", namespace)).status.ready_replicas == 3
            and d
        ),
        30,
        what="Deployment ready",
    )
    assert dep.status.available_replicas == 3


def test_gpu_pods_land_on_rocm_nodes_and_never_elsewhere(api_client: Any, namespace: str):
    core = client.CoreV1Api(api_client)
    rocm = _nodes_by_label(api_client, "feature.node.kubernetes.io/amd-gpu=true")
    assert len(rocm) == 2
    for i in range(6):
        core.create_namespaced_pod(namespace, _pod(f"gpu-{i}", gpus=1, tolerate=True))

    def placed() -> list[Any] | None:
        pods = core.list_namespaced_pod(namespace).items
        return pods if all(p.spec.node_name for p in pods) and len(pods) == 6 else None

    pods = wait_for(placed, 60, what="6 GPU pods scheduled")
    assert {p.spec.node_name for p in pods} <= rocm


def test_gpu_pod_without_toleration_or_capacity_stays_pending_unschedulable(
    api_client: Any, namespace: str
):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, _pod("too-many", gpus=5, tolerate=True))
    core.create_namespaced_pod(namespace, _pod("no-toleration", gpus=1, tolerate=False))

    def unschedulable(name: str) -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        conds = {c.type: c for c in pod.status.conditions or []}
        c = conds.get("PodScheduled")
        return c if c is not None and c.reason == "Unschedulable" else None

    for name in ("too-many", "no-toleration"):
        cond = wait_for(lambda n=name: unschedulable(n), 60, what=f"{name} Unschedulable")
        assert cond.status == "False"
        pod = core.read_namespaced_pod(name, namespace)
        assert pod.status.phase == "Pending"
        assert not pod.spec.node_name
    assert "Insufficient amd.com/gpu" in unschedulable("too-many").message


def test_kwok_pods_succeed_or_fail_on_cue(api_client: Any, namespace: str):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace,
        _pod(
            "ok",
            annotations={
                "kwok.tradebot.dev/outcome": "Succeeded",
                "kwok.tradebot.dev/termination-message": '{"profit": "0.01"}',
            },
        ),
    )
    core.create_namespaced_pod(
        namespace,
        _pod(
            "bad",
            annotations={
                "kwok.tradebot.dev/outcome": "Failed",
                "kwok.tradebot.dev/exit-code": "3",
            },
        ),
    )
    core.create_namespaced_pod(namespace, _pod("waits"))

    def phase(name: str, want: str) -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == want else None

    ok = wait_for(lambda: phase("ok", "Succeeded"), 60, what="pod ok Succeeded")
    term = ok.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.message) == (0, '{"profit": "0.01"}')
    bad = wait_for(lambda: phase("bad", "Failed"), 60, what="pod bad Failed")
    assert bad.status.container_statuses[0].state.terminated.exit_code == 3
    # Without a cue a pod keeps running; with one added later, it ends on that cue.
    wait_for(lambda: phase("waits", "Running"), 60, what="pod waits Running")
    core.patch_namespaced_pod(
        "waits",
        namespace,
        {"metadata": {"annotations": {"kwok.tradebot.dev/outcome": "Succeeded"}}},
    )
    wait_for(lambda: phase("waits", "Succeeded"), 60, what="pod waits Succeeded on cue")


def test_job_completes_when_its_pod_is_cued(api_client: Any, namespace: str):
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "cued"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": {"kwok.tradebot.dev/outcome": "Succeeded"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": PAUSE}],
                    },
                },
            },
        },
    )
    job = wait_for(
        lambda: (j := batch.read_namespaced_job("cued", namespace)).status.succeeded and j,
        60,
        what="Job succeeded",
    )
    assert job.status.succeeded == 1
