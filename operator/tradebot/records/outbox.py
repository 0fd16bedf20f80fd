"""The outbox file: record writes the database could not take yet, one JSON line each, in the
order they were made.

Why a local file: it needs nothing that may itself be down (no database, no API server round
trip), an append plus fsync costs well under a millisecond, and on a volume (a PVC, or an
emptyDir that outlives container restarts) it survives the operator process. In a cluster it
must live on such a volume: on the container's own filesystem a pod restart would lose it.

Durability: each append is written with one write() and fsync'd before it returns; the first
append also fsyncs the directory, so the file itself survives a crash. A crash in the middle
of an append can leave only the last line torn; opening the file cuts such a line off (the
call that wrote it never returned). Applied entries are removed by rewriting the rest to a new
file and renaming it over the old one, so a crash leaves either the old file (its entries are
replayed: every write is idempotent) or the new one.

Not thread-safe by itself: BufferedStore serialises every call. One process at a time may
hold a given outbox (an exclusive lock on `<path>.lock`).

Replicas on a shared volume each keep an outbox of their own (`records-outbox-<pod>.jsonl`):
whoever leads adopts the others' once no live process holds them (`adopt_orphans`), so what a
former leader buffered is delivered by the next one, not when that pod leads again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tradebot.observability.logging import logger
from tradebot.records.errors import RecordsError

_log = logger(component="records-outbox")


class OutboxError(RecordsError):
    """The outbox file cannot be opened or written (disk full, read-only, held elsewhere)."""


@dataclass(frozen=True)
class Line:
    raw: bytes  # without its newline
    end: int  # offset just past its newline: dropping up to here removes it


@dataclass(frozen=True)
class SetAside:
    """An entry that could never be applied, kept with why."""

    reason: str
    set_aside_at: str | None  # ISO 8601 UTC; None for notes written before it was kept
    line: str  # the outbox line as it was


def rejected_path(outbox: Path) -> Path:
    """Where an outbox keeps the entries it set aside."""
    return outbox.with_name(outbox.name + ".rejected")


def read_set_aside(outbox: Path) -> list[SetAside]:
    """The entries set aside beside `outbox`, oldest first ([] when none); a note that is
    not JSON (a torn last write) comes back as itself with reason "unreadable note"."""
    try:
        data = rejected_path(outbox).read_bytes()
    except FileNotFoundError:
        return []
    found = []
    for raw in data.splitlines():
        try:
            note = json.loads(raw)
            found.append(SetAside(str(note["reason"]), note.get("set_aside_at"), str(note["line"])))
        except (ValueError, KeyError, TypeError):
            found.append(SetAside("unreadable note", None, raw.decode(errors="replace")))
    return found


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock: IO[bytes] = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115
        except OSError as exc:
            raise OutboxError(f"cannot open the records outbox {path}: {exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock.close()
            raise OutboxError(
                f"the records outbox {path} is in use by another process; give each "
                "operator replica an outbox of its own"
            ) from exc
        try:
            self._fd = self._open_append()
            self._size, self.depth = self._repair()
        except OSError as exc:
            self._lock.close()
            raise OutboxError(f"cannot open the records outbox {path}: {exc}") from exc

    def _open_append(self) -> int:
        existed = self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if not existed:
            _fsync_dir(self.path.parent)
        return fd

    def _repair(self) -> tuple[int, int]:
        """Cuts off a torn last line; returns the file's size and its number of lines."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1  # 0 when no line is complete
        if keep < len(data):
            _log.warning(
                "records outbox: dropping a torn last line (a crash mid-append)",
                path=str(self.path),
                bytes=len(data) - keep,
            )
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
        return keep, data[:keep].count(b"\n")

    def append(self, line: bytes) -> None:
        """Appends one line (ending in a newline) durably, or raises OutboxError having left
        the file as it was."""
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            raise ValueError("an outbox line is one line ending in a newline")
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(self._fd)
        except OSError as exc:
            # Cut back whatever part was written, so a later append does not follow a torn
            # line (opening the file again would then see a torn line in the middle).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise OutboxError(f"cannot append to the records outbox {self.path}: {exc}") from exc
        self._size += len(line)
        self.depth += 1

    def lines(self, limit: int) -> list[Line]:
        """The first `limit` lines, oldest first."""
        found: list[Line] = []
        offset = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if len(found) >= limit or offset + len(raw) > self._size:
                    break
                offset += len(raw)
                found.append(Line(raw.rstrip(b"\n"), offset))
        return found

    def drop(self, end: int, count: int) -> None:
        """Removes the first `count` lines, which end at offset `end`."""
        if end <= 0:
            return
        with open(self.path, "rb") as f:
            f.seek(end)
            rest = f.read(self._size - end)
        if rest:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as out:
                out.write(rest)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
            os.close(self._fd)
            self._fd = self._open_append()
        else:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        self._size = len(rest)
        self.depth -= count

    @property
    def rejected_path(self) -> Path:
        return rejected_path(self.path)

    def set_aside(self, raw: bytes, reason: str) -> Path:
        """Keeps a line that can never be applied in `<path>.rejected` (with why and when),
        so it no longer blocks the lines behind it and a person can still read what it held
        (`tradebot records list --failed`)."""
        rejected = self.rejected_path
        note = (
            json.dumps(
                {
                    "reason": reason,
                    "set_aside_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "line": raw.decode(errors="replace"),
                },
                ensure_ascii=True,  # a lone surrogate in the reason must not fail the write
            ).encode()
            + b"\n"
        )
        fd = os.open(rejected, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, note)
            os.fsync(fd)
        finally:
            os.close(fd)
        return rejected

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._lock.close()  # releases the flock


def adopt_orphans(own: Outbox, pattern: str) -> int:
    """Moves into `own` the entries of every other outbox in its directory whose name matches
    `pattern` (a glob) and that no live process holds: a former leader's. Returns how many
    entries moved. The entries are appended to `own` (each fsync'd) before the orphan file is
    removed: a crash in between replays them twice, and every record write is idempotent."""
    moved = 0
    for path in sorted(own.path.parent.glob(pattern)):
        if path == own.path or not path.is_file():
            continue
        try:
            orphan = Outbox(path)
        except OutboxError:
            continue  # its owner is alive (it delivers its own), or it cannot be read now
        try:
            for line in orphan.lines(orphan.depth):
                own.append(line.raw + b"\n")
                moved += 1
            path.unlink()
            _fsync_dir(path.parent)
            with contextlib.suppress(OSError):
                path.with_name(path.name + ".lock").unlink()
        finally:
            orphan.close()
        _log.info("records outbox of a former replica adopted", orphan=str(path), entries=moved)
    return moved
