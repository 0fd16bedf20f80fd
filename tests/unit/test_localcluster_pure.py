"""The local cluster's pure parts: node manifests, command lines, ports, kwok stages, PKI."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from tradebot.localcluster import components
from tradebot.localcluster.cluster import load_stage_documents
from tradebot.localcluster.layout import COMPONENTS, Layout, Ports
from tradebot.localcluster.nodes import AMD_GPU_RESOURCE, NVIDIA_GPU_RESOURCE, default_nodes
from tradebot.localcluster.pki import ADMIN, CLIENT_IDENTITIES, Pki


def test_default_nodes_are_two_cpu_two_rocm_one_nvidia():
    manifests = [n.manifest() for n in default_nodes()]
    rocm = [m for m in manifests if AMD_GPU_RESOURCE in m["status"]["capacity"]]
    nvidia = [m for m in manifests if NVIDIA_GPU_RESOURCE in m["status"]["capacity"]]
    cpu = [m for m in manifests if m not in rocm and m not in nvidia]
    assert (len(cpu), len(rocm), len(nvidia)) == (2, 2, 1)
    for m in rocm:
        assert m["status"]["allocatable"][AMD_GPU_RESOURCE] == "4"
        assert m["metadata"]["labels"]["feature.node.kubernetes.io/amd-gpu"] == "true"
        assert {"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"} in m["spec"][
            "taints"
        ]
    for m in cpu:
        assert m["spec"]["taints"] == []
    for m in manifests:
        # kwok only manages nodes it is told to; an unannotated node would never become Ready.
        assert m["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
    assert len({m["metadata"]["name"] for m in manifests}) == 5


def test_ports_free_are_distinct_and_owned():
    ports = Ports.free()
    owners = ports.owners()
    assert len(owners) == 6
    assert all(p > 1024 for p in owners)


def test_argv_points_every_component_at_its_ports(tmp_path: Path):
    layout = Layout(tmp_path)
    ports = Ports(1, 2, 3, 4, 5, 6)
    lines = {c: components.argv(c, Path("/bin"), layout, ports) for c in COMPONENTS}
    assert lines["etcd"][0] == "/bin/etcd"
    assert "--listen-client-urls=http://127.0.0.1:1" in lines["etcd"]
    assert "--etcd-servers=http://127.0.0.1:1" in lines["kube-apiserver"]
    assert "--secure-port=3" in lines["kube-apiserver"]
    assert "--authorization-mode=RBAC" in lines["kube-apiserver"]
    assert "--secure-port=4" in lines["kube-controller-manager"]
    assert "--secure-port=5" in lines["kube-scheduler"]
    assert "--server-address=127.0.0.1:6" in lines["kwok"]


def test_kubeconfig_uses_the_identity_and_port(tmp_path: Path):
    cfg = components.kubeconfig(Layout(tmp_path), Ports(1, 2, 3, 4, 5, 6), ADMIN)
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:3"
    assert cfg["users"][0]["user"]["client-certificate"].endswith("admin.crt")


def test_kwok_stages_cover_the_pod_lifecycle():
    stages = load_stage_documents()
    assert {s["metadata"]["name"] for s in stages} == {
        "pod-ready",
        "pod-succeed",
        "pod-fail",
        "pod-delete",
    }
    assert all(s["kind"] == "Stage" and s["spec"]["resourceRef"]["kind"] == "Pod" for s in stages)


def test_pki_issues_certificates_signed_by_its_ca(tmp_path: Path):
    pki = Pki(tmp_path / "pki")
    assert not pki.exists()
    pki.create()
    assert pki.exists()
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    for who in CLIENT_IDENTITIES:
        cert = x509.load_pem_x509_certificate(pki.client_cert(who).read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == who.user
        groups = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert groups == list(who.groups)
    server = x509.load_pem_x509_certificate(pki.apiserver_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert oct(pki.ca_key.stat().st_mode & 0o777) == "0o600"
