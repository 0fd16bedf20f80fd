"""The admission queue's informer on a real API server: a list in pages still hands over every
object, once, without the server's managedFields, and the watch from it goes on trimmed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client
from tests.support.wait import wait_for

from tradebot.controllers import informer as informer_module
from tradebot.controllers.informer import Informer

LABELS = {"test": "informer"}  # not the namespace's own kube-root-ca.crt


def test_a_paged_list_hands_over_everything_trimmed(
    api_client: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    core: Any = client.CoreV1Api(api_client)
    names = {f"cm-{i}" for i in range(7)}
    for name in names:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": LABELS}})
    monkeypatch.setattr(informer_module, "PAGE", 3)  # 7 objects: three pages
    calls: list[dict[str, Any]] = []

    def list_fn(**kw: Any) -> Any:
        calls.append(kw)
        return core.list_namespaced_config_map(namespace, **kw)

    lists: list[list[dict[str, Any]]] = []
    events: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_list(objs: list[dict[str, Any]]) -> None:
        with lock:
            lists.append(objs)

    def on_event(type_: str, obj: dict[str, Any]) -> None:
        with lock:
            events.append((type_, obj))

    inf = Informer("cms", list_fn, on_list, on_event, label_selector="test=informer")
    inf.start()
    try:
        assert inf.synced.wait(30), "the first list never completed"
        listed = [o["metadata"]["name"] for o in lists[0]]
        assert sorted(listed) == sorted(names)  # each once, across pages
        assert [c.get("limit") for c in calls if not c.get("watch")][:3] == [3, 3, 3]
        assert all("managedFields" not in o["metadata"] for o in lists[0])
        # A positive control: the server does send managedFields for these objects.
        assert core.read_namespaced_config_map("cm-0", namespace).metadata.managed_fields
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "later", "labels": LABELS}}
        )
        wait_for(
            lambda: any(o["metadata"]["name"] == "later" for _, o in events),
            20,
            what="the watch event of a ConfigMap created after the list",
        )
        with lock:
            added = [o for t, o in events if o["metadata"]["name"] == "later"]
        assert added
        assert all("managedFields" not in o["metadata"] for o in added)
    finally:
        inf.stop()  # a daemon thread: it ends with its current watch
