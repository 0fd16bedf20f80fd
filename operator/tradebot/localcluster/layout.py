"""Where a local cluster keeps its state and which loopback ports it listens on."""

from __future__ import annotations

import socket
from dataclasses import dataclass, fields
from pathlib import Path

from tradebot.localcluster.pki import Pki

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Ports:
    """Loopback ports, one per listener. The defaults serve `make up`; tests pick free ones."""

    etcd_client: int = 32379
    etcd_peer: int = 32380
    apiserver: int = 36443
    controller_manager: int = 30257
    scheduler: int = 30259
    kwok: int = 30247

    @classmethod
    def free(cls) -> Ports:
        """Ports the kernel reports free right now (for a throw-away test cluster)."""
        socks = []
        try:
            for _ in fields(cls):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()

    def owners(self) -> dict[int, str]:
        """Port -> the component that listens on it, for error messages."""
        return {
            self.etcd_client: "etcd (client)",
            self.etcd_peer: "etcd (peer)",
            self.apiserver: "kube-apiserver",
            self.controller_manager: "kube-controller-manager",
            self.scheduler: "kube-scheduler",
            self.kwok: "kwok",
        }


@dataclass(frozen=True)
class Layout:
    """Every path of one cluster's state, all below `root` (e.g. `.local/`)."""

    root: Path

    @property
    def pki(self) -> Pki:
        return Pki(self.root / "pki")

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig handed to users and tests."""
        return self.root / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / "kubeconfigs" / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.run / f"{component}.pid"
