"""kopf handlers, one module per kind. Importing this package registers them."""

from tradebot.controllers import backtest, lifecycle, strategy

__all__ = ["backtest", "lifecycle", "strategy"]
