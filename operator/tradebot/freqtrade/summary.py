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
        """JSON for the termination message; the bias findings' name lists, then the error,
        are shortened to fit the limit (the full findings are in the run's artifacts)."""
        text = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        if self.bias is not None:
            for keep in (3, 1, 0):
                shorter = self.model_copy(update={"bias": _fewer_names(self.bias, keep)})
                text = shorter.model_dump_json(by_alias=True, exclude_none=True)
                if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
                    return text
            return shorter._with_shorter_error(text)
        return self._with_shorter_error(text)

    def _with_shorter_error(self, text: str) -> str:
        overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT + 20
        error = (self.error or "")[: max(0, len(self.error or "") - overflow)] + " [truncated]"
        return self.model_copy(update={"error": error}).model_dump_json(
            by_alias=True, exclude_none=True
        )


def _fewer_names(found: BiasFindings, keep: int) -> BiasFindings:
    """The findings with at most `keep` names per list (the worst first, as they are)."""
    look, rec = found.lookahead, found.recursive
    if look is not None and look.biased_indicators:
        look = look.model_copy(update={"biased_indicators": look.biased_indicators[:keep] or None})
    if rec is not None and rec.indicators:
        rec = rec.model_copy(update={"indicators": rec.indicators[:keep] or None})
    return found.model_copy(update={"lookahead": look, "recursive": rec})
