"""What one round of the Backtest controller does, decided from what it observed (pure; the
controller reads the cluster, calls these, and carries the decision out).

The round observes in two stages, as it reads: the phase, the spec and the Job first; the
Strategy only when no Job exists and the Backtest is not running or finished
(`before_strategy` returns None then, and `with_strategy` decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

TERMINAL = ("Succeeded", "Failed")

Step = Literal[
    "invalid",  # the spec does not validate: Failed (once)
    "cleanup",  # finished: retry the record if needed, delete the Job, free the slot
    "complete",  # the Job finished: read its result, Succeeded or Failed, record
    "follow",  # the Job runs: Running (once), and on the local executor one step of it
    "requeue",  # Running but the Job is gone: back to the queue
    "wait",  # the Strategy is missing or not Ready: Pending
    "queue",  # ready to run: Queued for the admission loop, record the run as queued
    "idle",  # Queued already: the admission loop's turn
]
JobSeen = Literal["absent", "running", "finished"]


@dataclass(frozen=True)
class BacktestDecision:
    step: Step
    reason: str = ""
    message: str = ""
    # Something changed that deserves an Event and a log line (not on every repeat).
    announce: bool = False
    # `follow` only: the phase is not Running yet.
    mark_running: bool = False


def before_strategy(
    phase: str | None, spec_error: str | None, job: JobSeen
) -> BacktestDecision | None:
    """The decision from the phase, the spec's validation and the Job; None when the Strategy
    must be read first."""
    if spec_error is not None:
        if phase in TERMINAL:
            return BacktestDecision("idle")
        return BacktestDecision(
            "invalid", "InvalidSpec", f"invalid spec: {spec_error}", announce=True
        )
    if phase in TERMINAL:
        return BacktestDecision("cleanup")
    if job == "finished":
        return BacktestDecision("complete")
    if job == "running":
        return BacktestDecision("follow", mark_running=phase != "Running")
    if phase == "Running":
        return BacktestDecision(
            "requeue", "Requeued", "disappeared before it finished", announce=True
        )
    return None


def with_strategy(
    phase: str | None,
    message: str | None,
    strategy_ref: str,
    strategy_status: Mapping[str, Any] | None,
    found: bool,
) -> BacktestDecision:
    """No Job and not running: wait for the Strategy, or queue."""
    if not found:
        why = f"Strategy {strategy_ref} not found"
        return BacktestDecision(
            "wait", "StrategyNotFound", why, announce=phase != "Pending" or message != why
        )
    status = strategy_status or {}
    if status.get("phase") != "Ready":
        why = (
            f"Strategy {strategy_ref} is {status.get('phase') or 'not introspected yet'}: "
            f"{status.get('message') or ''}"
        ).rstrip(": ")
        return BacktestDecision(
            "wait", "StrategyNotReady", why, announce=phase != "Pending" or message != why
        )
    if phase != "Queued":
        return BacktestDecision(
            "queue", "Ready", f"Strategy {strategy_ref} is Ready", announce=True
        )
    return BacktestDecision("idle")
