"""A database and a login role of its own for each LiveBot's Freqtrade trade database, on the
PostgreSQL server that holds the records.

The bot's pod runs user code, so it never gets the operator's credentials: its role may log in
and owns its one database, nothing more, and no other role but the owner (and superusers) may
connect to that database. The password reaches the server only as a SCRAM verifier, so neither
the server's log (a failed statement is logged with its text) nor pg_stat_activity ever holds it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import sql

from tradebot.records.dsn import PostgresDsn, parse_dsn
from tradebot.records.errors import RecordsUnavailable

# SQLAlchemy's name for psycopg 3, the driver Freqtrade's PostgreSQL support documents.
FREQTRADE_SCHEME = "postgresql+psycopg"
_SCRAM_ITERATIONS = 4096
_BOT_OPTIONS = frozenset(
    {"sslmode", "connect_timeout", "target_session_attrs", "gssencmode", "channel_binding"}
)


def bot_database_name(uid: str) -> str:
    """The bot's database and role name: from the LiveBot's uid only (never from a name a
    user chose), 45 characters, inside PostgreSQL's 63."""
    return "tradebot_bot_" + uid.replace("-", "").lower()


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677); the server
    accepts it in place of the password in CREATE/ALTER ROLE ... PASSWORD."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _admin(dsn: str) -> PostgresDsn:
    parsed = parse_dsn(dsn)
    if not isinstance(parsed, PostgresDsn):
        raise ValueError("a bot database needs a postgresql:// records DSN")
    return parsed


def bot_dsn(admin_dsn: str, database: str, password: str) -> str:
    """The bot's SQLAlchemy URL: the records server's host, port and options (sslmode...),
    with the bot's own role, password and database instead of the operator's."""
    parts = urlsplit(_admin(admin_dsn).conninfo)
    hosts = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(database, safe='')}:{quote(password, safe='')}@{hosts}"
    # Only connection options: the operator's client certificate, key or their password
    # (sslcert, sslkey, sslpassword, passfile) are the operator's, never the bot's.
    query = "&".join(p for p in parts.query.split("&") if p.partition("=")[0] in _BOT_OPTIONS)
    return urlunsplit((FREQTRADE_SCHEME, netloc, "/" + database, query, ""))


def ensure_bot_database(
    admin_dsn: str, database: str, password: str, connection_limit: int
) -> None:
    """The role `database` (LOGIN, `password`, at most `connection_limit` connections at once)
    and the database `database` it owns, which only it may connect to. Idempotent and safe to
    repeat after a crash at any point; the password and the limit are set again every time, so
    the one in the caller's Secret is the one that works. The limit keeps a pod that runs user
    code from taking every connection of the records' server (the operator's own included)."""
    if connection_limit < 1:
        raise ValueError(f"connection_limit must be at least 1, not {connection_limit}")
    admin = _admin(admin_dsn)
    verifier = scram_verifier(password)
    role = sql.Identifier(database)
    try:
        with psycopg.connect(admin.conninfo, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (database,)
            ).fetchone()
            if not exists:
                # A concurrent call may have made it meanwhile.
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    # INHERIT: the public schema belongs to pg_database_owner (PostgreSQL
                    # 15+), whose rights the owner only has through inheritance.
                    conn.execute(
                        sql.SQL(
                            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT "
                            "NOREPLICATION CONNECTION LIMIT {}"
                        ).format(role, sql.Literal(connection_limit))
                    )
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN CONNECTION LIMIT {} PASSWORD {}").format(
                    role, sql.Literal(connection_limit), sql.Literal(verifier)
                )
            )
            made = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if not made:
                # Not in a transaction (autocommit): CREATE DATABASE refuses one.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(database), role
                        )
                    )
            # Every database grants CONNECT to PUBLIC: other bots' roles must not read it.
            conn.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database))
            )
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), role)
            )
    except psycopg.OperationalError as e:
        raise RecordsUnavailable(
            f"{admin.describe()} is unavailable: {admin.scrub(str(e)).strip()}"
        ) from None


def drop_bot_database(admin_dsn: str, database: str) -> bool:
    """Drops the bot's database (its connections cut) and role. True if the database existed."""
    admin = _admin(admin_dsn)
    try:
        with psycopg.connect(admin.conninfo, autocommit=True, connect_timeout=5) as conn:
            existed = (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                is not None
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(database)))
            return existed
    except psycopg.OperationalError as e:
        raise RecordsUnavailable(
            f"{admin.describe()} is unavailable: {admin.scrub(str(e)).strip()}"
        ) from None
