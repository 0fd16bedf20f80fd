"""The DcaSchedule controller against the real API server (operator in-process, kwok pods that
run nothing): what it records when it must not buy, and how it refuses bad specs."""

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


def _schedule(name: str, bot: str = "dca-bot", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "DcaSchedule",
        "metadata": {"name": name},
        "spec": {
            "botRef": {"name": bot},
            "pair": "BTC/USDT",
            "stakeAmount": "20",
            "schedule": {"every": "10s"},
            **spec,
        },
    }


def _status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api)
        .get_namespaced_custom_object(G, V, namespace, "dcaschedules", name)
        .get("status")
        or {}
    )


def _history(api: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    return list(_status(api, namespace, name).get("history") or [])


def test_slots_the_controller_may_not_buy_are_recorded_with_their_reason(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "dca-bot"}
    bot["spec"]["limits"] = {"maxStakePerTrade": "10"}
    docs = [
        bot,
        _schedule("above-limit"),
        _schedule("suspended", stakeAmount="5", suspend=True),
        _schedule("no-bot", bot="missing", stakeAmount="5"),
        _schedule("other-pair", stakeAmount="5", pair="SOL/USDT"),
        _schedule("bad-cron", schedule={"cron": "*/0 * * * *"}),
        _schedule("too-often", schedule={"every": "5s"}),
    ]
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        )
        expected = {
            "above-limit": "AboveLimit",
            "suspended": "Suspended",
            "other-pair": "PairNotTraded",
        }
        for name, reason in expected.items():
            entry = wait_for(
                lambda n=name: (h := _history(api_client, namespace, n)) and h[0],
                60,
                interval=0.5,
                what=f"a slot of {name} recorded",
            )
            assert (entry["outcome"], entry["reason"]) == ("Skipped", reason), entry
            assert "entryTag" not in entry  # nothing was sent to the bot
        assert (
            "maxStakePerTrade 10.00000000"
            in _history(api_client, namespace, "above-limit")[0]["message"]
        )
        waiting = wait_for(
            lambda: (s := _status(api_client, namespace, "no-bot")).get("phase") == "Waiting" and s,
            60,
            what="no-bot Waiting",
        )
        assert "missing" in waiting["message"]
        assert not waiting.get("history")
        for name, field in (("bad-cron", "step '0'"), ("too-often", "shorter than 10s")):
            status = wait_for(
                lambda n=name: (
                    (s := _status(api_client, namespace, n)).get("phase") == "Invalid" and s
                ),
                60,
                what=f"{name} Invalid",
            )
            assert field in status["message"]
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
            events = (
                client.CoreV1Api(api_client)
                .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
                .items
            )
            assert [e.reason for e in events] == ["InvalidSpec"]
        # Each recorded slot is its own: no slot recorded twice, none bought.
        for name in expected:
            slots = [h["slot"] for h in _history(api_client, namespace, name)]
            assert len(slots) == len(set(slots))
            assert not _status(api_client, namespace, name).get("buys")
        out = kubectl("get", "dca", "-n", namespace).stdout.splitlines()
        assert out[0].split() == ["NAME", "BOT", "PAIR", "STAKE", "PHASE", "BUYS", "LAST", "AGE"]
