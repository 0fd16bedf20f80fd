"""The leak scan of tests/e2e/test_secrets_never_leak.py: a secret is found as it is, and where
it is base64-encoded (a ConfigMap's binaryData, an encoded env value), at any alignment."""

from __future__ import annotations

import base64
import json

import pytest
from tests.support.leaks import leaks

SECRET = "fakesecret-91b2e4-DO-NOT-LEAK"


def test_a_plain_secret_is_found_and_clean_text_is_not():
    assert leaks(SECRET, f'{{"key": "{SECRET}"}}')
    assert not leaks(SECRET, '{"key": "nothing to see", "binaryData": {"x": "aGVsbG8gd29ybGQ="}}')


@pytest.mark.parametrize("before", ["", "x", "xy", '{"exchange": {"secret": "'])
def test_a_base64_encoded_secret_is_found_at_every_alignment(before: str):
    encoded = base64.b64encode(f"{before}{SECRET}\nmore".encode()).decode()
    # What a ConfigMap with the secret in binaryData looks like to a reader of the cluster.
    view = json.dumps({"kind": "ConfigMap", "binaryData": {"config.json": encoded}})
    assert SECRET not in view  # a plain substring match passes it: the case this catches
    assert leaks(SECRET, view)
    urlsafe = base64.urlsafe_b64encode(f"{before}{SECRET}".encode()).decode()
    assert leaks(SECRET, f"token={urlsafe}")


def test_another_secret_encoded_does_not_count():
    encoded = base64.b64encode(b"fakesecret-000000-SOMETHING-ELSE").decode()
    assert not leaks(SECRET, json.dumps({"binaryData": {"k": encoded}}))
