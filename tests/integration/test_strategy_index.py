"""A LiveBot round's Strategy from the operator's index, against the real API server: the code
the index leaves out is read once with the Strategy and then served from the store by its
sha256, with no further read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client
from tests.support.manifests import example

from tradebot import kube
from tradebot.controllers import cache

G, V = "tradebot.dev", "v1alpha1"


@pytest.fixture
def kube_client(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    kube.reset()
    cache.CODES.clear()
    yield
    cache.CODES.clear()
    kube.reset()


def test_code_read_once_then_served_from_the_store(
    kube_client: None, api_client: Any, namespace: str, crds_installed: None
) -> None:
    custom = client.CustomObjectsApi(api_client)
    created = cast(
        dict[str, Any],
        custom.create_namespaced_custom_object(
            G, V, namespace, "strategies", example("Strategy", "ema-rsi")
        ),
    )
    code = created["spec"]["code"]
    index = {(namespace, "ema-rsi"): [cache.strategy_view(created)]}
    assert "code" not in index[(namespace, "ema-rsi")][0]["spec"]

    got = cache.strategy(index, namespace, "ema-rsi")
    assert got is not None
    assert got["spec"]["code"] == code
    assert len(cache.CODES) == 1

    # Gone from the API server: a read now would say so. The store still has the code of
    # the view the index holds, so no read happens (the index lags by a watch event at most).
    custom.delete_namespaced_custom_object(G, V, namespace, "strategies", "ema-rsi")
    again = cache.strategy(index, namespace, "ema-rsi")
    assert again is not None
    assert again["spec"]["code"] == code

    # Positive control: with the store empty the same call reads, and finds it gone.
    cache.CODES.clear()
    assert cache.strategy(index, namespace, "ema-rsi") is None
