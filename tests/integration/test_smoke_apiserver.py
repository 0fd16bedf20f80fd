"""The local cluster's API server is real: objects round-trip, RBAC is enforced."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def test_configmap_create_read_delete(api_client: Any, namespace: str):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "probe"}, "data": {"money": "0.00000001"}}
    )
    read = core.read_namespaced_config_map("probe", namespace)
    assert read.data == {"money": "0.00000001"}
    assert read.metadata.uid  # assigned by the server, not by us
    core.delete_namespaced_config_map("probe", namespace)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("probe", namespace)
    assert exc.value.status == 404


def test_server_reports_its_pinned_version(api_client: Any):
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == "v1.32.4"
    assert (info.major, info.minor) == ("1", "32")


def test_rbac_denies_a_service_account_without_roles(api_client: Any, namespace: str):
    auth = client.AuthorizationV1Api(api_client)
    review = auth.create_subject_access_review(
        {
            "spec": {
                "user": f"system:serviceaccount:{namespace}:default",
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": "list",
                    "resource": "secrets",
                },
            }
        }
    )
    assert review.status.allowed is False


def test_kubectl_is_pinned_and_talks_to_the_cluster(kubectl: Any):
    out = kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.32.4"' in out
    nodes = kubectl("get", "nodes", "-o", "name").stdout.split()
    assert len(nodes) == 5
