"""Label selectors decide which bots a breaker stops: every operator, missing keys, and the
empty selector, as the API server reads them."""

from __future__ import annotations

from typing import Any

import pytest

from tradebot.domain.selectors import selects

LABELS = {"fleet": "main", "tier": "gold"}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, LABELS, True),
        ({}, {}, True),
        ({"matchLabels": {}}, {}, True),
        ({"matchLabels": {"fleet": "main"}}, LABELS, True),
        ({"matchLabels": {"fleet": "other"}}, LABELS, False),
        ({"matchLabels": {"fleet": "main"}}, {}, False),
        ({"matchLabels": {"fleet": "main", "tier": "silver"}}, LABELS, False),
        (expr("tier", "In", "gold", "silver"), LABELS, True),
        (expr("tier", "In", "silver"), LABELS, False),
        (expr("missing", "In", "x"), LABELS, False),
        (expr("tier", "In"), LABELS, False),
        (expr("tier", "NotIn", "silver"), LABELS, True),
        (expr("tier", "NotIn", "gold"), LABELS, False),
        (expr("missing", "NotIn", "x"), LABELS, True),
        (expr("tier", "Exists"), LABELS, True),
        (expr("missing", "Exists"), LABELS, False),
        (expr("tier", "DoesNotExist"), LABELS, False),
        (expr("missing", "DoesNotExist"), LABELS, True),
        (expr("tier", "Gt", "1"), LABELS, False),  # not a label selector operator
        ({"matchLabels": {"fleet": "main"}, **expr("tier", "NotIn", "gold")}, LABELS, False),
        ({"matchLabels": {"fleet": "main"}, **expr("tier", "In", "gold")}, LABELS, True),
    ],
)
def test_selects(selector: dict[str, Any], labels: dict[str, str], expected: bool):
    assert selects(selector, labels) is expected
