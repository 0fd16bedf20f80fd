"""What the local executors' processes (a bot's `freqtrade trade`, a backtest's runner) get
from the operator, and that none outlives it: real processes, their /proc environment."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.executors.environment import BASE_NAMES
from tradebot.executors.local import LocalExecutor
from tradebot.executors.local_bots import ExecutorStopped, LocalBotExecutor
from tradebot.localcluster import LocalCluster
from tradebot.processes import alive
from tradebot_testing.exchange_double import ExchangeDouble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRETS = {
    "FREQTRADE__API_SERVER__PASSWORD": "local-proc-test-password",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "local-proc-test-jwt-" + "k" * 24,
    "FREQTRADE__API_SERVER__WS_TOKEN": "local-proc-test-ws",
}
# What an operator's environment holds and user code must never see.
OPERATOR_ENV = {
    "TRADEBOT_DATABASE_DSN": "postgresql://tradebot:dsn-pass-DO-NOT-LEAK@db:5432/tradebot",
    "PGPASSWORD": "pg-pass-DO-NOT-LEAK",
    "KUBECONFIG": "/operator/kubeconfig-DO-NOT-LEAK",
    "TRADEBOT_NAMESPACES": "ns-DO-NOT-LEAK",
}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if item)


def _assert_minimal(env: dict[str, str], own: dict[str, str], home: Path) -> None:
    assert set(env) <= BASE_NAMES | {"PYTHONPATH"} | set(own), sorted(env)
    assert env["HOME"] == str(home)
    assert home.is_dir()
    text = json.dumps(env)
    for name, value in OPERATOR_ENV.items():
        assert name not in env
        assert value not in text, name


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OPERATOR_ENV.items():
        monkeypatch.setenv(name, value)


def _bot_config(double_url: str) -> tuple[dict[str, object], str, str]:
    strategy = StrategySpec.model_validate(
        yaml.safe_load((EXAMPLES / "strategy.yaml").read_text())["spec"]
    )
    spec = LiveBotSpec.model_validate(
        yaml.safe_load((EXAMPLES / "livebot.yaml").read_text())["spec"]
    )
    config = trade_config(
        spec, strategy, api_port=8080, api_username="operator", exchange_double_url=double_url
    )
    return config, strategy.class_name, strategy.code or ""


def test_a_backtest_runner_gets_the_pods_environment_not_the_operators(
    tmp_path: Path,
    operator_env: None,
):
    # The runner replaced by a probe that reports its own environment as the kernel has it.
    probe = [
        sys.executable,
        "-c",
        "import pathlib; pathlib.Path('environ').write_bytes("
        "pathlib.Path('/proc/self/environ').read_bytes())",
    ]
    executor = LocalExecutor(tmp_path / "state", runner=probe)
    own = {"TRADEBOT_CORRELATION_ID": "run-1"}  # what the Job's pod sets
    assert executor.step("run-1", [], {}, own) is None
    deadline = time.monotonic() + 60
    while (outcome := executor.step("run-1", [], {}, own)) is None:
        assert time.monotonic() < deadline, "the probe never finished"
        time.sleep(0.2)
    # The probe writes no summary: the outcome says so, with the probe's exit code 0.
    assert "runner exited with code 0" in outcome.message, outcome.message
    raw = (executor.run_dir("run-1") / "environ").read_bytes()
    env = dict(item.decode().split("=", 1) for item in raw.split(b"\0") if item)
    assert env["TRADEBOT_CORRELATION_ID"] == "run-1"  # positive control: its own variable
    assert "PYTHONPATH" in env  # the runner imports this operator's tradebot
    # The shell that records the exit code exports its working directory, the run's.
    assert env.pop("PWD") == str(executor.run_dir("run-1"))
    _assert_minimal(env, own, executor.run_dir("run-1") / "home")


def test_bots_get_their_secrets_only_and_none_outlives_the_stop(
    tmp_path: Path,
    operator_env: None,
):
    # The state dir under a local cluster's root, as `make demo` lays it out.
    root = tmp_path / "cluster"
    state = root / "operator"
    executor = LocalBotExecutor(state)
    with ExchangeDouble() as double:
        config, class_name, code = _bot_config(double.url)
        bots = [
            executor.ensure(bot_id, config, class_name, code, SECRETS) for bot_id in ("b1", "b2")
        ]
        try:
            for bot_id, bot in zip(("b1", "b2"), bots, strict=True):
                env = _environ(bot.pid)
                # Positive control: the bot's own secret is there ...
                assert (
                    env["FREQTRADE__API_SERVER__PASSWORD"]
                    == SECRETS["FREQTRADE__API_SERVER__PASSWORD"]
                )
                # ... and nothing of the operator's.
                _assert_minimal(env, SECRETS, executor.bot_dir(bot_id) / "home")
                assert "PYTHONPATH" not in env
            assert set(executor.running_bots()) == {"b1", "b2"}

            # The operator's cleanup: all stop together, and none starts again ...
            started = time.monotonic()
            assert executor.stop_all() == ["b1", "b2"]
            assert time.monotonic() - started < 25  # one timeout for the fleet, not one each
            assert not any(alive(b.pid) for b in bots)
            assert executor.running_bots() == {}
            with pytest.raises(ExecutorStopped):
                executor.ensure("b1", config, class_name, code, SECRETS)
            assert executor.running("b1") is None
            # ... until a new operator starts.
            executor.resume()
            again = executor.ensure("b1", config, class_name, code, SECRETS)
            assert alive(again.pid)

            # `tradebot cluster down`: no component runs, but the bot under its root stops.
            stopped = LocalCluster(root, tmp_path / "no-tools").stop()
            assert stopped == ["bot b1"]
            assert not alive(again.pid)
        finally:
            executor.stop_all()
