"""The parameter-set hash is canonical: key order and whitespace don't change it, values do."""

from __future__ import annotations

import hashlib
import json

from tradebot.domain.parameters_hash import parameters_hash


def test_key_order_does_not_change_the_hash() -> None:
    a = {"buy": {"rsi": 30, "ema": 12}, "roi": {"0": 0.1}}
    b = json.loads('{"roi": {"0": 0.1}, "buy": {"ema": 12, "rsi": 30}}')
    assert parameters_hash(a) == parameters_hash(b)


def test_a_value_changes_the_hash() -> None:
    assert parameters_hash({"buy": {"rsi": 30}}) != parameters_hash({"buy": {"rsi": 31}})


def test_the_hash_is_sha256_of_compact_sorted_json() -> None:
    expected = hashlib.sha256(b'{"a":1,"b":[1,2]}').hexdigest()
    assert parameters_hash({"b": [1, 2], "a": 1}) == expected
