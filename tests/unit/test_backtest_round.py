"""The Backtest round's decision, every step: from the phase, the spec, the Job and the
Strategy to what the controller does."""

from __future__ import annotations

from typing import Any

import pytest

from tradebot.domain.backtest_round import BacktestDecision, before_strategy, with_strategy


@pytest.mark.parametrize(
    ("phase", "spec_error", "job", "expected"),
    [
        (
            None,
            "bad",
            "absent",
            BacktestDecision("invalid", "InvalidSpec", "invalid spec: bad", announce=True),
        ),
        (
            "Queued",
            "bad",
            "absent",
            BacktestDecision("invalid", "InvalidSpec", "invalid spec: bad", announce=True),
        ),
        ("Failed", "bad", "absent", BacktestDecision("idle")),
        ("Succeeded", None, "absent", BacktestDecision("cleanup")),
        ("Failed", None, "finished", BacktestDecision("cleanup")),
        ("Running", None, "finished", BacktestDecision("complete")),
        ("Queued", None, "finished", BacktestDecision("complete")),
        ("Queued", None, "running", BacktestDecision("follow", mark_running=True)),
        ("Running", None, "running", BacktestDecision("follow", mark_running=False)),
        (
            "Running",
            None,
            "absent",
            BacktestDecision(
                "requeue", "Requeued", "disappeared before it finished", announce=True
            ),
        ),
        (None, None, "absent", None),
        ("Pending", None, "absent", None),
        ("Queued", None, "absent", None),
    ],
)
def test_before_the_strategy(
    phase: str | None, spec_error: str | None, job: Any, expected: BacktestDecision | None
) -> None:
    assert before_strategy(phase, spec_error, job) == expected


READY = {"phase": "Ready"}
FAILED = {"phase": "Failed", "message": "syntax error"}


@pytest.mark.parametrize(
    ("phase", "message", "status", "found", "expected"),
    [
        (
            None,
            None,
            None,
            False,
            BacktestDecision("wait", "StrategyNotFound", "Strategy s not found", announce=True),
        ),
        (
            "Pending",
            "Strategy s not found",
            None,
            False,
            BacktestDecision("wait", "StrategyNotFound", "Strategy s not found", announce=False),
        ),
        (
            None,
            None,
            {},
            True,
            BacktestDecision(
                "wait", "StrategyNotReady", "Strategy s is not introspected yet", announce=True
            ),
        ),
        (
            "Pending",
            "Strategy s is Failed: syntax error",
            FAILED,
            True,
            BacktestDecision(
                "wait", "StrategyNotReady", "Strategy s is Failed: syntax error", announce=False
            ),
        ),
        (
            "Pending",
            "Strategy s not found",
            FAILED,
            True,
            BacktestDecision(
                "wait", "StrategyNotReady", "Strategy s is Failed: syntax error", announce=True
            ),
        ),
        (
            "Queued",
            "waiting for admission",
            FAILED,
            True,
            BacktestDecision(
                "wait", "StrategyNotReady", "Strategy s is Failed: syntax error", announce=True
            ),
        ),
        (
            None,
            None,
            READY,
            True,
            BacktestDecision("queue", "Ready", "Strategy s is Ready", announce=True),
        ),
        (
            "Pending",
            "Strategy s not found",
            READY,
            True,
            BacktestDecision("queue", "Ready", "Strategy s is Ready", announce=True),
        ),
        ("Queued", "queued at position 3", READY, True, BacktestDecision("idle")),
    ],
)
def test_with_the_strategy(
    phase: str | None,
    message: str | None,
    status: dict[str, Any] | None,
    found: bool,
    expected: BacktestDecision,
) -> None:
    assert with_strategy(phase, message, "s", status, found=found) == expected
