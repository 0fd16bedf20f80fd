"""Shared API types: money never passes through float, ratios are exact, durations parse."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from tradebot.api.types import (
    Duration,
    Fraction,
    Money,
    SignedMoney,
    StakeAmount,
    Timerange,
    pair_quote,
    parse_duration,
    parse_money,
)

MONEY = TypeAdapter(Money)
SIGNED = TypeAdapter(SignedMoney)
STAKE = TypeAdapter(StakeAmount)

amounts = st.decimals(
    min_value=0,
    max_value=Decimal("999999999999999"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)


@given(amounts)
def test_money_round_trips_exactly_through_its_string_form(amount: Decimal):
    wire = MONEY.dump_python(MONEY.validate_python(format(amount, "f")), mode="json")
    assert isinstance(wire, str)
    assert Decimal(wire) == amount
    assert len(wire.split(".")[1]) == 8


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_money_refuses_every_float(value: float):
    with pytest.raises(ValidationError, match="not a float"):
        MONEY.validate_python(value)


@pytest.mark.parametrize("text", ["-1", "1.123456789", "1e5", "abc", "", " ", "NaN", "1,5"])
def test_money_refuses_what_is_not_an_amount(text: str):
    with pytest.raises(ValidationError):
        MONEY.validate_python(text)


def test_money_accepts_integers_and_signed_money_negatives():
    assert MONEY.validate_python(100) == Decimal("100.00000000")
    assert SIGNED.validate_python("-0.5") == Decimal("-0.50000000")
    with pytest.raises(ValueError, match="decimal places"):
        parse_money(Decimal("0.000000001"))


def test_stake_amount():
    assert STAKE.validate_python("unlimited") == "unlimited"
    assert STAKE.dump_python(STAKE.validate_python(50), mode="json") == "50.00000000"
    for bad in (0, "0", "0.0", "-1", 10.5, "UNLIMITED"):
        with pytest.raises(ValidationError):
            STAKE.validate_python(bad)


def test_fraction_is_exact_and_bounded():
    frac = TypeAdapter(Fraction)
    assert frac.validate_python(0.1) == Decimal("0.1")  # not 0.1000000000000000055...
    assert frac.validate_python(1) == Decimal(1)
    for bad in (1.0001, -0.1, "x", True):
        with pytest.raises(ValidationError):
            frac.validate_python(bad)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5)]
)
def test_durations(text: str, seconds: float):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)
    assert TypeAdapter(Duration).validate_python(text) == text


@pytest.mark.parametrize("bad", ["5", "5 minutes", "m5", "-5m", "1.5h", ""])
def test_bad_durations(bad: str):
    with pytest.raises(ValidationError):
        TypeAdapter(Duration).validate_python(bad)


def test_timerange():
    tr = Timerange.model_validate({"start": "2024-01-02", "end": "2024-02-01"})
    assert tr.freqtrade() == "20240102-20240201"
    assert Timerange(start="2024-01-02").freqtrade() == "20240102-"
    for bad in (
        {"start": "2024-02-01", "end": "2024-02-01"},
        {"start": "2024-13-01"},
        {"start": "20240101"},
    ):
        with pytest.raises(ValidationError):
            Timerange.model_validate(bad)


def test_pair_quote():
    assert pair_quote("BTC/USDT") == "USDT"
    assert pair_quote("BTC/USDT:USDT") == "USDT"
