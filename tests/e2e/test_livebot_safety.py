"""What keeps a LiveBot from trading when it must not, on the local cluster (kwok pods):
credentials bound to a mode, modes the operator allows, a breaker for live, the finalizer, a
tripped bot relabelled away from its breaker, and a records outage that stops nothing."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client
from tests.support.manifests import example, launched
from tests.support.operator import PINNED_BOT_IMAGE, pod_watch, running_operator
from tests.support.postgres import LocalPostgres
from tests.support.wait import wait_for

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain.bot_credentials import secret_fingerprint
from tradebot.domain.promotion_digest import StrategyFacts, promotion_digest, promotion_inputs
from tradebot.freqtrade.introspect import code_hash
from tradebot.records import BotSnapshot, open_store
from tradebot.settings import ModeFloor, PromotionFloors

G, V = "tradebot.dev", "v1alpha1"
LABEL = "tradebot.dev/credentials"
CODE = code_hash(example("Strategy", "ema-rsi")["spec"]["code"])


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}),
    )


def _bot(name: str, mode: str = "dryRun", keys: str = "keys", **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name, "labels": {"tradebot.dev/fleet": "main"}}
    doc["spec"]["mode"] = mode
    if mode != "dryRun":
        doc["spec"]["exchange"] = {"name": "binance", "credentialsSecretRef": {"name": keys}}
        doc["spec"]["promotion"]["minDryRunHours"] = 0
    if mode == "live":
        doc["spec"]["promotion"]["approval"] = {
            "approvedBy": "alice",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "https://git.example/pr/7",
            "codeHash": CODE,
        }
    doc["spec"].update(spec)
    return doc


def _secret(api: Any, namespace: str, name: str, labels: dict[str, str]) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "stringData": {"key": "AKIA-FAKE", "secret": "fake-secret"},
        },
    )


def _status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api)
        .get_namespaced_custom_object(G, V, namespace, "livebots", name)
        .get("status")
        or {}
    )


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == "Ready")


def _pods(api: Any, namespace: str) -> list[str]:
    return sorted(
        p.metadata.name
        for p in client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )


def _evidence(api: Any, kubectl: Any, namespace: str) -> None:
    _apply(
        kubectl, namespace, example("Strategy", "ema-rsi"), example("Backtest", "ema-rsi-sample")
    )
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        G,
        V,
        namespace,
        "backtests",
        "ema-rsi-sample",
        {
            "status": {
                "phase": "Succeeded",
                "codeHash": CODE,
                "cleanedUp": True,
                "results": {"profitTotal": "0.05000000", "maxDrawdown": "0.10000000", "trades": 40},
                "launched": launched(
                    example("Backtest", "ema-rsi-sample"), example("Strategy", "ema-rsi")
                ),
            }
        },
    )


def _blocked(api: Any, namespace: str, name: str, reason: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (s := _status(api, namespace, name)).get("phase") == "Blocked"
            and _ready(s)["reason"] == reason
            and s
        ),
        60,
        what=f"{name} {reason}",
    )


def test_credentials_are_bound_to_a_mode_and_checked_before_the_gates(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
):
    core = client.CoreV1Api(api_client)
    # No backtest exists: the gates would fail too, but the Secret is reported first.
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"), example("CircuitBreaker"))
    _secret(api_client, namespace, "unlabelled", {})
    _secret(api_client, namespace, "testnet-keys", {LABEL: "testnet"})
    with (
        pod_watch(api_client, namespace, "tradebot.dev/kind") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        ),
    ):
        _apply(
            kubectl,
            namespace,
            _bot("dry"),
            _bot("plain", "testnet", "unlabelled"),
            _bot("cross", "live", "testnet-keys"),
        )
        # Positive control: the watch sees the dry-run bot's pod.
        wait_for(
            lambda: _status(api_client, namespace, "dry").get("phase") == "Running",
            90,
            what="the dry-run bot Running",
        )
        plain = _blocked(api_client, namespace, "plain", "CredentialsNotAllowed")
        assert (
            "Secret unlabelled needs the label tradebot.dev/credentials=testnet" in plain["message"]
        )
        cross = _blocked(api_client, namespace, "cross", "CredentialsNotAllowed")
        assert "tradebot.dev/credentials=live" in cross["message"]
        assert "it has tradebot.dev/credentials=testnet" in cross["message"]
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=plain"
        ).items
        assert any(
            e.reason == "CredentialsNotAllowed" and "unlabelled" in e.message and LABEL in e.message
            for e in events
        )

        # The operator's own Secrets are never credentials, labelled or not.
        api_secret = next(
            s.metadata.name
            for s in core.list_namespaced_secret(namespace).items
            if s.metadata.name.startswith("bot-api-dry")
        )
        core.patch_namespaced_secret(
            api_secret, namespace, {"metadata": {"labels": {LABEL: "testnet"}}}
        )
        _apply(kubectl, namespace, _bot("thief", "testnet", api_secret))
        thief = _blocked(api_client, namespace, "thief", "CredentialsNotAllowed")
        assert "managed by the operator" in thief["message"]

        # Labelled for its mode: the Secret passes, and the (missing) evidence is what blocks.
        core.patch_namespaced_secret(
            "unlabelled", namespace, {"metadata": {"labels": {LABEL: "testnet"}}}
        )
        gated = _blocked(api_client, namespace, "plain", "GatesNotPassed")
        assert "ema-rsi-sample" in gated["message"]
        time.sleep(3)
    assert [n for n in pods.added if "plain" in n or "cross" in n or "thief" in n] == []
    assert len(pods.added) == 1  # the dry-run bot's


def test_modes_the_operator_does_not_allow_and_live_without_a_breaker_get_no_pod(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
):
    _evidence(api_client, kubectl, namespace)
    _secret(api_client, namespace, "live-keys", {LABEL: "live"})
    with pod_watch(api_client, namespace, "tradebot.dev/kind") as pods:
        with running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
            allowed_modes=("dryRun",),
        ):
            _apply(kubectl, namespace, _bot("dry"), _bot("live", "live", "live-keys"))
            wait_for(
                lambda: _status(api_client, namespace, "dry").get("phase") == "Running",
                90,
                what="the dry-run bot Running",
            )
            status = _blocked(api_client, namespace, "live", "ModeNotAllowed")
            assert "allowed: dryRun" in status["message"]
        with running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        ):
            status = _blocked(api_client, namespace, "live", "NoCircuitBreaker")
            assert "CircuitBreaker" in status["message"]
            time.sleep(3)
    assert len(pods.added) == 1
    assert "live" not in pods.added[0].split("-")[1]


def test_deleting_a_bot_with_orphan_cascade_still_stops_its_pod(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
):
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        _apply(kubectl, namespace, _bot("orphan"))
        wait_for(
            lambda: _status(api_client, namespace, "orphan").get("phase") == "Running",
            90,
            what="Running",
        )
        assert len(_pods(api_client, namespace)) == 1
        bot = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            G, V, namespace, "livebots", "orphan"
        )
        assert bot["metadata"]["finalizers"]
        kubectl("delete", "livebot", "orphan", "-n", namespace, "--cascade=orphan", "--wait=false")
        wait_for(lambda: not _pods(api_client, namespace), 60, what="the orphaned pod gone")
        wait_for(
            lambda: (
                not client.CustomObjectsApi(api_client).list_namespaced_custom_object(
                    G, V, namespace, "livebots"
                )["items"]
            ),
            60,
            what="the LiveBot gone",
        )


def test_a_tripped_bot_relabelled_away_from_its_breaker_stays_stopped(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
):
    cb = copy.deepcopy(example("CircuitBreaker"))
    cb["spec"]["limits"] = {"maxDrawdown": 0.5}
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"), cb)
    custom = client.CustomObjectsApi(api_client)
    with (
        pod_watch(api_client, namespace, "tradebot.dev/kind") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        ),
    ):
        _apply(kubectl, namespace, _bot("runaway"))
        wait_for(
            lambda: _status(api_client, namespace, "runaway").get("phase") == "Running",
            90,
            what="Running",
        )
        custom.patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/trip": "t1"}}},
        )
        wait_for(
            lambda: _status(api_client, namespace, "runaway").get("phase") == "Tripped",
            60,
            what="Tripped",
        )
        wait_for(lambda: not _pods(api_client, namespace), 60, what="pod gone")
        kubectl(
            "label",
            "livebot",
            "runaway",
            "-n",
            namespace,
            "tradebot.dev/fleet=elsewhere",
            "--overwrite",
        )
        time.sleep(6)  # three rounds
        assert _status(api_client, namespace, "runaway")["phase"] == "Tripped"
        assert not _pods(api_client, namespace)
        # Positive control: the reset lets it run again, relabelled or not.
        custom.patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/reset": "r1"}}},
        )
        wait_for(
            lambda: _status(api_client, namespace, "runaway").get("phase") == "Running",
            90,
            what="Running after the reset",
        )
    assert len(pods.added) == 2


def test_a_records_outage_keeps_a_promoted_bot_running_and_holds_new_pods(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
    private_postgres: LocalPostgres,
):
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE records")
    dsn = private_postgres.dsn("records")
    _evidence(api_client, kubectl, namespace)
    _secret(api_client, namespace, "keys", {LABEL: "testnet"})
    bot = _bot("steady", "testnet")
    bot["spec"]["promotion"]["minDryRunHours"] = 1
    with (
        pod_watch(api_client, namespace, "tradebot.dev/kind") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=dsn,
            local_state_dir=tmp_path / "state",
            bot_poll_seconds=1.0,
            outbox_flush_interval_seconds=0.5,
        ),
    ):
        _apply(kubectl, namespace, bot)
        status = wait_for(
            lambda: (s := _status(api_client, namespace, "steady")).get("gates") and s,
            60,
            what="gates judged",
        )
        assert status["phase"] == "Blocked"  # no dry-run history yet
        uid = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            G, V, namespace, "livebots", "steady"
        )["metadata"]["uid"]
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        with open_store(dsn) as store:
            for minute in range(0, 121):
                store.record_snapshot(
                    BotSnapshot(
                        bot_uid=uid,
                        namespace=namespace,
                        name="steady",
                        code_hash=CODE,
                        mode="dryRun",
                        taken_at=start + dt.timedelta(minutes=minute),
                        profit=Decimal(0),
                        drawdown=Decimal(0),
                        open_trades=0,
                    )
                )
        running = wait_for(
            lambda: (s := _status(api_client, namespace, "steady")).get("phase") == "Running" and s,
            90,
            what="Running on evidence",
        )
        assert running["gateDecision"]["passed"] is True
        (pod,) = _pods(api_client, namespace)

        private_postgres.stop()
        time.sleep(8)  # rounds every second: the kept decision is not judged again
        status = _status(api_client, namespace, "steady")
        assert status["phase"] == "Running", status["message"]
        assert _pods(api_client, namespace) == [pod]

        # A spec change needs a new judgement, which cannot be made now: the old pod runs on.
        kubectl(
            "patch",
            "livebot",
            "steady",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"maxOpenTrades": 1}}',
        )
        waiting = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "steady"))
                .get("message", "")
                .startswith("mode testnet waits")
                and s
            ),
            30,
            what="waiting for evidence",
        )
        assert _ready(waiting)["reason"] == "EvidenceUnavailable"
        assert _pods(api_client, namespace) == [pod]

        private_postgres.resume()
        wait_for(
            lambda: (
                (s := _status(api_client, namespace, "steady")).get("phase") == "Running"
                and s["gateDecision"]["generation"] == 2
            ),
            120,
            what="judged again and replaced once the records are back",
        )
    assert len(pods.added) == 2


def _pod_uid(api: Any, namespace: str) -> str | None:
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return str(live[0].metadata.uid) if len(live) == 1 else None


def _patch_bot(kubectl: Any, namespace: str, name: str, patch: dict[str, Any]) -> None:
    kubectl("patch", "livebot", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def _approve(kubectl: Any, namespace: str, name: str, digest: str) -> None:
    _patch_bot(kubectl, namespace, name, {"spec": {"promotion": {"approval": {"digest": digest}}}})


def test_a_live_change_waits_for_its_approval_and_the_approved_pod_runs_on(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
):
    _evidence(api_client, kubectl, namespace)
    cb = copy.deepcopy(example("CircuitBreaker"))
    # Nothing answers in a kwok pod: no heartbeat limit that would trip it meanwhile.
    cb["spec"]["limits"] = {"maxDrawdown": 0.15}
    _apply(kubectl, namespace, cb)
    _secret(api_client, namespace, "live-keys", {LABEL: "live"})
    bot = _bot("approved", "live", "live-keys")
    bot["spec"]["promotion"]["approval"]["digest"] = "0" * 64
    custom = client.CustomObjectsApi(api_client)
    floors = PromotionFloors(live=ModeFloor(min_dry_run_hours=0, require_bias_analysis=False))
    with (
        pod_watch(api_client, namespace, "tradebot.dev/kind") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
            promotion_floors=floors,
            bot_poll_seconds=1.0,
        ),
    ):
        _apply(kubectl, namespace, bot)
        # A digest that is not the bot's: no pod, and the status names the digest to approve.
        stale = _blocked(api_client, namespace, "approved", "ApprovalStale")
        digest = stale["promotionDigest"]
        assert digest in stale["message"]
        assert _pod_uid(api_client, namespace) is None
        # The operator's digest is the documented one: image, Strategy, spec and the
        # Secret's fingerprint (computed here from what the test wrote into it).
        strategy = custom.get_namespaced_custom_object(G, V, namespace, "strategies", "ema-rsi")
        spec = LiveBotSpec.model_validate(
            custom.get_namespaced_custom_object(G, V, namespace, "livebots", "approved")["spec"]
        )
        expected = promotion_inputs(
            spec,
            StrategyFacts.of(strategy),
            image=PINNED_BOT_IMAGE,  # running_operator's bot image
            credentials_fingerprint=secret_fingerprint(
                {"key": "AKIA-FAKE", "secret": "fake-secret"}
            ),
        )
        assert promotion_digest(expected) == digest
        assert "fake-secret" not in json.dumps(stale)

        _approve(kubectl, namespace, "approved", digest)
        running = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "approved")).get("phase") == "Running"
                and _pod_uid(api_client, namespace)
                and s
            ),
            90,
            what="the approved digest Running",
            describe=lambda: _status(api_client, namespace, "approved").get("message"),
        )
        assert json.loads(running["approvedInputs"]) == expected
        pod = _pod_uid(api_client, namespace)

        # A change under the old approval (another pair set, within the tested pairs) waits;
        # the approved pod runs on.
        _patch_bot(kubectl, namespace, "approved", {"spec": {"pairs": ["BTC/USDT"]}})
        waiting = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "approved")).get("phase") == "Running"
                and _ready(s)["reason"] == "ApprovalStale"
                and s
            ),
            60,
            what="the change waiting for its approval",
        )
        assert "pairs" in waiting["message"]
        assert waiting["promotionDigest"] != digest
        time.sleep(4)  # rounds every second: several judge it again, and keep the pod
        assert _pod_uid(api_client, namespace) == pod
        assert _ready(_status(api_client, namespace, "approved"))["reason"] == "ApprovalStale"
        events = (
            client.CoreV1Api(api_client)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=approved")
            .items
        )
        assert any(e.reason == "ApprovalStale" and "pairs" in e.message for e in events)

        # Positive control: with the new digest approved, the pod is replaced.
        _approve(kubectl, namespace, "approved", waiting["promotionDigest"])
        wait_for(
            lambda: (
                (uid := _pod_uid(api_client, namespace)) is not None
                and uid != pod
                and _status(api_client, namespace, "approved").get("phase") == "Running"
            ),
            90,
            what="the pod replaced once the change is approved",
        )
        replaced = _pod_uid(api_client, namespace)
        assert _ready(_status(api_client, namespace, "approved"))["reason"] == "PodRunning"

        # A safer change (a lower stake) applies at once, without a new approval.
        _patch_bot(kubectl, namespace, "approved", {"spec": {"stakeAmount": "20"}})
        wait_for(
            lambda: (
                (uid := _pod_uid(api_client, namespace)) is not None
                and uid != replaced
                and (s := _status(api_client, namespace, "approved")).get("phase") == "Running"
                and _ready(s)["reason"] == "PodRunning"
            ),
            90,
            what="the safer change applied",
        )
    # The approved digest, the renewed one, the safer change: one pod each, none while waiting.
    assert len(pods.added) == 3, pods.added
