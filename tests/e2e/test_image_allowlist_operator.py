"""Images the operator trusts and evidence it can vouch for, on the local cluster (kubernetes
executor, kwok pods cued with the runner's termination message): a foreign image gets
ImageNotAllowed and no Job or pod for every kind, an allowed one runs and records what it
launched, a fake result of other code fails the run, and the backtest gate compares a bot with
what was launched."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

G, V = "tradebot.dev", "v1alpha1"
FOREIGN = "evil.example/miner:1"
# Another tag of the operator's own runner repository: allowed by the default list.
RUNNER = "ghcr.io/tradebot-operator/runner:0.2.0"
DIGEST = "sha256:" + "7a" * 32


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}),
    )


def _named(kind: str, example_name: str, name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example(kind, example_name))
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    return doc


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
    return dict(found.get("status") or {})


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _refused(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (s := _status(api, namespace, plural, name)).get("phase") in ("Failed", "Blocked")
            and _condition(s, "Ready").get("reason") == "ImageNotAllowed"
            and s
        ),
        90,
        what=f"{plural}/{name} ImageNotAllowed",
    )


def _jobs(api: Any, namespace: str, label: str, name: str) -> list[str]:
    return [
        j.metadata.name
        for j in client.BatchV1Api(api)
        .list_namespaced_job(namespace, label_selector=f"{label}={name}")
        .items
    ]


def _events(api: Any, namespace: str, name: str, reason: str) -> list[str]:
    return [
        e.message
        for e in client.CoreV1Api(api).list_namespaced_event(namespace).items
        if e.involved_object.name == name and e.reason == reason
    ]


def _finish(api: Any, namespace: str, name: str, code_hash: str) -> None:
    """Cues the Backtest's kwok pod to succeed with a runner summary reporting `code_hash`."""
    core = client.CoreV1Api(api)
    pod = wait_for(
        lambda: next(
            iter(
                core.list_namespaced_pod(
                    namespace, label_selector=f"tradebot.dev/backtest={name}"
                ).items
            ),
            None,
        ),
        90,
        what=f"the pod of Backtest {name}",
    )
    summary = {
        "ok": True,
        "strategy": "EmaRsiStrategy",
        "exitCode": 0,
        "codeHash": code_hash,
        "results": {"profitTotal": "0.05", "maxDrawdown": "0.1", "trades": 40},
    }
    core.patch_namespaced_pod(
        pod.metadata.name,
        namespace,
        {
            "metadata": {
                "annotations": {
                    "kwok.tradebot.dev/outcome": "Succeeded",
                    "kwok.tradebot.dev/termination-message": json.dumps(summary),
                }
            }
        },
    )


def _launched(api: Any, namespace: str, name: str) -> dict[str, Any]:
    status = wait_for(
        lambda: (s := _status(api, namespace, "backtests", name)).get("launched") and s,
        90,
        what=f"Backtest {name} launched",
    )
    return dict(status["launched"])


def _done(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (s := _status(api, namespace, "backtests", name)).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        90,
        what=f"Backtest {name} finished",
    )


def test_runs_of_foreign_images_get_no_job_and_allowed_runs_record_what_they_launched(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    storage = {"volumeClaimTemplate": {"storage": "1Gi"}}
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        max_backtests_per_strategy=10,
        max_concurrent_backtests=10,
        max_backtests_per_namespace=10,
    ):
        _apply(
            kubectl,
            namespace,
            example("Strategy", "ema-rsi"),
            _named("Backtest", "ema-rsi-sample", "foreign", image=FOREIGN),
            _named("Backtest", "ema-rsi-sample", "faked", image=RUNNER),
            _named("Backtest", "ema-rsi-sample", "honest"),
            _named("Hyperopt", "ema-rsi-search", "foreign-ho", image=FOREIGN, workers=1, epochs=2),
            _named("Hyperopt", "ema-rsi-search", "allowed-ho", workers=1, epochs=2),
            _named("MarketData", "majors", "foreign-md", image=FOREIGN, storage=storage),
            _named("MarketData", "majors", "allowed-md", storage=storage),
        )
        # Positive controls first: the operator got as far as creating these runs' Jobs.
        launched = _launched(api_client, namespace, "faked")
        assert launched["image"] == RUNNER
        assert launched["className"] == "EmaRsiStrategy"
        assert launched["timeframe"] == "5m"
        assert launched["pairs"] == ["BTC/USDT", "ETH/USDT"]
        assert launched["timerange"] == {"start": "2024-01-02", "end": "2024-02-01"}
        assert (launched["stakeAmount"], launched["maxOpenTrades"]) == ("100.00000000", 2)
        assert launched["dryRunWallet"] == "1000.00000000"
        assert len(launched["codeHash"]) == 64
        assert "freqaiHash" not in launched  # the Strategy has no FreqAI settings
        assert _jobs(api_client, namespace, "tradebot.dev/backtest", "faked")
        wait_for(
            lambda: _jobs(api_client, namespace, "tradebot.dev/hyperopt", "allowed-ho"),
            90,
            what="the allowed Hyperopt's worker Job",
        )
        ho = _status(api_client, namespace, "hyperopts", "allowed-ho")
        assert ho["launched"]["image"] == "ghcr.io/tradebot-operator/runner:0.1.0"
        assert ho["launched"]["codeHash"] == launched["codeHash"]
        wait_for(
            lambda: _jobs(api_client, namespace, "tradebot.dev/marketdata", "allowed-md"),
            90,
            what="the allowed MarketData's download Job",
        )

        for plural, name in (
            ("backtests", "foreign"),
            ("hyperopts", "foreign-ho"),
            ("marketdata", "foreign-md"),
        ):
            status = _refused(api_client, namespace, plural, name)
            assert FOREIGN in status["message"]
            assert "ghcr.io/tradebot-operator/runner" in status["message"]
            events = wait_for(
                lambda n=name: _events(api_client, namespace, n, "ImageNotAllowed"),  # type: ignore[misc]
                30,
                what=f"{name}'s ImageNotAllowed Event",
            )
            assert FOREIGN in events[0]
            assert "docker.io/freqtradeorg/freqtrade" in events[0]  # the list, named
        assert _jobs(api_client, namespace, "tradebot.dev/backtest", "foreign") == []
        assert _jobs(api_client, namespace, "tradebot.dev/hyperopt", "foreign-ho") == []
        assert _jobs(api_client, namespace, "tradebot.dev/marketdata", "foreign-md") == []
        assert "launched" not in _status(api_client, namespace, "backtests", "foreign")

        # A runner that reports other code than it was given proves nothing.
        _finish(api_client, namespace, "faked", "f" * 64)
        faked = _done(api_client, namespace, "faked")
        assert faked["phase"] == "Failed"
        assert _condition(faked, "Complete")["reason"] == "EvidenceMismatch"
        assert "ffffffffffff" in faked["message"]
        assert wait_for(lambda: _events(api_client, namespace, "faked", "EvidenceMismatch"), 30)
        # Positive control: the same report with the launched code succeeds.
        honest = _launched(api_client, namespace, "honest")
        _finish(api_client, namespace, "honest", honest["codeHash"])
        assert _done(api_client, namespace, "honest")["phase"] == "Succeeded"


def _bot(name: str, mode: str = "dryRun", **spec: Any) -> dict[str, Any]:
    doc = _named("LiveBot", "ema-rsi-dry", name, **spec)
    doc["spec"]["mode"] = mode
    if mode != "dryRun":
        doc["spec"]["exchange"] = {"name": "binance", "credentialsSecretRef": {"name": "keys"}}
        doc["spec"]["promotion"]["minDryRunHours"] = 0
    return doc


def _pod_image(api: Any, namespace: str, bot: str) -> str | None:
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"tradebot.dev/livebot={bot}")
        .items
    )
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    return str(live[0].spec.containers[0].image) if live else None


def test_bots_run_allowed_images_only_and_trading_ones_pinned_by_digest(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    # A tag-only default bot image: fine for dry runs, refused for testnet.
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        bot_image="freqtradeorg/freqtrade:2026.9",
    ):
        _apply(
            kubectl,
            namespace,
            example("Strategy", "ema-rsi"),
            _bot("foreign", image=FOREIGN),
            _bot("plain"),
            _bot("unpinned", "testnet"),
            _bot("pinned", "testnet", image=f"freqtradeorg/freqtrade@{DIGEST}"),
        )
        # Positive control: the allowed image runs, and status says which.
        assert (
            wait_for(lambda: _pod_image(api_client, namespace, "plain"), 90, what="plain's pod")
            == "freqtradeorg/freqtrade:2026.9"
        )
        assert _status(api_client, namespace, "livebots", "plain")["image"] == (
            "freqtradeorg/freqtrade:2026.9"
        )
        foreign = _refused(api_client, namespace, "livebots", "foreign")
        assert foreign["phase"] == "Blocked"
        assert FOREIGN in foreign["message"]
        assert foreign["image"] == FOREIGN
        assert wait_for(lambda: _events(api_client, namespace, "foreign", "ImageNotAllowed"), 30)
        assert _pod_image(api_client, namespace, "foreign") is None

        unpinned = _refused(api_client, namespace, "livebots", "unpinned")
        assert "not pinned by digest" in unpinned["message"]
        assert "gates" not in unpinned  # judged before the promotion gates
        # Positive control: pinned, the testnet bot goes on to its next check (its Secret).
        pinned = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "pinned")).get("phase")
                and _condition(s, "Ready").get("reason")
                and s
            ),
            90,
            what="pinned judged",
        )
        assert _condition(pinned, "Ready")["reason"] != "ImageNotAllowed"
        assert pinned["image"] == f"freqtradeorg/freqtrade@{DIGEST}"

        # A tag alone is refused at apply for testnet (CEL), a digest is not.
        refused = kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            check=False,
            stdin=json.dumps(_bot("tagged", "testnet", image="freqtradeorg/freqtrade:2026.9")),
        )
        assert refused.returncode != 0
        assert "pinned by digest" in refused.stderr

        # An image edit replaces the pod.
        kubectl(
            "patch",
            "livebot",
            "plain",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"image": "freqtradeorg/freqtrade:2026.10"}}),
        )
        wait_for(
            lambda: _pod_image(api_client, namespace, "plain") == "freqtradeorg/freqtrade:2026.10",
            120,
            what="plain's pod replaced with the new image",
        )
        wait_for(
            lambda: (
                _status(api_client, namespace, "livebots", "plain").get("image")
                == "freqtradeorg/freqtrade:2026.10"
            ),
            30,
            what="status.image updated",
        )


def _gate(api: Any, namespace: str, bot: str) -> dict[str, Any]:
    def judged() -> dict[str, Any] | None:
        gates = {g["name"]: g for g in _status(api, namespace, "livebots", bot).get("gates") or []}
        return gates.get("backtest")

    return wait_for(judged, 90, what=f"{bot}'s backtest gate")


def test_the_backtest_gate_compares_the_bot_with_what_was_launched(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "keys", "labels": {"tradebot.dev/credentials": "testnet"}},
            "stringData": {"key": "AKIA-FAKE", "secret": "fake-secret"},
        },
    )
    other = json.dumps({"strategy_name": "EmaRsiStrategy", "params": {"buy": {"buy_rsi_max": 55}}})
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        _apply(
            kubectl,
            namespace,
            example("Strategy", "ema-rsi"),
            _named("Backtest", "ema-rsi-sample", "tested"),
            _named("Backtest", "ema-rsi-sample", "other-params", parameters=other),
        )
        for name in ("tested", "other-params"):
            _finish(api_client, namespace, name, _launched(api_client, namespace, name)["codeHash"])
            assert _done(api_client, namespace, name)["phase"] == "Succeeded"

        def promoted(name: str, backtest: str, pairs: list[str]) -> dict[str, Any]:
            doc = _bot(name, "testnet", pairs=pairs)
            doc["spec"]["promotion"]["backtestRef"] = {"name": backtest}
            return doc

        _apply(
            kubectl,
            namespace,
            promoted("good", "tested", ["BTC/USDT"]),
            promoted("untested-pair", "tested", ["BTC/USDT", "SOL/USDT"]),
            promoted("other-set", "other-params", ["BTC/USDT"]),
        )
        good = _gate(api_client, namespace, "good")
        assert good["passed"], good["message"]  # the positive control of the two below
        pair = _gate(api_client, namespace, "untested-pair")
        assert not pair["passed"]
        assert "pairs: SOL/USDT not among the tested pairs" in pair["message"]
        params = _gate(api_client, namespace, "other-set")
        assert not params["passed"]
        assert "parametersHash" in params["message"]
