"""The Helm chart installed on the local cluster: the operator's pod is scheduled, and its
ServiceAccount can do exactly what the operator's real flows need, and not more."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.support.cluster import temporary_namespace
from tests.support.helm import CHART, Helm, token_kubeconfig
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

G, V = "tradebot.dev", "v1alpha1"
CPU_NODES = {"tradebot-cpu-0", "tradebot-cpu-1"}


@pytest.fixture
def release_ns(api_client: Any) -> Iterator[str]:
    """The operator's own namespace (the `namespace` fixture is the one it watches)."""
    with temporary_namespace(api_client, "tb-sys-") as name:
        yield name


@pytest.fixture
def helm(tools_bin: Path, cluster: Any, tmp_path: Path, crds_installed: None) -> Iterator[Helm]:
    h = Helm(tools_bin / "helm", cluster.kubeconfig, tmp_path)
    yield h
    # Cluster-scoped objects (ClusterRole, ClusterRoleBinding) outlive the namespace.
    for ns_release in h_releases(h):
        h("uninstall", ns_release[1], "-n", ns_release[0], check=False)


def h_releases(h: Helm) -> list[tuple[str, str]]:
    out = h("list", "-A", "-o", "json", check=False).stdout or "[]"
    return [(r["namespace"], r["name"]) for r in json.loads(out) if r["name"].startswith("tb-")]


def _release() -> str:
    return f"tb-{uuid.uuid4().hex[:6]}"


def _operator_pod(api_client: Any, ns: str, release: str) -> Any:
    pods = (
        client.CoreV1Api(api_client)
        .list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={release}")
        .items
    )
    return pods[0] if len(pods) == 1 and pods[0].spec.node_name else None


def test_default_install_schedules_the_operator_on_a_cpu_node(
    helm: Helm, api_client: Any, release_ns: str
):
    release = _release()
    helm("install", release, str(CHART), "--namespace", release_ns)
    pod = wait_for(
        lambda: _operator_pod(api_client, release_ns, release), 60, what="operator pod scheduled"
    )
    # kwok nodes run nothing: scheduling is what the local cluster can show.
    assert pod.spec.node_name in CPU_NODES  # never on a tainted GPU node
    assert pod.spec.service_account_name == f"{release}-tradebot-operator"
    (c,) = pod.spec.containers
    assert c.security_context.read_only_root_filesystem is True
    assert c.security_context.capabilities.drop == ["ALL"]
    env = {e.name for e in c.env or []}
    assert "TRADEBOT_DATABASE_DSN" not in env  # SQLite on the state volume
    svc = client.CoreV1Api(api_client).read_namespaced_service(
        f"{release}-tradebot-operator-metrics", release_ns
    )
    assert svc.spec.ports[0].port == 9090


def _can_i(kubectl: Any, sa: str, *args: str) -> bool:
    result = kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_default_install_grants_no_more_than_the_operator_needs(
    helm: Helm, kubectl: Any, release_ns: str, namespace: str
):
    """By default the operator watches its release's namespace only: it can create pods and
    read Secrets there, and nowhere else (kube-system included)."""
    release = _release()
    helm("install", release, str(CHART), "--namespace", release_ns)
    sa = f"system:serviceaccount:{release_ns}:{release}-tradebot-operator"
    # What it needs (so a "no" below is not a broken check).
    for allowed in (
        ("create", "jobs", "-n", release_ns),
        ("list", "nodes"),
        ("patch", "backtests.tradebot.dev", "--subresource=status", "-n", release_ns),
        ("create", "networkpolicies", "-n", release_ns),
        ("create", "pods", "-n", release_ns),
        ("get", "secrets", "-n", release_ns),
        ("create", "persistentvolumeclaims", "-n", release_ns),
        ("delete", "persistentvolumeclaims", "-n", release_ns),
        ("create", "leases.coordination.k8s.io", "-n", release_ns),
        ("list", "pods", "-A"),
    ):  # GPU accounting
        assert _can_i(kubectl, sa, *allowed), allowed
    for denied in (
        ("create", "pods", "-n", "kube-system"),
        ("get", "secrets", "-n", "kube-system"),
        ("get", "secrets", "-n", namespace),
        ("create", "pods", "-n", namespace),
        ("get", "secrets", "-A"),
        ("create", "pods", "-A"),
        ("get", "configmaps", "-n", "kube-system"),
        ("create", "persistentvolumeclaims", "-n", namespace),
        ("list", "livebots.tradebot.dev", "-A"),
        ("delete", "nodes"),
        ("create", "clusterroles"),
        ("create", "pods", "--subresource=exec", "-n", release_ns),
        ("patch", "customresourcedefinitions"),
        ("delete", "customresourcedefinitions"),
        ("delete", "secrets", "-n", release_ns),
        ("list", "secrets", "-n", release_ns),
        ("update", "deployments", "-n", release_ns),
        ("delete", "namespaces"),
        ("create", "rolebindings", "-n", release_ns),
        ("delete", "backtests.tradebot.dev", "-n", release_ns),
        ("update", "backtests.tradebot.dev", "--subresource=status", "-n", release_ns),
        ("impersonate", "serviceaccounts"),
    ):
        assert not _can_i(kubectl, sa, *denied), denied


def test_the_leader_lease_is_granted_by_name_in_the_release_namespace(
    helm: Helm, kubectl: Any, release_ns: str, namespace: str
):
    """Watching another namespace, the release namespace grants only the leader Lease: create
    (not limitable by name), and get/update of that one Lease."""
    release = _release()
    helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        "--set",
        f"watchNamespaces={{{namespace}}}",
    )
    sa = f"system:serviceaccount:{release_ns}:{release}-tradebot-operator"
    lease = f"leases.coordination.k8s.io/{release}-tradebot-operator"
    for allowed in (
        ("create", "leases.coordination.k8s.io", "-n", release_ns),
        ("get", lease, "-n", release_ns),
        ("update", lease, "-n", release_ns),
    ):
        assert _can_i(kubectl, sa, *allowed), allowed
    for denied in (
        ("update", "leases.coordination.k8s.io/acct-0123", "-n", release_ns),
        ("get", "leases.coordination.k8s.io/other", "-n", release_ns),
        ("delete", lease, "-n", release_ns),
        ("list", "leases.coordination.k8s.io", "-n", release_ns),
        ("update", lease, "-n", "kube-system"),
    ):
        assert not _can_i(kubectl, sa, *denied), denied


def test_cluster_wide_install_is_an_explicit_choice_that_reaches_kube_system(
    helm: Helm, kubectl: Any, release_ns: str, namespace: str
):
    """watchAllNamespaces: what the default withholds (the same checks answer yes here, so the
    denials above come from the namespaced default, not from a check that always says no)."""
    release = _release()
    helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        release_ns,
        "--set",
        "watchAllNamespaces=true",
    )
    sa = f"system:serviceaccount:{release_ns}:{release}-tradebot-operator"
    for allowed in (
        ("create", "pods", "-n", "kube-system"),
        ("get", "secrets", "-n", "kube-system"),
        ("get", "secrets", "-n", namespace),
        ("create", "persistentvolumeclaims", "-n", namespace),
    ):
        assert _can_i(kubectl, sa, *allowed), allowed
    for denied in (
        ("list", "secrets", "-n", "kube-system"),
        ("delete", "nodes"),
        ("create", "pods", "--subresource=exec", "-n", namespace),
    ):
        assert not _can_i(kubectl, sa, *denied), denied


NAMESPACED_VALUES = """
watchNamespaces: [{watched}]
database:
  existingSecret: records-dsn
  secretKey: dsn
gpu:
  profiles:
    amd:
      resource: amd.com/gpu
      nodeSelector:
        feature.node.kubernetes.io/amd-gpu: "true"
        amd.com/gpu.product-name: AMD_Instinct_MI300X
      tolerations:
        - {{key: amd.com/gpu, operator: Exists, effect: NoSchedule}}
concurrency:
  maxConcurrentBacktests: 2
  maxBacktestsPerNamespace: 2
  maxBacktestsPerStrategy: 1
  queueHold: "None"
metrics:
  enabled: true
  port: 9090
  serviceMonitor:
    enabled: false
"""


def _install_namespaced(
    helm: Helm,
    api_client: Any,
    release_ns: str,
    watched: str,
    tmp_path: Path,
    dsn: str = "postgresql://records@db/records",
) -> str:
    release = _release()
    if dsn:
        client.CoreV1Api(api_client).create_namespaced_secret(
            release_ns, {"metadata": {"name": "records-dsn"}, "stringData": {"dsn": dsn}}
        )
    values = tmp_path / "values.yaml"
    values.write_text(NAMESPACED_VALUES.format(watched=watched))
    helm("install", release, str(CHART), "--namespace", release_ns, "-f", str(values))
    return release


def test_namespaced_install_with_a_dsn_secret_and_a_gpu_profile(
    helm: Helm, api_client: Any, release_ns: str, namespace: str, tmp_path: Path
):
    release = _install_namespaced(helm, api_client, release_ns, namespace, tmp_path)
    pod = wait_for(
        lambda: _operator_pod(api_client, release_ns, release), 60, what="operator pod scheduled"
    )
    assert pod.spec.node_name in CPU_NODES
    env = {e.name: e for e in pod.spec.containers[0].env}
    ref = env["TRADEBOT_DATABASE_DSN"].value_from.secret_key_ref
    assert (ref.name, ref.key, ref.optional) == ("records-dsn", "dsn", None)
    cm = (
        client.CoreV1Api(api_client)
        .read_namespaced_config_map(f"{release}-tradebot-operator-settings", release_ns)
        .data
    )
    assert cm["TRADEBOT_NAMESPACES"] == namespace
    amd = json.loads(cm["TRADEBOT_GPU_PROFILES"])["amd"]
    assert amd["node_selector"]["amd.com/gpu.product-name"] == "AMD_Instinct_MI300X"
    assert "postgresql://" not in json.dumps(cm)  # the DSN stays in its Secret
    rbac = client.RbacAuthorizationV1Api(api_client)
    assert rbac.read_namespaced_role(f"{release}-tradebot-operator", namespace).rules


def _sa_kubeconfig(
    kubectl: Any, cluster: Any, release_ns: str, release: str, tmp_path: Path
) -> Path:
    token = kubectl(
        "create", "token", f"{release}-tradebot-operator", "-n", release_ns, "--duration=1h"
    ).stdout.strip()
    return token_kubeconfig(cluster.kubeconfig, token, tmp_path / "sa.kubeconfig")


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _status(api_client: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        G, V, namespace, plural, name
    )
    return dict(obj.get("status") or {})


def test_login_passes_a_bearer_token(tmp_path: Path):
    from tradebot import kube
    from tradebot.controllers.lifecycle import connection_info

    kubeconfig = tmp_path / "kc"
    token_kubeconfig_from_server("https://127.0.0.1:1", "abc.def", kubeconfig)
    import os

    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kube.reset()
    try:
        assert connection_info().token == "abc.def"
    finally:
        kube.reset()
        if old is not None:
            os.environ["KUBECONFIG"] = old


def token_kubeconfig_from_server(server: str, token: str, out: Path) -> None:
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
            }
        )
    )


def test_the_chart_service_account_runs_the_operator_flows_and_nothing_else(
    helm: Helm,
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    release_ns: str,
    namespace: str,
    tmp_path: Path,
):
    release = _install_namespaced(helm, api_client, release_ns, namespace, tmp_path)
    kubeconfig = _sa_kubeconfig(kubectl, cluster, release_ns, release, tmp_path)
    assert yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    # The operator itself, in-process, with nothing but the chart's ServiceAccount token.
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
    backtest = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    with running_operator(
        kubeconfig,
        namespace,
        executor="local",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
        reconcile_interval_seconds=1.0,
    ):
        wait_for(
            lambda: _status(api_client, namespace, "strategies", "ema-rsi").get("phase") == "Ready",
            60,
            what="Strategy Ready",
        )
        _apply(kubectl, namespace, backtest)
        status = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "backtests", "ema-rsi-sample")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            300,
            interval=0.5,
            what="Backtest finished",
        )
        assert status["phase"] == "Succeeded", status.get("message")
        wait_for(
            lambda: _status(api_client, namespace, "backtests", "ema-rsi-sample").get("cleanedUp"),
            60,
            what="Job deleted after recording",
        )

    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    with running_operator(
        kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, bot)
        status = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "ema-rsi-dry")).get("podName")
                and s
            ),
            90,
            what="LiveBot pod",
        )
        core = client.CoreV1Api(api_client)
        pod = core.read_namespaced_pod(status["podName"], namespace)
        assert pod.metadata.labels["tradebot.dev/kind"] == "livebot"
        secrets = [s.metadata.name for s in core.list_namespaced_secret(namespace).items]
        assert any(s.startswith("bot-") for s in secrets), secrets
        assert core.list_namespaced_config_map(
            namespace, label_selector="tradebot.dev/kind=livebot"
        ).items
        assert client.NetworkingV1Api(api_client).list_namespaced_network_policy(namespace).items
        wait_for(
            lambda: (
                _status(api_client, namespace, "livebots", "ema-rsi-dry").get("phase") == "Running"
            ),
            60,
            what="LiveBot Running",
        )

    sa = f"system:serviceaccount:{release_ns}:{release}-tradebot-operator"
    assert _can_i(kubectl, sa, "get", "secrets", "-n", namespace)
    assert _can_i(kubectl, sa, "create", "persistentvolumeclaims", "-n", namespace)
    for denied in (
        ("create", "pods", "-n", "kube-system"),
        ("get", "secrets", "-n", "kube-system"),
        ("create", "persistentvolumeclaims", "-n", "default"),
        ("get", "secrets", "-n", "default"),
        ("get", "secrets", "-A"),
        ("create", "pods", "-n", "default"),
        ("list", "backtests.tradebot.dev", "-A"),
        ("get", "configmaps", "-n", release_ns),
        ("delete", "nodes"),
        ("create", "clusterroles"),
        ("create", "pods", "--subresource=exec", "-n", namespace),
        ("update", "customresourcedefinitions"),
        ("create", "jobs", "-n", "default"),
        ("list", "jobs", "-A"),
        ("list", "jobs", "-n", "default"),
    ):
        assert not _can_i(kubectl, sa, *denied), denied


def test_a_missing_dsn_secret_blocks_the_pod_and_names_the_secret(
    helm: Helm, api_client: Any, release_ns: str, namespace: str, tmp_path: Path
):
    release = _install_namespaced(helm, api_client, release_ns, namespace, tmp_path, dsn="")
    pod = wait_for(
        lambda: _operator_pod(api_client, release_ns, release), 60, what="operator pod scheduled"
    )
    ref = {e.name: e for e in pod.spec.containers[0].env}["TRADEBOT_DATABASE_DSN"]
    assert ref.value_from.secret_key_ref.name == "records-dsn"
    assert ref.value_from.secret_key_ref.optional is None
