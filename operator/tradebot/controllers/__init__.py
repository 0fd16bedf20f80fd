"""kopf handlers, one module per kind. Importing this package registers them."""

from tradebot.controllers import backtest, lifecycle, livebot, strategy

__all__ = ["backtest", "lifecycle", "livebot", "strategy"]
