"""The Strategy's parameter set reaches every executor as Freqtrade's own parameter file,
<Class>.json beside the strategy file: the bot pod's ConfigMap volume projects it, the Backtest
and Hyperopt Job ConfigMaps carry it beside the strategy, and the runner checks it is the set
the config names. Without a set, no file anywhere (the strategy's own values)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.api.hyperopt import HyperoptSpec
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain import hyperopt_jobs, jobs
from tradebot.domain.bots import BotInstance, config_map, pod
from tradebot.domain.freqtrade_config import backtest_config, parameter_file_data
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.freqtrade.run_files import prepare_strategy
from tradebot.settings import Settings

UID = "5e1f0000-aaaa-bbbb-cccc-ddddeeeeffff"
CLASS = "EmaRsiStrategy"


def _strategy(buy_rsi_max: int | None) -> StrategySpec:
    doc = copy.deepcopy(example("Strategy", "ema-rsi")["spec"])
    if buy_rsi_max is None:
        doc.pop("parameters", None)
    else:
        doc["parameters"] = {"buy": {"buy_rsi_max": buy_rsi_max}}
    return StrategySpec.model_validate(doc)


def _bot(strategy: StrategySpec) -> BotInstance:
    spec = LiveBotSpec.model_validate(example("LiveBot", "ema-rsi-dry")["spec"])
    config = trade_config(spec, strategy, api_port=8080, api_username="", exchange_double_url=None)
    return BotInstance("team-a", "dry", UID, spec, "ema-rsi", CLASS, strategy.code or "", config)


def _config_volume(p: dict[str, Any]) -> dict[str, Any]:
    volume: dict[str, Any] = next(v for v in p["spec"]["volumes"] if v["name"] == "config")
    return volume["configMap"]


def test_the_bot_pod_projects_the_parameter_file_beside_the_strategy():
    b = _bot(_strategy(55))
    data = config_map(b)["data"]
    document = json.loads(data[f"{CLASS}.json"])
    # Freqtrade's format, as `freqtrade hyperopt` exports it: it refuses another class's file.
    assert document["strategy_name"] == CLASS
    assert document["params"]["buy"] == {"buy_rsi_max": 55}
    items = _config_volume(pod(b, Settings()))["items"]
    assert {"key": f"{CLASS}.json", "path": f"strategy/{CLASS}.json"} in items
    assert {"key": f"{CLASS}.py", "path": f"strategy/{CLASS}.py"} in items
    # Every projected key is in the ConfigMap: a missing key would keep the pod from starting.
    assert {i["key"] for i in items} <= set(data)


def test_without_a_set_the_bot_gets_no_parameter_file():
    b = _bot(_strategy(None))
    assert f"{CLASS}.json" not in config_map(b)["data"]
    paths = {i["path"] for i in _config_volume(pod(b, Settings()))["items"]}
    assert paths == {"config.json", f"strategy/{CLASS}.py", "tradebot-deadman.py"}
    # Positive control: the same builder with a set projects it.
    with_set = {i["path"] for i in _config_volume(pod(_bot(_strategy(55)), Settings()))["items"]}
    assert with_set == paths | {f"strategy/{CLASS}.json"}


def test_a_new_parameter_value_replaces_the_bot_pod():
    assert _bot(_strategy(55)).config_hash != _bot(_strategy(60)).config_hash
    assert _bot(_strategy(55)).config_hash == _bot(_strategy(55)).config_hash


def test_a_hyperopts_set_is_projected_whole():
    found = {
        "strategy_name": CLASS,
        "params": {"buy": {"buy_rsi_max": 61}, "roi": {"0": 0.05}, "stoploss": {"stoploss": -0.1}},
        "ft_stratparam_v": 1,
        "export_time": "2026-11-30 10:00:00.000000+00:00",
    }
    strategy = _strategy(None)
    spec = LiveBotSpec.model_validate(example("LiveBot", "ema-rsi-dry")["spec"])
    config = trade_config(
        spec,
        strategy,
        api_port=8080,
        api_username="",
        exchange_double_url=None,
        parameter_file=found,
    )
    assert json.loads(parameter_file_data(config, CLASS)[f"{CLASS}.json"]) == found


def _backtest_run(strategy: StrategySpec) -> jobs.BacktestRun:
    spec = BacktestSpec.model_validate(example("Backtest", "ema-rsi-sample")["spec"])
    config = backtest_config(spec, strategy, datadir="/d", user_data_dir="/u")
    return jobs.BacktestRun(
        "team-a", "bt", UID, spec, "ema-rsi", CLASS, "code", config, f"bt-{UID}", "corr"
    )


def test_backtest_job_carries_the_parameter_file_beside_the_strategy():
    run = _backtest_run(_strategy(55))
    data = jobs.config_map(run)["data"]
    assert json.loads(data[f"{CLASS}.json"])["params"]["buy"] == {"buy_rsi_max": 55}
    # The whole ConfigMap is the Job's config directory: the file sits beside the strategy
    # file the runner is pointed at.
    job = jobs.job(run, Settings())
    container = job["spec"]["template"]["spec"]["containers"][0]
    strategy_arg = container["args"][container["args"].index("--strategy-file") + 1]
    assert strategy_arg == f"{jobs.CONFIG_MOUNT}/{CLASS}.py"
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert "items" not in volume["configMap"]
    # Control: no set, no file.
    assert f"{CLASS}.json" not in jobs.config_map(_backtest_run(_strategy(None)))["data"]


def _hyperopt_run(config: dict[str, Any]) -> hyperopt_jobs.HyperoptRun:
    spec = HyperoptSpec.model_validate(copy.deepcopy(example("Hyperopt")["spec"]))
    return hyperopt_jobs.HyperoptRun("ns", "search", "0123-abcd", spec, CLASS, "code", config, (5,))


def test_hyperopt_job_carries_the_parameter_file_beside_the_strategy():
    bt = _backtest_run(_strategy(55))
    data = hyperopt_jobs.config_map(_hyperopt_run(bt.config))["data"]
    assert json.loads(data[f"{CLASS}.json"])["params"]["buy"] == {"buy_rsi_max": 55}
    plain = _backtest_run(_strategy(None)).config
    assert f"{CLASS}.json" not in hyperopt_jobs.config_map(_hyperopt_run(plain))["data"]


def _mounted(tmp_path: Path, config: dict[str, Any], beside: str | None) -> Path:
    mount = tmp_path / "mount"
    mount.mkdir(parents=True)
    (mount / f"{CLASS}.py").write_text("code")
    if beside is not None:
        (mount / f"{CLASS}.json").write_text(beside)
    return mount / f"{CLASS}.py"


def test_the_runner_places_the_mounted_set_beside_its_copy(tmp_path: Path):
    config = _backtest_run(_strategy(55)).config
    text = parameter_file_data(config, CLASS)[f"{CLASS}.json"]
    copy_ = prepare_strategy(config, _mounted(tmp_path, config, text), tmp_path / "s")
    assert json.loads(copy_.with_suffix(".json").read_text()) == json.loads(text)


def test_the_runner_refuses_a_mounted_file_that_is_not_the_configs_set(tmp_path: Path):
    config = _backtest_run(_strategy(55)).config
    other = json.dumps(
        {"strategy_name": CLASS, "params": {"buy": {"buy_rsi_max": 80}}, "ft_stratparam_v": 1}
    )
    with pytest.raises(ValueError, match="not the set the config names"):
        prepare_strategy(config, _mounted(tmp_path, config, other), tmp_path / "s")


def test_the_runner_refuses_a_mounted_file_when_the_config_names_none(tmp_path: Path):
    config = _backtest_run(_strategy(None)).config
    text = parameter_file_data(_backtest_run(_strategy(55)).config, CLASS)[f"{CLASS}.json"]
    with pytest.raises(ValueError, match="not the set the config names"):
        prepare_strategy(config, _mounted(tmp_path, config, text), tmp_path / "s")
    # Control: nothing mounted, nothing named: the strategy's own values, no file.
    copy_ = prepare_strategy(config, _mounted(tmp_path / "b", config, None), tmp_path / "b" / "s")
    assert not copy_.with_suffix(".json").exists()
