"""Where a Backtest's runner actually runs: `kubernetes` (the Job's own container) or `local`
(a subprocess of the operator, for the kwok-based local cluster)."""
