"""What the records store raises, so callers can tell "retry later" from "this is a bug"."""

from __future__ import annotations


class RecordsError(Exception):
    """Base of every error the records store raises on purpose."""


class RecordsUnavailable(RecordsError):
    """The database cannot be reached or opened right now (wrong DSN, server down, file missing).

    Writes that fail with this are safe to replay later: every write is idempotent. Messages name
    the host and database (or the file), never a password.
    """


class SchemaNotReady(RecordsError):
    """The tables are missing: `migrate()` has not run against this database yet."""


class MigrationFailed(RecordsError):
    """A migration step failed (not an outage): its transaction was rolled back, so the schema
    is still at the version before it. The message names the version and the database."""


class RecordRejected(RecordsError, ValueError):
    """The database refused this record's content (a data, integrity or programming error
    for this write): replaying it as it is would fail the same way, so an outbox sets it
    aside with this message instead of retrying it. Never an outage: those are
    RecordsUnavailable."""


class RunConflict(RecordsError, ValueError):
    """A run id was reused for a different resource or kind; the write was not applied."""


class UnknownRun(RecordsError, LookupError):
    """Metrics or artifacts were written for a run id that has no run record yet."""
