"""kopf handlers, one module per kind. Importing this package registers them."""

from tradebot.controllers import (
    backtest,
    cache,
    circuitbreaker,
    hyperopt,
    hyperopt_queue,
    lifecycle,
    livebot,
    marketdata,
    strategy,
)

__all__ = ["backtest", "cache", "circuitbreaker", "hyperopt", "hyperopt_queue", "lifecycle",
           "livebot", "marketdata", "strategy"]
