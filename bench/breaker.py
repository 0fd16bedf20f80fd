"""Circuit breaker benchmark: COUNT LiveBots on kwok nodes under one breaker, each bot's REST
API answering at its pod's IP; the breaker is tripped (kill switch) and every bot must get its
REST stop and lose its pod. Compared, in the same run on the same local cluster, with a plain
client deleting COUNT pods of the same shape directly (same grace period, parallelism and
deletion call as the operator's), and with the same client doing the REST stop first.

The bots' APIs: the benchmark's kwok nodes have a podCIDR in 127.0.0.0/8, so kwok gives each
pod a loopback IP, and a double of Freqtrade's REST API (tradebot_testing.freqtrade_api_double)
listens on each pod's IP at the bot API port. Monitoring rounds reach it (the bots are
`Reachable`), so the breaker's stop makes its REST calls as it would to real bots; the double
records when each call arrived, per bot.

Clock: the benchmark's, from just before its patch of the trip annotation (the trip's cause).
Per bot: the REST stop's arrival at the bot, the API server accepting the pod's deletion (first
watch event with a deletionTimestamp) and the pod gone (DELETED: kwok finished it); also the
breaker's decision (its log). Baselines from the start of their deletions. Goal (issue #14):
trip -> pod gone p99 at most 2 s and at most 1.5x direct deletion.

`--flood N`: N Backtests waiting (queue on hold) in the bots' namespace before the trip: the
breaker must keep its own threads and API budget (issue #14 point 2).

    .venv/bin/python bench/breaker.py --count 500 [--flood 10000] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "testing"))

from bench.common import Follow, emit, machine, pct, rss_kib, start_operator, wait_until
from bench.flood import create_backtests
from kubernetes import client, config
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot import kube
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers.bot_control import (
    API_TIMEOUT_SECONDS,
    OWNER_LABEL,
    POD_GRACE_SECONDS,
    answered_last,
)
from tradebot.controllers.livebot import LABEL_ACCOUNT
from tradebot.domain import bots
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.freqtrade.rest import BotClient
from tradebot.localcluster import LocalCluster
from tradebot.localcluster.nodes import NodeSpec
from tradebot.settings import Settings
from tradebot_testing.freqtrade_api_double import FreqtradeApiDouble

G, V = "tradebot.dev", "v1alpha1"
SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}
PARALLEL = Settings().breaker_stop_threads  # the operator's stop pool
GRACE = POD_GRACE_SECONDS  # the operator's grace period for bot pods


NODE_PODS = 250  # pods per kwok node; its podCIDR is a /24 of loopback addresses
Timings = dict[str, list[float]]


class Pods:
    """Per pod of a namespace, on the benchmark's monotonic clock: its IP (the Freqtrade API
    double answers there from the first event that shows it), the API server accepting its
    deletion (the first event with a deletionTimestamp: from here a kubelet sends SIGTERM) and
    the pod gone (DELETED: on kwok, when kwok has processed it). Follows from a list, resumes
    from the last resourceVersion, and fails loudly (bench/common.Follow)."""

    def __init__(self, api: client.ApiClient, namespace: str, double: FreqtradeApiDouble) -> None:
        self.double = double
        self.ips: dict[str, str] = {}
        self.running: set[str] = set()
        self.accepted: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.follow = Follow(client.CoreV1Api(api).list_namespaced_pod, namespace, self._event)
        self.follow.start_and_wait()

    def _event(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        name = meta["name"]
        if status.get("podIP") and name not in self.ips:
            self.double.listen([status["podIP"]])
            self.ips[name] = status["podIP"]
        if status.get("phase") == "Running":
            self.running.add(name)
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self.accepted.setdefault(name, now)
        if kind == "DELETED":
            self.deleted[name] = now

    def all_running(self, count: int) -> bool:
        self.double.check()
        return len(self.running) == count and len(self.ips) == count


def log_times(log_path: Path) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The breaker's decision (its "breaker tripped" line, less the Open write it reports)
    and the trip handled (every LiveBot marked Tripped, the incident recorded), wall clock."""
    decided = handled = None
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        when = entry.get("timestamp")
        if not isinstance(when, str):
            continue
        at = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        if entry.get("event") == "breaker tripped" and decided is None:
            decided = at - dt.timedelta(seconds=float(entry.get("open_written_seconds") or 0))
        elif entry.get("event") == "trip handled" and handled is None:
            handled = at
    return decided, handled


def bot_shaped_pods(namespace: str, count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pods as the operator makes them for the benchmark's bots (same containers, env,
    volumes, labels, annotations), without the owner: the API server's work per deletion and
    per watch event grows with the object, so the baseline deletes the same objects. Each with
    its trade-database claim, as the operator gives every bot (the pod needs it bound)."""
    settings = Settings.from_env()
    strategy = StrategySpec.model_validate(example("Strategy", "ema-rsi")["spec"])
    bot = example("LiveBot", "ema-rsi-dry")
    model = LiveBotSpec.model_validate({**bot["spec"], "resources": SMALL})
    config = trade_config(
        model,
        strategy,
        api_port=bots.API_PORT,
        api_username="",
        exchange_double_url=settings.exchange_double_url,
    )
    pods = []
    for i in range(count):
        instance = bots.BotInstance(
            namespace,
            f"bot-{i}",
            str(uuid.uuid4()),
            model,
            "ema-rsi",
            strategy.class_name,
            strategy.code or "",
            config,
        )
        pod = bots.pod(instance, settings)
        claim = bots.pvc(instance, settings)
        for obj in (pod, claim):
            obj["metadata"].pop("ownerReferences", None)  # its LiveBot does not exist here
        pod["metadata"]["labels"].update({LABEL_ACCOUNT: f"acct-{i}", OWNER_LABEL: instance.uid})
        pods.append((pod, claim))
    return pods


def create_plain(api: client.ApiClient, ns: str, count: int, double: FreqtradeApiDouble) -> Pods:
    """COUNT bot-shaped pods with their claims in `ns`, Running, each with its API double."""
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    pods = Pods(api, ns, double)
    shaped = bot_shaped_pods(ns, count)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda c: core.create_namespaced_persistent_volume_claim(ns, c),
                [claim for _, claim in shaped],
            )
        )
        list(pool.map(lambda p: core.create_namespaced_pod(ns, p), [p for p, _ in shaped]))
    wait_until(
        lambda: pods.all_running(count), 900, f"{count} {ns} pods Running", (pods.follow,), 0.5
    )
    return pods


def direct(api: client.ApiClient, ns: str, pods: Pods, count: int, rest: bool) -> Timings:
    """A plain client on the operator's stop pool size: each pod deleted (grace period as the
    operator's), after the bot's REST stop (/stop, Basic auth, as the operator's) when `rest`."""
    core = client.CoreV1Api(api)
    start = time.monotonic()

    def one(name: str) -> None:
        if rest:
            url = f"http://{pods.ips[name]}:{bots.API_PORT}"
            # As the operator's stop: Basic auth on the call, no login first.
            BotClient(url, "bench", "bench", timeout=API_TIMEOUT_SECONDS, basic_auth=True).stop()
        kube.delete_pod(name, ns, GRACE, api=core)

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, sorted(pods.ips)))
    wait_until(lambda: len(pods.deleted) == count, 300, f"every {ns} pod deleted", (pods.follow,))
    pods.follow.stop()
    timings = {
        "accepted": [t - start for t in pods.accepted.values()],
        "gone": [t - start for t in pods.deleted.values()],
    }
    if rest:
        stops = [pods.double.first(ip, "stop") for ip in pods.ips.values()]
        timings["rest_stop"] = [t - start for t in stops if t is not None]
    return timings


def flood_queued(api: client.ApiClient, ns: str, count: int, alive: Callable[[], None]) -> None:
    custom = client.CustomObjectsApi(api)
    queued: set[str] = set()
    placed: set[str] = set()

    def on_backtest(kind: str, obj: dict[str, Any], now: float) -> None:
        status = obj.get("status") or {}
        if status.get("phase") == "Queued":
            queued.add(obj["metadata"]["name"])
            if status.get("queuePosition"):
                placed.add(obj["metadata"]["name"])

    def list_backtests(namespace: str, **kw: Any) -> Any:
        return custom.list_namespaced_custom_object(G, V, namespace, "backtests", **kw)

    watch = Follow(list_backtests, ns, on_backtest).start_and_wait(300)
    t0 = time.monotonic()
    create_backtests(custom, ns, count)
    print(f"  {count} Backtests created in {time.monotonic() - t0:.0f} s", flush=True)

    def all_queued() -> bool:
        alive()
        return len(queued) == count

    wait_until(all_queued, max(300.0, count * 0.3), f"{count} Backtests Queued", (watch,), 0.5)
    print(f"  all {count} Queued after {time.monotonic() - t0:.0f} s", flush=True)

    # Waiting, settled: the queue has written every one's position (once per Backtest, the
    # flood's last writes), so the trip does not compete with the flood's own processing.
    def all_placed() -> bool:
        alive()
        return len(placed) == count

    wait_until(all_placed, max(300.0, count * 0.3), f"{count} positions written", (watch,), 0.5)
    watch.stop()
    print(f"  all {count} positions written after {time.monotonic() - t0:.0f} s", flush=True)


def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core process `pid` used over the next `seconds`."""

    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    before = ticks()
    time.sleep(seconds)
    used = (ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds
    print(f"\r  operator CPU {used:.2f} of a core", end="", flush=True)
    return used


def bots_ready(custom: client.CustomObjectsApi, ns: str, count: int, pods: Pods) -> bool:
    """Every LiveBot Running and Reachable (its API answered a monitoring round: the trip's
    stop will use it), every pod Running with its API double listening."""
    listed: Any = custom.list_namespaced_custom_object(G, V, ns, "livebots")
    items: list[dict[str, Any]] = listed["items"]
    up = sum(
        (b.get("status") or {}).get("phase") == "Running" and answered_last(b.get("status") or {})
        for b in items
    )
    print(f"\r  bots Running and Reachable: {up}/{count}", end="", flush=True)
    return up == count and pods.all_running(count)


def create_bots(custom: client.CustomObjectsApi, ns: str, count: int) -> None:
    custom.create_namespaced_custom_object(G, V, ns, "strategies", example("Strategy", "ema-rsi"))
    cb = example("CircuitBreaker")
    cb["spec"]["limits"] = {"maxDrawdown": 0.5}  # nothing crosses it: the kill switch trips
    custom.create_namespaced_custom_object(G, V, ns, "circuitbreakers", cb)
    bot = example("LiveBot", "ema-rsi-dry")

    def create(i: int) -> None:
        body = {
            **bot,
            "metadata": {"name": f"bot-{i}", "labels": {"tradebot.dev/fleet": "main"}},
            "spec": {**bot["spec"], "resources": SMALL},
        }
        custom.create_namespaced_custom_object(G, V, ns, "livebots", body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))


def operator_side(
    api: client.ApiClient,
    count: int,
    root: Path,
    kubeconfig: Path,
    double: FreqtradeApiDouble,
    flood: int,
) -> dict[str, Any]:
    ns = "bench"
    custom = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    pods = Pods(api, ns, double)
    log_path = root / "operator.log"
    print(f"  operator log: {log_path}", flush=True)
    # The defaults (handler, breaker and stop threads): the figures are the shipped operator's.
    # With a flood, it waits (as bench/flood.py's): the queue on hold, the cap above the flood.
    held = {
        "TRADEBOT_QUEUE_HOLD": "Hold",
        "TRADEBOT_MAX_WAITING_BACKTESTS_PER_NAMESPACE": str(flood),
    }
    operator = start_operator(
        kubeconfig, ns, log_path, env=held if flood else None, local_state_dir=str(root / "op")
    )
    try:
        create_bots(custom, ns, count)
        started = time.monotonic()
        wait_until(
            lambda: bots_ready(custom, ns, count, pods),
            1800,
            f"{count} LiveBots Running and Reachable",
            (pods.follow,),
            interval=1.0,
        )
        print(f" ({time.monotonic() - started:.0f}s)", flush=True)
        rss = None
        settled = 0.0
        if flood:
            flood_queued(api, ns, flood, operator.alive)
            # "Waiting", not "arriving": the trip comes once the operator has done with the
            # flood's events and writes (under half a core over 2 s; at most 5 minutes, then
            # the trip goes anyway and the figure says how busy it still was).
            deadline = time.monotonic() + 300
            settled = cpu_share(operator.pid, 2.0)
            while settled >= 0.5 and time.monotonic() < deadline:
                settled = cpu_share(operator.pid, 2.0)
            print(flush=True)
            wait_until(lambda: bots_ready(custom, ns, count, pods), 600, "bots still Reachable")
            print(flush=True)
            rss = round(rss_kib(operator.pid) / 1024)
        # The trip's cause: the benchmark's clock starts just before the annotation.
        t0 = time.monotonic()
        wall0 = dt.datetime.now(dt.UTC)
        custom.patch_namespaced_custom_object(
            G,
            V,
            ns,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/trip": "bench"}}},
        )
        wait_until(lambda: len(pods.deleted) == count, 600, "every bot pod deleted", (pods.follow,))
        pods.follow.stop()
        # The incident and the marks come after the stops: waited for, for the breakdown.
        wait_until(lambda: log_times(log_path)[1], 300, "the trip handled")
        decided, handled = log_times(log_path)
        assert decided is not None
        assert handled is not None
        return {
            **trip_timings(pods, t0),
            "decision": (decided - wall0).total_seconds(),
            "handled": (handled - wall0).total_seconds(),
            "operator_rss_mib": rss,
            "operator_cpu_before_trip": round(settled, 2) if flood else None,
        }
    finally:
        operator.stop()
        # Kept past the cluster's removal, for a look at where the time went.
        kept = Path(tempfile.gettempdir()) / f"tradebot-bench-breaker-{count}-{flood}.log"
        shutil.copyfile(log_path, kept)
        print(f"  operator log kept: {kept}", flush=True)


def trip_timings(pods: Pods, t0: float) -> dict[str, Any]:
    """Per bot, from the trip's cause: its REST login (the stop itself where there was none:
    the operator's stop sends Basic auth on the call) and stop as they reached the bot, its
    deletion accepted, its pod gone; and the bots whose REST stop did not come first."""
    login, stop, late, missing = [], [], [], []
    for name, ip in pods.ips.items():
        calls = [c for c in pods.double.calls(ip) if c.at >= t0]
        stopped = next((c.at for c in calls if c.path == "stop"), None)
        if stopped is None:
            missing.append(name)
            continue
        stop.append(stopped - t0)
        logins = [c.at for c in calls if c.path == "token/login" and c.at <= stopped]
        login.append((logins[-1] if logins else stopped) - t0)
        if stopped > pods.accepted[name]:
            late.append(name)
    return {
        "rest_login": login,
        "rest_stop": stop,
        "accepted": [t - t0 for t in pods.accepted.values()],
        "gone": [t - t0 for t in pods.deleted.values()],
        "rest_missing": sorted(missing),
        "rest_after_deletion": sorted(late),
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(pct(values, 0.5), 3),
        "p99": round(pct(values, 0.99), 3),
        "max": round(max(values), 3),
    }


def show(label: str, values: list[float]) -> None:
    s = summary(values)
    if s:
        print(f"  {label:<34} p50 {s['p50']:.3f}s  p99 {s['p99']:.3f}s  max {s['max']:.3f}s")


def measure(cluster: LocalCluster, count: int, flood: int, as_json: bool) -> int:
    root = cluster.layout.root
    before = machine()
    # The operator's connection pool size: a smaller pool would cost the baselines a TLS
    # handshake for every deletion beyond it.
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(cluster.kubeconfig),  # type: ignore[no-untyped-call]
        client_configuration=configuration,
    )
    configuration.connection_pool_maxsize = 64
    api = client.ApiClient(configuration)
    core: Any = client.CoreV1Api(api)  # plain dicts in, as the operator's kube.core()
    # Room for all three sides; each node's pods get loopback IPs (a /24 per node, in a /16
    # picked at random: two benchmarks on one machine do not answer each other's bots).
    # The cluster's own kwok nodes (pod IPs not on loopback) are cordoned: every pod lands
    # on the benchmark's.
    for existing in core.list_node().items:
        core.patch_node(existing.metadata.name, {"spec": {"unschedulable": True}})
    octet = random.randrange(100, 250)  # noqa: S311 - an address, not a secret
    for i in range((3 * count) // NODE_PODS + 1):
        node = NodeSpec(f"bench-{i}", f"10.241.0.{10 + i}", "64", "256Gi").manifest()
        node["status"]["capacity"]["pods"] = node["status"]["allocatable"]["pods"] = str(NODE_PODS)
        node["spec"]["podCIDR"] = f"127.{octet}.{i}.0/24"
        node["spec"]["podCIDRs"] = [node["spec"]["podCIDR"]]
        core.create_node(node)
    print(
        f"breaker benchmark: {count} bots, flood {flood}, same local cluster, bot APIs on "
        f"127.{octet}.0.0/16",
        flush=True,
    )
    with FreqtradeApiDouble(bots.API_PORT) as double:
        plain = create_plain(api, "plain", count, double)
        plain_rest = create_plain(api, "plain-rest", count, double)
        base = direct(api, "plain", plain, count, rest=False)
        base_rest = direct(api, "plain-rest", plain_rest, count, rest=True)
        ours = operator_side(api, count, root, cluster.kubeconfig, double, flood)
        double.check()
    return report(count, flood, base, base_rest, ours, before, as_json)


def report(
    count: int,
    flood: int,
    base: Timings,
    base_rest: Timings,
    ours: dict[str, Any],
    before: dict[str, Any],
    as_json: bool,
) -> int:
    print(f"from the trip's cause (the annotation), {count} bots, flood {flood}:")
    print(f"  breaker's decision {ours['decision']:.3f}s; trip handled {ours['handled']:.3f}s")
    show("REST login reached the bot", ours["rest_login"])
    show("REST stop reached the bot", ours["rest_stop"])
    show("pod deletion accepted", ours["accepted"])
    show("pod gone", ours["gone"])
    print("direct deletion (from its first call):")
    show("pod deletion accepted", base["accepted"])
    show("pod gone", base["gone"])
    print("direct REST stop, then deletion:")
    show("REST stop reached the bot", base_rest["rest_stop"])
    show("pod deletion accepted", base_rest["accepted"])
    show("pod gone", base_rest["gone"])
    gone, direct_gone = pct(ours["gone"], 0.99), pct(base["gone"], 0.99)
    ratio = gone / direct_gone
    rest_ok = not ours["rest_missing"] and not ours["rest_after_deletion"]
    if not rest_ok:
        print(
            f"  REST stop missing for {len(ours['rest_missing'])} bot(s), after the deletion "
            f"for {len(ours['rest_after_deletion'])}"
        )
    met = gone <= 2.0 and ratio <= 1.5 and rest_ok
    emit(
        {
            "benchmark": "breaker",
            "count": count,
            "flood": flood,
            "ratio": round(ratio, 3),
            "ratio_vs_direct_rest": round(gone / pct(base_rest["gone"], 0.99), 3),
            "goal": "trip cause -> pod gone p99 <= 2 s and <= 1.5x direct deletion, "
            "every bot's REST stop before its deletion",
            "met": met,
            "trip_p99": round(gone, 3),
            "trip_last_gone": round(max(ours["gone"]), 3),
            "direct_p99": round(direct_gone, 3),
            "decision_s": round(ours["decision"], 3),
            "handled_s": round(ours["handled"], 3),
            "operator_s": {k: summary(ours[k]) for k in TIMING_KEYS},
            "direct_s": {k: summary(v) for k, v in base.items()},
            "direct_rest_s": {k: summary(v) for k, v in base_rest.items()},
            "rest_stopped": len(ours["rest_stop"]),
            "rest_missing": ours["rest_missing"][:20],
            "rest_after_deletion": ours["rest_after_deletion"][:20],
            "operator_rss_mib_flooded": ours["operator_rss_mib"],
            "operator_cpu_before_trip": ours["operator_cpu_before_trip"],
            "trip_mean": round(statistics.fmean(ours["gone"]), 3),
            "handler_threads": Settings().handler_threads,
            "machine": {**before, "load1_before": before["load1"]},
        },
        as_json,
    )
    return 0 if met else 1


TIMING_KEYS = ("rest_login", "rest_stop", "accepted", "gone")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="bots under the breaker")
    parser.add_argument(
        "--flood", type=int, default=0, help="Backtests waiting (queue on hold) during the trip"
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    try:
        with temporary_cluster("tradebot-bench-breaker-") as cluster:
            apply_crds(cluster)
            return measure(cluster, args.count, args.flood, args.json)
    finally:
        # The watches' last retries against a stopped cluster are not news.
        logging.getLogger("urllib3").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
