"""A real Prometheus (Debian's `prometheus`, on 127.0.0.1) scrapes the operator's /metrics and
evaluates the chart's rendered alert rules: a CircuitBreaker trip shows up as a firing
TradebotBreakerTripped in its API (and not before the trip), and the Grafana dashboard's
queries, run against it, return series. The operator runs a real dry-run bot (local executor,
Freqtrade against the exchange double), so the bot panels have data."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.support.cluster import stop_process
from tests.support.helm import CHART, Helm
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.localcluster import Ports
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
JOB = "t-tradebot-operator-metrics"  # the job the rules' release ("t") expects
DASHBOARD = CHART / "dashboards" / "tradebot.json"
# Panels with nothing to show in this scenario: no GPU admission happens on this machine, no
# Backtest finishes here and no reconciliation fails (labelled series exist only once they
# have a value). Their queries must still run; every other returns series.
NO_DATA_HERE = {
    "tradebot_gpus_free",
    "sum by (phase) (rate(tradebot_backtests_finished_total[5m]))",
    'sum by (kind) (rate(tradebot_reconciliations_total{outcome="error"}[5m]))',
}


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}{path}{query}"  # http://127.0.0.1
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def alerts(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Alerts `name`, of `namespace` when given: the operator runs in the test process,
        whose metrics registry still holds the breakers of earlier tests' namespaces."""
        return [
            a
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name
            and (namespace is None or a["labels"].get("namespace") == namespace)
        ]


@pytest.fixture
def prometheus_for(tmp_path: Path, tools_bin: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    # Not a skip: the alerts would go untested. `make deps` installs Debian's prometheus.
    assert binary, "prometheus is not on PATH: run `make deps`"
    processes: list[subprocess.Popen[bytes]] = []

    def start(metrics_port: int) -> Prometheus:
        docs = Helm(tools_bin / "helm", None, tmp_path).template(
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        )
        rule = next(d for d in docs if d["kind"] == "PrometheusRule")
        # Scraped as the chart's ServiceMonitor has prometheus-operator scrape it: the target
        # carries the Service's namespace, and honorLabels decides whose `namespace` wins.
        endpoint = next(d for d in docs if d["kind"] == "ServiceMonitor")["spec"]["endpoints"][0]
        rules = tmp_path / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "metrics_path": endpoint["path"],
                            "honor_labels": endpoint.get("honorLabels", False),
                            "static_configs": [
                                {
                                    "targets": [f"127.0.0.1:{metrics_port}"],
                                    "labels": {"namespace": "tradebot-system"},
                                }
                            ],
                        }
                    ],
                }
            )
        )
        port = Ports.free().kwok
        log = (tmp_path / "prometheus.log").open("ab")
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        prometheus = Prometheus(f"http://127.0.0.1:{port}")
        wait_for(lambda: _ready(prometheus), 60, what="Prometheus ready")
        return prometheus

    yield start
    for process in processes:
        stop_process(process, timeout=20)


def _ready(prometheus: Prometheus) -> bool:
    try:
        urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2)  # noqa: S310
    except OSError:
        return False
    return True


def _custom(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
    )


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}),
    )


def _dashboard_queries(namespace: str) -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [
        t["expr"].replace("$namespace", namespace)
        for p in board["panels"]
        for t in p.get("targets", [])
    ]


def test_a_breaker_trip_fires_its_alert_in_a_real_prometheus_and_the_dashboard_has_data(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
    prometheus_for: Any,
):
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "watched", "labels": {"tradebot.dev/fleet": "main"}}
    breaker = copy.deepcopy(example("CircuitBreaker"))
    breaker["spec"]["limits"] = {"maxDrawdown": 0.9}  # the trip comes from the kill switch
    metrics_port = Ports.free().kwok
    prometheus = prometheus_for(metrics_port)
    with (
        ExchangeDouble() as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            database_dsn=f"sqlite://{tmp_path / 'records.db'}",
            local_state_dir=tmp_path / "state",
            reconcile_interval_seconds=1.0,
            bot_poll_seconds=2.0,
            snapshot_interval_seconds=5,
            exchange_double_url=double.url,
            metrics_port=metrics_port,
        ),
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), breaker, bot)
        wait_for(
            lambda: (_custom(api_client, namespace, "livebots", "watched").get("status") or {}).get(
                "lastHeartbeat"
            ),
            240,
            what="the dry-run bot answering the operator",
        )
        selector = f'namespace="{namespace}", breaker="main-fleet"'
        # Scraped, closed, quiet: the series is there at 0 and no alert is pending or firing.
        wait_for(lambda: prometheus.query(f'up{{job="{JOB}"}} == 1'), 30, what="scraped")
        wait_for(
            lambda: prometheus.query(f"tradebot_breaker_open{{{selector}}} == 0"),
            30,
            what="the closed breaker scraped",
        )
        wait_for(
            lambda: prometheus.query(
                f'tradebot_bot_last_heartbeat_timestamp_seconds{{namespace="{namespace}"}}'
            ),
            30,
            what="the bot's heartbeat scraped",
        )
        assert prometheus.alerts("TradebotBreakerTripped", namespace) == []
        assert prometheus.alerts("TradebotOperatorAbsent") == []

        client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/trip": "alert-1"}}},
        )
        wait_for(
            lambda: (
                (
                    _custom(api_client, namespace, "circuitbreakers", "main-fleet").get("status")
                    or {}
                ).get("state")
                == "Open"
            ),
            60,
            what="the breaker Open",
        )
        firing = wait_for(
            lambda: [
                a
                for a in prometheus.alerts("TradebotBreakerTripped")
                if a["state"] == "firing" and a["labels"].get("namespace") == namespace
            ],
            60,
            what="TradebotBreakerTripped firing in Prometheus",
        )
        assert firing[0]["labels"]["breaker"] == "main-fleet"
        assert firing[0]["labels"]["severity"] == "critical"
        assert firing[0]["annotations"]["summary"] == (
            f"CircuitBreaker {namespace}/main-fleet tripped"
        )

        queries = _dashboard_queries(namespace)
        assert len(queries) >= 15
        empty = [q for q in queries if not prometheus.query(q)]
        assert set(empty) <= NO_DATA_HERE, empty
