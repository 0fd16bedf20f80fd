"""LiveBots on the local cluster with the kubernetes executor (kwok pods): the Strategy's
parameter set is projected into the bot pod beside the strategy file, and a bot whose spec
cannot be parsed (whatever the parser raises) fails alone with InvalidSpec while another
bot's rounds go on."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.api import livebot

G, V = "tradebot.dev", "v1alpha1"
CLASS = "EmaRsiStrategy"
NON_DEFAULT = 55  # the example's buy_rsi_max defaults to 70
# The deadline whose parsing the test makes fail the way an unforeseen parser error would.
BROKEN_DEADLINE = "59m59s"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, "livebots", name
    )
    return dict(obj.get("status") or {})


def _bot(name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    return doc


def test_parameters_reach_the_pod_and_a_broken_spec_fails_alone(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    real = livebot.parse_duration

    def overflowing(text: str) -> dt.timedelta:
        if text == BROKEN_DEADLINE:
            raise OverflowError("days=1000000000; must have magnitude <= 999999999")
        return real(text)

    # The operator runs in this process: its parser raises what no validator anticipated.
    monkeypatch.setattr(livebot, "parse_duration", overflowing)
    strategy = copy.deepcopy(example("Strategy", "ema-rsi"))
    strategy["spec"]["parameters"] = {"buy": {"buy_rsi_max": NON_DEFAULT}}
    _apply(kubectl, namespace, strategy)
    core = client.CoreV1Api(api_client)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        _apply(
            kubectl,
            namespace,
            _bot("broken", supervision={"deadline": BROKEN_DEADLINE}),
            _bot("tuned"),
        )
        broken = wait_for(
            lambda: (s := _status(api_client, namespace, "broken")).get("phase") == "Failed" and s,
            90,
            what="broken bot Failed",
        )
        ready = {c["type"]: c for c in broken["conditions"]}["Ready"]
        assert ready["reason"] == "InvalidSpec"
        assert "OverflowError" in broken["message"], broken
        # The other bot's rounds go on: its pod is created and runs.
        tuned = wait_for(
            lambda: (s := _status(api_client, namespace, "tuned")).get("phase") == "Running" and s,
            90,
            what="tuned bot Running",
        )
        events = wait_for(
            lambda: [
                e
                for e in core.list_namespaced_event(namespace).items
                if e.involved_object.name == "broken" and e.reason == "InvalidSpec"
            ],
            30,
            what="an InvalidSpec Event",
        )
        assert "OverflowError" in events[0].message
        assert _status(api_client, namespace, "broken").get("podName") is None

        pod = core.read_namespaced_pod(tuned["podName"], namespace)
        (config,) = [v for v in pod.spec.volumes if v.name == "config"]
        items = {i.key: i.path for i in config.config_map.items}
        # Beside the strategy file, where Freqtrade reads it.
        assert items[f"{CLASS}.py"] == f"strategy/{CLASS}.py"
        assert items[f"{CLASS}.json"] == f"strategy/{CLASS}.json"
        data = core.read_namespaced_config_map(config.config_map.name, namespace).data
        document = json.loads(data[f"{CLASS}.json"])
        assert document["strategy_name"] == CLASS
        assert document["params"]["buy"] == {"buy_rsi_max": NON_DEFAULT}
        # What the status claims is what the file holds.
        strategy_status = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            G, V, namespace, "strategies", "ema-rsi"
        )["status"]
        assert tuned["parametersHash"] == strategy_status["parametersHash"]
