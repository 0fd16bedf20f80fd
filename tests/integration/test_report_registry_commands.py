"""`tradebot report` and `tradebot registry` against real databases (SQLite and PostgreSQL)
holding the same history."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.records_data import CODE_A1, CODE_A2, CODE_B, CODE_UNREGISTERED, populate

from tradebot.cli import main
from tradebot.records import open_store

TRADEBOT = str(Path(sys.executable).parent / "tradebot")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def populated(dsn: str) -> str:
    with open_store(dsn) as store:
        store.migrate()
        populate(store)
    return dsn


def report_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["report", "--format", "json", *argv]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_json_report_of_every_run(populated: str, capsys: pytest.CaptureFixture[str]):
    document = report_json(capsys, "--dsn", populated)
    strategies = document["strategies"]
    assert isinstance(strategies, list)
    assert [(s["namespace"], s["name"]) for s in strategies] == [
        ("team-a", "ema-rsi"),
        ("team-b", "breakout"),
        (None, None),
    ]
    ema, breakout, unregistered = strategies
    assert [v["codeHash"] for v in ema["versions"]] == [CODE_A1, CODE_A2]
    assert ema["versions"][0]["firstSeen"] == "2026-03-01T12:00:00.123456Z"
    assert ema["versions"][0]["lastSeen"] == "2026-03-04T12:00:00.123456Z"
    first = ema["runs"][0]
    assert first["id"] == "bt-1"
    assert first["codeHash"] == CODE_A1
    assert first["metrics"] == {
        "finalBalance": "123456789012345678901234567890.12345678",
        "maxDrawdown": "0.00000000",
        "profitTotal": "0.01234567",
        "profitTotalAbs": "-12.30000001",
        "tiny": "-0.00000001",
        "trades": "42.00000000",
    }
    assert first["dataWindow"] == {
        "start": "2026-01-30T12:00:00.123456Z",
        "end": "2026-02-28T12:00:00.123456Z",
    }
    assert (first["configHash"], first["dataHash"]) == ("c" * 64, "d" * 64)
    assert [(a["name"], a["sha256"], a["size"]) for a in first["artifacts"]] == [
        ("backtest-result.zip", "e" * 64, "9876543210"),
        ("config.json", "0" * 64, "0"),
    ]
    assert ema["runs"][1]["status"] == "failed"
    assert ema["runs"][1]["error"] == "freqtrade exit 2 | no data"
    dry = breakout["runs"][0]
    assert dry["incidents"][0]["id"] == "inc-trip"
    assert dry["incidents"][0]["figures"] == {"drawdown": "0.12500000", "limit": "0.10000000"}
    assert dry["incidents"][0]["bots"] == ["bot-b", "bot-c"]
    assert [r["codeHash"] for r in unregistered["runs"]] == [CODE_UNREGISTERED]
    assert [i["id"] for i in document["incidents"]] == ["inc-stale"]
    assert breakout["versions"][0]["codeHash"] == CODE_B


def test_report_filters(populated: str, capsys: pytest.CaptureFixture[str]):
    by_strategy = report_json(capsys, "--dsn", populated, "--strategy", "ema-rsi")
    assert [[r["id"] for r in s["runs"]] for s in by_strategy["strategies"]] == [["bt-1", "bt-2"]]
    by_namespace = report_json(capsys, "--dsn", populated, "--namespace", "team-b")
    assert [s["name"] for s in by_namespace["strategies"]] == ["breakout"]
    # Metrics are read in bulk under the same filters as the runs.
    assert by_namespace["strategies"][0]["runs"][0]["metrics"] == {"profitTotal": "-0.50000000"}
    since_day_1 = report_json(capsys, "--dsn", populated, "--since", "2026-03-02T12:00:00Z")
    bt1 = since_day_1["strategies"][0]["runs"][0]
    assert (bt1["id"], bt1["metrics"]["tiny"]) == ("bt-1", "-0.00000001")
    assert [a["name"] for a in bt1["artifacts"]] == ["backtest-result.zip", "config.json"]
    # Runs created from 2026-03-06 on: bt-2 (day 6) and bt-x (day 7).
    recent = report_json(capsys, "--dsn", populated, "--since", "2026-03-06T12:00:00Z")
    ids = [r["id"] for s in recent["strategies"] for r in s["runs"]]
    assert ids == ["bt-2", "bt-x"]
    assert recent["filters"] == {
        "since": "2026-03-06T12:00:00Z",
        "namespace": None,
        "strategy": None,
    }
    # Nothing is recorded after 2099.
    assert report_json(capsys, "--dsn", populated, "--since", "2099-01-01")["incidents"] == []


def test_markdown_report_to_a_file(
    populated: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "report.md"
    assert main(["report", "--dsn", populated, "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Tradebot report\n")
    assert "## Strategy team-a/ema-rsi" in text
    assert "| profitTotalAbs | -12.30000001 |" in text
    assert "| backtest-result.zip | `" + "e" * 64 + "` | 9876543210 |" in text
    assert "drawdown 12.5% \\| over 10%" in text
    assert f"- config hash: `{'c' * 64}`" in text


def test_report_errors_name_the_problem(
    populated: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["report", "--dsn", populated, "--strategy", "nope"]) == 1
    assert (
        "no strategy named 'nope' is registered (registered: breakout, ema-rsi)"
        in capsys.readouterr().err
    )
    assert main(["report", "--dsn", populated, "--since", "last week"]) == 2
    assert "--since: expected a date" in capsys.readouterr().err
    assert main(["report", "--dsn", populated, "-o", str(tmp_path / "no" / "r.md")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_of_an_unmigrated_database_says_to_migrate(
    dsn: str, capsys: pytest.CaptureFixture[str]
):
    with open_store(dsn):
        pass
    assert main(["report", "--dsn", dsn]) == 1
    assert "has no records schema" in capsys.readouterr().err
    assert main(["registry", "--dsn", dsn]) == 1
    assert "`tradebot db migrate`" in capsys.readouterr().err


def test_registry_lists_versions_as_table_and_json(
    populated: str, capsys: pytest.CaptureFixture[str]
):
    assert main(["registry", "--dsn", populated]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NAMESPACE  NAME")
    assert [line.split()[:4] for line in lines[1:]] == [
        ["team-a", "ema-rsi", "EmaRsi", CODE_A1[:12]],
        ["team-a", "ema-rsi", "EmaRsi", CODE_A2[:12]],
        ["team-b", "breakout", "Breakout", CODE_B[:12]],
    ]
    assert "0:0.04000000 30:0.02000000" in lines[1]
    assert " 15m " in lines[2]
    assert (
        main(["registry", "list", "--dsn", populated, "--format", "json", "--namespace", "team-b"])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert [
        (d["name"], d["codeHash"], d["summary"]["canShort"], d["summary"]["freqai"])
        for d in document
    ] == [("breakout", CODE_B, "yes", "yes")]
    assert document[0]["firstSeen"] == "2026-03-02T12:00:00.123456Z"


def test_registry_introspects_the_example_strategy_in_a_subprocess(tmp_path: Path):
    import yaml

    spec = yaml.safe_load((ROOT / "examples" / "strategy.yaml").read_text())["spec"]
    source = tmp_path / "strategy.py"
    source.write_text(spec["code"])
    proc = subprocess.run(
        [TRADEBOT, "registry", "introspect", str(source), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["className"] == spec["className"]
    import hashlib

    assert document["codeHash"] == hashlib.sha256(spec["code"].encode()).hexdigest()
    assert document["parameters"]["buy_rsi_max"]["low"] == "50"
    broken = tmp_path / "broken.py"
    broken.write_text("class X(IStrategy):\n    pass\n")
    proc = subprocess.run(
        [TRADEBOT, "registry", "introspect", str(broken)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "lacks required method(s)" in proc.stderr


@pytest.mark.parametrize("command", [["report"], ["registry"], ["db", "status"]])
def test_reading_commands_never_create_a_missing_sqlite_file(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "elsewhere" / "records.db"
    (tmp_path / "elsewhere").mkdir()
    assert main([*command, "--dsn", f"sqlite://{path}"]) == 1
    err = capsys.readouterr().err
    assert f"{path} does not exist" in err
    assert "tradebot db migrate` creates it" in err
    assert not path.exists()


def test_report_shows_hyperopt_runs_with_their_best_epoch_and_count(
    populated: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tradebot.freqtrade.hyperopt_summary import EpochRecord
    from tradebot.records import RunRecord

    with open_store(populated) as store:
        store.record_run(
            RunRecord(
                id="ho-1",
                resource_uid="uid-ho-1",
                namespace="team-a",
                name="search",
                kind="hyperopt",
                status="succeeded",
                strategy_code_hash=CODE_A2,
                created_at=dt.datetime(2026, 3, 5, tzinfo=dt.UTC),
            )
        )
        store.record_epochs(
            "ho-1",
            [
                EpochRecord(
                    epoch=e,
                    worker=e % 2,
                    loss=loss,
                    profit_total=profit,
                    trades=t,
                    parameters_hash=f"{e}" * 64,
                )
                for e, loss, profit, t in [
                    (1, "-0.5", "0.01", 3),
                    (2, "-1.23456789", "0.0421", 9),
                    (3, "-1.23456789", "0.05", 11),
                    (4, "2", None, None),
                ]
            ],
        )
    document = report_json(capsys, "--dsn", populated, "--strategy", "ema-rsi")
    runs = {r["id"]: r for r in document["strategies"][0]["runs"]}
    assert runs["ho-1"]["kind"] == "hyperopt"
    # The lowest loss wins; of equal losses the earlier epoch.
    assert runs["ho-1"]["epochs"] == {
        "count": "4",
        "best": {
            "epoch": "2",
            "worker": "0",
            "loss": "-1.23456789",
            "profitTotal": "0.04210000",
            "trades": "9",
            "parametersHash": "2" * 64,
        },
    }
    assert "epochs" not in runs["bt-1"]  # a backtest has none
    assert main(["report", "--dsn", populated, "--strategy", "ema-rsi"]) == 0
    markdown = capsys.readouterr().out
    assert "### hyperopt team-a/search: succeeded" in markdown
    assert (
        "- epochs: 4; best: epoch 2 (worker 0), loss -1.23456789, profit 0.04210000, trades 9"
    ) in markdown
