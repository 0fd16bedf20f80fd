"""`tradebot promote` and `tradebot breaker` against a real API server (no operator: the
statuses they read are written here as the operator would) and real records."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.support.manifests import example, launched

from tradebot import cli
from tradebot.api.livebot import LiveBotSpec
from tradebot.domain.bot_credentials import secret_fingerprint
from tradebot.domain.promotion_digest import (
    StrategyFacts,
    canonical_json,
    promotion_digest,
    promotion_inputs,
)
from tradebot.freqtrade.introspect import code_hash
from tradebot.records import BotSnapshot, IncidentRecord, open_store
from tradebot.settings import Settings

G, V = "tradebot.dev", "v1alpha1"
PROMOTION = {
    "backtestRef": {"name": "ema-rsi-sample"},
    "minProfit": 0.01,
    "maxDrawdown": 0.2,
    "minTrades": 5,
    "minDryRunHours": 2,
}


CLEAN_BIAS = {
    "summary": "clean",
    "lookahead": {"clean": True, "hasBias": False, "signals": 20, "biasedEntrySignals": 0},
    "recursive": {"pair": "BTC/USDT", "startupCandles": [120], "maxDifference": "0.00010000"},
}


@pytest.fixture(autouse=True)
def _kubeconfig_restored(monkeypatch: pytest.MonkeyPatch, cluster: Any) -> None:
    # The commands point the shared client at --kubeconfig through the environment.
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}),
    )


def _status(api: Any, namespace: str, plural: str, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        G, V, namespace, plural, name, {"status": status}
    )


@pytest.fixture
def promotable(
    api_client: Any, kubectl: Any, namespace: str, crds_installed: Any
) -> dict[str, Any]:
    """A Ready Strategy, a Succeeded Backtest of its code with good results, and a dry-run
    LiveBot whose promotion block points at it."""
    strategy = example("Strategy", "ema-rsi")
    digest = code_hash(strategy["spec"]["code"])
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "promoted"}
    bot["spec"]["promotion"] = PROMOTION
    bot["spec"]["exchange"] = {"name": "binance", "credentialsSecretRef": {"name": "exchange-keys"}}
    backtest = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    # It ran the bias analyses itself, so the bias gate reads its own findings.
    backtest["spec"]["analyses"] = {"lookahead": True, "recursive": True}
    _apply(kubectl, namespace, strategy, backtest, bot)
    _status(api_client, namespace, "strategies", "ema-rsi", {"phase": "Ready", "codeHash": digest})
    _status(
        api_client,
        namespace,
        "backtests",
        "ema-rsi-sample",
        {
            "phase": "Succeeded",
            "codeHash": digest,
            "results": {"profitTotal": "0.05000000", "maxDrawdown": "0.10000000", "trades": 40},
            "bias": CLEAN_BIAS,
            # The Strategy's status names no parameter set here (no operator runs).
            "launched": launched(
                example("Backtest", "ema-rsi-sample"), strategy, inline_parameters=False
            ),
        },
    )
    created = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        G, V, namespace, "livebots", "promoted"
    )
    return {"uid": created["metadata"]["uid"], "code_hash": digest}


def _snapshots(dsn: str, namespace: str, uid: str, digest: str, hours: float) -> None:
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with open_store(dsn) as store:
        store.migrate()
        for minute in range(int(hours * 60) + 1):
            store.record_snapshot(
                BotSnapshot(
                    bot_uid=uid,
                    namespace=namespace,
                    name="promoted",
                    code_hash=digest,
                    mode="dryRun",
                    taken_at=start + dt.timedelta(minutes=minute),
                    profit=Decimal("1.5"),
                    drawdown=Decimal("0.01"),
                    open_trades=1,
                )
            )


def _promote(cluster: Any, namespace: str, dsn: str, *args: str) -> int:
    return cli.main(
        [
            "promote",
            "promoted",
            "-n",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--dsn",
            dsn,
            *args,
        ]
    )


def test_promote_prints_the_patch_only_when_every_gate_passes(
    cluster: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=1)
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 1
    out = capsys.readouterr()
    assert "[FAIL] dryRunHistory: 1.0 h of dry run" in out.out
    assert "[pass] backtest" in out.out
    assert "nothing to commit" in out.err

    # Another hour of recorded dry run of the same code: every gate passes.
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=2.5)
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 0
    out = capsys.readouterr().out
    patch = yaml.safe_load(out[out.index("spec:") :])
    assert patch == {"spec": {"mode": "testnet"}}
    assert (
        _promote(cluster, namespace, dsn, "--to", "testnet", "--credentials-secret", "other-keys")
        == 0
    )
    out = capsys.readouterr().out
    assert yaml.safe_load(out[out.index("spec:") :])["spec"]["exchange"] == {
        "credentialsSecretRef": {"name": "other-keys"}
    }


def test_promote_says_what_the_manifest_lacks(
    cluster: Any,
    api_client: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        G,
        V,
        namespace,
        "livebots",
        "promoted",
        {"spec": {"exchange": {"credentialsSecretRef": None}}},
    )
    assert _promote(cluster, namespace, f"sqlite://{tmp_path / 'r.db'}", "--to", "testnet") == 1
    err = capsys.readouterr().err
    assert "would be invalid: modes testnet and live require exchange.credentialsSecretRef" in err
    assert "Traceback" not in err


def test_a_breaker_trip_discards_the_dry_run_history_before_it(
    cluster: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=3)
    with open_store(dsn) as store:
        store.record_incident(
            IncidentRecord(
                id="trip-x",
                namespace=namespace,
                source_kind="CircuitBreaker",
                source_name="main-fleet",
                source_uid="cb-uid",
                breaker="main-fleet",
                bots=("promoted",),
                severity="critical",
                reason="drawdown",
                description="tripped",
                created_at=dt.datetime(2026, 11, 1, 2, tzinfo=dt.UTC),
            )
        )
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 1
    assert "[FAIL] dryRunHistory: 1.0 h" in capsys.readouterr().out


def _keys(api: Any, namespace: str, key: str = "AKIA-FAKE") -> str:
    """The live credentials Secret; returns its fingerprint as the operator computes it."""
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "exchange-keys", "labels": {"tradebot.dev/credentials": "live"}},
            "stringData": {"key": key, "secret": "fake-secret"},
        },
    )
    return secret_fingerprint({"key": key, "secret": "fake-secret"})


def _expected_digest(api: Any, namespace: str, spec: dict[str, Any], fingerprint: str) -> str:
    # The approval is no input of the digest (it names it): any valid one will do here.
    promotion = {
        "approval": {
            "approvedBy": "x",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "x",
            "codeHash": "0" * 64,
        },
        **spec["promotion"],
    }
    spec = {**spec, "promotion": promotion}
    strategy = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, "strategies", "ema-rsi"
    )
    return promotion_digest(
        promotion_inputs(
            LiveBotSpec.model_validate(spec),
            StrategyFacts.of(strategy),
            image=Settings().bot_image,
            credentials_fingerprint=fingerprint,
        )
    )


def test_live_needs_an_approval_and_gets_it_in_the_patch(
    cluster: Any,
    api_client: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    fingerprint = _keys(api_client, namespace)
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=3)
    assert _promote(cluster, namespace, dsn, "--to", "live") == 1
    assert "mode live needs an approval" in capsys.readouterr().err
    approve = ("--approved-by", "alice", "--reference", "https://git.example/bots/pull/9")
    # The operator-wide live floor (24 h of dry run by default) is stricter than the spec's
    # 2 h: the spec cannot lower it.
    assert _promote(cluster, namespace, dsn, "--to", "live", *approve) == 1
    assert "need 24 h" in capsys.readouterr().out
    monkeypatch.setenv("TRADEBOT_PROMOTION_FLOORS", '{"live": {"minDryRunHours": 1}}')
    assert _promote(cluster, namespace, dsn, "--to", "live", *approve, "-o", "json") == 0
    out = capsys.readouterr().out
    patch = json.loads(out[out.index("{") :])
    assert patch["spec"]["mode"] == "live"
    approval = patch["spec"]["promotion"]["approval"]
    assert (approval["approvedBy"], approval["reference"]) == (
        "alice",
        "https://git.example/bots/pull/9",
    )
    # The approval names the code it approves, and the digest of the whole bot it approves:
    # the same one the operator computes (the Secret's content included, never its values).
    assert approval["codeHash"] == promotable["code_hash"]
    bot = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        G, V, namespace, "livebots", "promoted"
    )
    digest = _expected_digest(api_client, namespace, {**bot["spec"], "mode": "live"}, fingerprint)
    assert approval["digest"] == digest
    assert f"promotion digest: {digest}" in out
    assert "approved digest: none" in out
    assert "fake-secret" not in out


def test_a_changed_live_manifest_is_approved_again_with_its_new_digest(
    cluster: Any,
    api_client: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=3)
    monkeypatch.setenv("TRADEBOT_PROMOTION_FLOORS", '{"live": {"minDryRunHours": 1}}')
    fingerprint = _keys(api_client, namespace)
    custom = client.CustomObjectsApi(api_client)
    live = custom.get_namespaced_custom_object(G, V, namespace, "livebots", "promoted")
    spec = {**live["spec"], "mode": "live"}
    digest = _expected_digest(api_client, namespace, spec, fingerprint)
    spec["promotion"] = {
        **spec["promotion"],
        "approval": {
            "approvedBy": "alice",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "pr/1",
            "codeHash": promotable["code_hash"],
            "digest": digest,
        },
    }
    custom.patch_namespaced_custom_object(G, V, namespace, "livebots", "promoted", {"spec": spec})
    # As the operator keeps them once the approved digest runs.
    strategy = custom.get_namespaced_custom_object(G, V, namespace, "strategies", "ema-rsi")
    inputs = promotion_inputs(
        LiveBotSpec.model_validate(spec),
        StrategyFacts.of(strategy),
        image=Settings().bot_image,
        credentials_fingerprint=fingerprint,
    )
    _status(
        api_client,
        namespace,
        "livebots",
        "promoted",
        {"approvedInputs": canonical_json(inputs), "promotionInputs": canonical_json(inputs)},
    )
    # The change under review: one more pair and a lower stake, in the manifest's file.
    changed = {
        "apiVersion": f"{G}/{V}",
        "kind": "LiveBot",
        "metadata": {"name": "promoted"},
        # One pair fewer (every pair left was backtested) and a lower stake.
        "spec": {**spec, "pairs": spec["pairs"][:1], "stakeAmount": "20"},
    }
    manifest = tmp_path / "bot.yaml"
    manifest.write_text(yaml.safe_dump(changed))
    # Without a new approval: the digest it would need, what differs, and exit 1.
    assert _promote(cluster, namespace, dsn, "--to", "live", "-f", str(manifest)) == 1
    captured = capsys.readouterr()
    new = _expected_digest(api_client, namespace, changed["spec"], fingerprint)
    assert new != digest
    assert f"promotion digest: {new}" in captured.out
    assert f"approved digest: {digest}; differs in: pairs, stakeAmount (safer)" in captured.out
    assert "approve it with --approved-by" in captured.err
    approve = ("--approved-by", "bob", "--reference", "pr/2")
    assert _promote(cluster, namespace, dsn, "--to", "live", "-f", str(manifest), *approve) == 0
    out = capsys.readouterr().out
    patch = yaml.safe_load(out[out.index("spec:") :])
    assert patch["spec"]["promotion"]["approval"]["digest"] == new
    assert patch["spec"]["promotion"]["approval"]["approvedBy"] == "bob"
    assert set(patch["spec"]) == {"promotion"}


def test_promote_names_a_failing_backtest_and_a_missing_bot(
    cluster: Any,
    api_client: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=3)
    _status(
        api_client,
        namespace,
        "backtests",
        "ema-rsi-sample",
        {"results": {"profitTotal": "0.00500000"}},
    )
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 1
    assert "profitTotal 0.005 < minProfit 0.01" in capsys.readouterr().out
    assert (
        cli.main(
            [
                "promote",
                "ghost",
                "-n",
                namespace,
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--to",
                "testnet",
            ]
        )
        == 1
    )
    assert f"LiveBot {namespace}/ghost not found" in capsys.readouterr().err


def test_breaker_trip_and_reset_annotate_tokens_once(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    crds_installed: Any,
    capsys: pytest.CaptureFixture[str],
):
    _apply(kubectl, namespace, example("CircuitBreaker"))
    base = ["-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]
    assert cli.main(["breaker", "trip", "main-fleet", "--token", "k1", "--wait", "0", *base]) == 0
    cb = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        G, V, namespace, "circuitbreakers", "main-fleet"
    )
    assert cb["metadata"]["annotations"]["tradebot.dev/trip"] == "k1"
    # As the operator records it: the token is used up, and it refuses to send it again.
    _status(
        api_client,
        namespace,
        "circuitbreakers",
        "main-fleet",
        {
            "state": "Open",
            "trippedAt": "2026-11-25T10:00:00Z",
            "lastTripToken": "k1",
            "reason": "tripped by hand (token k1)",
            "affectedBots": ["a", "b"],
            "incidentId": "trip-u-20261125T100000Z",
        },
    )
    assert cli.main(["breaker", "trip", "main-fleet", "--token", "k1", *base]) == 2
    assert "was used already" in capsys.readouterr().err
    assert cli.main(["breaker", "status", *base]) == 0
    out = capsys.readouterr().out
    assert "main-fleet: Open" in out
    assert "bots stopped: a, b" in out
    assert "incident trip-u-20261125T100000Z" in out
    # Nobody acts on a reset without an operator: it says so after --wait.
    assert cli.main(["breaker", "reset", "main-fleet", "--wait", "1", *base]) == 3
    assert "has not acted" in capsys.readouterr().err
    assert cli.main(["breaker", "status", "nope", *base]) == 1


def test_promote_judges_the_out_of_sample_evidence_like_the_operator(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tradebot.domain.parameters_hash import parameters_hash

    params = {"buy": {"buy_rsi_max": 64}}
    digest = parameters_hash(params)
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], hours=2.5)
    _apply(
        kubectl,
        namespace,
        {
            "apiVersion": f"{G}/{V}",
            "kind": "Hyperopt",
            "metadata": {"name": "search"},
            "spec": {
                "strategyRef": {"name": "ema-rsi"},
                "epochs": 5,
                "pairs": ["BTC/USDT"],
                "timerange": {"start": "2024-01-01", "end": "2024-02-01"},
            },
        },
    )
    kubectl(
        "patch",
        "livebot",
        "promoted",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "promotion": {"hyperoptRef": {"name": "search", "minOutOfSampleProfit": 0.01}}
                }
            }
        ),
    )
    _status(api_client, namespace, "strategies", "ema-rsi", {"parametersHash": digest})
    # The bias analysis is of the set the Strategy runs now, like the evidence.
    _status(api_client, namespace, "backtests", "ema-rsi-sample", {"parametersHash": digest})
    # The backtest evidence is of that set too (a Backtest of it, re-run).
    _status(
        api_client,
        namespace,
        "backtests",
        "ema-rsi-sample",
        {"launched": {"parametersHash": digest}},
    )

    def oos(profit: str) -> None:
        _status(
            api_client,
            namespace,
            "hyperopts",
            "search",
            {
                "phase": "Succeeded",
                "best": {
                    "epoch": 3,
                    "loss": "-1",
                    "parameters": json.dumps({"strategy_name": "EmaRsiStrategy", "params": params}),
                    "parametersHash": digest,
                },
                "validation": {"outOfSample": {"profitTotal": profit}},
            },
        )

    oos("-0.02000000")
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 1
    out = capsys.readouterr().out
    assert (
        "[FAIL] outOfSample: Hyperopt search: out-of-sample profitTotal -0.02 < "
        "minOutOfSampleProfit 0.01"
    ) in out
    assert "[pass] backtest" in out
    oos("0.03000000")
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 0
    assert "[pass] outOfSample: Hyperopt search: out-of-sample profitTotal 0.03" in (
        capsys.readouterr().out
    )


def test_promote_prints_the_bias_findings_and_refuses_a_biased_strategy(
    cluster: Any,
    api_client: Any,
    namespace: str,
    promotable: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = f"sqlite://{tmp_path / 'r.db'}"
    _snapshots(dsn, namespace, promotable["uid"], promotable["code_hash"], 3)
    # Positive control: clean findings pass the bias gate and are printed.
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 0
    out = capsys.readouterr().out
    assert "[pass] bias:" in out
    assert "lookahead: clean; signals 20" in out
    biased = {
        "summary": "lookahead: future_close",
        "lookahead": {
            "clean": False,
            "hasBias": True,
            "signals": 20,
            "biasedEntrySignals": 3,
            "biasedExitSignals": 0,
            "biasedIndicators": ["future_close"],
        },
        "recursive": {
            "maxDifference": "0.20000000",
            "indicators": [{"name": "volume_sum", "difference": "0.20000000"}],
        },
    }
    _status(api_client, namespace, "backtests", "ema-rsi-sample", {"bias": biased})
    assert _promote(cluster, namespace, dsn, "--to", "testnet") == 1
    out = capsys.readouterr().out
    assert "[FAIL] bias: lookahead bias (ema-rsi-sample): biased indicators future_close" in out
    assert "volume_sum 20%" in out
    assert "bias analysis (Backtest ema-rsi-sample): lookahead: future_close" in out
    assert "volume_sum: 0.20000000" in out
