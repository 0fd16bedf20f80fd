"""What every benchmark shares, so that its figures can be trusted: watches that resume from
their last resourceVersion and fail loudly instead of ending, loops with deadlines, the
machine's load next to the figures, one JSON object as the last line with `--json`, and the
operator under test started the same way by every benchmark (`start_operator`).

A watch that silently ended would make "at most N at once" hold vacuously and leave a loop
waiting on it forever; here an error is kept and raised by `check()`, which every wait calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.support.cluster import apply_crds, stop_process, temporary_cluster
from tests.support.manifests import example
from tests.support.operator_env import operator_env

ROOT = Path(__file__).resolve().parent.parent
G, V = "tradebot.dev", "v1alpha1"
T = TypeVar("T")


class WatchFailed(RuntimeError):
    """A benchmark's watch could not go on without missing events."""


class Follow(threading.Thread):
    """Follows one list function (e.g. CoreV1Api.list_namespaced_pod) from a thread: lists
    once, then watches from that list's resourceVersion, resuming from the last event seen
    whenever the server ends the stream. Raw events (no model objects), each handed to
    `on_event(type, object_dict, monotonic_time)` with the time taken as it arrived.

    A 410 Gone (the server no longer has the events after our resourceVersion) or any other
    error ends the watch with `error` set: `check()` raises it in the caller's thread."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        on_event: Callable[[str, dict[str, Any], float], None],
        label_selector: str = "",
    ) -> None:
        super().__init__(daemon=True, name=f"follow-{namespace}")
        self.list_fn, self.namespace, self.on_event = list_fn, namespace, on_event
        self.selector = label_selector
        self.error: BaseException | None = None
        self.listed = threading.Event()
        self._stopped = threading.Event()
        self.resumes = 0

    def start_and_wait(self, timeout: float = 60) -> Follow:
        self.start()
        if not self.listed.wait(timeout):
            self.check()
            raise WatchFailed(f"the initial list of {self.namespace} took over {timeout} s")
        self.check()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def check(self) -> None:
        if self.error is not None:
            raise WatchFailed(f"watch of {self.namespace} failed: {self.error!r}") from self.error

    def run(self) -> None:
        from kubernetes import watch

        try:
            listed = self.list_fn(
                self.namespace, label_selector=self.selector, _preload_content=False
            )
            body = json.loads(listed.data)
            now = time.monotonic()
            for obj in body.get("items") or []:
                self.on_event("ADDED", obj, now)
            rv = body["metadata"]["resourceVersion"]
            self.listed.set()
            while not self._stopped.is_set():
                w = watch.Watch()
                # Short server timeouts: the loop sees `stop()` within seconds.
                for ev in w.stream(
                    self.list_fn,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                ):
                    now = time.monotonic()
                    if ev["type"] == "ERROR":
                        raise WatchFailed(f"watch error event: {ev['object']}")
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self.on_event(ev["type"], obj, now)
                    if self._stopped.is_set():
                        w.stop()
                        break
                self.resumes += 1
        except ApiException as e:
            self.error = WatchFailed(f"HTTP {e.status} {e.reason}") if e.status == 410 else e
        except BaseException as e:  # kept for check(); a benchmark must not go on without it
            self.error = e
        finally:
            self.listed.set()


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    watches: tuple[Follow, ...] = (),
    interval: float = 0.1,
) -> T:
    """Polls `probe` until truthy; raises if `timeout` passes or a watch has failed."""
    deadline = time.monotonic() + timeout
    while True:
        for w in watches:
            w.check()
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (no interpolation: a p99 of 100 values is a value seen)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def machine() -> dict[str, Any]:
    """The load next to the figures: on a shared machine they are only as fair as this."""
    load = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return {
        "cpus": os.cpu_count(),
        "load1": round(load[0], 2),
        "load5": round(load[1], 2),
        "commit": commit + ("+dirty" if dirty else ""),
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def emit(result: dict[str, Any], as_json: bool) -> None:
    """The last line of output: one JSON object (ratio, goal, met, raw figures)."""
    # What the caller measured at the start (its commit, the load before) wins over now.
    now = machine()
    result = {
        **result,
        "machine": {**now, "load1_after": now["load1"], **result.get("machine", {})},
    }
    if as_json:
        print(json.dumps(result, sort_keys=True, default=str), flush=True)
    else:
        print(
            f"goal: {result.get('goal')}: {'met' if result.get('met') else 'NOT met'} "
            f"(ratio {result.get('ratio')})",
            flush=True,
        )


class OperatorProcess:
    """`tradebot operator` from this checkout, as a process of its own (signals reach it as in
    a pod). Stopped on leaving a `with` block, or by `stop()`."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, stop_timeout: float) -> None:
        self.process, self.log, self.stop_timeout = process, log, stop_timeout

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> None:
        """Raises if the operator has exited: a benchmark must not wait on a dead one."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"the operator exited {self.process.returncode}; see {self.log}:\n{tail}"
            )

    def stop(self) -> None:
        """SIGTERM (the operator shuts down cleanly), SIGKILL after `stop_timeout`."""
        stop_process(self.process, timeout=self.stop_timeout)

    def __enter__(self) -> OperatorProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_operator(
    kubeconfig: Path,
    namespace: str,
    log: Path,
    *,
    executor: str = "kubernetes",
    append_log: bool = False,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    stop_timeout: float = 30,
    **settings: str,
) -> OperatorProcess:
    """Starts `tradebot operator -n NAMESPACE --executor EXECUTOR [ARGS]` from this checkout
    against the cluster of `kubeconfig`, its output to `log` (truncated first, unless
    `append_log`). It gets none of this process's TRADEBOT_* variables, so only the shipped
    defaults and `settings` (each as TRADEBOT_<NAME>, e.g. local_state_dir=...) hold, plus
    `env` (e.g. POD_NAME). Returns at once: waiting for it to be up is the caller's (e.g.
    `strategy_ready`)."""
    environ = operator_env(kubeconfig, **settings)
    environ["PYTHONPATH"] = f"{ROOT / 'operator'}:{environ.get('PYTHONPATH', '')}"
    environ.update(env or {})
    command = [sys.executable, "-m", "tradebot.cli", "operator", "-n", namespace]
    with log.open("ab" if append_log else "wb") as out:
        process = subprocess.Popen(
            [*command, "--executor", executor, *args],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return OperatorProcess(process, log, stop_timeout)


def strategy_ready(
    custom: client.CustomObjectsApi,
    namespace: str,
    *,
    operator: OperatorProcess | None = None,
    timeout: float = 120,
    watches: tuple[Follow, ...] = (),
    interval: float = 0.1,
) -> None:
    """Creates the example Strategy (ema-rsi) and waits until the operator has made it Ready:
    the operator is up and handling before a benchmark's clock starts."""
    custom.create_namespaced_custom_object(
        G, V, namespace, "strategies", example("Strategy", "ema-rsi")
    )

    def ready() -> bool:
        if operator is not None:
            operator.alive()
        found = cast(
            dict[str, Any],
            custom.get_namespaced_custom_object(G, V, namespace, "strategies", "ema-rsi"),
        )
        return (found.get("status") or {}).get("phase") == "Ready"

    wait_until(ready, timeout, "Strategy Ready", watches, interval)


@contextmanager
def operator_in_process(
    prefix: str, namespace: str, tools: Path, **settings: Any
) -> Iterator[client.ApiClient]:
    """A fresh local cluster (its directory named from `prefix`) with the CRDs and
    `namespace`, and the operator watching it from this process (kopf's runner, `settings` as
    tests.support.operator.running_operator takes them); yields an API client of the cluster.
    For the benchmarks whose operator runs the local executor's processes from here."""
    # kopf's test runner and the handlers: imported only by the benchmarks that use them.
    from tests.support.operator import running_operator

    with temporary_cluster(prefix, tools) as cluster:
        apply_crds(cluster)
        with cluster.api_client() as api_client:
            client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
            with running_operator(cluster.kubeconfig, namespace, **settings):
                yield api_client
