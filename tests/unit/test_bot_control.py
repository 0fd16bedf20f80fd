"""Which REST calls stop a bot for each action, in which order."""

from __future__ import annotations

import pytest

from tradebot.controllers.bot_control import StopOutcome, _api_steps


@pytest.mark.parametrize(
    ("action", "force", "steps"),
    [
        ("stop", False, ["stop"]),
        ("stop", True, ["stopentry", "forceexit", "stop"]),
        ("stopEntries", False, ["stopentry"]),
        ("stopEntries", True, ["stopentry", "forceexit"]),
        ("suspend", False, ["stopentry", "stop"]),
        ("suspend", True, ["stopentry", "forceexit", "stop"]),
    ],
)
def test_api_steps(action: str, force: bool, steps: list[str]):
    assert _api_steps(action, force) == steps  # type: ignore[arg-type]


def test_outcome_description_names_what_happened():
    assert StopOutcome().describe() == "nothing was running"
    o = StopOutcome(pod_removed=True, api_calls=["stopentry"], api_error="timed out")
    assert o.describe() == "API stopentry; API failed (timed out); pod removed"
