"""The dead-man's switch cannot be switched off: supervision.deadline is bounded (24h, and 1h
for real money), durations cannot overflow, and any error parsing a LiveBot spec, not only
pydantic's, becomes InvalidSpec with a message (never an exception escaping the round)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tradebot.api import livebot
from tradebot.api.livebot import InvalidSpec, LiveBotSpec, parse_spec
from tradebot.api.types import parse_duration
from tradebot.domain import livebot_round

OVERFLOW = "9" * 31 + "d"
APPROVAL = {
    "approvedBy": "alice",
    "approvedAt": "2026-11-01T10:00:00Z",
    "reference": "pr/1",
    "codeHash": "c" * 64,
}


def _raw(mode: str = "dryRun", deadline: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "strategyRef": {"name": "ema-rsi"},
        "pairs": ["BTC/USDT"],
        "mode": mode,
        "exchange": {"name": "binance"},
    }
    if mode != "dryRun":
        raw["exchange"]["credentialsSecretRef"] = {"name": "keys"}
        raw["promotion"] = {
            "backtestRef": {"name": "bt"},
            **({"approval": APPROVAL} if mode == "live" else {}),
        }
        raw["limits"] = {"maxOpenTrades": 3, "maxStakePerTrade": "100"}
        raw["stakeAmount"] = "50"  # live refuses "unlimited"
    if deadline is not None:
        raw["supervision"] = {"deadline": deadline}
    return raw


def test_an_overflowing_duration_is_a_value_error_not_an_overflow():
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(OVERFLOW)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("123456s")
    # Control: the largest numbers the pattern allows parse.
    assert parse_duration("99999d") == dt.timedelta(days=99999)


@given(st.from_regex(r"\A([0-9]{1,5}(ms|s|m|h|d)){1,5}\Z"))
def test_no_duration_the_pattern_allows_overflows_a_date(text: str):
    if len(text) > 32:
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(text)
        return
    # Added to a date far ahead, as refresh and cooldown times are: no OverflowError.
    assert (dt.datetime(2100, 1, 1, tzinfo=dt.UTC) + parse_duration(text)).year < 9999


@pytest.mark.parametrize(
    ("mode", "deadline", "error"),
    [
        ("dryRun", OVERFLOW, "not a duration"),
        ("dryRun", "999999999d", "not a duration"),
        ("dryRun", "1d", "not a duration in ms, s, m or h"),
        ("dryRun", "25h", "maximum of 24h"),
        ("dryRun", "1441m", "maximum of 24h"),
        ("dryRun", "0s", "longer than 0s"),
        ("testnet", "61m", "at most 1h"),
        ("live", "2h", "at most 1h"),
    ],
)
def test_deadlines_out_of_bounds_are_refused(mode: str, deadline: str, error: str):
    with pytest.raises(ValidationError, match=error):
        LiveBotSpec.model_validate(_raw(mode, deadline))
    with pytest.raises(InvalidSpec, match=error):
        parse_spec(_raw(mode, deadline))


@pytest.mark.parametrize(
    ("mode", "deadline"),
    [("dryRun", "24h"), ("dryRun", "90s"), ("testnet", "1h"), ("live", "60m"), ("live", None)],
)
def test_deadlines_within_bounds_pass(mode: str, deadline: str | None):
    spec = parse_spec(_raw(mode, deadline))
    assert spec.supervision.deadline == (deadline or "10m")


def test_any_error_of_the_parser_is_invalid_spec(monkeypatch: pytest.MonkeyPatch):
    raw = _raw(deadline="30m")
    assert parse_spec(raw).supervision.deadline == "30m"  # control: it parses

    def overflow(text: str) -> dt.timedelta:
        raise OverflowError("Python int too large to convert to C int")

    monkeypatch.setattr(livebot, "parse_duration", overflow)
    with pytest.raises(InvalidSpec, match="OverflowError: Python int too large"):
        parse_spec(raw)

    def odd(text: str) -> dt.timedelta:
        raise TypeError("unsupported operand")

    monkeypatch.setattr(livebot, "parse_duration", odd)
    with pytest.raises(InvalidSpec, match="TypeError: unsupported operand"):
        parse_spec(raw)


def test_an_invalid_spec_fails_the_bot_with_reason_invalid_spec():
    try:
        parse_spec(_raw(deadline=OVERFLOW))
    except InvalidSpec as e:
        error = str(e)
    o = livebot_round.Observation(
        name="b",
        namespace="ns",
        uid="u",
        generation=1,
        labels={},
        status={},
        spec=None,
        spec_error=error,
        breakers=(),
        strategy=None,
        now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        allowed_modes=("dryRun",),
        floors={},
        lease_duration=dt.timedelta(seconds=30),
        local_executor=False,
    )
    decision = livebot_round.decide(o).decision
    assert isinstance(decision, livebot_round.Hold)
    assert (decision.phase, decision.reason) == ("Failed", "InvalidSpec")
    assert "not a duration" in decision.message
