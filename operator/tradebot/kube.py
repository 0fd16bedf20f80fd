"""The Kubernetes API client the controllers share (in-cluster or from KUBECONFIG)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_lock = threading.Lock()
_client: ApiClient | None = None

# (connect, read) seconds for every request that names no timeout of its own. The client's
# default is none at all: a half-open connection (a NAT or load balancer that forgot it, a
# frozen API server) would hold a thread, the admission loop or an informer forever. Set
# from the settings at start-up (`set_timeouts`).
_timeouts: tuple[float, float] = (5.0, 30.0)
# What a watch's read timeout adds to its server-side timeoutSeconds: the server ends the
# stream at that time, so silence longer than this means the connection is gone.
WATCH_READ_MARGIN = 10.0


def set_timeouts(connect: float, read: float) -> None:
    global _timeouts
    _timeouts = (connect, read)


def timeouts() -> tuple[float, float]:
    return _timeouts


def watch_timeouts(server_timeout: float) -> tuple[float, float]:
    """The client-side (connect, read) timeouts of a watch asked to last `server_timeout`
    seconds (its timeoutSeconds): the read bound is when a silent stream counts as dead."""
    return (_timeouts[0], server_timeout + WATCH_READ_MARGIN)


class TimedApiClient(client.ApiClient):
    """The generated client with a default timeout on every request (see `_timeouts`);
    a call that passes `_request_timeout` keeps its own (watches do: they last longer)."""

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = _timeouts
        return super().call_api(*args, **kwargs)


def api_client() -> ApiClient:
    global _client
    with _lock:
        if _client is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException:
                # Read KUBECONFIG now: the client library reads it once, at import.
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
                )
            # Handlers run in threads, and a breaker stops its bots in parallel: the default
            # pool of 4 connections would serialise them.
            configuration.connection_pool_maxsize = 64
            _client = TimedApiClient(configuration)
        return _client


def reset() -> None:
    """Forget the client (tests point the process at another cluster)."""
    global _client
    with _lock:
        _client = None


# The generated APIs are typed for model objects; we pass and read plain dicts.
def core() -> Any:
    return client.CoreV1Api(api_client())


def batch() -> Any:
    return client.BatchV1Api(api_client())


def coordination() -> Any:
    return client.CoordinationV1Api(api_client())


def networking() -> Any:
    return client.NetworkingV1Api(api_client())


def custom() -> Any:
    return client.CustomObjectsApi(api_client())


def delete_pod(name: str, namespace: str, grace_period_seconds: int, api: Any = None) -> None:
    """Deletes a pod (through `api`, a CoreV1Api, or ours) without turning the answer into a
    model: when a breaker stops hundreds of bots at once, parsing every deleted pod would cost
    the operator more than the API server spends deleting it. Raises ApiException as usual."""
    response = (api if api is not None else core()).delete_namespaced_pod(
        name, namespace, grace_period_seconds=grace_period_seconds, _preload_content=False
    )
    # Read to the end and hand the connection back: an unread answer keeps its connection
    # out of the pool, and the next call would pay for a new TLS handshake.
    response.drain_conn()
    response.release_conn()


_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def list_metadata(group: str, version: str, namespace: str, plural: str) -> list[dict[str, Any]]:
    """The namespace's objects of a custom kind, metadata only (names, uids, labels), from
    the API server's watch cache: what every watcher (the operator's too) is fed from, so at
    least as fresh as any of them, without a read through etcd."""
    answer = custom().list_namespaced_custom_object(
        group, version, namespace, plural, resource_version="0", _headers={"Accept": _METADATA_ONLY}
    )
    return list(answer.get("items") or [])


def read_or_none(read: Any, *args: Any) -> Any:
    """`read(*args)`, or None where the object does not exist."""
    try:
        return read(*args)
    except ApiException as e:
        if is_not_found(e):
            return None
        raise


def create_if_absent(
    create: Callable[[str, dict[str, Any]], object], namespace: str, body: dict[str, Any]
) -> None:
    """`create(namespace, body)`; an object of that name already there is what a repeated
    or concurrent round made: deterministic names make that one ours."""
    try:
        create(namespace, body)
    except ApiException as e:
        if not is_conflict(e):
            raise


def is_not_found(error: ApiException) -> bool:
    return bool(error.status == 404)


def is_conflict(error: ApiException) -> bool:
    return bool(error.status == 409)


def to_dict(obj: Any) -> dict[str, Any]:
    """A model object from the client as the API's own camelCase dict."""
    result: dict[str, Any] = api_client().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return result
