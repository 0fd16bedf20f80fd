"""The guarded strategy code: Freqtrade's own resolver loads it, under the same class name,
with the operator's protections (from the config) after the strategy's own, and Freqtrade's
ProtectionManager accepts them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from freqtrade.enums import CandleType, RunMode
from freqtrade.plugins.protectionmanager import ProtectionManager
from freqtrade.resolvers import StrategyResolver

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import TRADEBOT_KEY
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.domain.protections import PROTECTIONS_KEY, guarded_code

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COOLDOWN = {"method": "CooldownPeriod", "stop_duration_candles": 2}


def _example(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


STRATEGY = StrategySpec.model_validate(_example("strategy.yaml"))
CODE = STRATEGY.code or ""
CLASS = STRATEGY.class_name


def _config(tmp_path: Path, limits: dict[str, Any] | None) -> dict[str, Any]:
    wire = _example("livebot.yaml")
    wire["limits"] = limits
    config = trade_config(
        LiveBotSpec.model_validate(wire),
        STRATEGY,
        api_port=8080,
        api_username="operator",
        exchange_double_url=None,
    )
    (tmp_path / "user_data").mkdir(parents=True, exist_ok=True)
    # What Freqtrade's Configuration adds before the resolver runs.
    config.update(
        strategy_path=str(tmp_path / "strategies"),
        runmode=RunMode.DRY_RUN,
        candle_type_def=CandleType.SPOT,
        user_data_dir=tmp_path / "user_data",
    )
    return config


def _load(tmp_path: Path, code: str, limits: dict[str, Any] | None) -> Any:
    """The strategy as `freqtrade trade` loads it (StrategyResolver) from a file `code`."""
    config = _config(tmp_path, limits)
    directory = tmp_path / "strategies"
    directory.mkdir(exist_ok=True)
    (directory / f"{CLASS}.py").write_text(code)
    strategy = StrategyResolver.load_strategy(config)
    assert type(strategy).__name__ == CLASS
    return strategy, config


LIMITS = {"maxDrawdown": 0.1, "maxConsecutiveLosses": 3}


def _methods(protections: list[dict[str, Any]]) -> list[str]:
    return [p["method"] for p in protections]


def test_freqtrade_loads_the_operators_protections(tmp_path: Path) -> None:
    strategy, config = _load(tmp_path, guarded_code(CODE, CLASS), LIMITS)
    assert strategy.protections == config[TRADEBOT_KEY][PROTECTIONS_KEY]
    manager = ProtectionManager(config, strategy.protections)
    assert manager.name_list == ["MaxDrawdown", "StoplossGuard"]
    descriptions = " ".join(d for p in manager.short_desc() for d in p.values())
    assert "drawdown is > 0.1 within 1440 minutes" in descriptions
    assert "3 stoplosses" in descriptions


def test_without_the_guard_freqtrade_ignores_them(tmp_path: Path) -> None:
    """The control: the config alone protects nothing (Freqtrade reads only the strategy)."""
    strategy, config = _load(tmp_path, CODE, LIMITS)
    assert config[TRADEBOT_KEY][PROTECTIONS_KEY]
    assert strategy.protections == []


def test_no_limits_leaves_the_strategy_as_it_was(tmp_path: Path) -> None:
    strategy, _ = _load(tmp_path, guarded_code(CODE, CLASS), None)
    assert strategy.protections == []


def _with_member(member: str) -> str:
    """The example strategy with `member` (class-body source, 4-space indented) added."""
    anchor = "    INTERFACE_VERSION = 3\n"
    assert anchor in CODE
    return CODE.replace(anchor, anchor + member, 1)


OWN_SHAPES = {
    "list attribute": f"    protections = [{COOLDOWN!r}]\n",
    "property": (
        "    cooldown_candles = 2\n\n"
        "    @property\n"
        "    def protections(self):\n"
        "        return [{'method': 'CooldownPeriod',\n"
        "                 'stop_duration_candles': self.cooldown_candles}]\n"
    ),
    "assigned in __init__": (
        "    def __init__(self, config):\n"
        "        super().__init__(config)\n"
        f"        self.protections = [{COOLDOWN!r}]\n"
    ),
}


@pytest.mark.parametrize("shape", list(OWN_SHAPES))
def test_the_strategys_own_protections_stay_first(tmp_path: Path, shape: str) -> None:
    code = _with_member(OWN_SHAPES[shape])
    # The control: unguarded, Freqtrade sees the strategy's own only.
    own, _ = _load(tmp_path / "plain", code, LIMITS)
    assert own.protections == [COOLDOWN]
    strategy, config = _load(tmp_path / "guarded", guarded_code(code, CLASS), LIMITS)
    assert strategy.protections == [COOLDOWN, *config[TRADEBOT_KEY][PROTECTIONS_KEY]]
    assert ProtectionManager(config, strategy.protections).name_list == [
        "CooldownPeriod",
        "MaxDrawdown",
        "StoplossGuard",
    ]


def test_the_code_is_kept_and_only_appended_to() -> None:
    guarded = guarded_code(CODE, CLASS)
    assert guarded.startswith(CODE.rstrip("\n") + "\n")
    assert f"_tradebot_guard_protections({CLASS})" in guarded
    # No trailing newline in the user's code changes nothing.
    assert guarded_code(CODE.rstrip("\n"), CLASS) == guarded


@pytest.mark.parametrize("name", ["", "my-strategy", "class", "X; import os", "1abc"])
def test_a_class_name_that_is_not_one_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a Python class name"):
        guarded_code(CODE, name)
