"""The runner's compact summary of one backtest: what it writes to the container's termination
message (at most 4096 bytes) and what the operator reads back into status and records."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from tradebot.api.backtest import Artifact, BacktestResults, BiasFindings
from tradebot.api.base import StatusModel

TERMINATION_MESSAGE_LIMIT = 4096


class RunSummary(StatusModel):
    ok: bool = Field(description="True when Freqtrade ran and its result file was parsed.")
    error: str | None = Field(default=None, description="Why the run failed, for a person.")
    exit_code: int | None = Field(default=None, description="Freqtrade's exit code.")
    strategy: str = Field(description="Strategy class name.")
    results: BacktestResults | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    code_hash: str | None = Field(default=None, description="sha256 of the strategy file.")
    config_hash: str | None = Field(default=None, description="sha256 of the canonical config.")
    data_hash: str | None = Field(default=None, description="sha256 over the candle files used.")
    bias: BiasFindings | None = Field(
        default=None, description="Findings of the bias analyses, when asked for."
    )
    freqtrade_version: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    def to_message(self) -> str:
        """JSON for the termination message; the error is shortened to fit the limit."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT + 20
        error = (self.error or "")[: max(0, len(self.error or "") - overflow)] + " [truncated]"
        return self.model_copy(update={"error": error}).model_dump_json(
            by_alias=True, exclude_none=True
        )
