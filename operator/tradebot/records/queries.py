"""SQL shared by both backends, with `?` placeholders (the PostgreSQL backend turns them into
`%s`). Every write is an upsert, so replaying it changes nothing."""

from __future__ import annotations

from typing import Any, Final

RUN_COLUMNS: Final = (
    "id",
    "resource_uid",
    "namespace",
    "name",
    "kind",
    "status",
    "strategy_code_hash",
    "config_hash",
    "data_hash",
    "data_window_start",
    "data_window_end",
    "correlation_id",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "parameters_hash",
)
RUN_TIME_COLUMNS: Final = frozenset(
    {"data_window_start", "data_window_end", "created_at", "started_at", "finished_at"}
)
# A later write may fill in or change a field but never erase it (COALESCE); id, identity and
# created_at stay as first written. The write applies only if its status ranks at least as
# high as the stored one (models.STATUS_RANK), so a stale replay (running after succeeded,
# failed after succeeded) changes nothing at all.
UPSERT_RUN: Final = """
    INSERT INTO runs (
        id, resource_uid, namespace, name, kind, status, strategy_code_hash, config_hash,
        data_hash, data_window_start, data_window_end, correlation_id, error, created_at,
        started_at, finished_at, parameters_hash
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status,
        strategy_code_hash = COALESCE(excluded.strategy_code_hash, runs.strategy_code_hash),
        config_hash = COALESCE(excluded.config_hash, runs.config_hash),
        data_hash = COALESCE(excluded.data_hash, runs.data_hash),
        data_window_start = COALESCE(excluded.data_window_start, runs.data_window_start),
        data_window_end = COALESCE(excluded.data_window_end, runs.data_window_end),
        correlation_id = COALESCE(excluded.correlation_id, runs.correlation_id),
        error = COALESCE(excluded.error, runs.error),
        started_at = COALESCE(excluded.started_at, runs.started_at),
        finished_at = COALESCE(excluded.finished_at, runs.finished_at),
        parameters_hash = COALESCE(excluded.parameters_hash, runs.parameters_hash)
    WHERE excluded.status = runs.status
       OR (CASE excluded.status WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END)
        > (CASE runs.status WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END)"""
RUN_IDENTITY: Final = "SELECT resource_uid, namespace, name, kind FROM runs WHERE id = ?"
RUN_EXISTS: Final = "SELECT 1 FROM runs WHERE id = ?"
# S608: built from the constant column tuple above, never from input.
SELECT_RUNS: Final = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"  # noqa: S608
RUNS_ORDER: Final = " ORDER BY created_at, id"

UPSERT_METRIC: Final = """
    INSERT INTO metrics (run_id, key, value) VALUES (?, ?, ?)
    ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"""
SELECT_METRICS: Final = "SELECT key, value FROM metrics WHERE run_id = ? ORDER BY key"

UPSERT_ARTIFACT: Final = """
    INSERT INTO artifacts (run_id, name, path, sha256, size) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, name) DO UPDATE
    SET path = excluded.path, sha256 = excluded.sha256, size = excluded.size"""
SELECT_ARTIFACTS: Final = (
    "SELECT name, path, sha256, size FROM artifacts WHERE run_id = ? ORDER BY name"
)

STRATEGY_COLUMNS: Final = (
    "namespace",
    "name",
    "uid",
    "class_name",
    "code_hash",
    "interface",
    "first_seen",
    "last_seen",
)
# The newest sighting wins; a replayed older one cannot move last_seen back, but may move
# first_seen earlier (it happened first; it was just written late).
UPSERT_STRATEGY: Final = """
    INSERT INTO strategies (
        namespace, name, uid, class_name, code_hash, interface, first_seen, last_seen
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (uid, code_hash) DO UPDATE
    SET namespace = excluded.namespace, name = excluded.name,
        class_name = excluded.class_name, interface = excluded.interface,
        last_seen = excluded.last_seen
    WHERE excluded.last_seen >= strategies.last_seen"""
EARLIER_FIRST_SEEN: Final = """
    UPDATE strategies SET first_seen = ? WHERE uid = ? AND code_hash = ? AND first_seen > ?"""
SELECT_STRATEGY: Final = (
    f"SELECT {', '.join(STRATEGY_COLUMNS)} FROM strategies WHERE uid = ? AND code_hash = ?"  # noqa: S608
)

APPLIED_MIGRATIONS: Final = "SELECT version FROM schema_migrations ORDER BY version"
MIGRATION_APPLIED: Final = "SELECT 1 FROM schema_migrations WHERE version = ?"
RECORD_MIGRATION: Final = (
    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)"
)

INCIDENT_COLUMNS: Final = (
    "id",
    "namespace",
    "source_kind",
    "source_name",
    "source_uid",
    "breaker",
    "bots",
    "run_id",
    "severity",
    "reason",
    "description",
    "figures",
    "correlation_id",
    "created_at",
)
# The first write wins: an incident is a fact about one event, so a replay (or a second
# replica noticing the same trip) must not rewrite it. RETURNING tells the caller whether it
# was this call that inserted it.
INSERT_INCIDENT: Final = f"""
    INSERT INTO incidents ({", ".join(INCIDENT_COLUMNS)})
    VALUES ({", ".join("?" for _ in INCIDENT_COLUMNS)})
    ON CONFLICT (id) DO NOTHING
    RETURNING id"""  # noqa: S608
SELECT_INCIDENTS: Final = f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM incidents"  # noqa: S608
INCIDENTS_ORDER: Final = " ORDER BY created_at, id"

SNAPSHOT_COLUMNS: Final = (
    "bot_uid",
    "namespace",
    "name",
    "run_id",
    "code_hash",
    "mode",
    "taken_at",
    "profit",
    "drawdown",
    "open_trades",
    "equity",
)
SNAPSHOT_EXACT_COLUMNS: Final = frozenset({"profit", "drawdown", "equity"})
# Keyed by (bot_uid, taken_at): the same moment written again replaces itself.
UPSERT_SNAPSHOT: Final = f"""
    INSERT INTO bot_snapshots ({", ".join(SNAPSHOT_COLUMNS)})
    VALUES ({", ".join("?" for _ in SNAPSHOT_COLUMNS)})
    ON CONFLICT (bot_uid, taken_at) DO UPDATE SET
        namespace = excluded.namespace, name = excluded.name, run_id = excluded.run_id,
        code_hash = excluded.code_hash, mode = excluded.mode, profit = excluded.profit,
        drawdown = excluded.drawdown, open_trades = excluded.open_trades,
        equity = excluded.equity"""  # noqa: S608
SELECT_SNAPSHOTS: Final = f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM bot_snapshots"  # noqa: S608
SNAPSHOTS_ORDER: Final = " ORDER BY taken_at"


EPOCH_COLUMNS: Final = (
    "worker",
    "epoch",
    "loss",
    "profit_total",
    "profit_total_abs",
    "trades",
    "max_drawdown",
    "parameters_hash",
)
EPOCH_EXACT_COLUMNS: Final = frozenset({"loss", "profit_total", "profit_total_abs", "max_drawdown"})
# An epoch is a fact once finished: a replay writes the same values again.
UPSERT_EPOCH: Final = f"""
    INSERT INTO epochs (run_id, {", ".join(EPOCH_COLUMNS)})
    VALUES (?, {", ".join("?" for _ in EPOCH_COLUMNS)})
    ON CONFLICT (run_id, worker, epoch) DO UPDATE SET
        loss = excluded.loss, profit_total = excluded.profit_total,
        profit_total_abs = excluded.profit_total_abs, trades = excluded.trades,
        max_drawdown = excluded.max_drawdown, parameters_hash = excluded.parameters_hash"""  # noqa: S608
SELECT_EPOCHS: Final = (
    f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? "  # noqa: S608
    "ORDER BY epoch, worker"
)


DCA_BUY_COLUMNS: Final = (
    "schedule_uid",
    "namespace",
    "schedule",
    "bot",
    "pair",
    "slot",
    "outcome",
    "reason",
    "message",
    "entry_tag",
    "stake",
    "cost",
    "amount",
    "trade_id",
    "recorded_at",
)
DCA_BUY_EXACT_COLUMNS: Final = frozenset({"stake", "cost", "amount"})
DCA_BUY_TIME_COLUMNS: Final = frozenset({"slot", "recorded_at"})
DCA_BUY_KEY: Final = frozenset({"schedule_uid", "slot"})
# Keyed by (schedule_uid, slot): the slot written again replaces itself.
UPSERT_DCA_BUY: Final = f"""
    INSERT INTO dca_buys ({", ".join(DCA_BUY_COLUMNS)})
    VALUES ({", ".join("?" for _ in DCA_BUY_COLUMNS)})
    ON CONFLICT (schedule_uid, slot) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in DCA_BUY_COLUMNS if c not in DCA_BUY_KEY)}"""  # noqa: S608
SELECT_DCA_BUYS: Final = f"SELECT {', '.join(DCA_BUY_COLUMNS)} FROM dca_buys"  # noqa: S608
DCA_BUYS_ORDER: Final = " ORDER BY slot, schedule_uid"


def runs_where(
    *, namespace: str | None = None, kind: str | None = None, since: object | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause of list_runs' filters (constant text with placeholders, never input)
    and its parameters; `since` already in the store's time format."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("namespace = ?", namespace),
        ("kind = ?", kind),
        ("created_at >= ?", since),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


# A backtest's detail: replaced as a whole (DELETE then INSERT in one transaction).
DETAIL_TABLES: Final = (
    "backtest_trades",
    "backtest_breakdowns",
    "backtest_daily",
    "backtest_equity",
    "backtest_details",
)
TRADE_COLUMNS: Final = (
    "seq",
    "pair",
    "open_date",
    "close_date",
    "profit_ratio",
    "profit_abs",
    "exit_reason",
    "is_short",
    "stake_amount",
    "open_rate",
    "close_rate",
    "enter_tag",
)
TRADE_EXACT_COLUMNS: Final = frozenset(
    {"profit_ratio", "profit_abs", "stake_amount", "open_rate", "close_rate"}
)
TRADE_TIME_COLUMNS: Final = frozenset({"open_date", "close_date"})
BREAKDOWN_COLUMNS: Final = (
    "key",
    "trades",
    "profit_total_abs",
    "profit_total",
    "profit_mean",
    "wins",
    "draws",
    "losses",
)
BREAKDOWN_EXACT_COLUMNS: Final = frozenset({"profit_total_abs", "profit_total", "profit_mean"})
INSERT_DETAIL: Final = """
    INSERT INTO backtest_details (run_id, starting_balance, stake_currency, recorded_at)
    VALUES (?, ?, ?, ?)"""
INSERT_TRADE: Final = f"""
    INSERT INTO backtest_trades (run_id, {", ".join(TRADE_COLUMNS)})
    VALUES (?, {", ".join("?" for _ in TRADE_COLUMNS)})"""  # noqa: S608
INSERT_BREAKDOWN: Final = f"""
    INSERT INTO backtest_breakdowns (run_id, breakdown, position, {", ".join(BREAKDOWN_COLUMNS)})
    VALUES (?, ?, ?, {", ".join("?" for _ in BREAKDOWN_COLUMNS)})"""  # noqa: S608
INSERT_DAILY: Final = "INSERT INTO backtest_daily (run_id, day, profit_abs) VALUES (?, ?, ?)"
INSERT_EQUITY: Final = (
    "INSERT INTO backtest_equity (run_id, seq, at, equity, drawdown) VALUES (?, ?, ?, ?, ?)"
)
SELECT_DETAIL: Final = (
    "SELECT starting_balance, stake_currency FROM backtest_details WHERE run_id = ?"
)
SELECT_TRADES: Final = (
    f"SELECT {', '.join(TRADE_COLUMNS)} FROM backtest_trades WHERE run_id = ? "  # noqa: S608
    "ORDER BY seq"
)
SELECT_BREAKDOWNS: Final = (
    f"SELECT breakdown, {', '.join(BREAKDOWN_COLUMNS)} FROM backtest_breakdowns "  # noqa: S608
    "WHERE run_id = ? ORDER BY breakdown, position"
)
SELECT_DAILY: Final = "SELECT day, profit_abs FROM backtest_daily WHERE run_id = ? ORDER BY day"
SELECT_EQUITY: Final = (
    "SELECT at, equity, drawdown FROM backtest_equity WHERE run_id = ? ORDER BY seq"
)
