"""The dead-man's switch, operator side: when a monitoring round marks a bot's pod as
supervised (annotation `tradebot.dev/supervised-at`), and the sidecar that stops the bot's
entries when those marks stop coming (tradebot/sidecar/deadman.py, shipped in the bot's
ConfigMap and run by the bot's own image, so no further image is needed).

Marks are written at most every quarter of the deadline, and at least once a minute: hundreds
of bots polled every 10 s would otherwise patch their pods on every round. The sidecar sees a
mark through the kubelet's downward-API file, which lags the pod by up to about a minute (the
kubelet's sync period), so deadlines under a few minutes suit the local executor only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from tradebot.domain import jobs
from tradebot.sidecar import deadman

ANNOTATION = deadman.ANNOTATION
CONTAINER = "deadman"
# The ConfigMap item: a hyphen no Python class name has, so it never meets a strategy file.
SCRIPT_KEY = "tradebot-deadman.py"
SCRIPT = (
    resources.files(deadman.__package__ or "tradebot.sidecar").joinpath("deadman.py").read_text()
)
PODINFO_VOLUME = "podinfo"
PODINFO_DIR = "/etc/tradebot/podinfo"
ANNOTATIONS_FILE = "annotations"
MAX_REFRESH = dt.timedelta(minutes=1)
# The bot's state kept for its container's next start (an emptyDir: it outlives a container
# restart, not the pod). The bot reads it as a second config file, after its own, so its
# initial_state wins; the init container writes the operator's intended state, the sidecar
# then keeps what the bot's state became (paused by a person, a breaker or itself).
STATE_VOLUME = "bot-state"
STATE_DIR = "/run/tradebot"
STATE_FILE = "bot-state.json"
STATE_PATH = f"{STATE_DIR}/{STATE_FILE}"
INIT_CONTAINER = "bot-state"


def refresh_interval(deadline: dt.timedelta) -> dt.timedelta:
    """How old a mark may get before the operator writes a new one: a quarter of the
    deadline leaves room for a slow round and the kubelet's lag; a minute at most."""
    return min(deadline / 4, MAX_REFRESH)


def needs_mark(
    annotations: Mapping[str, str] | None, now: dt.datetime, deadline: dt.timedelta
) -> bool:
    """Whether this round writes a new mark: none yet, one that is not a time, one due, or
    one from the future (the operator's clock went back)."""
    mark = deadman.parse_time((annotations or {}).get(ANNOTATION))
    return mark is None or mark > now or now - mark >= refresh_interval(deadline)


def mark_patch(now: dt.datetime) -> dict[str, Any]:
    """The merge patch of the pod that marks it supervised at `now`."""
    return {"metadata": {"annotations": {ANNOTATION: deadman.format_time(now)}}}


def annotations_file(annotations: Mapping[str, str]) -> str:
    """The pod's annotations as the downward API writes them (Kubernetes' fieldpath.FormatMap:
    sorted key="value" lines, no final newline); the local executor writes this in the
    kubelet's place."""
    return "\n".join(f"{key}={_quote(value)}" for key, value in sorted(annotations.items()))


def _quote(value: str) -> str:
    # Go's strconv.Quote and JSON agree on printable ASCII; the sidecar reads it as JSON.
    return json.dumps(value, ensure_ascii=True)


def command(
    python: str,
    script: str,
    deadline: dt.timedelta,
    annotations: str,
    url: str,
    state_file: str | None = None,
) -> list[str]:
    """The sidecar's command line, the same in a pod and under the local executor."""
    return [
        python,
        script,
        "--deadline-seconds",
        f"{deadline.total_seconds():g}",
        "--annotations",
        annotations,
        "--url",
        url,
        *(["--state-file", state_file] if state_file is not None else []),
    ]


def init_command(python: str, script: str, state_file: str, initial_state: str) -> list[str]:
    """The command that writes the state file a new pod's bot starts from (kept if there)."""
    return [python, script, "--init-state", initial_state, "--state-file", state_file]


def state_volume() -> dict[str, Any]:
    return {"name": STATE_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}}


def init_container(
    *, image: str, config_dir: str, config_volume: str, initial_state: str
) -> dict[str, Any]:
    """Writes the bot's starting state before the bot starts (once per pod)."""
    return {
        "name": INIT_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": init_command("python3", f"{config_dir}/{SCRIPT_KEY}", STATE_PATH, initial_state),
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": {
            "requests": {"cpu": "5m", "memory": "24Mi"},
            "limits": {"cpu": "50m", "memory": "64Mi"},
        },
        "volumeMounts": [
            {"name": config_volume, "mountPath": config_dir, "readOnly": True},
            {"name": STATE_VOLUME, "mountPath": STATE_DIR},
        ],
        "securityContext": jobs.restricted_container(),
    }


def config_data() -> dict[str, str]:
    """What the bot's ConfigMap carries for the sidecar."""
    return {SCRIPT_KEY: SCRIPT}


def config_item() -> dict[str, str]:
    """The script's item in the pod's config volume."""
    return {"key": SCRIPT_KEY, "path": SCRIPT_KEY}


def podinfo_volume() -> dict[str, Any]:
    """The downward-API volume through which the sidecar sees the pod's annotations."""
    return {
        "name": PODINFO_VOLUME,
        "downwardAPI": {
            "items": [{"path": ANNOTATIONS_FILE, "fieldRef": {"fieldPath": "metadata.annotations"}}]
        },
    }


def sidecar(
    *,
    image: str,
    deadline: dt.timedelta,
    config_dir: str,
    config_volume: str,
    api_port: int,
    credentials_env: list[dict[str, Any]],
) -> dict[str, Any]:
    """The sidecar container. `credentials_env` gives it the bot API's username and password
    from the operator-owned Secret, the same items the bot reads; nothing else secret."""
    names = {e["name"] for e in credentials_env}
    if names != {deadman.USERNAME_ENV, deadman.PASSWORD_ENV}:
        raise ValueError(
            f"the sidecar needs exactly {deadman.USERNAME_ENV} and "
            f"{deadman.PASSWORD_ENV}, got {sorted(names)}"
        )
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command(
            "python3",
            f"{config_dir}/{SCRIPT_KEY}",
            deadline,
            f"{PODINFO_DIR}/{ANNOTATIONS_FILE}",
            f"http://127.0.0.1:{api_port}",
            STATE_PATH,
        ),
        # Unbuffered, so its one log line shows at once; no bytecode on a read-only root.
        "env": [
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            *credentials_env,
        ],
        "resources": {
            "requests": {"cpu": "5m", "memory": "24Mi"},
            "limits": {"cpu": "50m", "memory": "64Mi"},
        },
        "volumeMounts": [
            {"name": config_volume, "mountPath": config_dir, "readOnly": True},
            {"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True},
            {"name": STATE_VOLUME, "mountPath": STATE_DIR},
        ],
        "securityContext": jobs.restricted_container(),
    }
