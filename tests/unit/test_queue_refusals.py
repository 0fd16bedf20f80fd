"""What the admission loop makes of a create the API server refused: a 400 or 422 is a
refusal for good (its message goes to the object), anything else is retried."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from tradebot.controllers.queue import api_refusal


def _error(status: int, body: object, reason: str = "") -> ApiException:
    e = ApiException(status=status, reason=reason)
    e.body = body if isinstance(body, str) else json.dumps(body)
    return e


def test_an_invalid_create_is_refused_with_the_api_servers_message():
    message = (
        'Job.batch "bt-x" is invalid: metadata.labels: Invalid value: "xxx": must be no more '
        "than 63 characters"
    )
    assert api_refusal(_error(422, {"kind": "Status", "message": message})) == message
    assert api_refusal(_error(400, "not json", reason="Bad Request")) == "Bad Request"


def test_other_failures_are_not_refusals():
    for status in (403, 404, 409, 429, 500, 503):
        assert api_refusal(_error(status, {"message": "try later"})) is None
