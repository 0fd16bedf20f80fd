"""`tradebot records import PATH...`: Freqtrade backtest results made elsewhere (the
`backtest-result-*.zip` files, with their `.meta.json`, as `user_data/backtest_results/` holds
them) indexed into the records: a run per strategy in the file, its figures as metrics, the
files as artifacts, the strategy's code hash, the config hash and the timerange they carry.

Idempotent by content: a run's id is derived from the zip's sha256, so importing the same file
again (under any name, from anywhere) adds nothing. A file that is not a readable result is
reported by name and skipped; the others are imported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.domain.freqtrade_config import config_hash
from tradebot.domain.time import parse_time
from tradebot.freqtrade import result_detail, results
from tradebot.records import ArtifactRecord, RecordStore, RunRecord
from tradebot.records.models import exact_metric

NAMESPACE = "imported"  # runs of no cluster: they belong to no namespace of one


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # run ids
    already: list[str] = field(default_factory=list)
    damaged: list[tuple[Path, str]] = field(default_factory=list)


def result_files(paths: Iterable[Path]) -> list[Path]:
    """The result zips PATHs name: a zip, a `.meta.json` (its zip), or a directory (every
    result zip below it). Sorted, each once."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*.zip") if p.is_file())
        elif path.name.endswith(".meta.json"):
            found.add(path.with_name(path.name[: -len(".meta.json")] + ".zip"))
        else:
            found.add(path)
    return sorted(found)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _member(archive: zipfile.ZipFile, suffix: str) -> bytes | None:
    name = next((n for n in archive.namelist() if n.endswith(suffix)), None)
    return archive.read(name) if name is not None else None


def _figures(stats: dict[str, Any]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for key, value in results.results_from_stats(stats).to_wire().items():
        try:
            out[key] = exact_metric(key, Decimal(str(value)))
        except (ValueError, ArithmeticError):
            continue  # dates are not metrics
    return out


def import_file(store: RecordStore, path: Path, report: ImportReport) -> None:
    """Imports one result zip (see the module); raises ResultError, OSError, ValueError or
    zipfile.BadZipFile for a file that is not a readable result."""
    digest = _sha256(path)
    document = results.load_stats(path)
    strategies: dict[str, Any] = document["strategy"]
    if not strategies:
        raise results.ResultError("no strategy in the result")
    with zipfile.ZipFile(path) as archive:
        config_raw = _member(archive, "_config.json")
        sources = {
            name: archive.read(n)
            for name in strategies
            for n in archive.namelist()
            if n.endswith(f"_{name}.py")
        }
    config = json.loads(config_raw) if config_raw else None
    artifacts = [
        ArtifactRecord(
            name=path.name, path=str(path.resolve()), sha256=digest, size=path.stat().st_size
        )
    ]
    meta = results.meta_file(path)
    if meta.is_file():
        artifacts.append(
            ArtifactRecord(
                name=meta.name,
                path=str(meta.resolve()),
                sha256=_sha256(meta),
                size=meta.stat().st_size,
            )
        )
    for name in sorted(strategies):
        stats = results.strategy_stats(document, name)
        run_id = f"import-{digest[:32]}" + (f"-{name}" if len(strategies) > 1 else "")
        if store.get_run(run_id) is not None:
            report.already.append(run_id)
            continue
        source = sources.get(name)
        store.record_run(
            RunRecord(
                id=run_id,
                resource_uid=f"import:{digest}",
                namespace=NAMESPACE,
                name=f"{path.stem}-{name}"[:253],
                kind="backtest",
                status="succeeded",
                strategy_code_hash=hashlib.sha256(source).hexdigest() if source else None,
                config_hash=config_hash(config) if isinstance(config, dict) else None,
                data_window_start=parse_time(str(stats.get("backtest_start") or "") or None),
                data_window_end=parse_time(str(stats.get("backtest_end") or "") or None),
                correlation_id=run_id,
            )
        )
        figures = _figures(stats)
        if figures:
            store.record_metrics(run_id, figures)
        store.record_artifacts(run_id, artifacts)
        store.record_backtest_detail(run_id, result_detail.detail_from_stats(stats))
        report.imported.append(run_id)


def import_results(store: RecordStore, paths: Sequence[Path]) -> ImportReport:
    report = ImportReport()
    for path in result_files(paths):
        try:
            import_file(store, path, report)
        except (
            results.ResultError,
            OSError,
            ValueError,
            KeyError,
            TypeError,
            zipfile.BadZipFile,
        ) as e:
            report.damaged.append((path, str(e) or type(e).__name__))
    return report


def add_parser(actions: Any) -> None:
    parser = actions.add_parser(
        "import",
        help="index Freqtrade backtest results made elsewhere into the records",
        description=__doc__.split("\n\n")[0] + " Idempotent by sha256; a damaged file is "
        "reported by name and skipped (exit 2).",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="result .zip, its .meta.json, or a directory of them",
    )
    parser.add_argument("--dsn", help="database (default: the operator's)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from tradebot.records import RecordsError, open_store
    from tradebot.settings import Settings

    dsn = args.dsn or Settings.from_env().database_dsn
    try:
        with open_store(dsn) as store:
            store.migrate()  # idempotent: importing into a fresh store is a normal start
            report = import_results(store, args.paths)
    except (RecordsError, ValueError) as exc:
        print(f"tradebot records import: {exc}", file=sys.stderr)
        return 1
    for path, why in report.damaged:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(
        f"imported {len(report.imported)} run(s), {len(report.already)} already there, "
        f"{len(report.damaged)} damaged file(s) skipped"
    )
    return 2 if report.damaged else 0
