"""The shortcut that stops a kopf timer redoing a step from a copy it already acted on."""

from __future__ import annotations

from tradebot.controllers.recent import Recently


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_seen_only_at_the_version_marked_and_within_the_ttl() -> None:
    clock = Clock()
    recent = Recently(ttl=30.0, clock=clock)
    assert not recent.seen("uid-a", "10")  # nothing marked yet
    recent.mark("uid-a", "10")
    assert recent.seen("uid-a", "10")
    # Anything written since (a newer version, ours or anyone's) makes the round run.
    assert not recent.seen("uid-a", "11")
    assert not recent.seen("uid-b", "10")
    clock.now += 30.5
    assert not recent.seen("uid-a", "10")  # a patch of ours that failed is retried then


def test_old_entries_are_pruned_as_new_marks_come() -> None:
    clock = Clock()
    recent = Recently(ttl=5.0, clock=clock)
    for i in range(100):
        recent.mark(f"uid-{i}", "1")
        clock.now += 0.1
    assert len(recent) == 51  # the marks of the last 5 s (0.1 s apart), the rest dropped
    assert recent.seen("uid-99", "1")
    assert not recent.seen("uid-0", "1")


def test_forget_and_remark() -> None:
    clock = Clock()
    recent = Recently(ttl=5.0, clock=clock)
    recent.mark("uid-a", "1")
    recent.forget("uid-a")
    assert not recent.seen("uid-a", "1")
    recent.mark("uid-a", "2")
    assert recent.seen("uid-a", "2")
    assert not recent.seen("uid-a", "1")
