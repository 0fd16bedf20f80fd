"""Running the operator in-process (kopf's KopfRunner) against the test cluster."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
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
    """The operator watching one namespace, with `settings`; stopped on exit. Unlike the
    shipped default (dry run only), the tests' operator allows every mode unless a test says
    otherwise: the tests of testnet and live bots are about what happens after that check."""
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kube.reset()
    settings.setdefault("allowed_modes", ("dryRun", "testnet", "live"))
    runtime.install(runtime.Runtime(Settings(namespaces=(namespace,), **settings)))
    with KopfRunner(["run", "--standalone", "-n", namespace], timeout=60) as runner:
        yield runner
    runtime.get().close()


@contextlib.contextmanager
def operator_process(kubeconfig: Path, namespace: str, log: Path, **settings: str
                     ) -> Iterator[subprocess.Popen[bytes]]:
    """`tradebot operator` as a process of its own (signals reach it as in a pod), watching
    one namespace, with `settings` as TRADEBOT_<SETTING> variables and none of this process's
    own; stopped on exit (SIGTERM, SIGKILL if it hangs). Its output goes to `log`."""
    from tests.support.cluster import stop_process

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRADEBOT_") and k != "PYTEST_VERSION"}
    env["KUBECONFIG"] = str(kubeconfig)
    env.update({f"TRADEBOT_{k.upper()}": v for k, v in settings.items()})
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "tradebot.cli", "operator", "-n",
                                    namespace], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, timeout=40)


class ObjectWatch:
    """Watches one kind of object in a namespace from a thread: every ADDED name (an object
    created twice shows up twice), how many exist at once, and, with `label`, how many at
    once per value of that label. An object being deleted still counts until it is gone."""

    def __init__(self, list_fn: Any, namespace: str, label: str | None = None) -> None:
        from kubernetes import watch

        self._list = list_fn
        self._watch = watch.Watch()
        self.namespace, self.label = namespace, label
        self.added: list[str] = []
        self.live: dict[str, str] = {}
        self.max_live = 0
        self.max_per_value: dict[str, int] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ObjectWatch:
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
        for ev in self._watch.stream(self._list, self.namespace, timeout_seconds=600):
            meta = ev["object"].metadata
            if ev["type"] == "ADDED":
                self.added.append(meta.name)
            if ev["type"] == "DELETED":
                self.live.pop(meta.name, None)
            else:
                self.live[meta.name] = (meta.labels or {}).get(self.label or "", "")
            self.max_live = max(self.max_live, len(self.live))
            for value in set(self.live.values()):
                count = sum(v == value for v in self.live.values())
                self.max_per_value[value] = max(self.max_per_value.get(value, 0), count)


def job_watch(api_client: Any, namespace: str) -> ObjectWatch:
    from kubernetes import client

    return ObjectWatch(client.BatchV1Api(api_client).list_namespaced_job, namespace)


def pod_watch(api_client: Any, namespace: str, label: str) -> ObjectWatch:
    from kubernetes import client

    return ObjectWatch(client.CoreV1Api(api_client).list_namespaced_pod, namespace, label)
