"""The local cluster's fake nodes: plain CPU nodes, ROCm GPU nodes and one NVIDIA node.

GPU nodes carry the capacity, labels and taint that the AMD GPU operator (device plugin, node
labeller, Node Feature Discovery) and the NVIDIA GPU operator set on real nodes, so scheduling
code written against them behaves the same on a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
AMD_GPU_RESOURCE = "amd.com/gpu"
NVIDIA_GPU_RESOURCE = "nvidia.com/gpu"
AMD_GPU_TAINT = {"key": AMD_GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
NVIDIA_GPU_TAINT = {"key": NVIDIA_GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    address: str
    cpu: str
    memory: str
    extra_capacity: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def manifest(self) -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": "110", **self.extra_capacity}
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            **self.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels, "annotations": KWOK_ANNOTATION},
            "spec": {"taints": [dict(t) for t in self.taints]},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "addresses": [
                    {"type": "InternalIP", "address": self.address},
                    {"type": "Hostname", "address": self.name},
                ],
            },
        }


def rocm_labels(index: int) -> dict[str, str]:
    return {
        "feature.node.kubernetes.io/amd-gpu": "true",
        "amd.com/gpu.family": "AI",
        "amd.com/gpu.device-id": "74a1",
        "amd.com/gpu.product-name": "AMD_Instinct_MI300X",
        "amd.com/gpu.vram": "192G",
        "amd.com/gpu.driver-version": "6.10.5",
        "tradebot.dev/gpu-vendor": "amd",
        "topology.kubernetes.io/zone": f"local-{index}",
    }


NVIDIA_LABELS = {
    "feature.node.kubernetes.io/pci-10de.present": "true",
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.count": "2",
    "nvidia.com/gpu.memory": "81559",
    "tradebot.dev/gpu-vendor": "nvidia",
}


def default_nodes() -> list[NodeSpec]:
    """2 CPU nodes, 2 ROCm nodes with 4 GPUs each, 1 NVIDIA node with 2 GPUs."""
    cpu = [NodeSpec(f"tradebot-cpu-{i}", f"10.240.0.{10 + i}", "8", "32Gi") for i in range(2)]
    rocm = [
        NodeSpec(
            f"tradebot-rocm-{i}",
            f"10.240.0.{20 + i}",
            "32",
            "256Gi",
            extra_capacity={AMD_GPU_RESOURCE: "4"},
            labels=rocm_labels(i),
            taints=(AMD_GPU_TAINT,),
        )
        for i in range(2)
    ]
    nvidia = [
        NodeSpec(
            "tradebot-nvidia-0",
            "10.240.0.30",
            "32",
            "256Gi",
            extra_capacity={NVIDIA_GPU_RESOURCE: "2"},
            labels=NVIDIA_LABELS,
            taints=(NVIDIA_GPU_TAINT,),
        )
    ]
    return cpu + rocm + nvidia
