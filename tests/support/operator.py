"""Running the operator in-process (kopf's KopfRunner) against the test cluster."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kopf.testing import KopfRunner

import tradebot.controllers  # noqa: F401 - registers the handlers
from tradebot import kube
from tradebot.controllers import runtime
from tradebot.settings import Settings


@contextlib.contextmanager
def running_operator(kubeconfig: Path, namespace: str, **settings: Any) -> Iterator[KopfRunner]:
    """The operator watching one namespace, with `settings`; stopped on exit."""
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kube.reset()
    runtime.install(runtime.Runtime(Settings(namespaces=(namespace,), **settings)))
    with KopfRunner(["run", "--standalone", "-n", namespace], timeout=60) as runner:
        yield runner
    runtime.get().close()


class JobWatch:
    """Watches the Jobs of a namespace from a thread: how many exist at once, and every
    ADDED event per name (a Job created twice would show up twice)."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client, watch

        self._batch = client.BatchV1Api(api_client)
        self._watch = watch.Watch()
        self.namespace = namespace
        self.live: set[str] = set()
        self.max_live = 0
        self.added: list[str] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped = True
        self._watch.stop()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._follow()
        except Exception:
            if not self._stopped:
                raise  # only the connection closing on stop is expected

    def _follow(self) -> None:
        for ev in self._watch.stream(self._batch.list_namespaced_job, self.namespace,
                                     timeout_seconds=600):
            name = ev["object"].metadata.name
            if ev["type"] == "ADDED":
                self.added.append(name)
                self.live.add(name)
            elif ev["type"] == "DELETED":
                self.live.discard(name)
            self.max_live = max(self.max_live, len(self.live))
