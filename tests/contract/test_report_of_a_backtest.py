"""A report of a real backtest says what Freqtrade's result file says.

The runner runs real Freqtrade on the bundled data; the run is recorded the way the Backtest
controller records it (its `_record`, from the status `_complete` writes); `tradebot report`
renders it. The figures are then compared with the result zip read here with zipfile and json
alone, independently of the runner's parser and of the report's code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.contract.test_runner_backtest import COUNTS as RUNNER_COUNTS
from tests.contract.test_runner_backtest import FIGURES as RUNNER_FIGURES
from tests.contract.test_runner_backtest import Case, RunnerResult, case, run_runner
from tradebot.cli import main
from tradebot.freqtrade.introspect import introspect
from tradebot.freqtrade.summary import RunSummary
from tradebot.records import open_store

__all__ = ["case"]  # the module-scoped fixture, shared with the runner's contract

EIGHT = Decimal("0.00000001")
NAMESPACE = "team-a"
# Metric key (the API's wire name, as the controller records it) -> Freqtrade's statistic:
# the figures and counts the runner's contract checks.
FIGURES = {**RUNNER_FIGURES, **RUNNER_COUNTS}


@pytest.fixture(scope="module")
def backtest(case: Case) -> RunnerResult:
    result = run_runner(case, "report")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(params=["sqlite", "postgres"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/records.db"
    else:
        yield request.getfixturevalue("postgres_dsn")


def record_as_the_controller_does(dsn: str, case: Case, result: RunnerResult) -> str:
    from tradebot.controllers.backtest_records import store_run as _record

    summary = RunSummary.model_validate(result.summary)
    assert summary.results is not None
    uid = str(uuid.uuid4())
    # What _complete puts in the status before it records.
    status: dict[str, Any] = {
        "results": summary.results.to_wire(),
        "artifacts": [a.to_wire() for a in summary.artifacts],
        "configHash": summary.config_hash,
        "dataHash": summary.data_hash,
        "codeHash": summary.code_hash,
        "startedAt": result.summary["startedAt"],
        "finishedAt": result.summary["finishedAt"],
    }
    code = case.strategy.code or ""
    found = introspect(code, case.strategy.class_name)
    with open_store(dsn) as store:
        store.migrate()
        # What the Strategy controller registers when the Strategy is applied.
        store.register_strategy(
            NAMESPACE,
            "ema-rsi",
            "uid-strategy",
            case.strategy.class_name,
            found.code_hash,
            found.interface.to_wire(),
        )
        _record(store, NAMESPACE, "example", uid, "succeeded", status, case.spec)
    return uid


def freqtrade_statistics(output: Path, strategy: str) -> dict[str, Any]:
    """The strategy's statistics from the result zip, with zipfile and json only."""
    (zip_path,) = sorted(output.glob("*.zip"))
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            if name.endswith(".json") and not name.endswith("_config.json"):
                document = json.loads(archive.read(name))
                if isinstance(document, dict) and strategy in document.get("strategy", {}):
                    stats: dict[str, Any] = document["strategy"][strategy]
                    return stats
    raise AssertionError(f"no statistics of {strategy} in {zip_path}")


def test_report_matches_the_freqtrade_result_to_8_places(
    dsn: str, case: Case, backtest: RunnerResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    record_as_the_controller_does(dsn, case, backtest)
    stats = freqtrade_statistics(backtest.output, case.strategy.class_name)
    assert stats["total_trades"] > 0

    assert main(["report", "--format", "json", "--dsn", dsn, "--strategy", "ema-rsi"]) == 0
    document = json.loads(capsys.readouterr().out)
    (section,) = document["strategies"]
    (run,) = section["runs"]
    compared = 0
    for key, stat in FIGURES.items():
        value = stats.get(stat)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            assert key not in run["metrics"], key  # no figure, nothing recorded
            continue
        expected = Decimal(str(value)).quantize(EIGHT)
        assert run["metrics"][key] == format(expected, "f"), key
        compared += 1
    assert compared >= 12

    start = dt.datetime.fromtimestamp(stats["backtest_start_ts"] / 1000, tz=dt.UTC)
    end = dt.datetime.fromtimestamp(stats["backtest_end_ts"] / 1000, tz=dt.UTC)
    assert run["dataWindow"] == {
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
    }
    assert run["codeHash"] == hashlib.sha256((case.strategy.code or "").encode()).hexdigest()
    assert section["versions"][0]["codeHash"] == run["codeHash"]
    assert run["configHash"] == backtest.summary["configHash"]
    assert run["dataHash"] == backtest.summary["dataHash"]
    files = {p.name: p.read_bytes() for p in backtest.output.iterdir() if p.is_file()}
    assert run["artifacts"], "no artifacts reported"
    for artifact in run["artifacts"]:
        content = files[artifact["name"]]
        assert artifact["sha256"] == hashlib.sha256(content).hexdigest(), artifact["name"]
        assert artifact["size"] == str(len(content)), artifact["name"]

    out = tmp_path / "report.md"
    assert main(["report", "--dsn", dsn, "-o", str(out)]) == 0
    text = out.read_text()
    profit = format(Decimal(str(stats["profit_total_abs"])).quantize(EIGHT), "f")
    assert f"| profitTotalAbs | {profit} |" in text
    assert f"| trades | {stats['total_trades']}.00000000 |" in text
