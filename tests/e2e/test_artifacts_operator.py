"""Artifacts that last, end to end: a real Backtest on the local cluster (local executor, real
Freqtrade) keeps its artifacts in the store (a claim on the cluster's hostPath provisioner, or
a bucket on a local S3 server), records where, and `tradebot artifacts get` brings each one
back with the sha256 the Backtest's status reports."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.s3 import SECRET, free_port, local_s3
from tests.support.wait import wait_for

from tradebot.artifacts.location import Location
from tradebot.artifacts.store import S3Store
from tradebot.cli import main
from tradebot.executors.local import claim_root

G, V = "tradebot.dev", "v1alpha1"
BUCKET = "tradebot-e2e-artifacts"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    found = api.get_namespaced_custom_object(G, V, namespace, plural, name)
    return dict(found.get("status") or {})


def _finished(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    status = _status(api, namespace, "backtests", name)
    return status if status.get("phase") in ("Succeeded", "Failed") else None


@pytest.mark.parametrize("where", ["pvc", "s3"])
def test_a_backtests_artifacts_come_back_verified(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    api = client.CustomObjectsApi(api_client)
    settings: dict[str, Any] = dict(
        executor="local",
        database_dsn=postgres_dsn,
        local_state_dir=tmp_path / "state",
        reconcile_interval_seconds=1.0,
    )
    extra: list[str] = []
    with local_s3(monkeypatch, BUCKET) as endpoint:
        if where == "pvc":
            _apply(
                kubectl,
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "artifacts"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            )
            settings["artifacts_pvc"] = "artifacts"
        else:
            settings.update(
                artifacts_s3_bucket=BUCKET,
                artifacts_s3_prefix="runs/",
                artifacts_s3_endpoint_url=endpoint,
            )
            extra = ["--s3-endpoint-url", endpoint]
        bt = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
        bt["metadata"] = {"name": "kept"}
        with running_operator(cluster.kubeconfig, namespace, **settings):
            _apply(kubectl, namespace, example("Strategy", "ema-rsi"), bt)
            status = wait_for(
                lambda: _finished(api, namespace, "kept"),
                300,
                interval=1.0,
                what="Backtest finished",
            )
            assert status["phase"] == "Succeeded", status.get("message")
            # Recorded (not only buffered) before the records are read below.
            wait_for(
                lambda: any(
                    c["type"] == "Recorded" and c["status"] == "True"
                    for c in _status(api, namespace, "backtests", "kept").get("conditions") or []
                ),
                60,
                what="run recorded",
            )
        run_id = status["runId"]
        artifacts = status["artifacts"]
        names = {a["name"] for a in artifacts}
        assert {"config.json", "freqtrade.log"} <= names
        assert any(n.endswith(".zip") for n in names)
        prefix = f"pvc://artifacts/{run_id}/" if where == "pvc" else f"s3://{BUCKET}/runs/{run_id}/"
        assert all(a["path"] == prefix + a["name"] for a in artifacts), artifacts
        if where == "pvc":
            on_volume = claim_root(namespace, "artifacts") / run_id
            assert {p.name for p in on_volume.iterdir()} >= names

        for a in artifacts:
            target = tmp_path / "fetched" / a["name"]
            target.parent.mkdir(exist_ok=True)
            code = main(
                [
                    "artifacts",
                    "get",
                    run_id,
                    a["name"],
                    "-o",
                    str(target),
                    "--dsn",
                    postgres_dsn,
                    "--kubeconfig",
                    str(cluster.kubeconfig),
                    *extra,
                ]
            )
            assert code == 0, a
            data = target.read_bytes()
            assert hashlib.sha256(data).hexdigest() == a["sha256"]
            assert len(data) == int(a["size"])


def test_a_store_not_there_yet_holds_the_result_until_it_is(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bucket's server is down when the run ends: the Backtest stays Running with
    ArtifactsKept=False naming the place, and finishes once the server is up."""
    api = client.CustomObjectsApi(api_client)
    bt = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    bt["metadata"] = {"name": "late-store"}
    port = free_port()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATRADEBOTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
        artifacts_s3_bucket=BUCKET,
        artifacts_s3_endpoint_url=f"http://127.0.0.1:{port}",
        reconcile_interval_seconds=1.0,
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), bt)

        def not_kept() -> dict[str, Any] | None:
            status = _status(api, namespace, "backtests", "late-store")
            cond = next(
                (c for c in status.get("conditions") or [] if c["type"] == "ArtifactsKept"), None
            )
            return cond if cond and cond["status"] == "False" else None

        cond = wait_for(not_kept, 300, interval=1.0, what="ArtifactsKept=False")
        assert cond["reason"] == "StoreUnavailable"
        assert cond["message"].startswith("cannot upload ")
        assert f" to s3://{BUCKET}/" in cond["message"]
        assert "Could not connect to the endpoint URL" in cond["message"]
        assert SECRET not in cond["message"]
        assert _status(api, namespace, "backtests", "late-store")["phase"] == "Running"

        with local_s3(monkeypatch, BUCKET, port) as endpoint:
            status = wait_for(
                lambda: _finished(api, namespace, "late-store"),
                120,
                interval=1.0,
                what="Backtest finished once the store was up",
            )
            assert status["phase"] == "Succeeded", status.get("message")
            kept = next(c for c in status["conditions"] if c["type"] == "ArtifactsKept")
            assert (kept["status"], kept["reason"]) == ("True", "Kept")
            run_id = status["runId"]
            store = S3Store(BUCKET, endpoint_url=endpoint)
            for a in status["artifacts"]:
                assert a["path"] == f"s3://{BUCKET}/{run_id}/{a['name']}"
                target = tmp_path / a["name"]
                store.download(Location("s3", BUCKET, f"{run_id}/{a['name']}"), target)
                assert hashlib.sha256(target.read_bytes()).hexdigest() == a["sha256"]
