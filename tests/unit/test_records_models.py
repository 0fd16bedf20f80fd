"""Record models and schema steps: exact figures, UTC timestamps, well-formed migrations."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tradebot.records import ArtifactRecord, RunRecord
from tradebot.records.migrations import MIGRATIONS
from tradebot.records.models import STATUS_RANK, check_json, exact_metric
from tradebot.records.queries import UPSERT_RUN

RUN = {"id": "r", "resource_uid": "u", "namespace": "ns", "name": "bt", "kind": "backtest"}


def test_run_timestamps_must_be_aware_and_come_back_in_utc():
    with pytest.raises(ValidationError, match="timezone"):
        RunRecord(**RUN, created_at=dt.datetime(2026, 1, 1))
    tokyo = dt.timezone(dt.timedelta(hours=9))
    run = RunRecord(**RUN, created_at=dt.datetime(2026, 1, 1, 9, tzinfo=tokyo))
    assert run.created_at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert run.created_at.utcoffset() == dt.timedelta(0)
    assert RunRecord(**RUN).created_at.tzinfo == dt.UTC


def test_run_kind_and_status_are_closed_sets_and_records_are_frozen():
    with pytest.raises(ValidationError):
        RunRecord(**RUN | {"kind": "paper"})
    with pytest.raises(ValidationError):
        RunRecord(**RUN, status="done")
    with pytest.raises(ValidationError):
        RunRecord(**RUN, extra_field="x")
    run = RunRecord(**RUN)
    with pytest.raises(ValidationError):
        run.status = "running"  # type: ignore[misc]


def test_artifacts_need_a_sha256_and_a_size():
    ok = ArtifactRecord(name="log", path="/x", sha256="0" * 64, size=0)
    assert ok.size == 0
    with pytest.raises(ValidationError):
        ArtifactRecord(name="log", path="/x", sha256="0" * 63, size=1)
    with pytest.raises(ValidationError):
        ArtifactRecord(name="log", path="/x", sha256="A" * 64, size=1)
    with pytest.raises(ValidationError):
        ArtifactRecord(name="log", path="/x", sha256="0" * 64, size=-1)


# numeric(38, 8)'s extremes, written out: arithmetic in the default 28-digit context rounds them.
LARGEST = Decimal("999999999999999999999999999999.99999999")
SMALLEST = Decimal("-999999999999999999999999999999.99999999")


@given(
    st.decimals(
        min_value=SMALLEST, max_value=LARGEST, places=8, allow_nan=False, allow_infinity=False
    )
)
def test_every_figure_numeric_38_8_holds_passes_unchanged(value: Decimal):
    exact = exact_metric("m", value)
    assert exact == value
    assert exact.as_tuple().exponent == -8


@pytest.mark.parametrize(
    "value",
    [
        0.1,
        True,
        "1.0",
        None,
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("0.000000001"),
        Decimal("1e30"),
        Decimal("-1000000000000000000000000000000"),
    ],
)
def test_inexact_or_oversized_figures_are_refused(value: object):
    with pytest.raises(ValueError, match="metric 'm'"):
        exact_metric("m", value)


def test_integers_become_exact_figures_and_keys_must_be_names():
    assert format(exact_metric("trades", 42), "f") == "42.00000000"
    with pytest.raises(ValueError, match="key"):
        exact_metric("", Decimal(1))


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"stoploss": -0.1}, "interface.stoploss"),
        ({"roi": {"0": [1, 0.5]}}, r"interface.roi.0\[1\]"),
        ({"s": {1, 2}}, "interface.s"),
        ({"n": {1: "x"}}, "interface.n"),
        ({"d": Decimal("0.1")}, "interface.d"),
    ],
)
def test_strategy_interface_must_be_exact_json(value: dict[str, object], where: str):
    with pytest.raises(ValueError, match=where):
        check_json(value)


def test_migrations_are_numbered_one_to_n_and_render_for_both_backends():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    for migration in MIGRATIONS:
        for dialect in ("postgres", "sqlite"):
            statements = migration.statements(dialect)
            assert statements
            assert not any(re.search(r"[{}]", s) for s in statements)


def test_the_upsert_ranks_statuses_as_the_model_does():
    for status, rank in STATUS_RANK.items():
        if rank < max(STATUS_RANK.values()):
            assert f"WHEN '{status}' THEN {rank}" in UPSERT_RUN
        else:
            assert f"ELSE {rank}" in UPSERT_RUN
