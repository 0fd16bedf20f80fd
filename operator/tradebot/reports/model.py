"""A report's content, and how it is assembled from records: pure, no I/O.

Runs name the strategy code they ran by hash only; the registry maps a (namespace, code hash)
to the Strategy resources that had that code. A run whose code no registered Strategy had
is reported under "unregistered code", so nothing recorded is left out of a report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records.models import ArtifactRecord, IncidentRecord, RunRecord, StrategyRecord


@dataclass(frozen=True)
class Filters:
    since: dt.datetime | None = None
    namespace: str | None = None
    strategy: str | None = None


@dataclass(frozen=True)
class EpochsSummary:
    """A hyperopt run's epochs in brief: how many, and the best (lowest loss; the earliest
    epoch of equal ones)."""

    count: int
    best: EpochRecord | None


def summarise_epochs(epochs: Sequence[EpochRecord]) -> EpochsSummary:
    best = min(epochs, key=lambda e: (e.loss, e.epoch, e.worker), default=None)
    return EpochsSummary(count=len(epochs), best=best)


@dataclass(frozen=True)
class RunEntry:
    run: RunRecord
    metrics: Mapping[str, Decimal]
    artifacts: Sequence[ArtifactRecord]
    incidents: Sequence[IncidentRecord]
    # Hyperopt runs only (None for other kinds).
    epochs: EpochsSummary | None = None


@dataclass(frozen=True)
class StrategyEntry:
    # None: runs of code no registered Strategy had.
    namespace: str | None
    name: str | None
    versions: Sequence[StrategyRecord]
    runs: Sequence[RunEntry]


@dataclass(frozen=True)
class Report:
    generated_at: dt.datetime
    filters: Filters
    strategies: Sequence[StrategyEntry]
    # Incidents not tied to a run of this report (breaker trips of bots, stale heartbeats).
    incidents: Sequence[IncidentRecord] = field(default_factory=tuple)


class UnknownStrategy(ValueError):
    """--strategy names no registered strategy."""


def assemble(
    *,
    generated_at: dt.datetime,
    filters: Filters,
    strategies: Iterable[StrategyRecord],
    runs: Iterable[RunRecord],
    metrics: Mapping[str, Mapping[str, Decimal]],
    artifacts: Mapping[str, Sequence[ArtifactRecord]],
    incidents: Iterable[IncidentRecord],
    epochs: Mapping[str, Sequence[EpochRecord]] | None = None,
) -> Report:
    """The report of `runs` (already filtered by time and namespace) grouped per strategy.

    With filters.strategy only the runs of that Strategy's code versions are kept, and only
    the incidents tied to them; otherwise incidents tied to no reported run are listed apart.
    """
    versions: dict[tuple[str, str], list[StrategyRecord]] = {}
    owners: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for record in strategies:
        if filters.namespace is not None and record.namespace != filters.namespace:
            continue
        key = (record.namespace, record.name)
        versions.setdefault(key, []).append(record)
        owners.setdefault((record.namespace, record.code_hash), set()).add(key)
    if filters.strategy is not None:
        known = sorted({name for _, name in versions})
        if filters.strategy not in known:
            where = f" in namespace {filters.namespace}" if filters.namespace else ""
            raise UnknownStrategy(
                f"no strategy named {filters.strategy!r} is registered{where} "
                f"(registered: {', '.join(known) or 'none'})"
            )

    incidents_by_run: dict[str, list[IncidentRecord]] = {}
    loose: list[IncidentRecord] = []
    for incident in sorted(incidents, key=lambda i: (i.created_at, i.id)):
        if incident.run_id is not None:
            incidents_by_run.setdefault(incident.run_id, []).append(incident)
        else:
            loose.append(incident)

    grouped: dict[tuple[str, str] | None, list[RunEntry]] = {}
    shown: set[str] = set()
    for run in sorted(runs, key=lambda r: (r.created_at, r.id)):
        keys = sorted(owners.get((run.namespace, run.strategy_code_hash or ""), set()))
        if filters.strategy is not None:
            keys = [k for k in keys if k[1] == filters.strategy]
            if not keys:
                continue
        entry = RunEntry(
            run=run,
            metrics=dict(sorted(metrics.get(run.id, {}).items())),
            artifacts=sorted(artifacts.get(run.id, ()), key=lambda a: a.name),
            incidents=incidents_by_run.get(run.id, []),
            epochs=(
                summarise_epochs((epochs or {}).get(run.id, ())) if run.kind == "hyperopt" else None
            ),
        )
        shown.add(run.id)
        targets: list[tuple[str, str] | None] = list(keys) or [None]
        for target in targets:
            grouped.setdefault(target, []).append(entry)

    wanted = [k for k in sorted(versions) if filters.strategy is None or k[1] == filters.strategy]
    sections = [
        StrategyEntry(
            namespace=k[0],
            name=k[1],
            versions=sorted(versions[k], key=lambda v: (v.first_seen, v.code_hash)),
            runs=grouped.get(k, []),
        )
        for k in wanted
    ]
    if None in grouped:
        sections.append(StrategyEntry(namespace=None, name=None, versions=(), runs=grouped[None]))
    if filters.strategy is None:
        loose.extend(
            i for run_id, tied in incidents_by_run.items() if run_id not in shown for i in tied
        )
        loose.sort(key=lambda i: (i.created_at, i.id))
    else:
        loose = []
    return Report(generated_at=generated_at, filters=filters, strategies=sections, incidents=loose)
