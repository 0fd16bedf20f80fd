"""The records schema as numbered steps. Append new versions; never edit an applied one.

A step is written once for both backends: {time}, {json} and {exact} stand for the column
types that differ. A step that cannot be shared (SQLite's ALTER TABLE is limited) may give its
own SQLite statements.

Migrations must stay backwards compatible (add, do not drop or rename), because during a
rolling update an older operator keeps writing to a schema a newer one has migrated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

Dialect = Literal["postgres", "sqlite"]

COLUMN_TYPES: Final[Mapping[Dialect, Mapping[str, str]]] = {
    "postgres": {"time": "timestamptz", "json": "jsonb", "exact": "numeric(38, 8)"},
    # SQLite has no exact decimal: text keeps every digit. Times are ISO 8601 text in UTC with
    # a fixed width, so comparing the text compares the instants.
    "sqlite": {"time": "TEXT", "json": "TEXT", "exact": "TEXT"},
}

# PostgreSQL: one advisory lock key for "someone is migrating the records schema".
MIGRATION_LOCK_KEY: Final = 0x7472616465626F74  # "tradebot" in ASCII

SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at {time} NOT NULL
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    steps: tuple[str, ...]
    sqlite_steps: tuple[str, ...] | None = None
    # Steps only PostgreSQL runs after the shared ones: indexes SQLite has no kind of (GIN).
    postgres_extra: tuple[str, ...] = ()

    def statements(self, dialect: Dialect) -> list[str]:
        steps = self.sqlite_steps if dialect == "sqlite" and self.sqlite_steps else self.steps
        if dialect == "postgres":
            steps = (*steps, *self.postgres_extra)
        return [step.format_map(COLUMN_TYPES[dialect]) for step in steps]


_KINDS = "'backtest', 'dryrun', 'live'"
# Migration 3 adds hyperopt runs; migrations 1 and 2 keep the list they were applied with.
_KINDS_V3 = "'backtest', 'dryrun', 'live', 'hyperopt'"
_STATUSES = "'queued', 'running', 'succeeded', 'failed'"
_SOURCE_KINDS = "'CircuitBreaker', 'LiveBot'"
_SEVERITIES = "'info', 'warning', 'critical'"
_MODES = "'dryRun', 'testnet', 'live'"

_RUN_COLUMNS = (
    "id, resource_uid, namespace, name, kind, status, strategy_code_hash, config_hash, "
    "data_hash, data_window_start, data_window_end, correlation_id, error, created_at, "
    "started_at, finished_at"
)
# One row per finished hyperopt epoch. Keyed by worker too: independent workers (SQLite
# records) number their epochs each from 1, and a shared study's trial runs on one worker,
# so (run_id, worker, epoch) names an epoch in both modes.
_EPOCHS = """CREATE TABLE epochs (
    run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    worker integer NOT NULL CHECK (worker >= 0),
    epoch integer NOT NULL CHECK (epoch >= 0),
    loss {exact} NOT NULL,
    profit_total {exact},
    profit_total_abs {exact},
    trades integer,
    max_drawdown {exact},
    parameters_hash text NOT NULL,
    PRIMARY KEY (run_id, worker, epoch)
)"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "strategies, runs, metrics, artifacts",
        (
            """CREATE TABLE strategies (
            uid text NOT NULL,
            code_hash text NOT NULL,
            namespace text NOT NULL,
            name text NOT NULL,
            class_name text NOT NULL,
            interface {json} NOT NULL,
            first_seen {time} NOT NULL,
            last_seen {time} NOT NULL,
            PRIMARY KEY (uid, code_hash)
        )""",
            "CREATE INDEX strategies_by_name ON strategies (namespace, name)",
            f"""CREATE TABLE runs (
            id text PRIMARY KEY,
            resource_uid text NOT NULL,
            namespace text NOT NULL,
            name text NOT NULL,
            kind text NOT NULL CHECK (kind IN ({_KINDS})),
            status text NOT NULL CHECK (status IN ({_STATUSES})),
            strategy_code_hash text,
            config_hash text,
            data_hash text,
            data_window_start {{time}},
            data_window_end {{time}},
            correlation_id text,
            error text,
            created_at {{time}} NOT NULL,
            started_at {{time}},
            finished_at {{time}}
        )""",
            "CREATE INDEX runs_by_namespace ON runs (namespace, created_at)",
            "CREATE INDEX runs_by_created ON runs (created_at)",
            "CREATE INDEX runs_by_resource ON runs (resource_uid)",
            """CREATE TABLE metrics (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            key text NOT NULL,
            value {exact} NOT NULL,
            PRIMARY KEY (run_id, key)
        )""",
            """CREATE TABLE artifacts (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name text NOT NULL,
            path text NOT NULL,
            sha256 text NOT NULL,
            size bigint NOT NULL CHECK (size >= 0),
            PRIMARY KEY (run_id, name)
        )""",
        ),
    ),
    Migration(
        2,
        "incidents, bot snapshots",
        (
            # figures: a JSON object of exact decimal strings ("-0.12345678"): JSON numbers would
            # pass through floats in most readers, and a child table would buy nothing, since
            # figures are only ever read with their incident.
            f"""CREATE TABLE incidents (
            id text PRIMARY KEY,
            namespace text NOT NULL,
            source_kind text NOT NULL CHECK (source_kind IN ({_SOURCE_KINDS})),
            source_name text NOT NULL,
            source_uid text NOT NULL,
            breaker text,
            bots {{json}} NOT NULL,
            run_id text,
            severity text NOT NULL CHECK (severity IN ({_SEVERITIES})),
            reason text NOT NULL,
            description text NOT NULL,
            figures {{json}} NOT NULL,
            correlation_id text,
            created_at {{time}} NOT NULL
        )""",
            "CREATE INDEX incidents_by_namespace ON incidents (namespace, created_at)",
            "CREATE INDEX incidents_by_created ON incidents (created_at)",
            "CREATE INDEX incidents_by_breaker ON incidents (breaker, created_at)",
            "CREATE INDEX incidents_by_source ON incidents (source_name, created_at)",
            f"""CREATE TABLE bot_snapshots (
            bot_uid text NOT NULL,
            taken_at {{time}} NOT NULL,
            namespace text NOT NULL,
            name text NOT NULL,
            run_id text,
            code_hash text NOT NULL,
            mode text NOT NULL CHECK (mode IN ({_MODES})),
            profit {{exact}} NOT NULL,
            drawdown {{exact}} NOT NULL,
            equity {{exact}},
            open_trades integer NOT NULL CHECK (open_trades >= 0),
            PRIMARY KEY (bot_uid, taken_at)
        )""",
            "CREATE INDEX bot_snapshots_by_code ON bot_snapshots (bot_uid, code_hash, taken_at)",
        ),
        postgres_extra=(
            # list_incidents(bot=...) asks "is this name in bots": jsonb containment, GIN-indexed.
            # SQLite scans json_each over the rows the other filters left.
            "CREATE INDEX incidents_by_bot ON incidents USING gin (bots jsonb_path_ops)",
        ),
    ),
    Migration(
        3,
        "hyperopt runs, epochs, runs' parameters hash",
        (
            # Column CHECK constraints get PostgreSQL's default name, <table>_<column>_check.
            "ALTER TABLE runs DROP CONSTRAINT runs_kind_check",
            f"ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ({_KINDS_V3}))",
            # The strategy parameter set a run used, beside its code hash.
            "ALTER TABLE runs ADD COLUMN parameters_hash text",
            _EPOCHS,
        ),
        sqlite_steps=(
            # SQLite cannot alter a CHECK constraint: the runs table is rebuilt. Dropping a parent
            # table with foreign keys on would cascade into its children (and the pragma cannot
            # be switched inside the migration's transaction), so the children are set aside
            # first and rebuilt after it, row for row.
            "CREATE TABLE metrics_v2 AS SELECT run_id, key, value FROM metrics",
            "CREATE TABLE artifacts_v2 AS SELECT run_id, name, path, sha256, size FROM artifacts",
            "DROP TABLE metrics",
            "DROP TABLE artifacts",
            "ALTER TABLE runs RENAME TO runs_v2",
            f"""CREATE TABLE runs (
            id text PRIMARY KEY,
            resource_uid text NOT NULL,
            namespace text NOT NULL,
            name text NOT NULL,
            kind text NOT NULL CHECK (kind IN ({_KINDS_V3})),
            status text NOT NULL CHECK (status IN ({_STATUSES})),
            strategy_code_hash text,
            config_hash text,
            data_hash text,
            data_window_start {{time}},
            data_window_end {{time}},
            correlation_id text,
            error text,
            created_at {{time}} NOT NULL,
            started_at {{time}},
            finished_at {{time}},
            parameters_hash text
        )""",
            f"INSERT INTO runs ({_RUN_COLUMNS}) SELECT {_RUN_COLUMNS} FROM runs_v2",  # noqa: S608
            "DROP TABLE runs_v2",
            "CREATE INDEX runs_by_namespace ON runs (namespace, created_at)",
            "CREATE INDEX runs_by_created ON runs (created_at)",
            "CREATE INDEX runs_by_resource ON runs (resource_uid)",
            """CREATE TABLE metrics (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            key text NOT NULL,
            value {exact} NOT NULL,
            PRIMARY KEY (run_id, key)
        )""",
            """CREATE TABLE artifacts (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name text NOT NULL,
            path text NOT NULL,
            sha256 text NOT NULL,
            size bigint NOT NULL CHECK (size >= 0),
            PRIMARY KEY (run_id, name)
        )""",
            "INSERT INTO metrics (run_id, key, value) SELECT run_id, key, value FROM metrics_v2",
            "INSERT INTO artifacts (run_id, name, path, sha256, size) "
            "SELECT run_id, name, path, sha256, size FROM artifacts_v2",
            "DROP TABLE metrics_v2",
            "DROP TABLE artifacts_v2",
            _EPOCHS,
        ),
    ),
    Migration(
        4,
        "DCA slot outcomes",
        (
            # One row per DcaSchedule slot handled, keyed by the schedule's uid and the slot, so
            # a replay (outbox, a retried tick) rewrites its own row. Outcome is free text, not a
            # CHECK list: a newer operator may record an outcome an older schema never knew.
            """CREATE TABLE dca_buys (
            schedule_uid text NOT NULL,
            namespace text NOT NULL,
            schedule text NOT NULL,
            bot text NOT NULL,
            pair text NOT NULL,
            slot {time} NOT NULL,
            outcome text NOT NULL,
            reason text NOT NULL,
            message text NOT NULL,
            entry_tag text,
            stake {exact} NOT NULL,
            cost {exact},
            amount {exact},
            trade_id bigint,
            recorded_at {time} NOT NULL,
            PRIMARY KEY (schedule_uid, slot)
        )""",
            "CREATE INDEX dca_buys_by_schedule ON dca_buys (namespace, schedule, slot)",
        ),
    ),
    Migration(
        5,
        "backtest results in detail: trades, breakdowns, daily profit, equity curve",
        (
            # Parsed once from the result zip, so the trades outlive it. The header row says
            # the detail was recorded (a run without trades has one too); the children are
            # replaced as a whole on every write, so a replay leaves the same rows.
            """CREATE TABLE backtest_details (
            run_id text PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            starting_balance {exact} NOT NULL,
            stake_currency text NOT NULL,
            recorded_at {time} NOT NULL
        )""",
            # is_short as 0/1: one column type for both backends (SQLite has no boolean).
            """CREATE TABLE backtest_trades (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq integer NOT NULL CHECK (seq >= 0),
            pair text NOT NULL,
            open_date {time} NOT NULL,
            close_date {time},
            profit_ratio {exact} NOT NULL,
            profit_abs {exact} NOT NULL,
            exit_reason text NOT NULL,
            is_short integer NOT NULL CHECK (is_short IN (0, 1)),
            stake_amount {exact},
            open_rate {exact},
            close_rate {exact},
            enter_tag text NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
            "CREATE INDEX backtest_trades_by_pair ON backtest_trades (run_id, pair)",
            """CREATE TABLE backtest_breakdowns (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            breakdown text NOT NULL CHECK (breakdown IN ('pair', 'exit_reason')),
            position integer NOT NULL,
            key text NOT NULL,
            trades integer NOT NULL CHECK (trades >= 0),
            profit_total_abs {exact} NOT NULL,
            profit_total {exact},
            profit_mean {exact},
            wins integer NOT NULL,
            draws integer NOT NULL,
            losses integer NOT NULL,
            PRIMARY KEY (run_id, breakdown, key)
        )""",
            # day: ISO date text on both backends (a calendar day has no time zone to keep).
            """CREATE TABLE backtest_daily (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            day text NOT NULL,
            profit_abs {exact} NOT NULL,
            PRIMARY KEY (run_id, day)
        )""",
            """CREATE TABLE backtest_equity (
            run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq integer NOT NULL CHECK (seq >= 0),
            at {time} NOT NULL,
            equity {exact} NOT NULL,
            drawdown {exact} NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        ),
    ),
)
