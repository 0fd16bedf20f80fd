"""The identity of a strategy parameter set: one hash for the same values, whatever the key
order or the export time around them, so a Hyperopt's best set, the Strategy that uses it and
the bots that run it can be matched by value."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def parameters_hash(params: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no whitespace) of `params`."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
