"""A small but complete records history (every table, awkward figures) and a way to read all
of it back through the public store API, to compare two databases record by record."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from tradebot.records import (
    ArtifactRecord,
    BotSnapshot,
    IncidentRecord,
    RecordStore,
    RunRecord,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
CODE_A1 = "a1" * 32
CODE_A2 = "a2" * 32
CODE_B = "b0" * 32
CODE_UNREGISTERED = "ff" * 32


def at(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


INTERFACE_A = {
    "className": "EmaRsi",
    "timeframe": "5m",
    "canShort": False,
    "stoploss": "-0.10000000",
    "minimalRoi": {"0": "0.04000000", "30": "0.02000000"},
    "usesFreqai": False,
    "methods": ["populate_indicators"],
}
INTERFACE_B = {
    "className": "Breakout",
    "timeframe": "1h",
    "canShort": True,
    "stoploss": "-0.05000000",
    "usesFreqai": True,
}


def populate(store: RecordStore) -> None:
    """Two strategies (one with two code versions), four runs (one of unregistered code),
    metrics with extreme figures, artifacts, incidents (one tied to a run) and snapshots."""
    store.register_strategy(
        "team-a", "ema-rsi", "uid-s-a", "EmaRsi", CODE_A1, INTERFACE_A, seen_at=at(0)
    )
    store.register_strategy(
        "team-a", "ema-rsi", "uid-s-a", "EmaRsi", CODE_A1, INTERFACE_A, seen_at=at(3)
    )
    store.register_strategy(
        "team-a",
        "ema-rsi",
        "uid-s-a",
        "EmaRsi",
        CODE_A2,
        {**INTERFACE_A, "timeframe": "15m"},
        seen_at=at(5),
    )
    store.register_strategy(
        "team-b", "breakout", "uid-s-b", "Breakout", CODE_B, INTERFACE_B, seen_at=at(1)
    )
    runs = [
        RunRecord(
            id="bt-1",
            resource_uid="uid-bt-1",
            namespace="team-a",
            name="first",
            kind="backtest",
            status="succeeded",
            strategy_code_hash=CODE_A1,
            config_hash="c" * 64,
            data_hash="d" * 64,
            data_window_start=at(-30),
            data_window_end=at(-1),
            correlation_id="bt-1",
            created_at=at(1),
            started_at=at(1.01),
            finished_at=at(1.02),
        ),
        RunRecord(
            id="bt-2",
            resource_uid="uid-bt-2",
            namespace="team-a",
            name="second",
            kind="backtest",
            status="failed",
            strategy_code_hash=CODE_A2,
            error="freqtrade exit 2 | no data",
            created_at=at(6),
            started_at=at(6),
        ),
        RunRecord(
            id="dry-1",
            resource_uid="uid-bot-b",
            namespace="team-b",
            name="bot-b",
            kind="dryrun",
            status="running",
            strategy_code_hash=CODE_B,
            created_at=at(2),
            started_at=at(2),
        ),
        RunRecord(
            id="bt-x",
            resource_uid="uid-bt-x",
            namespace="team-a",
            name="orphan",
            kind="backtest",
            status="queued",
            strategy_code_hash=CODE_UNREGISTERED,
            created_at=at(7),
        ),
    ]
    for run in runs:
        store.record_run(run)
    store.record_metrics(
        "bt-1",
        {
            "profitTotal": Decimal("0.01234567"),
            "profitTotalAbs": Decimal("-12.30000001"),
            "maxDrawdown": Decimal("0"),
            "trades": Decimal(42),
            "finalBalance": Decimal("123456789012345678901234567890.12345678"),
            "tiny": Decimal("-0.00000001"),
        },
    )
    store.record_metrics("dry-1", {"profitTotal": Decimal("-0.5")})
    store.record_artifacts(
        "bt-1",
        [
            ArtifactRecord(
                name="config.json", path="runs/bt-1/config.json", sha256="0" * 64, size=0
            ),
            ArtifactRecord(
                name="backtest-result.zip",
                path="runs/bt-1/backtest-result.zip",
                sha256="e" * 64,
                size=9_876_543_210,
            ),
        ],
    )
    store.record_incident(
        IncidentRecord(
            id="inc-trip",
            namespace="team-b",
            source_kind="CircuitBreaker",
            source_name="guard",
            source_uid="uid-guard",
            breaker="guard",
            bots=("bot-b", "bot-c"),
            run_id="dry-1",
            severity="critical",
            reason="drawdown",
            description="drawdown 12.5% | over 10%",
            figures={"drawdown": Decimal("0.125"), "limit": Decimal("0.1")},
            correlation_id="corr-1",
            created_at=at(2.5),
        )
    )
    store.record_incident(
        IncidentRecord(
            id="inc-stale",
            namespace="team-b",
            source_kind="LiveBot",
            source_name="bot-c",
            source_uid="uid-bot-c",
            bots=("bot-c",),
            severity="warning",
            reason="staleHeartbeat",
            description="no heartbeat for 300 s",
            created_at=at(4),
        )
    )
    for minutes in (0, 5):
        store.record_snapshot(
            BotSnapshot(
                bot_uid="uid-bot-b",
                namespace="team-b",
                name="bot-b",
                run_id="dry-1",
                code_hash=CODE_B,
                mode="dryRun",
                taken_at=at(2) + dt.timedelta(minutes=minutes),
                profit=Decimal("-1.23456789"),
                drawdown=Decimal("0.02"),
                open_trades=minutes,
                equity=Decimal("998.76543211") if minutes else None,
            )
        )


STRATEGY_VERSIONS = (("uid-s-a", CODE_A1), ("uid-s-a", CODE_A2), ("uid-s-b", CODE_B))
BOTS = ("uid-bot-b",)


def everything(store: RecordStore) -> dict[str, Any]:
    """Every record of the store, through its public API."""
    runs = store.list_runs()
    return {
        "migrations": store.applied_migrations(),
        "strategies": [store.get_strategy(uid, code) for uid, code in STRATEGY_VERSIONS],
        "runs": runs,
        "metrics": {run.id: store.get_metrics(run.id) for run in runs},
        "artifacts": {run.id: store.get_artifacts(run.id) for run in runs},
        "incidents": store.list_incidents(),
        "snapshots": {bot: store.list_snapshots(bot) for bot in BOTS},
    }
