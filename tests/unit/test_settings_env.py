"""Settings from TRADEBOT_* variables, as the Helm chart sets them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tradebot.settings import DEFAULT_GPU_PROFILES, Settings


def test_gpu_profiles_and_node_labels_come_from_the_environment():
    profiles = {
        "amd": {
            "resource": "amd.com/gpu",
            "node_selector": {"gpu": "mi300"},
            "tolerations": [{"key": "amd.com/gpu", "operator": "Exists"}],
        }
    }
    s = Settings.from_env(
        {
            "TRADEBOT_GPU_PROFILES": json.dumps(profiles),
            "TRADEBOT_GPU_NODE_LABELS": "gpu, accel ,",
            "TRADEBOT_NAMESPACES": "a,b",
        }
    )
    assert set(s.gpu_profiles) == {"amd"}
    assert s.gpu_profiles["amd"].node_selector == {"gpu": "mi300"}
    assert s.gpu_node_labels == ("gpu", "accel")
    assert s.namespaces == ("a", "b")


def test_empty_gpu_profiles_keep_the_defaults():
    assert Settings.from_env({"TRADEBOT_GPU_PROFILES": ""}).gpu_profiles == DEFAULT_GPU_PROFILES
    assert Settings.from_env({}).gpu_profiles == DEFAULT_GPU_PROFILES


def test_bad_gpu_profiles_name_the_problem():
    with pytest.raises(ValidationError, match="gpu_profiles is not valid JSON"):
        Settings.from_env({"TRADEBOT_GPU_PROFILES": "{amd"})
    with pytest.raises(ValidationError, match="resource"):
        Settings.from_env({"TRADEBOT_GPU_PROFILES": '{"amd": {"node_selector": {}}}'})


def test_the_process_environment_is_read_through_pydantic_settings(monkeypatch: pytest.MonkeyPatch):
    # The chart's strings: JSON objects and comma lists, as the Deployment's env carries them.
    monkeypatch.setenv("TRADEBOT_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("TRADEBOT_ALLOWED_MODES", "dryRun,testnet")
    monkeypatch.setenv("TRADEBOT_PROMOTION_FLOORS", '{"live": {"minTrades": 50}}')
    monkeypatch.setenv("TRADEBOT_OPERATOR_POD_LABELS", '{"app": "op"}')
    monkeypatch.setenv(
        "TRADEBOT_GPU_PROFILES",
        json.dumps({"amd": {"resource": "amd.com/gpu", "node_selector": {}, "tolerations": []}}),
    )
    monkeypatch.setenv("TRADEBOT_MAX_CONCURRENT_BACKTESTS", "7")
    monkeypatch.setenv("TRADEBOT_NOT_A_SETTING", "ignored")
    s = Settings.from_env()
    assert s.namespaces == ("team-a", "team-b")
    assert s.allowed_modes == ("dryRun", "testnet")
    assert s.promotion_floors.live.min_trades == 50
    assert s.promotion_floors.testnet == Settings().promotion_floors.testnet
    assert s.operator_pod_labels == {"app": "op"}
    assert set(s.gpu_profiles) == {"amd"}
    assert s.max_concurrent_backtests == 7
    # An explicit mapping replaces the environment (positive control: it differs).
    assert Settings.from_env({}).max_concurrent_backtests == 4


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRADEBOT_MAX_CONCURRENT_BACKTESTS", "many", "valid integer"),
        ("TRADEBOT_PROMOTION_FLOORS", '{"live": {"minTrades": -1}}', "greater than or equal to 0"),
        ("TRADEBOT_OPERATOR_POD_LABELS", "{}", "must name at least one label"),
        ("TRADEBOT_ALLOWED_MODES", "dryRun,yolo", "'dryRun', 'testnet' or 'live'"),
        ("TRADEBOT_BOT_STORAGE_SIZE", "lots", "should match pattern"),
    ],
)
def test_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
):
    for env in ({variable: value}, None):
        if env is None:
            monkeypatch.setenv(variable, value)
        with pytest.raises(ValidationError) as caught:
            Settings.from_env(env)
        text = str(caught.value)
        assert f"\n{variable}" in text, text
        assert message in text
