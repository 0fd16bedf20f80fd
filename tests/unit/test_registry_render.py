"""Hyperopt parameters found by parsing, and the registry's table and JSON."""

from __future__ import annotations

import datetime as dt
import json

from tradebot.commands.registry import introspect_file
from tradebot.freqtrade.parameters import hyperopt_parameters, summary
from tradebot.records import StrategyRecord
from tradebot.reports.registry import interface_summary, render_interface, render_registry

CODE = """
from freqtrade.strategy import IStrategy, IntParameter, DecimalParameter, CategoricalParameter
from freqtrade import strategy as fs

class Base(IStrategy):
    pass

class Mine(Base):
    timeframe = "5m"
    stoploss = -0.1
    minimal_roi = {"30": 0.02, "0": 0.04}
    can_short = True
    buy_rsi = IntParameter(10, 40, default=30, space="buy")
    sell_gap = DecimalParameter(0.001, 0.1, default=0.01, decimals=3)
    buy_kind: CategoricalParameter = CategoricalParameter(["ema", "sma"], default="ema")
    exit_on = fs.BooleanParameter(default=True, space="sell")
    window = IntParameter([5, 50], default=LOOKBACK)
    not_a_parameter = max(1, 2)

    def populate_indicators(self, df, metadata): return df
    def populate_entry_trend(self, df, metadata): return df
    def populate_exit_trend(self, df, metadata): return df
"""


def test_parameters_are_read_from_the_source():
    found = hyperopt_parameters(CODE, "Mine")
    assert found == {
        "buy_rsi": {"type": "int", "space": "buy", "default": "30", "low": "10", "high": "40"},
        "sell_gap": {
            "type": "decimal",
            "space": "sell",
            "default": "0.01",
            "low": "0.001",
            "high": "0.1",
        },
        "buy_kind": {
            "type": "categorical",
            "space": "buy",
            "default": "ema",
            "choices": ["ema", "sma"],
        },
        "exit_on": {"type": "boolean", "space": "sell", "default": True},
        "window": {"type": "int", "space": None, "default": "LOOKBACK", "low": "5", "high": "50"},
    }
    assert summary({"buy_rsi": found["buy_rsi"]}) == "buy_rsi int 10..40 =30 (buy)"


def test_introspect_file_finds_the_only_strategy_class():
    document = introspect_file(CODE, None)
    assert document["className"] == "Mine"
    assert document["interface"]["timeframe"] == "5m"
    assert document["interface"]["minimalRoi"] == {"30": "0.02000000", "0": "0.04000000"}
    text = render_interface({"file": "mine.py", **document}, "table")
    assert "minimal ROI:   0:0.04000000 30:0.02000000" in text
    assert "can short:     yes" in text
    assert "  buy_rsi int 10..40 =30 (buy)" in text
    assert (
        json.loads(render_interface({"file": "m.py", **document}, "json"))["codeHash"]
        == document["codeHash"]
    )


def test_registry_table_and_json():
    record = StrategyRecord(
        namespace="team-a",
        name="ema",
        uid="u",
        class_name="Mine",
        code_hash="ab" * 32,
        interface={
            "timeframe": "5m",
            "canShort": False,
            "stoploss": "-0.10000000",
            "minimalRoi": {"0": "0.04000000"},
            "usesFreqai": True,
        },
        first_seen=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        last_seen=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
    )
    table = render_registry([record], "table").splitlines()
    assert table[0].split()[:4] == ["NAMESPACE", "NAME", "CLASS", "CODE"]
    assert table[1].split() == [
        "team-a",
        "ema",
        "Mine",
        "abababababab",
        "2026-03-01T00:00:00Z",
        "2026-03-02T00:00:00Z",
        "5m",
        "no",
        "-0.10000000",
        "0:0.04000000",
        "yes",
        "not",
        "recorded",
    ]
    document = json.loads(render_registry([record], "json"))
    assert document[0]["codeHash"] == "ab" * 32
    assert document[0]["summary"]["minimalRoi"] == "0:0.04000000"
    assert render_registry([], "table") == "no strategies are registered\n"
    assert interface_summary({"parameters": {}})["parameters"] == "none"
