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
from tests.support.operator_env import operator_env
from tradebot import kube
from tradebot.controllers import runtime
from tradebot.settings import PromotionFloors, Settings


def without_bias_analysis(floors: PromotionFloors | None = None) -> PromotionFloors:
    """`floors` (the shipped ones by default) with the bias analyses not required: for tests
    about other evidence, whose hand-written Backtest status has no analyses to read."""
    floors = floors or PromotionFloors()
    return PromotionFloors(
        testnet=floors.testnet.model_copy(update={"require_bias_analysis": False}),
        live=floors.live.model_copy(update={"require_bias_analysis": False}),
    )


# The bot image as a production chart sets it: pinned by digest (testnet and live bots run
# nothing else). No container runs on kwok, so the digest need only have the right form.
PINNED_BOT_IMAGE = "freqtradeorg/freqtrade:2026.9@sha256:" + "5e" * 32


@contextlib.contextmanager
def running_operator(kubeconfig: Path, namespace: str, **settings: Any) -> Iterator[KopfRunner]:
    """The operator watching one namespace, with `settings`; stopped on exit. Unlike the
    shipped default (dry run only), the tests' operator allows every mode unless a test says
    otherwise: the tests of testnet and live bots are about what happens after that check.
    The promotion floors are the shipped ones without the bias analyses, unless given."""
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kube.reset()
    settings.setdefault("allowed_modes", ("dryRun", "testnet", "live"))
    # Likewise the bias analyses: the tests of the bias gate ask for them (the shipped floors).
    settings.setdefault("promotion_floors", without_bias_analysis())
    settings.setdefault("bot_image", PINNED_BOT_IMAGE)
    runtime.install(runtime.Runtime(Settings(namespaces=(namespace,), **settings)))
    with KopfRunner(["run", "--standalone", "-n", namespace], timeout=60) as runner:
        yield runner
    runtime.get().close()


@contextlib.contextmanager
def local_operator(
    cluster: Any, namespace: str, tmp_path: Path, **settings: Any
) -> Iterator[KopfRunner]:
    """`running_operator` with the local executor, its state and a SQLite records file under
    `tmp_path` (what most end-to-end tests want), and `settings` on top."""
    settings.setdefault("database_dsn", f"sqlite://{tmp_path / 'records.db'}")
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        local_state_dir=tmp_path / "state",
        **settings,
    ) as runner:
        yield runner


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, namespace: str, log: Path, args: tuple[str, ...] = (), **settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`tradebot operator` as a process of its own (signals reach it as in a pod), watching
    one namespace, with `settings` as TRADEBOT_<SETTING> variables and none of this process's
    own, and `args` after its own (e.g. --liveness URL); stopped on exit (SIGTERM, SIGKILL if
    it hangs). Its output goes to `log`."""
    from tests.support.cluster import stop_process

    env = operator_env(kubeconfig, **settings)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tradebot.cli", "operator", "-n", namespace, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        stop_process(process, timeout=40)


class WatchBroken(AssertionError):
    """The watch behind an ObjectWatch ended with an error: what it counted is incomplete."""


class ObjectWatch:
    """Watches one kind of object in a namespace from a thread: every ADDED name (an object
    created twice shows up twice), how many exist at once, and, with `label`, how many at
    once per value of that label. An object being deleted still counts until it is gone.
    With `active`, only objects for which it is true count as live (e.g. unfinished Jobs).

    Entering lists the namespace first, so what exists before the test acts is known; the
    watch then follows from that list's resourceVersion and resumes from the last event
    whenever the server ends the stream. If it cannot go on without missing events (a 410,
    any other error), every read of its figures and the exit raise `WatchBroken` in the
    test: "nothing happened" must never pass because nothing was watched."""

    def __init__(
        self, list_fn: Any, namespace: str, label: str | None = None, active: Any = None
    ) -> None:
        self._list = list_fn
        self.namespace, self.label = namespace, label
        self._active = active or (lambda obj: True)
        self._added: list[str] = []
        self._live: dict[str, str] = {}
        self._max_live = 0
        self._max_per_value: dict[str, int] = {}
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rv = ""

    def __enter__(self) -> ObjectWatch:
        listed = self._list(self.namespace)
        for obj in listed.items:
            self._seen("ADDED", obj)
        self._rv = listed.metadata.resource_version
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        if exc_type is None:
            self.check()

    def check(self) -> None:
        if self._error is not None:
            raise WatchBroken(f"watch of {self.namespace} failed: {self._error!r}") from self._error
        if not self._thread.is_alive() and not self._stop.is_set():
            raise WatchBroken(f"watch of {self.namespace} ended")

    @property
    def added(self) -> list[str]:
        self.check()
        return self._added

    @property
    def live(self) -> dict[str, str]:
        self.check()
        return self._live

    @property
    def max_live(self) -> int:
        self.check()
        return self._max_live

    @property
    def max_per_value(self) -> dict[str, int]:
        self.check()
        return self._max_per_value

    def _run(self) -> None:
        from kubernetes import watch

        try:
            while not self._stop.is_set():
                w = watch.Watch()
                # Short server timeouts, resumed from the last event: the thread sees a stop
                # within seconds and misses nothing in between.
                for ev in w.stream(
                    self._list,
                    self.namespace,
                    resource_version=self._rv,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                ):
                    if ev["type"] == "ERROR":
                        raise WatchBroken(f"error event: {ev['raw_object']}")
                    # From the raw object: a BOOKMARK's object is not deserialized.
                    self._rv = ev["raw_object"]["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self._seen(ev["type"], ev["object"])
                    if self._stop.is_set():
                        w.stop()
                        break
        except BaseException as e:  # raised in the test by check()
            self._error = e

    def _seen(self, kind: str, obj: Any) -> None:
        meta = obj.metadata
        if kind == "ADDED":
            self._added.append(meta.name)
        if kind == "DELETED" or not self._active(obj):
            self._live.pop(meta.name, None)
        else:
            self._live[meta.name] = (meta.labels or {}).get(self.label or "", "")
        self._max_live = max(self._max_live, len(self._live))
        for value in set(self._live.values()):
            count = sum(v == value for v in self._live.values())
            self._max_per_value[value] = max(self._max_per_value.get(value, 0), count)


def job_unfinished(job: Any) -> bool:
    """A Job that still holds a backtest slot: its pod has not finished."""
    return not (job.status and (job.status.succeeded or job.status.failed))


def job_watch(api_client: Any, namespace: str, active: Any = None) -> ObjectWatch:
    from kubernetes import client

    return ObjectWatch(client.BatchV1Api(api_client).list_namespaced_job, namespace, active=active)


def pod_unfinished(pod: Any) -> bool:
    """A pod whose container may still run: neither Succeeded nor Failed."""
    return not (pod.status and pod.status.phase in ("Succeeded", "Failed"))


def pod_watch(api_client: Any, namespace: str, label: str, active: Any = None) -> ObjectWatch:
    from kubernetes import client

    return ObjectWatch(
        client.CoreV1Api(api_client).list_namespaced_pod, namespace, label, active=active
    )
