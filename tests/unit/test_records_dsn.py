"""Records DSNs: which backend a DSN picks, and that a password never shows when we talk
about one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradebot.records import open_store, redact_dsn
from tradebot.records.dsn import PostgresDsn, SqliteDsn, parse_dsn


def test_sqlite_dsn_is_an_absolute_file_path():
    assert parse_dsn("sqlite:///var/lib/tradebot/records.db") == SqliteDsn(
        Path("/var/lib/tradebot/records.db")
    )
    assert parse_dsn("sqlite:///data/my%20records.db") == SqliteDsn(Path("/data/my records.db"))
    assert parse_dsn("SQLITE:///x.db") == SqliteDsn(Path("/x.db"))


@pytest.mark.parametrize(
    "dsn",
    [
        "sqlite://relative.db",  # a host, not a path
        "sqlite:relative.db",
        "sqlite:///x.db?mode=ro",  # options we would silently ignore
        "sqlite:///:memory:",  # each operation would see a new empty database
    ],
)
def test_sqlite_dsn_forms_we_refuse(dsn: str):
    with pytest.raises(ValueError, match=r"(?i)sqlite"):
        parse_dsn(dsn)


def test_postgres_dsn_names_hosts_database_and_user():
    dsn = parse_dsn("postgresql://bot:pw@db.example:5433/records?sslmode=require")
    assert isinstance(dsn, PostgresDsn)
    assert (dsn.hosts, dsn.dbname, dsn.user) == ("db.example:5433", "records", "bot")
    assert dsn.describe() == "PostgreSQL database 'records' on db.example:5433 as user 'bot'"
    assert "pw" not in repr(dsn)


def test_postgres_scheme_alias_and_defaults():
    many = parse_dsn("postgres://h1:5432,h2:5432/records")
    assert isinstance(many, PostgresDsn)
    assert many.hosts == "h1:5432,h2:5432"
    bare = parse_dsn("postgresql://")
    assert isinstance(bare, PostgresDsn)
    assert (bare.hosts, bare.user) == ("localhost", "")
    by_query = parse_dsn("postgresql:///records?user=bot&host=/run/postgresql")
    assert isinstance(by_query, PostgresDsn)
    assert by_query.user == "bot"


@pytest.mark.parametrize(
    "dsn",
    [
        "mysql://root:topsecret@db/records",
        "host=db password=topsecret dbname=records",  # libpq key=value form: not a URL
        "topsecret",
    ],
)
def test_unknown_schemes_list_the_supported_ones_without_echoing_the_dsn(dsn: str):
    with pytest.raises(ValueError, match=r"sqlite:///.*postgresql://") as caught:
        parse_dsn(dsn)
    assert "topsecret" not in str(caught.value)
    with pytest.raises(ValueError, match="unsupported"):
        open_store(dsn)


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        ("postgresql://bot:s3cret@db:5432/records", "postgresql://bot:***@db:5432/records"),
        (
            "postgresql://bot@db/records?password=s3cret&sslmode=require",
            "postgresql://bot@db/records?password=***&sslmode=require",
        ),
        ("postgresql://bot:pa/ss@w0rd@db/records", "postgresql://bot:***@db/records"),
        (
            "postgresql://bot:p%40ss@db/records?sslpassword=s3cret",
            "postgresql://bot:***@db/records?sslpassword=***",
        ),
        ("postgresql://db/records", "postgresql://db/records"),
        ("sqlite:///var/lib/records.db", "sqlite:///var/lib/records.db"),
    ],
)
def test_redact_dsn_masks_every_password(dsn: str, redacted: str):
    assert redact_dsn(dsn) == redacted


def test_scrub_masks_the_password_as_written_and_as_decoded():
    dsn = parse_dsn("postgresql://bot:p%40ss@db/records?password=other")
    assert isinstance(dsn, PostgresDsn)
    message = 'failed for "p%40ss", "p@ss" and "other"'
    assert dsn.scrub(message) == 'failed for "***", "***" and "***"'


def test_a_password_with_a_slash_never_becomes_the_host_name():
    dsn = parse_dsn("postgresql://bot:pa/ss@db/records")
    assert isinstance(dsn, PostgresDsn)
    assert "pa" not in dsn.describe()
    assert dsn.scrub("pa/ss") == "***"
