"""Text made storable at the records boundary: NUL and lone surrogates escaped in every string
of a record, everything else untouched."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradebot.records import IncidentRecord, RunRecord, entries
from tradebot.records.storable import storable, storable_text

T0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)


def test_nul_and_lone_surrogates_become_their_json_escapes():
    assert storable_text("5m\x00") == "5m\\u0000"
    assert storable_text("a\ud800b\udfff") == "a\\ud800b\\udfff"
    # Positive control: ordinary text, a backslash, and a real astral character stay as they are.
    assert storable_text("5m \\u0000 \N{ROCKET} \u00e9") == "5m \\u0000 \N{ROCKET} \u00e9"


def test_every_string_of_a_record_is_escaped_and_nothing_else_changes():
    run = RunRecord(
        id="r1",
        resource_uid="uid",
        namespace="ns",
        name="bt",
        kind="backtest",
        status="failed",
        error="freqtrade said \x00 and \udc80",
        created_at=T0,
    )
    clean = storable(run)
    assert clean.error == "freqtrade said \\u0000 and \\udc80"
    assert clean.model_dump() | {"error": None} == run.model_dump() | {"error": None}
    incident = IncidentRecord(
        id="i1",
        namespace="ns",
        source_kind="CircuitBreaker",
        source_name="guard",
        source_uid="u",
        bots=("bot\x00a", "b"),
        severity="critical",
        reason="drawdown",
        description="d",
        figures={"drawdown": Decimal("0.12345678")},
        created_at=T0,
    )
    assert storable(incident).bots == ("bot\\u0000a", "b")
    assert storable(incident).figures == {"drawdown": Decimal("0.12345678")}
    nested = {"timeframe\x00": ["5m\x00", {"k": "\ud800"}], "n": 3, "when": T0}
    assert storable(nested) == {
        "timeframe\\u0000": ["5m\\u0000", {"k": "\\ud800"}],
        "n": 3,
        "when": T0,
    }


def test_clean_values_come_back_as_the_same_object():
    run = RunRecord(id="r", resource_uid="u", namespace="n", name="x", kind="backtest")
    value = {"a": ["b", ("c",)], "d": Decimal(1)}
    assert storable(run) is run
    assert storable(value) is value


@given(st.text())
def test_the_result_is_always_utf8_and_json_and_a_second_pass_changes_nothing(text: str):
    once = storable_text(text)
    once.encode()  # raises UnicodeEncodeError on a lone surrogate
    assert "\x00" not in once
    assert storable_text(once) == once
    json.dumps(once, ensure_ascii=False).encode()


def test_an_outbox_line_of_unstorable_text_encodes_and_decodes():
    # Before: a lone surrogate made entries.encode() raise UnicodeEncodeError, so the write
    # was neither sent nor buffered.
    entry = entries.strategy_entry("ns", "s", "u", "S", "a" * 64, {"timeframe": "5m\ud800\x00"}, T0)
    line = entries.encode(entry)
    assert entries.decode(line.rstrip(b"\n")).args["interface"] == {"timeframe": "5m\\ud800\\u0000"}
