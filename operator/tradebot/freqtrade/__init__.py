"""What speaks Freqtrade: strategy introspection, the backtest runner, result parsing."""
