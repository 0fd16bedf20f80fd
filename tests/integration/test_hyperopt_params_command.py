"""`tradebot hyperopt params` against a real API server. No operator runs: the Hyperopt's
status is written here as its controller would write it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tradebot import cli
from tradebot.domain.parameters_hash import parameters_hash

G, V = "tradebot.dev", "v1alpha1"
# Freqtrade's export: indented, key order as Freqtrade wrote it, no final newline. The command
# must hand back these bytes, not a re-serialisation.
PARAMS = {
    "strategy_name": "EmaRsi",
    "params": {"buy": {"buy_rsi": 31}, "sell": {}, "roi": {"0": 0.04, "30": 0.01}},
    "ft_stratparam_v": 1,
    "export_time": "2026-11-29 10:00:00.000000+00:00",
}
EXPORTED = json.dumps(PARAMS, indent=4)


def hyperopt(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "Hyperopt",
        "metadata": {"name": name},
        "spec": {
            "strategyRef": {"name": "ema-rsi"},
            "epochs": 10,
            "pairs": ["BTC/USDT"],
            "timerange": {"start": "2024-01-01", "end": "2024-02-01"},
        },
    }


def best(text: str = EXPORTED) -> dict[str, Any]:
    return {
        "epoch": 7,
        "loss": "-1.50000000",
        "parameters": text,
        "parametersHash": parameters_hash(json.loads(text)["params"]),
    }


@pytest.fixture
def hyperopts(api_client: Any, namespace: str, crds_installed: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def _create(
    api: client.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any] | None
) -> None:
    api.create_namespaced_custom_object(G, V, namespace, "hyperopts", hyperopt(name))
    if status is not None:
        api.patch_namespaced_custom_object_status(
            G, V, namespace, "hyperopts", name, {"status": status}
        )


def _params(cluster: Any, namespace: str, *args: str) -> int:
    return cli.main(
        ["hyperopt", "params", "-n", namespace, "--kubeconfig", str(cluster.kubeconfig), *args]
    )


def test_params_of_a_succeeded_hyperopt_are_printed_byte_for_byte(
    cluster: Any,
    namespace: str,
    hyperopts: client.CustomObjectsApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _create(hyperopts, namespace, "done", {"phase": "Succeeded", "best": best()})
    assert _params(cluster, namespace, "done") == 0
    assert capsys.readouterr().out == EXPORTED
    out = tmp_path / "EmaRsi.json"
    assert _params(cluster, namespace, "done", "-o", str(out)) == 0
    assert out.read_text() == EXPORTED
    assert f"wrote {out}" in capsys.readouterr().err


def test_params_are_refused_until_the_hyperopt_has_succeeded(
    cluster: Any,
    namespace: str,
    hyperopts: client.CustomObjectsApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _create(
        hyperopts, namespace, "running", {"phase": "Running", "progress": "4/10", "best": best()}
    )
    _create(hyperopts, namespace, "validating", {"phase": "Validating", "best": best()})
    _create(hyperopts, namespace, "fresh", None)
    _create(hyperopts, namespace, "empty", {"phase": "Failed", "message": "no trades"})
    assert _params(cluster, namespace, "running") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"Hyperopt {namespace}/running has not finished: phase Running (4/10 epochs)" in (
        captured.err
    )
    assert _params(cluster, namespace, "fresh") == 1
    assert "has not finished: phase Pending" in capsys.readouterr().err
    assert _params(cluster, namespace, "validating") == 1
    assert "out-of-sample check is still running" in capsys.readouterr().err
    # The finished search's set, on request.
    assert _params(cluster, namespace, "validating", "--unvalidated") == 0
    assert capsys.readouterr().out == EXPORTED
    assert _params(cluster, namespace, "empty", "--unvalidated") == 1
    assert "recorded no best parameter set" in capsys.readouterr().err
    assert _params(cluster, namespace, "nothing-here") == 1
    assert f"Hyperopt {namespace}/nothing-here not found" in capsys.readouterr().err
