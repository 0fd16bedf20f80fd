"""What counts as drift of a bot's objects (domain/bot_drift.py): defaults the API server adds
never do; an edited image, command, env, volume or label does, and a ConfigMap or
NetworkPolicy edited anywhere changes its fingerprint. The controller's restore against the
real API server: tests/e2e/test_livebot_drift.py."""

from __future__ import annotations

import copy
from typing import Any

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain import bots
from tradebot.domain.bot_drift import (
    config_map_fingerprint,
    covers,
    desired_config_map_fingerprint,
    pod_drift,
    policy_fingerprint,
)
from tradebot.settings import Settings

SETTINGS = Settings()


def bot() -> bots.BotInstance:
    spec = LiveBotSpec.model_validate({"strategyRef": {"name": "ema-rsi"}, "pairs": ["BTC/USDT"]})
    config = {"strategy": "EmaRsi", "exchange": {"name": "binance"}}
    return bots.BotInstance(
        "team-a", "bot", "5e1f-uid", spec, "ema-rsi", "EmaRsi", "class EmaRsi: ...", config
    )


def _desired() -> dict[str, Any]:
    return bots.pod(bot(), SETTINGS)


def _as_served(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server hands it back: defaults added everywhere."""
    served = copy.deepcopy(pod)
    served["metadata"]["uid"] = "abc"
    served["metadata"]["labels"]["added-by-someone"] = "x"
    spec = served["spec"]
    spec["dnsPolicy"] = "ClusterFirst"
    for c in spec["containers"]:
        c["terminationMessagePath"] = "/dev/termination-log"
        for e in c.get("env") or []:
            field = (e.get("valueFrom") or {}).get("fieldRef")
            if field is not None:
                field["apiVersion"] = "v1"
    for v in spec["volumes"]:
        if "configMap" in v:
            v["configMap"]["defaultMode"] = 420
    served["status"] = {"phase": "Running"}
    return served


def test_defaults_the_server_adds_are_not_drift():
    desired = _desired()
    assert pod_drift(desired, _as_served(desired)) == ()


def test_each_edit_of_the_pod_is_named():
    desired = _desired()
    served = _as_served(desired)
    freqtrade = next(c for c in served["spec"]["containers"] if c["name"] == bots.CONTAINER)

    image = copy.deepcopy(served)
    next(c for c in image["spec"]["containers"] if c["name"] == bots.CONTAINER)["image"] = "evil"
    assert pod_drift(desired, image) == (f"image of container {bots.CONTAINER}",)

    env = copy.deepcopy(served)
    next(c for c in env["spec"]["containers"] if c["name"] == bots.CONTAINER)["env"].append(
        {"name": "PYTHONPATH", "value": "/var/evil"}
    )
    assert pod_drift(desired, env) == (f"env of container {bots.CONTAINER}",)

    command = copy.deepcopy(served)
    next(c for c in command["spec"]["containers"] if c["name"] == bots.CONTAINER)["args"] = [
        "trade",
        *freqtrade["args"][1:],
        "--strategy-path",
        "/var/evil",
    ]
    assert pod_drift(desired, command) == (f"args of container {bots.CONTAINER}",)

    extra = copy.deepcopy(served)
    extra["spec"]["containers"].append({"name": "miner", "image": "x"})
    assert pod_drift(desired, extra) == ("containers miner added",)

    volume = copy.deepcopy(served)
    volume["spec"]["volumes"][0]["configMap"]["name"] = "someone-elses"
    assert pod_drift(desired, volume) == ("volumes",)

    label = copy.deepcopy(served)
    label["metadata"]["labels"][bots.LABEL_LIVEBOT] = "another-bot"
    assert pod_drift(desired, label) == (f"label {bots.LABEL_LIVEBOT}",)

    annotation = copy.deepcopy(served)
    annotation["metadata"]["annotations"][bots.ANNOTATION_CONFIG_HASH] = "0" * 64
    assert pod_drift(desired, annotation) == (f"annotation {bots.ANNOTATION_CONFIG_HASH}",)


def test_covers_needs_every_field_and_equal_lists():
    assert covers({"a": 1, "b": 2}, {"a": 1})
    assert not covers({"a": 1}, {"a": 1, "b": 2})
    assert not covers({"a": 2}, {"a": 1})
    assert covers([{"a": 1, "x": 0}], [{"a": 1}])
    assert not covers([{"a": 1}, {"a": 2}], [{"a": 1}])  # nothing can be added to a list
    assert not covers([], [{"a": 1}])


def test_fingerprints_change_with_any_edit():
    b = bot()
    cm = bots.config_map(b)
    want = desired_config_map_fingerprint(cm)
    assert config_map_fingerprint(cm["data"], None) == want
    swapped = {**cm["data"], b.strategy_file: "class EmaRsi: buy_everything = True"}
    assert config_map_fingerprint(swapped, None) != want
    assert config_map_fingerprint({**cm["data"], "extra": "x"}, None) != want
    assert config_map_fingerprint(cm["data"], {"x": "AAAA"}) != want
    policy = bots.network_policy(b, operator_namespace="ops")
    opened = copy.deepcopy(policy["spec"])
    opened["ingress"].append({})
    assert policy_fingerprint(opened) != policy_fingerprint(policy["spec"])
    assert policy_fingerprint(copy.deepcopy(policy["spec"])) == policy_fingerprint(policy["spec"])
