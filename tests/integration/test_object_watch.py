"""The tests' ObjectWatch on a real API server: it knows what existed before the test acted,
follows what happens next, and a watch that breaks fails the test instead of counting nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from tests.support.operator import ObjectWatch, WatchBroken
from tests.support.wait import wait_for


def _config_map(core: Any, namespace: str, name: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})


def test_sees_what_existed_before_and_what_came_after(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    _config_map(core, namespace, "before")
    with ObjectWatch(core.list_namespaced_config_map, namespace) as maps:
        # Listed on entering: no wait needed for what existed already.
        assert "before" in maps.live
        _config_map(core, namespace, "after")
        wait_for(lambda: "after" in maps.live, 10, what="the new ConfigMap seen")
        core.delete_namespaced_config_map("before", namespace)
        wait_for(lambda: "before" not in maps.live, 10, what="the deletion seen")
    assert maps.added.count("after") == 1
    assert maps.max_live >= 2


def test_a_broken_watch_fails_the_test(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    calls: list[dict[str, Any]] = []

    def list_then_break(ns: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        if kwargs.get("watch"):
            raise ConnectionError("the watch connection broke")
        return core.list_namespaced_config_map(ns, **kwargs)

    maps = ObjectWatch(list_then_break, namespace).__enter__()
    wait_for(lambda: any(c.get("watch") for c in calls), 10, what="the watch started")
    time.sleep(0.2)
    with pytest.raises(WatchBroken, match="connection broke"):
        maps.max_live  # noqa: B018 - reading a figure of a broken watch raises
    with pytest.raises(WatchBroken, match="connection broke"):
        maps.__exit__(None, None, None)
    # Positive control: the same reads of a healthy watch do not raise (test above).
