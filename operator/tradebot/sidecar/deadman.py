"""The dead-man's switch beside a bot: when the operator has not supervised the bot for the
deadline, the bot stops entering trades (Freqtrade's /stopentry). Open trades keep their exits,
stoploss and ROI; only new entries stop.

The operator marks its supervision by writing the time into the pod's annotation
`tradebot.dev/supervised-at`; the kubelet mirrors the pod's annotations into a downward-API file,
and the local executor writes the same file. This program reads only that file, never the API
server: it holds no cluster credentials and keeps working while the API server is gone too.

Supervision has lapsed when the mark is older than the deadline (a restarted container sees an
old mark at once), or when the mark has not changed for longer than the deadline on this
program's own clock (a missing mark, or one from a clock ahead of ours). It runs in the bot's own
image, shipped in the bot's ConfigMap: standard library only, nothing of tradebot imported.

A pause must outlive a restart of the bot's container (Freqtrade starts in its config's
initial_state, "running"): with --state-file the sidecar keeps the bot's state, as it sees it,
in a Freqtrade config fragment the bot reads after its own config, and writes "paused" there
before it stops entries itself. The pod's init container writes the first one (--init-state).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ANNOTATION = "tradebot.dev/supervised-at"
# Freqtrade's states as /show_config reports them, which are also initial_state's values.
STATES = ("running", "paused", "stopped")
# The bot's own API login, from the same Secret items the bot reads.
USERNAME_ENV = "FREQTRADE__API_SERVER__USERNAME"
PASSWORD_ENV = "FREQTRADE__API_SERVER__PASSWORD"  # noqa: S105 - a variable's name


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC, to the second: the mark the operator writes."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    """A mark, or None when there is none or it is not a time."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def parse_annotations(text: str) -> dict[str, str]:
    """The downward API's `metadata.annotations` file: one `key="value"` a line, the value
    quoted the way Go quotes strings, which for what the operator writes is a JSON string.
    Lines that are not are skipped: they are not the mark."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, str):
            found[key.strip()] = value
    return found


def lapsed(
    mark: dt.datetime | None, now: dt.datetime, unchanged_for: dt.timedelta, deadline: dt.timedelta
) -> bool:
    """Whether supervision has lapsed: the mark is older than the deadline, or it (or its
    absence) has not changed for longer than the deadline."""
    return (mark is not None and now - mark > deadline) or unchanged_for > deadline


def check_interval(deadline: dt.timedelta) -> float:
    """Seconds between looks at the mark: a tenth of the deadline, between 1 s and 10 s."""
    return min(10.0, max(1.0, deadline.total_seconds() / 10))


class Switch:
    """Remembers since when the mark has been what it is, on this program's monotonic clock."""

    def __init__(self, deadline: dt.timedelta, started: float) -> None:
        self.deadline = deadline
        self._value: str | None = None
        self._since = started

    def lapsed(self, value: str | None, now: dt.datetime, clock: float) -> bool:
        if value != self._value:
            self._value, self._since = value, clock
        return lapsed(
            parse_time(value), now, dt.timedelta(seconds=clock - self._since), self.deadline
        )


class Bot:
    """The bot's REST API on its own address, with HTTP Basic. The password never reaches a
    log line: errors name the path and the failure only."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.timeout = timeout

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the bot's own loopback address
            f"{self.url}/api/v1/{path}",
            method=method,
            data=b"" if method == "POST" else None,
            headers={"Authorization": self._auth},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def state(self) -> str:
        return str(self._call("GET", "show_config").get("state"))

    def stop_entries(self) -> None:
        self._call("POST", "stopentry")


def _log(event: str, **fields: Any) -> None:
    print(
        json.dumps(
            {
                "time": format_time(dt.datetime.now(dt.UTC)),
                "logger": "tradebot.deadman",
                "event": event,
                **fields,
            }
        ),
        flush=True,
    )


def read_mark(path: Path) -> str | None:
    try:
        return parse_annotations(path.read_text()).get(ANNOTATION)
    except OSError:
        return None  # not there yet: the same as no mark


def read_state(path: Path) -> str | None:
    """The state a restarted bot would start in (the state file's initial_state)."""
    try:
        value = json.loads(path.read_text()).get("initial_state")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in STATES else None


def keep_state(path: Path, state: str) -> bool:
    """Writes the state file, a Freqtrade config fragment the bot reads after its own config
    (`--config`), so a restarted bot container starts in `state`: a paused bot stays paused
    until a person (or the operator) resumes it. Atomic, so a bot starting meanwhile never
    reads half a file; written only on a change. True when it wrote."""
    if state not in STATES or read_state(path) == state:
        return False
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps({"initial_state": state}))
    os.replace(part, path)
    return True


def step(
    switch: Switch,
    bot: Bot,
    value: str | None,
    now: dt.datetime,
    clock: float,
    state_file: Path | None = None,
) -> bool:
    """One look: when supervision has lapsed and the bot is still entering trades, stop its
    entries. True when it stopped them now. API errors propagate: the caller retries.
    With `state_file`, the bot's state (paused by a person, a breaker or this switch) is kept
    there for the next start of the bot's container."""
    lapsed = switch.lapsed(value, now, clock)
    if not lapsed and state_file is None:
        return False
    state = bot.state()
    if state_file is not None:
        keep_state(state_file, state)
    # Only a running trader is paused: /stopentry on a stopped one would start its loop.
    if not lapsed or state != "running":
        return False
    if state_file is not None:
        # Before the call: a bot restarted between the two still starts paused.
        keep_state(state_file, "paused")
    bot.stop_entries()
    return True


def run(
    switch: Switch,
    bot: Bot,
    annotations: Path,
    *,
    sleep: Callable[[float], None] = time.sleep,
    state_file: Path | None = None,
) -> None:
    interval = check_interval(switch.deadline)
    failing = False
    while True:
        value = read_mark(annotations)
        try:
            if step(switch, bot, value, dt.datetime.now(dt.UTC), time.monotonic(), state_file):
                _log(
                    "supervision lapsed: entries stopped",
                    supervisedAt=value,
                    deadlineSeconds=switch.deadline.total_seconds(),
                )
            failing = False
        except (OSError, ValueError, AttributeError) as e:
            # urllib's errors are OSErrors; a non-JSON or odd answer is a ValueError or has no
            # .get. Said once per failing spell, retried every interval.
            if not failing:
                _log("the bot's API failed; retrying", error=str(e))
            failing = True
        sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Stops the bot's entries when the operator's supervision lapses."
    )
    parser.add_argument("--deadline-seconds", type=float)
    parser.add_argument("--annotations", type=Path)
    parser.add_argument("--url")
    parser.add_argument(
        "--state-file",
        type=Path,
        help="where the bot's state is kept for its next start (a Freqtrade config fragment)",
    )
    parser.add_argument(
        "--init-state",
        choices=STATES,
        help="only write --state-file with this state unless it exists, and exit (the pod's "
        "init container: the state of a container restarted in the same pod is kept)",
    )
    args = parser.parse_args(argv)
    if args.init_state is not None:
        if args.state_file is None:
            parser.error("--init-state needs --state-file")
        if read_state(args.state_file) is None:
            keep_state(args.state_file, args.init_state)
        return 0
    if args.deadline_seconds is None or args.annotations is None or args.url is None:
        parser.error("--deadline-seconds, --annotations and --url are required")
    username, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
    if not username or not password:
        # Exits, so the container restarts and shows it, instead of guarding nothing.
        _log(f"{USERNAME_ENV} and {PASSWORD_ENV} are required")
        return 2
    deadline = dt.timedelta(seconds=args.deadline_seconds)
    run(
        Switch(deadline, time.monotonic()),
        Bot(args.url, username, password),
        args.annotations,
        state_file=args.state_file,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
