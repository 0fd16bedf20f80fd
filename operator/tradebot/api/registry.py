"""The kinds the operator serves."""

from __future__ import annotations

from tradebot.api import (
    backtest,
    circuitbreaker,
    dcaschedule,
    hyperopt,
    livebot,
    marketdata,
    strategy,
)
from tradebot.api.kind import Kind

KINDS: tuple[Kind, ...] = (
    strategy.KIND,
    backtest.KIND,
    livebot.KIND,
    circuitbreaker.KIND,
    marketdata.KIND,
    hyperopt.KIND,
    dcaschedule.KIND,
)
BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}
