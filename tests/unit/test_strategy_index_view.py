"""The operator's index of Strategies keeps what LiveBot rounds read of them, and not their
code (up to 256 KiB each): a round gets the code back from a small store keyed by its sha256."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from typing import Any, cast

import kopf
import pytest
from tests.support.manifests import example

from tradebot import kube
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import cache

STATUS = {
    "phase": "Ready",
    "codeHash": "ab" * 32,
    "message": "introspected",
    "parameters": '{"params": {"buy": {"buy_rsi_max": 65}}}',
    "parametersHash": "cd" * 32,
    "interface": {"className": "EmaRsiStrategy", "methods": ["populate_indicators"]},
    "conditions": [{"type": "Ready", "status": "True", "reason": "Introspected"}],
}


def _strategy() -> dict[str, Any]:
    body = copy.deepcopy(example("Strategy", "ema-rsi"))
    body["metadata"].update(namespace="ns", uid="u-1", generation=3)
    body["status"] = copy.deepcopy(STATUS)
    return body


def _indexed(body: dict[str, Any]) -> dict[str, Any]:
    """What kopf keeps: the index handler's answer for this body."""
    handler: Any = cache.strategies_by_name  # typed by kopf for its own call
    answer: dict[Any, dict[str, Any]] = asyncio.run(
        handler(body=kopf.Body(cast(Any, body)), namespace="ns", name=body["metadata"]["name"])
    )
    assert list(answer) == [("ns", body["metadata"]["name"])]
    return answer[("ns", body["metadata"]["name"])]


def test_the_index_holds_no_code_but_what_rounds_read() -> None:
    body = _strategy()
    code = body["spec"]["code"]
    view = _indexed(body)
    kept = json.dumps(view)
    # No line of the code is kept (its longest line would be there if any part were).
    assert max(code.splitlines(), key=len) not in kept
    assert "code" not in view["spec"]
    # What the rounds read is there (positive control: the check above can see the spec).
    assert view["spec"]["className"] == "EmaRsiStrategy"
    assert view["spec"]["timeframe"] == body["spec"]["timeframe"]
    assert view["spec"]["parameters"] == body["spec"]["parameters"]
    # The resolved parameter set too: a bot of a Hyperopt's set runs it (strategy_parameters).
    assert view["status"] == {
        "phase": "Ready",
        "codeHash": STATUS["codeHash"],
        "parameters": STATUS["parameters"],
        "parametersHash": STATUS["parametersHash"],
    }
    assert view["metadata"]["name"] == "ema-rsi"
    assert view[cache.CODE_SHA256] == hashlib.sha256(code.encode()).hexdigest()


def _no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def read() -> Any:
        pytest.fail("the API server was read")

    monkeypatch.setattr(kube, "custom", read)


def test_a_round_gets_the_code_back_from_the_store_without_a_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_reads(monkeypatch)
    body = _strategy()
    view = _indexed(body)
    cache.CODES.clear()
    cache.CODES.put(body["spec"]["code"])
    got = cache.strategy({("ns", "ema-rsi"): [view]}, "ns", "ema-rsi")
    assert got is not None
    assert got["spec"]["code"] == body["spec"]["code"]
    assert StrategySpec.model_validate(got["spec"]) == StrategySpec.model_validate(body["spec"])
    assert got["status"]["phase"] == "Ready"
    # The index's own entry is untouched: the code went into the copy handed out.
    assert "code" not in view["spec"]
    assert cache.strategy({("ns", "ema-rsi"): [view]}, "ns", "other") is None


def test_a_strategy_whose_code_is_in_a_config_map_is_handed_out_as_indexed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_reads(monkeypatch)
    body = _strategy()
    del body["spec"]["code"]
    body["spec"]["configMapRef"] = {"name": "code", "key": "strategy.py"}
    view = _indexed(body)
    assert cache.CODE_SHA256 not in view
    assert cache.strategy({("ns", "ema-rsi"): [view]}, "ns", "ema-rsi") == view


def test_the_store_holds_at_most_its_size_least_recently_used_out_first() -> None:
    codes = cache._Codes(2)
    a, b, c = "a = 1\n", "b = 2\n", "c = 3\n"
    codes.put(a)
    codes.put(b)
    assert codes.get(hashlib.sha256(a.encode()).hexdigest()) == a  # a is the newest now
    codes.put(c)
    assert len(codes) == 2
    assert codes.get(hashlib.sha256(b.encode()).hexdigest()) is None
    assert codes.get(hashlib.sha256(a.encode()).hexdigest()) == a
    assert codes.get(hashlib.sha256(c.encode()).hexdigest()) == c


@pytest.fixture(autouse=True)
def _empty_store() -> Any:
    yield
    cache.CODES.clear()
