"""Settings from TRADEBOT_* variables, as the Helm chart sets them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tradebot.settings import DEFAULT_GPU_PROFILES, Settings


def test_gpu_profiles_and_node_labels_come_from_the_environment():
    profiles = {"amd": {"resource": "amd.com/gpu", "node_selector": {"gpu": "mi300"},
                        "tolerations": [{"key": "amd.com/gpu", "operator": "Exists"}]}}
    s = Settings.from_env({"TRADEBOT_GPU_PROFILES": json.dumps(profiles),
                           "TRADEBOT_GPU_NODE_LABELS": "gpu, accel ,",
                           "TRADEBOT_NAMESPACES": "a,b"})
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
