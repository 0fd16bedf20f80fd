"""Records of runs, metrics, artifacts and strategy versions, on SQLite or PostgreSQL.

    store = open_store("sqlite:///var/lib/tradebot/records.db")  # or postgresql://...
    store.migrate()
    store.record_run(RunRecord(id=..., resource_uid=..., namespace=..., name=..., kind=...))

See docs/records.md for the schema and the idempotence rules.
"""

from tradebot.records.dsn import redact_dsn
from tradebot.records.errors import (
    RecordRejected,
    RecordsError,
    RecordsUnavailable,
    RunConflict,
    SchemaNotReady,
    UnknownRun,
)
from tradebot.records.models import (
    ArtifactRecord,
    BotSnapshot,
    DcaBuyRecord,
    IncidentRecord,
    RunKind,
    RunRecord,
    RunStatus,
    StrategyRecord,
)
from tradebot.records.store import RecordStore, open_store

__all__ = [
    "ArtifactRecord",
    "BotSnapshot",
    "DcaBuyRecord",
    "IncidentRecord",
    "RecordRejected",
    "RecordStore",
    "RecordsError",
    "RecordsUnavailable",
    "RunConflict",
    "RunKind",
    "RunRecord",
    "RunStatus",
    "SchemaNotReady",
    "StrategyRecord",
    "UnknownRun",
    "open_store",
    "redact_dsn",
]
