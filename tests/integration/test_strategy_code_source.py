"""Where a Strategy's code comes from when it is not inline: a ConfigMap key, read from a real
API server. Code that is not text (a binaryData key) says so instead of "no key"."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client

from tradebot.api.strategy import StrategySpec
from tradebot.controllers import runtime
from tradebot.controllers.strategy import CodeUnavailable, read_code


def _spec(key: str) -> StrategySpec:
    return StrategySpec.model_validate(
        {"className": "S", "configMapRef": {"name": "code", "key": key}}
    )


def test_code_in_binary_data_is_named_as_not_text(
    api_client: Any, namespace: str, operator_runtime: runtime.Runtime
):
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "code"},
            "data": {"text.py": "class S: ...\n"},
            "binaryData": {"blob.py": base64.b64encode(b"\xff\xfeclass S\x00").decode()},
        },
    )
    # Positive control: a data key is the code.
    assert read_code(_spec("text.py"), namespace) == "class S: ...\n"
    with pytest.raises(CodeUnavailable) as caught:
        read_code(_spec("blob.py"), namespace)
    assert caught.value.reason == "CodeNotText"
    assert "binaryData" in str(caught.value)
    with pytest.raises(CodeUnavailable) as missing:
        read_code(_spec("other.py"), namespace)
    assert missing.value.reason == "ConfigMapKeyMissing"
