"""What the LiveBot and CircuitBreaker controllers write to and read from the records: a run
per pod life, snapshots of the figures, incidents, and the dry-run evidence for the gates.

Every write is keyed by something derived from the cluster's state (uids, start and trip
times), so a round repeated after a crash writes the same keys again and adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal

from tradebot.controllers import runtime
from tradebot.domain import evidence
from tradebot.domain.gates import DryRunEvidence
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records import (
    BotSnapshot,
    IncidentRecord,
    RecordStore,
    RecordsUnavailable,
    RunRecord,
    RunStatus,
)
from tradebot.records.buffered import BufferedStore

_log = logger(component="bot-records")


class EvidenceUnavailable(Exception):
    """The records cannot be read now; a gate that needs them must fail shut."""


def _store() -> BufferedStore:
    # Never None: while the database is down, writes wait in the outbox (reads may raise
    # RecordsUnavailable).
    return runtime.get().store()


def run_kind(mode: str) -> str:
    # testnet trades with an exchange's test money: a live run against a test exchange.
    return "dryrun" if mode == "dryRun" else "live"


def write_run(
    *,
    run_id: str,
    uid: str,
    namespace: str,
    name: str,
    mode: str,
    status: RunStatus,
    code_hash: str | None = None,
    config_hash: str | None = None,
    started_at: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    error: str | None = None,
    correlation_id: str | None = None,
) -> bool:
    """Records (or moves forward) a bot's run; False if the records cannot take it now."""
    try:
        _store().record_run(
            RunRecord(
                id=run_id,
                resource_uid=uid,
                namespace=namespace,
                name=name,
                kind=run_kind(mode),  # type: ignore[arg-type]
                status=status,
                strategy_code_hash=code_hash,
                config_hash=config_hash,
                started_at=started_at,
                finished_at=finished_at,
                error=error,
                correlation_id=correlation_id,
            )
        )
    except RecordsUnavailable as e:
        metrics.RECORD_FAILURES.inc()
        _log.warning("bot run not recorded yet", run=run_id, error=str(e))
        return False
    return True


def write_snapshot(snapshot: BotSnapshot) -> bool:
    try:
        _store().record_snapshot(snapshot)
    except RecordsUnavailable as e:
        metrics.RECORD_FAILURES.inc()
        _log.warning("bot snapshot not recorded yet", bot=snapshot.name, error=str(e))
        return False
    return True


def write_incident(incident: IncidentRecord) -> bool:
    """True once the incident is recorded (by this call or an earlier one)."""
    try:
        inserted = _store().record_incident(incident)
    except RecordsUnavailable as e:
        metrics.RECORD_FAILURES.inc()
        _log.error("incident not recorded yet; will retry", incident=incident.id, error=str(e))
        return False
    if inserted:
        metrics.INCIDENTS.labels(incident.source_kind, incident.reason).inc()
    return True


def incident(
    *,
    incident_id: str,
    namespace: str,
    source_kind: str,
    source_name: str,
    source_uid: str,
    severity: str,
    reason: str,
    description: str,
    bots: Sequence[str] = (),
    breaker: str | None = None,
    run_id: str | None = None,
    figures: Mapping[str, Decimal] | None = None,
    created_at: dt.datetime,
    correlation_id: str | None = None,
) -> IncidentRecord:
    return IncidentRecord.model_validate(
        {
            "id": incident_id,
            "namespace": namespace,
            "source_kind": source_kind,
            "source_name": source_name,
            "source_uid": source_uid,
            "breaker": breaker,
            "bots": tuple(bots),
            "run_id": run_id,
            "severity": severity,
            "reason": reason,
            "description": description,
            "figures": dict(figures or {}),
            "correlation_id": correlation_id,
            "created_at": created_at,
        }
    )


def dry_run_evidence(
    namespace: str,
    bot_name: str,
    bot_uid: str,
    code_hash: str,
    *,
    store: RecordStore | None = None,
    interval_seconds: int | None = None,
) -> DryRunEvidence:
    """The bot's recorded dry-run history of this code and the breaker trips that stopped it
    (from the operator's store unless one is given). Raises EvidenceUnavailable when the
    records cannot be read."""
    try:
        store = store if store is not None else _store()
        snapshots = store.list_snapshots(bot_uid, code_hash=code_hash)
        trips = [
            i.created_at
            for i in store.list_incidents(namespace=namespace, bot=bot_name)
            if i.source_kind == "CircuitBreaker"
        ]
    except RecordsUnavailable as e:
        raise EvidenceUnavailable(str(e)) from None
    marks = [evidence.SnapshotMark(s.taken_at, s.code_hash, s.mode) for s in snapshots]
    interval = interval_seconds or runtime.get().settings.snapshot_interval_seconds
    return evidence.dry_run_evidence(marks, trips, interval)


def bot_incidents(namespace: str, since: dt.datetime) -> list[IncidentRecord]:
    """The bots' own incidents (stale heartbeats, ...) in the namespace since `since`;
    breakers' trip records are left out, or a reset breaker would trip again on its own last
    trip. [] while the records cannot be read."""
    try:
        found = _store().list_incidents(namespace=namespace, since=since)
    except RecordsUnavailable:
        return []
    return [i for i in found if i.source_kind == "LiveBot"]
