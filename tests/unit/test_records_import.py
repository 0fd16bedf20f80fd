"""`tradebot records import`: a real Freqtrade result zip into a real (SQLite) records store,
idempotent by sha256, damaged files named and skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

from tradebot.cli import main
from tradebot.commands.records_import import import_results
from tradebot.records import open_store

FIXTURE = Path(__file__).parent / "fixtures" / "backtest-result-ema-rsi-2d.zip"


def _results_dir(tmp_path: Path) -> Path:
    results = tmp_path / "backtest_results"
    results.mkdir()
    shutil.copy(FIXTURE, results / FIXTURE.name)
    (results / "backtest-result-broken.zip").write_bytes(b"not a zip")
    return results


def test_import_indexes_runs_metrics_artifacts_once(tmp_path: Path) -> None:
    results = _results_dir(tmp_path)
    with open_store(f"sqlite://{tmp_path / 'records.db'}") as store:
        store.migrate()
        report = import_results(store, [results])
        assert len(report.imported) == 1
        assert [p.name for p, _ in report.damaged] == ["backtest-result-broken.zip"]
        run = store.get_run(report.imported[0])
        assert run is not None
        assert run.kind == "backtest"
        assert run.status == "succeeded"
        assert run.strategy_code_hash is not None
        assert run.config_hash is not None
        assert run.data_window_start is not None
        assert run.data_window_end is not None
        metrics = store.get_metrics(run.id)
        assert "profitTotal" in metrics
        assert "trades" in metrics
        artifacts = store.get_artifacts(run.id)
        assert [a.name for a in artifacts] == [FIXTURE.name]
        assert Path(artifacts[0].path).is_file()
        # The same file again, even renamed elsewhere: nothing new.
        copy = tmp_path / "elsewhere" / "renamed.zip"
        copy.parent.mkdir()
        shutil.copy(FIXTURE, copy)
        again = import_results(store, [results, copy])
        assert again.imported == []
        assert again.already == report.imported * 2  # the copy in place and the renamed one
        assert len(store.list_runs()) == 1


def test_cli_reports_damaged_files_by_name(tmp_path: Path, capsys: object) -> None:
    results = _results_dir(tmp_path)
    code = main(["records", "import", "--dsn", f"sqlite://{tmp_path / 'r.db'}", str(results)])
    out = capsys.readouterr()  # type: ignore[attr-defined]
    assert code == 2
    assert "backtest-result-broken.zip" in out.err
    assert "imported 1 run(s)" in out.out
