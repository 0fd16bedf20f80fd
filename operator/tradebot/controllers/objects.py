"""Typed views of the Kubernetes objects the controllers read: the fields they use, as the API
server sends them (camelCase JSON, every field optional). mypy checks the reads against these
instead of `dict[str, Any]`; they describe, they do not validate."""

from __future__ import annotations

from typing import Any, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    creationTimestamp: str
    deletionTimestamp: str


class Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class JobStatus(TypedDict, total=False):
    succeeded: int
    failed: int
    active: int
    conditions: list[Condition]


class Job(TypedDict, total=False):
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: JobStatus


class Terminated(TypedDict, total=False):
    exitCode: int
    message: str
    reason: str


class ContainerState(TypedDict, total=False):
    terminated: Terminated


class ContainerStatus(TypedDict, total=False):
    name: str
    state: ContainerState


class PodStatus(TypedDict, total=False):
    phase: str
    containerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    metadata: ObjectMeta
    status: PodStatus


class CustomObject(TypedDict, total=False):
    """A Backtest, LiveBot, Strategy or CircuitBreaker as the API server returns it; its spec
    and status are read through the pydantic models in api/."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: dict[str, Any]
