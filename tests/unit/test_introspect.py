"""Strategy introspection parses, never runs, the code."""

from __future__ import annotations

import textwrap

import pytest
from tests.support.manifests import example

from tradebot.freqtrade.introspect import IntrospectionError, code_hash, introspect

GOOD = example("Strategy", "ema-rsi")["spec"]["code"]


def test_example_strategy_interface():
    result = introspect(GOOD, "EmaRsiStrategy")
    i = result.interface
    assert (i.timeframe, i.stoploss, i.can_short) == ("5m", "-0.10000000", False)
    assert i.minimal_roi == {"0": "0.04000000", "60": "0.02000000", "180": "0.01000000"}
    assert (i.startup_candle_count, i.interface_version, i.uses_freqai) == (120, 3, False)
    assert "populate_indicators" in (i.methods or [])
    assert result.code_hash == code_hash(GOOD)
    assert len(result.code_hash) == 64


def test_freqai_is_detected():
    spec = example("Strategy", "freqai-regressor")["spec"]
    assert introspect(spec["code"], spec["className"]).interface.uses_freqai


def test_code_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    code = GOOD + f"\nopen({str(marker)!r}, 'w').write('x')\nraise SystemExit(3)\n"
    introspect(code, "EmaRsiStrategy")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("code", "class_name", "message"),
    [
        (
            "class A(IStrategy):\n    def populate_indicators(self:\n        pass\n",
            "A",
            "syntax error at line 2",
        ),
        (GOOD, "Missing", "class Missing not found (classes in the code: EmaRsiStrategy)"),
        ("class A(object):\n    pass\n", "A", "does not subclass IStrategy"),
        (
            "from freqtrade.strategy import IStrategy\nclass A(IStrategy):\n"
            "    def populate_indicators(self, df, md):\n        return df\n",
            "A",
            "lacks required method(s): populate_entry_trend or populate_buy_trend",
        ),
    ],
)
def test_invalid_code_says_why(code: str, class_name: str, message: str):
    with pytest.raises(IntrospectionError) as exc:
        introspect(code, class_name)
    assert message in str(exc.value)


def test_subclass_of_a_local_base_and_legacy_names():
    code = textwrap.dedent("""
        from freqtrade.strategy import IStrategy
        class Base(IStrategy):
            timeframe = "1h"
        class Child(Base):
            stoploss: float = -0.2
            def populate_indicators(self, df, md): return df
            def populate_buy_trend(self, df, md): return df
            def populate_sell_trend(self, df, md): return df
    """)
    i = introspect(code, "Child").interface
    assert i.stoploss == "-0.20000000"
    assert i.timeframe is None  # inherited, not visible without running the code


def test_hash_changes_with_one_byte():
    assert code_hash(GOOD) != code_hash(GOOD + " ")


# Deeply nested but tiny: a long chain of binary operators, which CPython's parser refuses
# with RecursionError while building the tree.
_TOO_DEEP = "class A(IStrategy):\n    x = 1" + " + 1" * 200_000 + "\n"


def test_code_too_deep_for_the_parser_is_invalid_not_a_crash():
    import ast

    with pytest.raises(RecursionError):  # the premise: the parser itself gives up
        ast.parse(_TOO_DEEP)
    with pytest.raises(IntrospectionError) as exc:
        introspect(_TOO_DEEP, "A")
    assert str(exc.value) == (
        "code cannot be analysed: too deeply nested for the parser (RecursionError)"
    )


def test_code_the_parser_runs_out_of_memory_on_is_invalid(monkeypatch: pytest.MonkeyPatch):
    import ast

    def exhausted(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr(ast, "parse", exhausted)
    with pytest.raises(IntrospectionError) as exc:
        introspect(GOOD, "EmaRsiStrategy")
    assert str(exc.value) == (
        "code cannot be analysed: too large or nested for the parser (MemoryError)"
    )


def test_code_with_a_nul_is_invalid_with_a_message_that_says_so():
    """Before: "syntax error at line None: ..." (the parser names no line for a NUL)."""
    with pytest.raises(IntrospectionError) as exc:
        introspect(GOOD + "\n\x00\n", "EmaRsiStrategy")
    assert str(exc.value) == "code cannot be parsed: source code string cannot contain null bytes"
    # Positive control: the same code without the NUL introspects.
    assert introspect(GOOD, "EmaRsiStrategy").interface is not None


def test_a_nul_in_a_string_of_the_code_is_kept_as_text():
    # An escape in a literal (no NUL byte in the source): introspection passes the value on,
    # and the records make it storable (tests/unit/test_records_storable.py).
    code = GOOD.replace('timeframe = "5m"', 'timeframe = "5m\\x00"')
    assert code != GOOD
    assert introspect(code, "EmaRsiStrategy").interface.timeframe == "5m\x00"
