"""Loading the shipped example manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def examples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def example(kind: str, name: str | None = None) -> dict[str, Any]:
    for doc in examples():
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    raise KeyError(f"no example {kind}/{name}")


# The image the operator's default settings run Backtests with.
DEFAULT_RUNNER = "ghcr.io/tradebot-operator/runner:0.1.0"


def launched(
    backtest: dict[str, Any],
    strategy: dict[str, Any],
    image: str = DEFAULT_RUNNER,
    parameters_hash: str | None = None,
    inline_parameters: bool = True,
) -> dict[str, Any]:
    """`status.launched` as the operator writes it when it starts `backtest` of `strategy`
    (inline code; the parameter set is the Strategy's inline one unless given): for tests that
    stand a finished Backtest in for a real run."""
    from tradebot.api.backtest import BacktestSpec
    from tradebot.api.strategy import StrategySpec
    from tradebot.domain.launch import launch_record
    from tradebot.domain.strategy_parameters import inline_set

    spec = BacktestSpec.model_validate(backtest["spec"])
    strategy_spec = StrategySpec.model_validate(strategy["spec"])
    inline = inline_set(strategy_spec)
    return launch_record(
        spec,
        spec.timerange,
        strategy_spec,
        strategy.get("status"),
        strategy_spec.code or "",
        parameters_hash or (inline.hash if inline and inline_parameters else None),
        image,
    )
