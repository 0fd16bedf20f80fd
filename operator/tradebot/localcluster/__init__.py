"""A local Kubernetes cluster built from pinned binaries: etcd, the control plane and kwok.

One implementation serves `make up` / `make down` (through `tradebot cluster`) and the pytest
fixtures, so what the tests exercise is what a developer runs.
"""

from tradebot.localcluster.cluster import ClusterError, LocalCluster
from tradebot.localcluster.layout import Layout, Ports

__all__ = ["ClusterError", "Layout", "LocalCluster", "Ports"]
