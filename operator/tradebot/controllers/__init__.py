"""kopf handlers, one module per kind. Importing this package registers them."""

from tradebot.controllers import (
    backtest,
    cache,
    circuitbreaker,
    dca,
    hyperopt,
    hyperopt_queue,
    lifecycle,
    livebot,
    marketdata,
    marketdata_queue,
    strategy,
)

__all__ = [
    "backtest",
    "cache",
    "circuitbreaker",
    "dca",
    "hyperopt",
    "hyperopt_queue",
    "lifecycle",
    "livebot",
    "marketdata",
    "marketdata_queue",
    "strategy",
]
