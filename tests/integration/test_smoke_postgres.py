"""The PostgreSQL fixture is a real server: a psycopg round trip keeps exact decimals."""

from __future__ import annotations

from decimal import Decimal

import psycopg


def test_psycopg_round_trip(postgres_dsn: str):
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TABLE t (id serial PRIMARY KEY, amount numeric(28, 8) NOT NULL)")
        conn.execute("INSERT INTO t (amount) VALUES (%s)", (Decimal("12345.12345678"),))
        conn.commit()
        row = conn.execute("SELECT amount, version() FROM t").fetchone()
    assert row is not None
    assert row[0] == Decimal("12345.12345678")
    assert "PostgreSQL" in row[1]


def test_each_test_gets_an_empty_database(postgres_dsn: str):
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
