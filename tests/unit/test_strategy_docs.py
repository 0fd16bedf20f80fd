"""`tradebot registry docs`: the registry (real SQLite store) as Markdown, with what the
registration parsed from the code and the latest backtest's figures."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from tradebot.cli import main
from tradebot.commands.records_import import import_results
from tradebot.freqtrade.introspect import introspect
from tradebot.freqtrade.strategy_doc import describe
from tradebot.records import open_store

FIXTURE = Path(__file__).parent / "fixtures" / "backtest-result-ema-rsi-2d.zip"


def _source() -> str:
    with zipfile.ZipFile(FIXTURE) as z:
        name = next(n for n in z.namelist() if n.endswith("_EmaRsiStrategy.py"))
        return z.read(name).decode()


def test_describe_reads_parameters_indicators_and_signals() -> None:
    found = describe(_source(), "EmaRsiStrategy")
    assert found["parameters"]["buy_rsi_max"] == {
        "type": "int",
        "space": "buy",
        "default": "70",
        "low": "50",
        "high": "80",
    }
    assert found["indicators"] == ["ema_fast", "ema_slow", "rsi"]
    assert len(found["entrySignals"]) == 1
    assert "buy_rsi_max" in found["entrySignals"][0]
    assert found["exitSignals"]
    assert describe("class Other: pass", "EmaRsiStrategy")["parameters"] == {}


def test_registry_docs_markdown(tmp_path: Path) -> None:
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    code = _source()
    found = introspect(code, "EmaRsiStrategy")
    assert found.code_hash == hashlib.sha256(code.encode()).hexdigest()
    with open_store(dsn) as store:
        store.migrate()
        store.register_strategy(
            "team",
            "ema-rsi",
            "uid-1",
            "EmaRsiStrategy",
            found.code_hash,
            {**found.interface.to_wire(), **describe(code, "EmaRsiStrategy")},
        )
        other = code + "\n# changed\n"
        store.register_strategy(
            "team",
            "ema-rsi",
            "uid-1",
            "EmaRsiStrategy",
            hashlib.sha256(other.encode()).hexdigest(),
            found.interface.to_wire(),
        )
        assert import_results(store, [FIXTURE]).imported
    out = tmp_path / "STRATEGIES.md"
    assert main(["registry", "docs", "-o", str(out), "--dsn", dsn]) == 0
    text = out.read_text()
    assert "## team/ema-rsi: `EmaRsiStrategy`" in text
    assert f"`{found.code_hash}`" in text
    assert "| indicators | ema_fast, ema_slow, rsi |" in text
    assert "| buy_rsi_max | int | buy | 50 .. 80 | 70 |" in text
    assert "buy_rsi_max.value" in text  # the entry signal
    assert "**Latest backtest:** imported/" in text
    assert "| profit (ratio) |" in text
    # The version registered without the parsed parts, and never backtested, says so.
    assert "**Hyperopt parameters:** not recorded" in text
    assert "**Latest backtest:** none recorded for this code" in text
