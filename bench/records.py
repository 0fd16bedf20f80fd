"""Records benchmark: metric rows and incidents written through the operator's path (the
RecordStore methods the controllers call, one transaction per call) against a raw psycopg COPY
of the same rows into the same tables, on a real PostgreSQL this script starts; then the time
to build a report of a year of runs against one raw SQL query fetching the same rows.

Every figure is printed with its ratio against the baseline measured in the same run.

    .venv/bin/python bench/records.py                      # 100k metric rows, 10k incidents
    .venv/bin/python bench/records.py --runs 500 --incidents 1000 --year-runs-per-day 4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
from tests.support.postgres import LocalPostgres, temporary_postgres

from tradebot.records import IncidentRecord, RunRecord, open_store
from tradebot.reports.collect import collect
from tradebot.reports.model import Filters
from tradebot.reports.render import render_json, render_markdown

NOW = dt.datetime(2026, 6, 30, tzinfo=dt.UTC)
RUN_COLUMNS = (
    "id",
    "resource_uid",
    "namespace",
    "name",
    "kind",
    "status",
    "strategy_code_hash",
    "created_at",
)
INCIDENT_COLUMNS = (
    "id",
    "namespace",
    "source_kind",
    "source_name",
    "source_uid",
    "breaker",
    "bots",
    "severity",
    "reason",
    "description",
    "figures",
    "created_at",
)


def runs(count: int, start: dt.datetime, step: dt.timedelta) -> Iterator[RunRecord]:
    for i in range(count):
        yield RunRecord(
            id=f"run-{i:07d}",
            resource_uid=f"uid-{i}",
            namespace=f"ns-{i % 4}",
            name=f"bt-{i}",
            kind="backtest",
            status="succeeded",
            strategy_code_hash=f"{i % 8:064x}",
            created_at=start + i * step,
        )


def metrics(i: int, per_run: int) -> dict[str, Decimal]:
    # Distinct, 8-place figures, some negative: what a backtest's results look like.
    return {
        f"metric{k:02d}": Decimal(i * 100 + k).scaleb(-8) * (-1 if k % 3 else 1)
        for k in range(per_run)
    }


def incidents(count: int) -> Iterator[IncidentRecord]:
    for i in range(count):
        yield IncidentRecord(
            id=f"inc-{i:07d}",
            namespace=f"ns-{i % 4}",
            source_kind="CircuitBreaker",
            source_name="guard",
            source_uid="uid-guard",
            breaker="guard",
            bots=(f"bot-{i % 10}",),
            severity="critical",
            reason="drawdown",
            description=f"drawdown over the limit ({i})",
            figures={"drawdown": Decimal("0.12500000"), "limit": Decimal("0.10000000")},
            created_at=NOW + dt.timedelta(seconds=i),
        )


def fresh_database(server: LocalPostgres, name: str) -> str:
    """A new database with the records schema."""
    dsn = server.create_database(name)
    with open_store(dsn) as store:
        store.migrate()
    return dsn


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def copy_rows(
    dsn: str,
    table: str,
    columns: tuple[str, ...],
    rows: Iterator[tuple[Any, ...]],
) -> None:
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def run_rows(count: int, start: dt.datetime, step: dt.timedelta) -> Iterator[tuple[Any, ...]]:
    for r in runs(count, start, step):
        yield (
            r.id,
            r.resource_uid,
            r.namespace,
            r.name,
            r.kind,
            r.status,
            r.strategy_code_hash,
            r.created_at,
        )


def metric_rows(count: int, per_run: int) -> Iterator[tuple[Any, ...]]:
    for i in range(count):
        for key, value in metrics(i, per_run).items():
            yield (f"run-{i:07d}", key, value)


def incident_rows(count: int) -> Iterator[tuple[Any, ...]]:
    for inc in incidents(count):
        yield (
            inc.id,
            inc.namespace,
            inc.source_kind,
            inc.source_name,
            inc.source_uid,
            inc.breaker,
            json.dumps(list(inc.bots)),
            inc.severity,
            inc.reason,
            inc.description,
            json.dumps({k: format(v, "f") for k, v in inc.figures.items()}),
            inc.created_at,
        )


def row(label: str, seconds: float, rows: int, baseline: float, unit: str = "rows") -> str:
    return (
        f"  {label:<34} {seconds:8.2f} s  {rows / seconds:>10,.0f} {unit}/s  "
        f"{seconds / baseline:6.1f}x the baseline's time"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs written (default 5000)")
    parser.add_argument(
        "--metrics-per-run",
        type=int,
        default=20,
        help="metrics per run (default 20: 100k metric rows)",
    )
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument(
        "--year-runs-per-day",
        type=int,
        default=24,
        help="runs per day in the year of runs queried (default 24)",
    )
    args = parser.parse_args()
    metric_count = args.runs * args.metrics_per_run
    start = NOW - dt.timedelta(days=30)
    step = dt.timedelta(seconds=1)

    with temporary_postgres("tradebot-bench-pg-") as server:
        print(
            f"PostgreSQL on 127.0.0.1:{server.port}; {args.runs} runs x "
            f"{args.metrics_per_run} metrics = {metric_count} metric rows, "
            f"{args.incidents} incidents"
        )
        operator_dsn = fresh_database(server, "operator_path")
        baseline_dsn = fresh_database(server, "copy_baseline")

        def operator_metrics() -> None:
            with open_store(operator_dsn) as store:
                for i, run in enumerate(runs(args.runs, start, step)):
                    store.record_run(run)
                    store.record_metrics(run.id, metrics(i, args.metrics_per_run))

        def operator_incidents() -> None:
            with open_store(operator_dsn) as store:
                for incident in incidents(args.incidents):
                    store.record_incident(incident)

        def copy_metrics() -> None:
            copy_rows(baseline_dsn, "runs", RUN_COLUMNS, run_rows(args.runs, start, step))
            copy_rows(
                baseline_dsn,
                "metrics",
                ("run_id", "key", "value"),
                metric_rows(args.runs, args.metrics_per_run),
            )

        def copy_incidents() -> None:
            copy_rows(baseline_dsn, "incidents", INCIDENT_COLUMNS, incident_rows(args.incidents))

        base_metrics = timed(copy_metrics)
        base_incidents = timed(copy_incidents)
        op_metrics = timed(operator_metrics)
        op_incidents = timed(operator_incidents)
        with open_store(operator_dsn) as store, open_store(baseline_dsn) as base:
            # Both sides hold the same rows, or the comparison means nothing.
            for run_id in ("run-0000000", f"run-{args.runs - 1:07d}"):
                assert store.get_metrics(run_id) == base.get_metrics(run_id), run_id
            assert store.list_incidents()[-1] == base.list_incidents()[-1]

        print("writes (runs with their metrics; incidents one by one):")
        print(row("COPY baseline: runs + metrics", base_metrics, metric_count, base_metrics))
        print(row("RecordStore: record_run+metrics", op_metrics, metric_count, base_metrics))
        print(row("COPY baseline: incidents", base_incidents, args.incidents, base_incidents))
        print(row("RecordStore: record_incident", op_incidents, args.incidents, base_incidents))

        year_runs = 365 * args.year_runs_per_day
        year_dsn = fresh_database(server, "year")
        year_start = NOW - dt.timedelta(days=365)
        year_step = dt.timedelta(days=1) / args.year_runs_per_day
        copy_rows(year_dsn, "runs", RUN_COLUMNS, run_rows(year_runs, year_start, year_step))
        copy_rows(
            year_dsn,
            "metrics",
            ("run_id", "key", "value"),
            metric_rows(year_runs, args.metrics_per_run),
        )
        with psycopg.connect(year_dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
        since = year_start

        def raw_query() -> None:
            with psycopg.connect(year_dsn) as conn:
                rows = conn.execute(
                    "SELECT r.*, m.key, m.value FROM runs r LEFT JOIN metrics m "
                    "ON m.run_id = r.id WHERE r.created_at >= %s ORDER BY r.created_at, r.id, "
                    "m.key",
                    (since,),
                ).fetchall()
                assert len(rows) == year_runs * args.metrics_per_run

        texts: dict[str, str] = {}

        def report() -> None:
            with open_store(year_dsn) as store:
                built = collect(store, year_dsn, Filters(since=since), NOW)
            assert sum(len(s.runs) for s in built.strategies) == year_runs
            texts["json"] = render_json(built)
            texts["markdown"] = render_markdown(built)

        base_query = timed(raw_query)
        report_time = timed(report)
        print(f"a year of runs ({year_runs} runs, {year_runs * args.metrics_per_run} metric rows):")
        print(row("raw SQL join (baseline)", base_query, year_runs, base_query, "runs"))
        print(row("tradebot report (JSON+Markdown)", report_time, year_runs, base_query, "runs"))
        print(
            f"  report sizes: JSON {len(texts['json']) / 1e6:.1f} MB, Markdown "
            f"{len(texts['markdown']) / 1e6:.1f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
