"""Whether a bot's objects still are what the operator built (pure).

The ConfigMap (config, strategy code, dead-man script), the NetworkPolicy and the pod are built
by domain/bots.py when the pod is created; whoever may edit objects in the namespace could
change any of them afterwards (a strategy swapped in the ConfigMap, an ingress opened to
everyone, an image edited in the pod) and the bot would trade something nobody approved. Each
LiveBot round compares them with what the same builders produce now, and the controller
restores what differs.

Comparisons are exact where the API server keeps what was sent (a ConfigMap's data, a
NetworkPolicy's spec), and "covers" where it adds defaults (a pod's containers, env and
volumes get fields the builder never sets): every field the builder sets must be there with
the same value, and every list must have the same length, so nothing can be added to a list
(an env variable, an ingress rule) unseen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tradebot.domain import bots


def config_map_fingerprint(data: Mapping[str, str] | None, binary: Mapping[str, str] | None) -> str:
    """sha256 of a ConfigMap's content (data and binaryData): what the watch keeps of it."""
    content = {"data": dict(data or {}), "binaryData": dict(binary or {})}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def desired_config_map_fingerprint(manifest: Mapping[str, Any]) -> str:
    return config_map_fingerprint(manifest.get("data"), manifest.get("binaryData"))


def policy_fingerprint(spec: Mapping[str, Any] | None) -> str:
    """sha256 of a NetworkPolicy's spec."""
    return hashlib.sha256(json.dumps(spec or {}, sort_keys=True).encode()).hexdigest()


def covers(actual: Any, desired: Any) -> bool:
    """True when every field set in `desired` is in `actual` with the same value; lists
    compare item by item and must have the same length."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and covers(actual[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(covers(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)


def _containers(spec: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("name")): c for c in spec.get(key) or []}


def pod_drift(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> tuple[str, ...]:
    """What of the pod `actual` (camelCase, as the API server returns it) differs from the pod
    `desired` the builder makes now; empty when nothing does. Names only, never values: an
    env value may be a key."""
    found: list[str] = []
    want_meta, have_meta = desired.get("metadata") or {}, actual.get("metadata") or {}
    want_hash = (want_meta.get("annotations") or {}).get(bots.ANNOTATION_CONFIG_HASH)
    if (have_meta.get("annotations") or {}).get(bots.ANNOTATION_CONFIG_HASH) != want_hash:
        found.append(f"annotation {bots.ANNOTATION_CONFIG_HASH}")
    have_labels = have_meta.get("labels") or {}
    for label, value in sorted((want_meta.get("labels") or {}).items()):
        if have_labels.get(label) != value:
            found.append(f"label {label}")
    want_spec, have_spec = desired.get("spec") or {}, actual.get("spec") or {}
    for key in ("initContainers", "containers"):
        want, have = _containers(want_spec, key), _containers(have_spec, key)
        for name in sorted(set(have) - set(want)):
            found.append(f"{key} {name} added")
        for name in sorted(set(want) - set(have)):
            found.append(f"{key} {name} missing")
        for name in sorted(set(want) & set(have)):
            w, h = want[name], have[name]
            for field in ("image", "command", "args"):
                if w.get(field) != h.get(field):
                    found.append(f"{field} of container {name}")
            for field in ("env", "envFrom", "volumeMounts"):
                if not covers(h.get(field) or [], w.get(field) or []):
                    found.append(f"{field} of container {name}")
    if not covers(have_spec.get("volumes") or [], want_spec.get("volumes") or []):
        found.append("volumes")
    return tuple(found)
