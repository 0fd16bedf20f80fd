"""Parameter sets from a Hyperopt, end to end on the local cluster with the operator running:
the Strategy waits for its Hyperopt and then runs its best set, and a testnet bot whose
promotion asks for out-of-sample evidence is held while that evidence shows a curve-fitted set
and gets its pod once a validated set is what its Strategy runs.

The Hyperopts' statuses are written as the Hyperopt controller would write them (the search
itself is tested in test_hyperopt_operator.py); the controller runs, but no search is admitted."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example, launched
from tests.support.operator import pod_watch, running_operator
from tests.support.wait import wait_for

from tradebot.domain.parameters_hash import parameters_hash
from tradebot.freqtrade.introspect import code_hash

G, V = "tradebot.dev", "v1alpha1"
FAKE_KEY, FAKE_SECRET = "AKIA-FAKE-EXCHANGE-KEY-123", "fake-exchange-secret-456"


def _params(rsi: int, stoploss: float) -> dict[str, Any]:
    return {
        "buy": {"buy_rsi_max": rsi},
        "roi": {"0": 0.05, "60": 0},
        "stoploss": {"stoploss": stoploss},
    }


def _exported(params: dict[str, Any]) -> str:
    return json.dumps(
        {
            "strategy_name": "EmaRsiStrategy",
            "params": params,
            "ft_stratparam_v": 1,
            "export_time": "2026-11-29 10:00:00.000000+00:00",
        },
        indent=4,
    )


FITTED = _params(77, -0.31)  # great in sample, a loss out of sample
ROBUST = _params(64, -0.08)


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _get(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, plural, name
    )
    return dict(obj)


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(_get(api, namespace, plural, name).get("status") or {})


def _patch_status(api: Any, namespace: str, plural: str, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        G, V, namespace, plural, name, {"status": status}
    )


def _hyperopt(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "Hyperopt",
        "metadata": {"name": name},
        "spec": {
            "strategyRef": {"name": "ema-rsi"},
            "epochs": 20,
            "pairs": ["BTC/USDT"],
            "timerange": {"start": "2024-01-01", "end": "2024-03-01"},
            "validation": {"timerange": {"start": "2024-03-01", "end": "2024-04-01"}},
        },
    }


def _succeeded(code: str, params: dict[str, Any], oos_profit: str) -> dict[str, Any]:
    """The status the Hyperopt controller writes once the search and its out-of-sample
    Backtest are done."""
    return {
        "phase": "Succeeded",
        "codeHash": code,
        "progress": "20/20",
        "best": {
            "epoch": 12,
            "loss": "-2.50000000",
            "parameters": _exported(params),
            "parametersHash": parameters_hash(params),
        },
        "validation": {
            "phase": "Succeeded",
            "inSample": {"profitTotal": "0.31000000"},
            "outOfSample": {"profitTotal": oos_profit},
        },
    }


def _setup(api: Any, kubectl: Any, namespace: str) -> str:
    """The Strategy (parameters from Hyperopt `fitted`, still Running), a Succeeded Backtest
    of its code, the testnet keys, and the Hyperopt. Returns the code hash."""
    strategy = copy.deepcopy(example("Strategy", "ema-rsi"))
    del strategy["spec"]["parameters"]
    strategy["spec"]["parametersFrom"] = {"hyperoptRef": {"name": "fitted"}}
    code = code_hash(strategy["spec"]["code"])
    _apply(
        kubectl,
        namespace,
        strategy,
        example("Backtest", "ema-rsi-sample"),
        _hyperopt("fitted"),
        _hyperopt("robust"),
    )
    _patch_status(
        api,
        namespace,
        "backtests",
        "ema-rsi-sample",
        {
            "phase": "Succeeded",
            "codeHash": code,
            "cleanedUp": True,
            "results": {"profitTotal": "0.05000000", "maxDrawdown": "0.10000000", "trades": 40},
            # Run with the set the bot will run (the Hyperopt's best, once it is done).
            "launched": launched(
                example("Backtest", "ema-rsi-sample"),
                strategy,
                parameters_hash=parameters_hash(FITTED),
            ),
        },
    )
    _patch_status(api, namespace, "hyperopts", "fitted", {"phase": "Running", "progress": "7/20"})
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="exchange-keys", labels={"tradebot.dev/credentials": "testnet"}
            ),
            string_data={"key": FAKE_KEY, "secret": FAKE_SECRET},
        ),
    )
    return code


def _bot(hyperopt: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": "tested", "labels": {"tradebot.dev/fleet": "main"}}
    doc["spec"].update(
        mode="testnet",
        exchange={"name": "binance", "credentialsSecretRef": {"name": "exchange-keys"}},
        promotion={
            "backtestRef": {"name": "ema-rsi-sample"},
            "minProfit": 0,
            "maxDrawdown": 0.2,
            "minTrades": 5,
            "minDryRunHours": 0,
            "hyperoptRef": {"name": hyperopt, "minOutOfSampleProfit": 0.01},
        },
    )
    return doc


def _bot_pods(api: Any, namespace: str) -> list[Any]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )


def test_a_curve_fitted_set_holds_a_testnet_bot_and_a_validated_one_lets_it_through(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
) -> None:
    code = _setup(api_client, kubectl, namespace)
    # No admission slots: the Hyperopt controller runs too, and the searches whose statuses
    # this test writes by hand must not start workers (whose pods the watch would count).
    with (
        pod_watch(api_client, namespace, "tradebot.dev/kind") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            max_concurrent_backtests=0,
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        ),
    ):
        # The search is still running: the Strategy waits, and so does its bot.
        waiting = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "strategies", "ema-rsi")).get("phase")
                == "Pending"
                and s
            ),
            60,
            what="Strategy Pending on its Hyperopt",
        )
        assert (
            "waiting for Hyperopt fitted to succeed: it is Running (7/20 epochs)"
            in (waiting["message"])
        )
        resolved = {c["type"]: c for c in waiting["conditions"]}["ParametersResolved"]
        assert (resolved["status"], resolved["reason"]) == ("False", "HyperoptNotSucceeded")
        assert waiting["codeHash"] == code
        _apply(kubectl, namespace, _bot("fitted"))
        bot = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "tested")).get("phase")
                == "Pending"
                and s
            ),
            60,
            what="bot Pending",
        )
        assert "Strategy ema-rsi is Pending" in bot["message"]

        # The search ends; out of sample its best set loses money.
        _patch_status(
            api_client, namespace, "hyperopts", "fitted", _succeeded(code, FITTED, "-0.03000000")
        )
        ready = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "strategies", "ema-rsi")).get("phase")
                == "Ready"
                and s
            ),
            90,
            what="Strategy Ready with the Hyperopt's set",
        )
        assert ready["parameters"] == _exported(FITTED)  # byte for byte
        assert ready["parametersHash"] == parameters_hash(FITTED)
        assert ready["parametersSource"] == "Hyperopt/fitted"
        held = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "tested")).get("phase")
                == "Blocked"
                and s
            ),
            60,
            what="bot Blocked",
        )
        gate = {g["name"]: g for g in held["gates"]}["outOfSample"]
        assert gate["passed"] is False
        assert (
            "Hyperopt fitted: out-of-sample profitTotal -0.03 < minOutOfSampleProfit 0.01"
        ) in gate["message"]
        assert "out-of-sample profitTotal -0.03" in held["message"]
        # Positive control for "no pod": the other gates pass, only this one holds it.
        assert all(g["passed"] for g in held["gates"] if g["name"] != "outOfSample")
        assert pods.added == []

        # A validated set: the Strategy takes it and the bot's gate points at it.
        _patch_status(
            api_client, namespace, "hyperopts", "robust", _succeeded(code, ROBUST, "0.04000000")
        )
        # The backtest evidence must be of the set the bot runs: a Backtest of it.
        _patch_status(
            api_client,
            namespace,
            "backtests",
            "ema-rsi-sample",
            {"launched": {"parametersHash": parameters_hash(ROBUST)}},
        )
        kubectl(
            "patch",
            "strategy",
            "ema-rsi",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"parametersFrom": {"hyperoptRef": {"name": "robust"}}}}),
        )
        kubectl(
            "patch",
            "livebot",
            "tested",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"promotion": {"hyperoptRef": {"name": "robust"}}}}),
        )
        running = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "tested")).get("phase")
                == "Running"
                and s
            ),
            90,
            what="bot Running",
        )
        gate = {g["name"]: g for g in running["gates"]}["outOfSample"]
        assert gate["passed"] is True
        assert running["parametersHash"] == parameters_hash(ROBUST)
        assert running["gateDecision"]["parametersHash"] == parameters_hash(ROBUST)
        # The pod's config carries the validated set.
        config_maps = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
        configs = [
            json.loads(v)
            for cm in config_maps
            for k, v in (cm.data or {}).items()
            if k.endswith(".json") and "parameter_file" in v
        ]
        assert [c["tradebot"]["parameter_file"]["params"] for c in configs] == [ROBUST]
    assert pods.added == [running["podName"]]


def test_a_backtest_runs_its_strategys_set_and_records_its_hash(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
) -> None:
    from tradebot.records import open_store

    strategy = copy.deepcopy(example("Strategy", "ema-rsi"))
    del strategy["spec"]["parameters"]
    strategy["spec"]["parametersFrom"] = {"hyperoptRef": {"name": "robust"}}
    code = code_hash(strategy["spec"]["code"])
    _apply(kubectl, namespace, strategy, _hyperopt("robust"))
    _patch_status(
        api_client, namespace, "hyperopts", "robust", _succeeded(code, ROBUST, "0.04000000")
    )
    db = tmp_path / "r.db"
    with running_operator(
        cluster.kubeconfig, namespace, executor="kubernetes", database_dsn=f"sqlite://{db}"
    ):
        wait_for(
            lambda: _status(api_client, namespace, "strategies", "ema-rsi").get("phase") == "Ready",
            60,
            what="Strategy Ready",
        )
        # Another Strategy cannot take a set searched for ema-rsi.
        stranger = copy.deepcopy(strategy)
        stranger["metadata"] = {"name": "stranger"}
        _apply(kubectl, namespace, stranger)
        refused = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "strategies", "stranger")).get("phase")
                == "Invalid"
                and s
            ),
            60,
            what="Strategy Invalid",
        )
        assert (
            "Hyperopt robust searched the parameters of Strategy ema-rsi, not of "
            "stranger" in refused["message"]
        )
        assert refused.get("parametersHash") is None
        _apply(kubectl, namespace, example("Backtest", "ema-rsi-sample"))
        status = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "backtests", "ema-rsi-sample")).get("runId")
                and s
            ),
            60,
            what="Backtest admitted",
        )
        assert (status["codeHash"], status["parametersHash"]) == (code, parameters_hash(ROBUST))
        cm = client.CoreV1Api(api_client).read_namespaced_config_map(status["jobName"], namespace)
        config = json.loads((cm.data or {})["config.json"])
        assert config["tradebot"]["parameter_file"] == json.loads(_exported(ROBUST))

        # The run record keeps the set beside the code.
        def recorded() -> Any:
            with open_store(f"sqlite://{db}") as store:
                return store.get_run(status["runId"])

        run = wait_for(recorded, 30, what="run recorded")
    assert (run.strategy_code_hash, run.parameters_hash) == (code, parameters_hash(ROBUST))
