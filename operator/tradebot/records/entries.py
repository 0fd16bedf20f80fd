"""A record write as one outbox line and back: the RecordStore call it stands for, with its
figures as exact decimal strings and its times in UTC, so a replay writes exactly what the
caller gave. Pure: no files, no database."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, get_args

from pydantic import ValidationError

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records.models import (
    ArtifactRecord,
    BacktestDetail,
    BotSnapshot,
    DcaBuyRecord,
    IncidentRecord,
    RunRecord,
    StrategyRecord,
    check_json,
    exact_metric,
    utc_now,
)
from tradebot.records.storable import storable
from tradebot.records.store import RecordStore

# Bumped if the line format changes incompatibly; an operator refuses lines of a version it
# does not know (they are set aside, not guessed at).
ENTRY_VERSION: Final = 1

Operation = Literal[
    "register_strategy",
    "record_run",
    "record_metrics",
    "record_artifacts",
    "record_incident",
    "record_snapshot",
    "record_epochs",
    "record_dca_buy",
    "record_backtest_detail",
]
OPERATIONS: Final[frozenset[str]] = frozenset(get_args(Operation))


@dataclass(frozen=True)
class Entry:
    """One write waiting for the database."""

    op: Operation
    args: dict[str, Any]  # JSON values only: exact decimals as strings, times as ISO 8601 UTC
    queued_at: dt.datetime


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _jsonable(value: Any) -> Any:
    """Record fields as JSON: Decimal as fixed-point text, datetimes as UTC ISO text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _entry(op: Operation, args: dict[str, Any]) -> Entry:
    # Storable first: a NUL or lone surrogate would make the line unwritable (UTF-8) and the
    # database refuse the replay; escaped here, the line and the replay both go through.
    jsonable = storable(_jsonable(args))
    check_json(jsonable, op)  # a float here would be a bug of this module: refuse it
    return Entry(op=op, args=jsonable, queued_at=utc_now())


# ---- from a call to an entry (validating as the store would, so a bad call fails now) ----
def strategy_entry(
    namespace: str,
    name: str,
    uid: str,
    class_name: str,
    code_hash: str,
    interface: dict[str, Any],
    seen_at: dt.datetime | None,
) -> Entry:
    # seen_at is fixed now: a replay must record when it was seen, not when it was written.
    when = seen_at or utc_now()
    StrategyRecord(
        namespace=namespace,
        name=name,
        uid=uid,
        class_name=class_name,
        code_hash=code_hash,
        interface=interface,
        first_seen=when,
        last_seen=when,
    )
    return _entry(
        "register_strategy",
        {
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "class_name": class_name,
            "code_hash": code_hash,
            "interface": interface,
            "seen_at": when,
        },
    )


def seen_at(entry: Entry) -> dt.datetime:
    """The sighting time a register_strategy entry fixed."""
    return dt.datetime.fromisoformat(entry.args["seen_at"])


def run_entry(run: RunRecord) -> Entry:
    return _entry("record_run", {"run": run.model_dump()})


def metrics_entry(run_id: str, metrics: Mapping[str, Decimal]) -> Entry:
    exact = {key: exact_metric(key, value) for key, value in metrics.items()}
    return _entry("record_metrics", {"run_id": run_id, "metrics": exact})


def artifacts_entry(run_id: str, artifacts: Sequence[ArtifactRecord]) -> Entry:
    if len({a.name for a in artifacts}) != len(artifacts):
        raise ValueError(f"artifact names repeat in one call for run {run_id!r}")
    return _entry(
        "record_artifacts", {"run_id": run_id, "artifacts": [a.model_dump() for a in artifacts]}
    )


def epochs_entry(run_id: str, epochs: Sequence[EpochRecord]) -> Entry:
    keys = [(e.worker, e.epoch) for e in epochs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"an epoch (worker, epoch) repeats in one call for run {run_id!r}")
    return _entry("record_epochs", {"run_id": run_id, "epochs": [e.model_dump() for e in epochs]})


def incident_entry(incident: IncidentRecord) -> Entry:
    return _entry("record_incident", {"incident": incident.model_dump()})


def snapshot_entry(snapshot: BotSnapshot) -> Entry:
    return _entry("record_snapshot", {"snapshot": snapshot.model_dump()})


def dca_buy_entry(record: DcaBuyRecord) -> Entry:
    return _entry("record_dca_buy", {"record": record.model_dump()})


def backtest_detail_entry(run_id: str, detail: BacktestDetail) -> Entry:
    # JSON mode: calendar days as ISO text (the figures are text either way).
    return _entry(
        "record_backtest_detail", {"run_id": run_id, "detail": detail.model_dump(mode="json")}
    )


# ---- lines ---------------------------------------------------------------------------------
def encode(entry: Entry) -> bytes:
    """One line: compact JSON with sorted keys, ending in a newline."""
    body = {
        "v": ENTRY_VERSION,
        "op": entry.op,
        "queued_at": _utc(entry.queued_at),
        "args": entry.args,
    }
    return (
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    )


def decode(line: bytes) -> Entry:
    """The entry a line holds; ValueError naming what is wrong with it."""
    try:
        # parse_float: a float in a line was not written by encode(); refuse to round it.
        body = json.loads(line, parse_float=_refuse_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON line ({exc})") from exc
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    if body.get("v") != ENTRY_VERSION:
        raise ValueError(f"entry version {body.get('v')!r}; this operator reads {ENTRY_VERSION}")
    op, args, queued_at = body.get("op"), body.get("args"), body.get("queued_at")
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}")
    if not isinstance(args, dict) or not isinstance(queued_at, str):
        raise ValueError("args must be an object and queued_at a time")
    when = dt.datetime.fromisoformat(queued_at)
    if when.tzinfo is None:
        raise ValueError("queued_at has no time zone")
    entry = Entry(op=op, args=args, queued_at=when.astimezone(dt.UTC))
    _call(entry)  # parses every argument, so a damaged line fails here, not half-applied
    return entry


def _refuse_float(text: str) -> Decimal:
    raise ValueError(f"a float ({text}) in an outbox line")


# ---- from an entry back to the call --------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    op: Operation
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _call(entry: Entry) -> _Call:
    a = entry.args
    try:
        match entry.op:
            case "register_strategy":
                seen_at = dt.datetime.fromisoformat(a["seen_at"])
                if seen_at.tzinfo is None:
                    raise ValueError("seen_at has no time zone")
                return _Call(
                    entry.op,
                    (
                        a["namespace"],
                        a["name"],
                        a["uid"],
                        a["class_name"],
                        a["code_hash"],
                        a["interface"],
                    ),
                    {"seen_at": seen_at},
                )
            case "record_run":
                return _Call(entry.op, (RunRecord.model_validate(a["run"]),), {})
            case "record_metrics":
                metrics = {k: exact_metric(k, Decimal(v)) for k, v in a["metrics"].items()}
                return _Call(entry.op, (a["run_id"], metrics), {})
            case "record_artifacts":
                artifacts = [ArtifactRecord.model_validate(x) for x in a["artifacts"]]
                return _Call(entry.op, (a["run_id"], artifacts), {})
            case "record_epochs":
                epochs = [EpochRecord.model_validate(x) for x in a["epochs"]]
                return _Call(entry.op, (a["run_id"], epochs), {})
            case "record_incident":
                return _Call(entry.op, (IncidentRecord.model_validate(a["incident"]),), {})
            case "record_snapshot":
                return _Call(entry.op, (BotSnapshot.model_validate(a["snapshot"]),), {})
            case "record_backtest_detail":
                detail = BacktestDetail.model_validate(a["detail"])
                return _Call(entry.op, (a["run_id"], detail), {})
            case "record_dca_buy":
                return _Call(entry.op, (DcaBuyRecord.model_validate(a["record"]),), {})
    except (KeyError, TypeError, AttributeError, InvalidOperation, ValidationError) as exc:
        raise ValueError(f"malformed {entry.op} entry: {exc!r}") from exc
    raise ValueError(f"unknown operation {entry.op!r}")  # pragma: no cover - decode checks


def apply(store: RecordStore, entry: Entry) -> None:
    """Makes the call the entry stands for on `store` (idempotent, like every store write)."""
    call = _call(entry)
    getattr(store, call.op)(*call.args, **call.kwargs)
