"""Where a Hyperopt's workers keep their shared Optuna study: with PostgreSQL records, a
database and login role of its own on the records' server (records/bot_databases.py: a SCRAM
role that owns one database, never the operator's credentials), its URL in an operator-owned
Secret owned by the Hyperopt, handed to the workers as an environment variable; dropped when
the Hyperopt is deleted. With SQLite records there is no shared study: the workers search
independently (their own seeds) and the operator merges their results.

The operator reads the study's progress with plain SQL over Optuna's own tables (studies,
trials, trial_values): it never imports Optuna.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

import psycopg
import psycopg.errors

from tradebot import kube
from tradebot.controllers.bot_storage import _password, _secret_value
from tradebot.domain import bots, hyperopt_jobs
from tradebot.records.bot_databases import (
    FREQTRADE_SCHEME,
    bot_dsn,
    drop_bot_database,
    ensure_bot_database,
)
from tradebot.records.errors import RecordsUnavailable
from tradebot.settings import Settings


def shared(settings: Settings) -> bool:
    """One shared study needs a server every worker reaches: the records' PostgreSQL."""
    return bots.trade_db_on_postgres(settings)


def database_name(uid: str) -> str:
    """From the Hyperopt's uid only (never a name a user chose), inside PostgreSQL's 63."""
    return "tradebot_ho_" + uid.replace("-", "").lower()


def ensure(namespace: str, name: str, uid: str, settings: Settings, workers: int = 1) -> str:
    """The study's database, role and Secret exist (idempotent, safe to repeat after a crash
    anywhere: the password is kept in the Secret first, then set on the role), the role
    limited to TRADEBOT_HYPEROPT_DB_CONNECTIONS_PER_WORKER connections per worker. Returns
    the Secret's name. Raises RecordsUnavailable while the server cannot be reached."""
    secret = hyperopt_jobs.storage_secret_name(name, uid)
    database = database_name(uid)
    stored = _secret_value(namespace, secret, hyperopt_jobs.STORAGE_ITEM)
    password = _password(stored) if stored else None
    if password is None:
        password = "p" + secrets.token_urlsafe(32)
        kube.create_if_absent(
            kube.core().create_namespaced_secret,
            namespace,
            hyperopt_jobs.storage_secret(
                namespace, name, uid, bot_dsn(settings.database_dsn, database, password)
            ),
        )
        # A concurrent round may have created it first: what the Secret holds wins.
        stored = _secret_value(namespace, secret, hyperopt_jobs.STORAGE_ITEM)
        password = (_password(stored) if stored else None) or password
    ensure_bot_database(
        settings.database_dsn,
        database,
        password,
        workers * settings.hyperopt_db_connections_per_worker,
    )
    return secret


def remove(uid: str, settings: Settings) -> bool:
    """Drops the study's database and role (the Secret goes with its owner). True if a
    database was dropped."""
    if not shared(settings):
        return False
    return drop_bot_database(settings.database_dsn, database_name(uid))


def study_url(namespace: str, name: str, uid: str) -> str | None:
    """The study's URL, as the workers get it, from the operator's Secret."""
    return _secret_value(
        namespace, hyperopt_jobs.storage_secret_name(name, uid), hyperopt_jobs.STORAGE_ITEM
    )


@dataclass(frozen=True)
class StudyProgress:
    done: int
    best_loss: Decimal | None


_PROGRESS = """
SELECT count(*), min(v.value)
FROM trials t
JOIN studies s ON s.study_id = t.study_id
LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
WHERE s.study_name = %s AND t.state = 'COMPLETE'
"""


def progress(url: str, study: str) -> StudyProgress:
    """Finished trials of the study and the lowest loss among them. A study no worker has
    created yet has done nothing."""
    conninfo = url.replace(FREQTRADE_SCHEME + "://", "postgresql://", 1)
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            row = conn.execute(_PROGRESS, (study,)).fetchone()
    except psycopg.errors.UndefinedTable:
        return StudyProgress(0, None)
    except psycopg.OperationalError as e:
        raise RecordsUnavailable(
            f"the study's database is unavailable: {type(e).__name__}"
        ) from None
    if row is None:
        return StudyProgress(0, None)
    best = None if row[1] is None else Decimal(repr(float(row[1])))
    return StudyProgress(int(row[0]), best)
