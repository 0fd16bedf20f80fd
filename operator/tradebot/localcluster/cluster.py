"""LocalCluster: bring a local control plane with kwok fake nodes up, check it, tear it down."""

from __future__ import annotations

import json
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tradebot.localcluster import components
from tradebot.localcluster.layout import COMPONENTS, Layout, Ports
from tradebot.localcluster.nodes import NodeSpec, default_nodes
from tradebot.localcluster.supervisor import ComponentExited, Supervisor, port_in_use, tail

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

Printer = Callable[[str], None]


class ClusterError(RuntimeError):
    """The cluster could not be brought up or checked; the message says what to do."""


# The default StorageClass: the controller manager's hostPath provisioner makes each claim a
# directory under /tmp/hostpath_pv (fixed in Kubernetes), removed when the claim is deleted,
# and by `down` for claims the cluster still had.
HOSTPATH_DIR = Path("/tmp/hostpath_pv")  # noqa: S108 - the provisioner's own, not ours to pick
STORAGE_CLASS: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": "local-hostpath",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


def _quiet(_: str) -> None:
    return None


class LocalCluster:
    def __init__(
        self,
        root: Path,
        bin_dir: Path,
        ports: Ports | None = None,
        nodes: list[NodeSpec] | None = None,
        out: Printer = _quiet,
    ) -> None:
        self.layout = Layout(root.resolve())
        self.bin_dir = bin_dir
        self.nodes = nodes if nodes is not None else default_nodes()
        self.out = out
        self.supervisor = Supervisor(self.layout)
        self.ports = ports if ports is not None else self._saved_ports() or Ports()

    # ---- public API -------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    def running(self) -> dict[str, int | None]:
        """Component -> pid, None where it is not running."""
        return {c: self.supervisor.pid(c) for c in COMPONENTS}

    def up(self, timeout: float = 90.0) -> None:
        """Starts whatever is not running and waits until the cluster is ready (idempotent)."""
        started = time.monotonic()
        self._check_binaries()
        pids = self.running()
        if all(pids.values()) and self._apiserver_ready():
            self.out("local cluster already running; checking it is ready")
            self._ensure_nodes()
            self._wait_ready(started + timeout)
            return
        if any(pids.values()):
            self.out("local cluster half running: restarting its components (state is kept)")
            self.stop()
        try:
            self._start_all(started + timeout)
        except BaseException:
            self.out("start-up failed: stopping what was started (logs are kept)")
            self.stop()
            raise
        self.out(f"local cluster ready in {time.monotonic() - started:.1f} s")

    def stop(self) -> list[str]:
        """Stops every process with a pid file (extras such as the demo's operator first, then
        the local executor's bots it may have left, then the components, newest first).
        Returns those that were running."""
        extras = (
            sorted(p.stem for p in self.layout.run.glob("*.pid") if p.stem not in COMPONENTS)
            if self.layout.run.exists()
            else []
        )
        stopped = [c for c in extras if self.supervisor.stop(c)]
        stopped += self._stop_local_bots()
        return stopped + [c for c in reversed(COMPONENTS) if self.supervisor.stop(c)]

    def _stop_local_bots(self) -> list[str]:
        """`freqtrade trade` processes of a local-executor operator whose state dir is under
        the root (the demo's .local/operator): an operator stopped by SIGKILL, or too slowly
        for its cleanup, leaves them running."""
        from tradebot.executors.local_bots import LocalBotExecutor

        if not self.layout.root.exists():
            return []
        state_dirs = {bots.parent for bots in self.layout.root.rglob("bots") if bots.is_dir()}
        return [
            f"bot {bot_id}"
            for state in sorted(state_dirs)
            for bot_id in LocalBotExecutor(state).stop_all()
        ]

    def down(self) -> list[str]:
        """Stops every component and removes all state below the root, and the directories
        its claims were given (the hostPath provisioner keeps them outside the root)."""
        volumes = self.hostpath_volumes()
        stopped = self.stop()
        if self.layout.root.exists():
            shutil.rmtree(self.layout.root)
        for path in volumes:
            shutil.rmtree(path, ignore_errors=True)
        return stopped

    def hostpath_volumes(self) -> list[Path]:
        """The directories of this cluster's provisioned volumes (none when its API server
        does not answer: a cluster that never came up has none)."""
        if not self.kubeconfig.exists() or not self._apiserver_ready():
            return []
        from kubernetes import client

        with self.api_client() as api:
            volumes = client.CoreV1Api(api).list_persistent_volume(_request_timeout=10).items
        paths = [
            Path(v.spec.host_path.path)
            for v in volumes
            if v.spec is not None and v.spec.host_path is not None
        ]
        # Only what the provisioner made: a hand-made volume may point anywhere.
        return [p for p in paths if p.parent == HOSTPATH_DIR]

    def api_client(self) -> ApiClient:
        from kubernetes import config as k8s_config

        api: ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    # ---- start-up -----------------------------------------------------------------------
    def _check_binaries(self) -> None:
        missing = [c for c in COMPONENTS if not (self.bin_dir / c).is_file()]
        if missing:
            raise ClusterError(
                f"missing tool binaries in {self.bin_dir}: {', '.join(missing)}; run `make tools`"
            )

    def _saved_ports(self) -> Ports | None:
        try:
            return Ports(**json.loads(self.layout.ports_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _start_all(self, deadline: float) -> None:
        taken = [
            f"{port} ({owner})" for port, owner in self.ports.owners().items() if port_in_use(port)
        ]
        if taken:
            raise ClusterError(
                "ports already in use: "
                + ", ".join(taken)
                + "; stop what holds them (`ss -ltnp`) or run `make down`"
            )
        layout = self.layout
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.ports_file.write_text(json.dumps(asdict(self.ports)))
        if not layout.pki.exists():
            layout.pki.create()
        components.write_kubeconfigs(layout, self.ports)
        stages = resources.files("tradebot.localcluster").joinpath("kwok-stages.yaml")
        layout.kwok_config.write_text(stages.read_text())

        for component in COMPONENTS:
            t0 = time.monotonic()
            self.supervisor.start(
                component, components.argv(component, self.bin_dir, layout, self.ports)
            )
            self._wait_healthy(component, deadline)
            self.out(
                f"  {component:<24} up in {time.monotonic() - t0:4.1f} s"
                f"  (log: {layout.log(component)})"
            )
        self._ensure_nodes()
        self._wait_ready(deadline)

    def _health_url(self, component: str) -> str | None:
        p = self.ports
        return {
            "etcd": f"http://127.0.0.1:{p.etcd_client}/health",
            "kube-apiserver": f"https://127.0.0.1:{p.apiserver}/readyz",
            "kube-controller-manager": f"https://127.0.0.1:{p.controller_manager}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{p.scheduler}/healthz",
            "kwok": f"http://127.0.0.1:{p.kwok}/healthz",
        }.get(component)

    def _ssl_context(self, component: str) -> ssl.SSLContext:
        pki = self.layout.pki
        if component == "kube-apiserver":
            ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
            ctx.load_cert_chain(
                str(pki.client_cert(components.IDENTITY_OF["admin"])),
                str(pki.client_key(components.IDENTITY_OF["admin"])),
            )
            return ctx
        # The controller-manager and scheduler serve with self-signed, in-memory certificates.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _probe(self, component: str) -> bool:
        url = self._health_url(component)
        if url is None:
            return True
        try:
            ctx = self._ssl_context(component) if url.startswith("https") else None
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _apiserver_ready(self) -> bool:
        return self.layout.pki.exists() and self._probe("kube-apiserver")

    def _wait_healthy(self, component: str, deadline: float) -> None:
        while True:
            try:
                self.supervisor.check_alive(component)
            except ComponentExited as e:
                raise ClusterError(str(e)) from None
            if self._probe(component):
                return
            if time.monotonic() > deadline:
                log = self.layout.log(component)
                raise ClusterError(
                    f"{component} did not become healthy at {self._health_url(component)} in "
                    f"time; see {log}:\n{tail(log)}"
                )
            time.sleep(0.2)

    def _ensure_nodes(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            # Plain dicts in, models out: the client's stubs insist on model objects.
            core: Any = client.CoreV1Api(api)
            for node in self.nodes:
                manifest = node.manifest()
                try:
                    core.create_node(manifest)
                except ApiException as e:
                    if e.status != 409:
                        raise
                    core.patch_node(
                        node.name,
                        {
                            "metadata": {"labels": manifest["metadata"]["labels"]},
                            "spec": manifest["spec"],
                        },
                    )
            storage: Any = client.StorageV1Api(api)
            try:
                storage.create_storage_class(STORAGE_CLASS)
            except ApiException as e:
                if e.status != 409:
                    raise

    def _wait_ready(self, deadline: float) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        want = {n.name for n in self.nodes}
        with self.api_client() as api:
            core: Any = client.CoreV1Api(api)
            while True:
                for component in COMPONENTS:
                    try:
                        self.supervisor.check_alive(component)
                    except ComponentExited as e:
                        raise ClusterError(str(e)) from None
                ready = {
                    n.metadata.name
                    for n in core.list_node().items
                    if any(
                        c.type == "Ready" and c.status == "True"
                        for c in (n.status.conditions or [])
                    )
                }
                try:
                    core.read_namespaced_service_account("default", "default")
                    has_sa = True
                except ApiException:
                    has_sa = False
                if want <= ready and has_sa:
                    return
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"cluster not ready in time: nodes Ready {sorted(ready)} of "
                        f"{sorted(want)}, default service account "
                        f"{'present' if has_sa else 'missing'}; see {self.layout.logs}/"
                    )
                time.sleep(0.3)


def load_stage_documents() -> list[dict[str, Any]]:
    """The kwok Stage documents shipped with the package (for tests and docs)."""
    text = resources.files("tradebot.localcluster").joinpath("kwok-stages.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]
