"""Records DSNs: which backend a DSN names, and how to talk about it without its password."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

SUPPORTED = "sqlite:///path/to/file.db or postgresql://user[:password]@host[:port]/dbname"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
MASK = "***"


@dataclass(frozen=True)
class SqliteDsn:
    path: Path

    def describe(self) -> str:
        return f"SQLite database {self.path}"


@dataclass(frozen=True)
class PostgresDsn:
    # The full DSN goes to libpq only; repr=False keeps it out of any logged repr.
    conninfo: str = field(repr=False)
    hosts: str
    dbname: str
    user: str
    secrets: tuple[str, ...] = field(repr=False, default=())

    def describe(self) -> str:
        who = f" as user {self.user!r}" if self.user else ""
        return f"PostgreSQL database {self.dbname!r} on {self.hosts}{who}"

    def scrub(self, text: str) -> str:
        """`text` (a driver's message) with every secret of this DSN masked."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


def parse_dsn(dsn: str) -> SqliteDsn | PostgresDsn:
    """The backend and target a DSN names; ValueError for a scheme or form we do not support."""
    scheme, sep, _ = dsn.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sqlite", *_POSTGRES_SCHEMES):
        # Only the scheme is echoed: the rest may hold a password.
        shown = scheme if sep and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) else "(none)"
        raise ValueError(f"unsupported records DSN scheme {shown}; use {SUPPORTED}")
    if scheme == "sqlite":
        return _parse_sqlite(dsn)
    return _parse_postgres(dsn)


def _parse_sqlite(dsn: str) -> SqliteDsn:
    parts = urlsplit(dsn)
    if parts.netloc or not parts.path.startswith("/") or parts.query:
        raise ValueError(
            f"a SQLite DSN is sqlite:/// followed by an absolute file path, got {dsn!r}"
        )
    path = unquote(parts.path)
    if path == "/:memory:":
        # Every operation opens its own connection, and each would see a new empty database.
        raise ValueError("in-memory SQLite is not supported; give a file path")
    return SqliteDsn(Path(path))


def _split(rest: str) -> tuple[str, bool, str, str, str]:
    """(user info, had '@', hosts, path, query) of what follows `scheme://`.

    The user info ends at the last '@' before the query, not at the first '/': a password with
    an unescaped '/' must still count as the password, so it is never shown as a host name.
    """
    before_query, _, query = rest.partition("?")
    userinfo, at, hostpath = before_query.rpartition("@")
    if not at:
        userinfo, hostpath = "", before_query
    hosts, _, path = hostpath.partition("/")
    return userinfo, bool(at), hosts, path, query


def _parse_postgres(dsn: str) -> PostgresDsn:
    userinfo, _, hosts, path, query = _split(dsn.split("://", 1)[1] if "://" in dsn else "")
    user, colon, password = userinfo.partition(":")
    secrets = {password, unquote(password)} if colon else set()
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _SECRET_PARAMS:
            secrets.update((value, unquote(value)))
        if key == "user" and not user:
            user = value
    return PostgresDsn(
        conninfo=dsn,
        hosts=unquote(hosts) or "localhost",
        dbname=unquote(path) or unquote(user) or "(default)",
        user=unquote(user),
        secrets=tuple(s for s in secrets if s),
    )


def redact_dsn(dsn: str) -> str:
    """`dsn` with its password (in the user info or a query parameter) replaced by ***."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return dsn
    userinfo, at, hosts, path, query = _split(rest)
    if ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:{MASK}"
    if query:
        query = "&".join(
            f"{part.partition('=')[0]}={MASK}" if part.partition("=")[0] in _SECRET_PARAMS else part
            for part in query.split("&")
        )
    return (
        f"{scheme}://{userinfo}{'@' if at else ''}{hosts}"
        f"{'/' + path if path else ''}{'?' + query if query else ''}"
    )
