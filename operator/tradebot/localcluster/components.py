"""Command lines and kubeconfigs of the local cluster's components (pure: no processes here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tradebot.localcluster.layout import Layout, Ports
from tradebot.localcluster.pki import (
    ADMIN,
    CONTROLLER_MANAGER,
    KWOK,
    SCHEDULER,
    ClientIdentity,
)

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
CLUSTER_NAME = "tradebot-local"

# Which client identity each component (and the admin kubeconfig) authenticates as.
IDENTITY_OF: dict[str, ClientIdentity] = {
    "admin": ADMIN,
    "kube-controller-manager": CONTROLLER_MANAGER,
    "kube-scheduler": SCHEDULER,
    "kwok": KWOK,
}


def kubeconfig(layout: Layout, ports: Ports, who: ClientIdentity) -> dict[str, Any]:
    """A kubeconfig that authenticates as `who` with its client certificate."""
    pki = layout.pki
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": f"https://127.0.0.1:{ports.apiserver}",
                    "certificate-authority": str(pki.ca_cert.resolve()),
                },
            }
        ],
        "users": [
            {
                "name": who.user,
                "user": {
                    "client-certificate": str(pki.client_cert(who).resolve()),
                    "client-key": str(pki.client_key(who).resolve()),
                },
            }
        ],
        "contexts": [
            {
                "name": CLUSTER_NAME,
                "context": {"cluster": CLUSTER_NAME, "user": who.user, "namespace": "default"},
            }
        ],
        "current-context": CLUSTER_NAME,
    }


def write_kubeconfigs(layout: Layout, ports: Ports) -> None:
    for component, who in IDENTITY_OF.items():
        path = layout.kubeconfig if component == "admin" else layout.component_kubeconfig(component)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(kubeconfig(layout, ports, who), sort_keys=False))
        path.chmod(0o600)


def argv(component: str, bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    """The full command line of one component."""
    pki = layout.pki
    exe = str(bin_dir / component)
    if component == "etcd":
        client = f"http://127.0.0.1:{ports.etcd_client}"
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        return [
            exe,
            "--name=local",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            "--listen-metrics-urls=",
            # A throw-away development store: durability is not worth the fsync latency.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]
    if component == "kube-apiserver":
        return [
            exe,
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={pki.directory}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The 'kubernetes' Service cannot point at a loopback address; nothing here needs it.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ]
    common = [
        f"--kubeconfig={layout.component_kubeconfig(component)}",
        f"--authentication-kubeconfig={layout.component_kubeconfig(component)}",
        f"--authorization-kubeconfig={layout.component_kubeconfig(component)}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
    if component == "kube-controller-manager":
        return [
            exe,
            *common,
            f"--secure-port={ports.controller_manager}",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={POD_CIDR}",
            # Fake nodes are not evicted for missing heartbeats quickly; kwok keeps them alive.
            "--controllers=*,-nodeipam,-cloud-node-lifecycle",
            # Claims of the default StorageClass (cluster.py) get a directory on this machine,
            # where the local executor's processes keep what the pods would keep on them.
            "--enable-hostpath-provisioner=true",
        ]
    if component == "kube-scheduler":
        return [exe, *common, f"--secure-port={ports.scheduler}"]
    if component == "kwok":
        return [
            exe,
            f"--kubeconfig={layout.component_kubeconfig(component)}",
            f"--config={layout.kwok_config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{ports.kwok}",
            "--node-ip=10.240.0.1",
            "--cidr=10.244.0.1/16",
            "--node-lease-duration-seconds=40",
        ]
    raise ValueError(f"unknown component {component!r}")
