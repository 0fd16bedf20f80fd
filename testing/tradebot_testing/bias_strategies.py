"""Strategies with a planted bias, and their clean twins, for the bias analyses' tests and
bench: each pair differs only in the planted line.

- LookaheadBiased reads the next candle's close (`shift(-1)`): it "knows" whether the price
  goes up and backtests beautifully; its twin reads the previous close (`shift(1)`).
- RecursiveBiased keeps a volume sum from the first candle (`cumsum()`): its value depends on
  how many candles came before; its twin sums a fixed window (`rolling(20)`).
"""

from __future__ import annotations

_TEMPLATE = """
from pandas import DataFrame

from freqtrade.strategy import IStrategy


class {name}(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {{"0": 0.004}}
    stoploss = -0.02
    startup_candle_count = 30

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["sma"] = dataframe["close"].rolling(20).mean()
        {signal}
        {volume}
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            ({signal_column} > dataframe["close"] * 1.001)
            & (dataframe["volume_sum"] > 0),
            "enter_long",
        ] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["close"] > dataframe["sma"] * 1.004, "exit_long"] = 1
        return dataframe
"""

_FUTURE = 'dataframe["future_close"] = dataframe["close"].shift(-1)'
_PAST = 'dataframe["past_close"] = dataframe["close"].shift(1)'
_CUMULATIVE = 'dataframe["volume_sum"] = dataframe["volume"].cumsum()'
_WINDOW = 'dataframe["volume_sum"] = dataframe["volume"].rolling(20).sum()'


def _code(name: str, *, lookahead: bool, recursive: bool) -> str:
    return _TEMPLATE.format(
        name=name,
        signal=_FUTURE if lookahead else _PAST,
        signal_column='dataframe["future_close"]' if lookahead else 'dataframe["past_close"]',
        volume=_CUMULATIVE if recursive else _WINDOW,
    )


LOOKAHEAD_BIASED = ("LookaheadBiased", _code("LookaheadBiased", lookahead=True, recursive=False))
RECURSIVE_BIASED = ("RecursiveBiased", _code("RecursiveBiased", lookahead=False, recursive=True))
CLEAN = ("CleanTwin", _code("CleanTwin", lookahead=False, recursive=False))
LOOKAHEAD_INDICATOR = "future_close"
RECURSIVE_INDICATOR = "volume_sum"
