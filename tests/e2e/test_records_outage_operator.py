"""The operator runs real backtests while PostgreSQL is down: they finish, their records wait
in the outbox, and once the server is back every record arrives, once."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.postgres import LocalPostgres
from tests.support.wait import wait_for

from tradebot.controllers import runtime
from tradebot.records import open_store

G, V = "tradebot.dev", "v1alpha1"


def _backtest(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    doc["metadata"] = {"name": name}
    return doc


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(G, V, namespace, plural, name).get("status") or {})


def test_backtests_are_recorded_after_postgres_comes_back(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,
    private_postgres: LocalPostgres,
):
    api = client.CustomObjectsApi(api_client)
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE records")
    dsn = private_postgres.dsn("records")
    private_postgres.stop()  # down before the operator starts: not even migrated
    names = ["down-0", "down-1"]
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        database_dsn=dsn,
        local_state_dir=tmp_path / "state",
        reconcile_interval_seconds=1.0,
        outbox_flush_interval_seconds=0.5,
    ):
        for doc in [example("Strategy", "ema-rsi"), *map(_backtest, names)]:
            kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))

        def finished() -> list[dict[str, Any]] | None:
            statuses = [_status(api, namespace, "backtests", n) for n in names]
            return (
                statuses
                if all(s.get("phase") == "Succeeded" and s.get("cleanedUp") for s in statuses)
                else None
            )

        statuses = wait_for(finished, 300, interval=0.5, what="backtests done, database down")
        for status in statuses:
            recorded = {c["type"]: c for c in status["conditions"]}["Recorded"]
            assert recorded["status"] == "True"
            assert "outbox" in recorded["message"]
        store = runtime.get().store()
        assert not store.connected
        waiting = store.pending
        # At least the strategy and, per run, its final record, metrics and artifacts.
        assert waiting >= 1 + 3 * len(names)

        private_postgres.resume()
        wait_for(
            lambda: store.connected and store.pending == 0,
            60,
            interval=0.2,
            what="outbox drained into PostgreSQL",
        )
        strategy = _status(api, namespace, "strategies", "ema-rsi")

    with open_store(dsn) as records:
        runs = records.list_runs(namespace=namespace)
        assert sorted(r.name for r in runs) == names
        assert {r.status for r in runs} == {"succeeded"}
        for run, status in zip(sorted(runs, key=lambda r: r.name), statuses, strict=True):
            assert run.config_hash == status["configHash"]
            got = records.get_metrics(run.id)
            assert got["trades"] == Decimal(str(status["results"]["trades"]))
            expected = sorted((a["name"], a["sha256"]) for a in status["artifacts"])
            assert expected
            assert [(a.name, a.sha256) for a in records.get_artifacts(run.id)] == expected
        registered = records.get_strategy(
            api.get_namespaced_custom_object(G, V, namespace, "strategies", "ema-rsi")["metadata"][
                "uid"
            ],
            strategy["codeHash"],
        )
        assert registered is not None
        assert registered.class_name == "EmaRsiStrategy"
