"""The dead-man's switch: when the operator marks a pod supervised, how the sidecar decides that
supervision lapsed, and the sidecar container in the bot's pod."""

from __future__ import annotations

import ast
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain import bots, supervision
from tradebot.domain.bots import BotInstance, config_map, pod
from tradebot.settings import Settings
from tradebot.sidecar import deadman

T0 = dt.datetime(2026, 11, 29, 13, 0, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
DEADLINE = 20 * S


# ---- the operator's marks ----------------------------------------------------------------------
def test_refresh_interval_is_a_quarter_of_the_deadline_and_a_minute_at_most():
    assert supervision.refresh_interval(20 * S) == 5 * S
    assert supervision.refresh_interval(dt.timedelta(minutes=2)) == 30 * S
    assert supervision.refresh_interval(dt.timedelta(minutes=10)) == dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("annotations", "wanted"),
    [
        (None, True),
        ({}, True),
        ({"tradebot.dev/config-hash": "abc"}, True),
        ({supervision.ANNOTATION: "not a time"}, True),
        ({supervision.ANNOTATION: "2026-11-29T13:00:00Z"}, False),  # just written
        ({supervision.ANNOTATION: "2026-11-29T12:59:56Z"}, False),  # 4 s old: not due
        ({supervision.ANNOTATION: "2026-11-29T12:59:55Z"}, True),  # 5 s old: due
        ({supervision.ANNOTATION: "2026-11-29T13:00:30Z"}, True),  # from the future
    ],
)
def test_a_mark_is_written_only_when_due(annotations: dict[str, str] | None, wanted: bool):
    assert supervision.needs_mark(annotations, T0, DEADLINE) is wanted


def test_ten_minute_deadline_marks_once_a_minute():
    ten = dt.timedelta(minutes=10)
    marked = {supervision.ANNOTATION: deadman.format_time(T0)}
    assert not supervision.needs_mark(marked, T0 + 59 * S, ten)
    assert supervision.needs_mark(marked, T0 + 60 * S, ten)


def test_the_mark_patch_is_what_the_sidecar_reads():
    later = T0 + dt.timedelta(microseconds=700_000)
    patch = supervision.mark_patch(later)
    value = patch["metadata"]["annotations"][supervision.ANNOTATION]
    assert value == "2026-11-29T13:00:00Z"
    assert deadman.parse_time(value) == T0
    assert patch == {"metadata": {"annotations": {"tradebot.dev/supervised-at": value}}}


@given(st.dictionaries(st.from_regex(r"[a-z0-9./-]{1,30}", fullmatch=True), st.text()))
def test_the_local_annotations_file_reads_back_like_the_downward_apis(annotations: dict[str, str]):
    assert deadman.parse_annotations(supervision.annotations_file(annotations)) == annotations


def test_a_downward_api_file_as_the_kubelet_writes_it():
    # Sorted key="value" lines joined by newlines, values quoted by Go's strconv.Quote.
    text = (
        'kubernetes.io/config.seen="2026-11-29T12:58:01.5Z"\n'
        'note="say \\"hi\\"\\n"\n'
        'odd="\\x00"\n'
        'tradebot.dev/config-hash="0f3a"\n'
        'tradebot.dev/supervised-at="2026-11-29T12:59:40Z"'
    )
    found = deadman.parse_annotations(text)
    assert found["note"] == 'say "hi"\n'
    assert "odd" not in found  # Go's \x escape is not JSON: skipped, it is not the mark
    assert deadman.parse_time(found[deadman.ANNOTATION]) == T0 - 20 * S


# ---- the sidecar's decision ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mark", "unchanged", "wanted"),
    [
        (T0 - 5 * S, 5 * S, False),  # supervised 5 s ago
        (T0 - 20 * S, 20 * S, False),  # exactly the deadline: not yet
        (T0 - 21 * S, 0 * S, True),  # an old mark, seen for the first time (a restart)
        (None, 20 * S, False),  # no mark yet, 20 s after the sidecar started
        (None, 21 * S, True),  # no mark for longer than the deadline
        (T0 + 3600 * S, 21 * S, True),  # a mark from a clock ahead, never refreshed
        (T0 + 3600 * S, 5 * S, False),
    ],
)
def test_lapsed(mark: dt.datetime | None, unchanged: dt.timedelta, wanted: bool):
    assert deadman.lapsed(mark, T0, unchanged, DEADLINE) is wanted


def test_the_switch_counts_from_the_last_change_on_its_own_clock():
    switch = deadman.Switch(DEADLINE, started=100.0)
    # Marks 10 s apart keep it quiet for far longer than the deadline.
    for i in range(10):
        mark = deadman.format_time(T0 + i * 10 * S)
        assert not switch.lapsed(mark, T0 + i * 10 * S, 100.0 + i * 10)
    last = deadman.format_time(T0 + 90 * S)
    # The marks stop: quiet up to the deadline, lapsed after it.
    assert not switch.lapsed(last, T0 + 110 * S, 210.0)
    assert switch.lapsed(last, T0 + 111 * S, 211.0)
    # A new mark is supervision again.
    assert not switch.lapsed(deadman.format_time(T0 + 112 * S), T0 + 112 * S, 212.0)


def test_a_missing_mark_lapses_a_deadline_after_the_sidecar_started():
    switch = deadman.Switch(DEADLINE, started=50.0)
    assert not switch.lapsed(None, T0, 70.0)
    assert switch.lapsed(None, T0, 70.5)


def test_check_interval():
    assert deadman.check_interval(20 * S) == 2.0
    assert deadman.check_interval(5 * S) == 1.0
    assert deadman.check_interval(dt.timedelta(minutes=10)) == 10.0


class RecordingBot(deadman.Bot):
    """The sidecar's API client with the transport replaced: what it would call, answered
    with `state`."""

    def __init__(self, state: str) -> None:
        super().__init__("http://127.0.0.1:1", "u", "p")
        self.bot_state = state
        self.calls: list[str] = []

    def _call(self, method: str, path: str) -> Any:
        self.calls.append(f"{method} {path}")
        if path == "stopentry":
            self.bot_state = "paused"
            return {"status": "paused"}
        return {"state": self.bot_state}


def test_step_stops_entries_once_when_lapsed():
    bot = RecordingBot("running")
    switch = deadman.Switch(DEADLINE, started=0.0)
    mark = deadman.format_time(T0)
    assert not deadman.step(switch, bot, mark, T0 + 10 * S, 10.0)
    assert bot.calls == []  # supervised: the API is not even asked
    assert deadman.step(switch, bot, mark, T0 + 21 * S, 21.0)
    assert bot.calls == ["GET show_config", "POST stopentry"]
    # Paused already: asked, not paused again.
    assert not deadman.step(switch, bot, mark, T0 + 23 * S, 23.0)
    assert bot.calls[2:] == ["GET show_config"]
    # A person (or a restarted Freqtrade) starts it while still unsupervised: paused again.
    bot.bot_state = "running"
    assert deadman.step(switch, bot, mark, T0 + 25 * S, 25.0)


def test_step_leaves_a_stopped_trader_stopped():
    # Freqtrade's /stopentry would start a stopped trader's loop (in paused state).
    bot = RecordingBot("stopped")
    assert not deadman.step(deadman.Switch(DEADLINE, 0.0), bot, None, T0, 30.0)
    assert bot.calls == ["GET show_config"]


# ---- the bot's kept state ------------------------------------------------------------------------
def test_the_switch_keeps_its_pause_for_the_next_start_of_the_bot(tmp_path: Path):
    state = tmp_path / "bot-state.json"
    deadman.keep_state(state, "running")
    bot = RecordingBot("running")
    switch = deadman.Switch(DEADLINE, started=0.0)
    mark = deadman.format_time(T0)
    assert not deadman.step(switch, bot, mark, T0 + 10 * S, 10.0, state)
    assert deadman.read_state(state) == "running"
    assert deadman.step(switch, bot, mark, T0 + 21 * S, 21.0, state)
    assert bot.calls[-1] == "POST stopentry"
    # What a restarted Freqtrade reads after its own config: it starts paused.
    assert json.loads(state.read_text()) == {"initial_state": "paused"}


def test_a_pause_by_someone_else_is_kept_and_a_resume_too(tmp_path: Path):
    state = tmp_path / "bot-state.json"
    deadman.keep_state(state, "running")
    switch = deadman.Switch(DEADLINE, started=0.0)
    mark = deadman.format_time(T0)
    # Paused by a person or a breaker's stopEntries while supervised: kept, not acted on.
    bot = RecordingBot("paused")
    assert not deadman.step(switch, bot, mark, T0 + 5 * S, 5.0, state)
    assert bot.calls == ["GET show_config"]
    assert deadman.read_state(state) == "paused"
    # A person resumes it (/start): the next start is running again.
    bot.bot_state = "running"
    deadman.step(switch, bot, deadman.format_time(T0 + 6 * S), T0 + 6 * S, 6.0, state)
    assert deadman.read_state(state) == "running"
    bot.bot_state = "stopped"
    deadman.step(switch, bot, deadman.format_time(T0 + 7 * S), T0 + 7 * S, 7.0, state)
    assert deadman.read_state(state) == "stopped"


def test_init_state_writes_only_a_missing_state_file(tmp_path: Path):
    state = tmp_path / "bot-state.json"
    assert deadman.main(["--init-state", "running", "--state-file", str(state)]) == 0
    assert deadman.read_state(state) == "running"
    deadman.keep_state(state, "paused")
    # The init container of a pod whose sandbox restarted: the kept pause stays.
    assert deadman.main(["--init-state", "running", "--state-file", str(state)]) == 0
    assert deadman.read_state(state) == "paused"
    # An unreadable file is replaced with the operator's intended state.
    state.write_text("{not json")
    assert deadman.main(["--init-state", "running", "--state-file", str(state)]) == 0
    assert deadman.read_state(state) == "running"


def test_the_bot_reads_the_kept_state_after_its_config():
    b = _bot()
    p = pod(b, Settings())
    containers = _containers(p)
    args = containers[bots.CONTAINER]["args"]
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    assert configs == ["/etc/freqtrade/config.json", supervision.STATE_PATH]
    (init,) = p["spec"]["initContainers"]
    assert init["command"] == [
        "python3",
        "/etc/freqtrade/tradebot-deadman.py",
        "--init-state",
        "running",
        "--state-file",
        supervision.STATE_PATH,
    ]
    assert init["securityContext"] == containers[bots.CONTAINER]["securityContext"]
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    assert "emptyDir" in volumes[supervision.STATE_VOLUME]
    # The bot only reads it; the init container and the sidecar write it.
    mounts = {m["name"]: m for m in containers[bots.CONTAINER]["volumeMounts"]}
    assert mounts[supervision.STATE_VOLUME]["readOnly"] is True
    side = {m["name"]: m for m in containers[supervision.CONTAINER]["volumeMounts"]}
    assert not side[supervision.STATE_VOLUME].get("readOnly")
    assert side[supervision.STATE_VOLUME]["mountPath"] == supervision.STATE_DIR


def test_a_deadline_change_replaces_the_pod():
    assert _bot(supervision={"deadline": "90s"}).config_hash != _bot().config_hash
    assert (
        _bot(supervision={"deadline": "90s"}).config_hash
        == _bot(supervision={"deadline": "90s"}).config_hash
    )


def test_the_sidecar_refuses_to_run_without_the_api_login(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv(deadman.USERNAME_ENV, raising=False)
    monkeypatch.setenv(deadman.PASSWORD_ENV, "pw")
    assert (
        deadman.main(
            [
                "--deadline-seconds",
                "20",
                "--annotations",
                "/nonexistent",
                "--url",
                "http://127.0.0.1:1",
            ]
        )
        == 2
    )
    assert deadman.USERNAME_ENV in capsys.readouterr().out


def test_the_script_needs_only_the_standard_library():
    tree = ast.parse(supervision.SCRIPT)
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert modules, "no imports found: the check would pass vacuously"
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
    assert Path(deadman.__file__).read_text() == supervision.SCRIPT


def test_the_script_runs_without_site_packages(tmp_path: Path):
    # -I -S: no tradebot, no site-packages, as in a bare python3 of the bot's image.
    script = tmp_path / supervision.SCRIPT_KEY
    script.write_text(supervision.SCRIPT)
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(script),
            "--deadline-seconds",
            "20",
            "--annotations",
            str(tmp_path / "none"),
            "--url",
            "http://127.0.0.1:1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # It got as far as checking the login it needs (none given), so every import worked.
    assert result.returncode == 2, result.stderr
    assert deadman.USERNAME_ENV in result.stdout


# ---- the sidecar in the pod --------------------------------------------------------------------
UID = "5e1f0000-aaaa-bbbb-cccc-ddddeeeeffff"


def _bot(**extra: Any) -> BotInstance:
    spec = LiveBotSpec.model_validate(
        {
            "strategyRef": {"name": "ema-rsi"},
            "pairs": ["BTC/USDT"],
            "exchange": {"name": "binance"},
            **extra,
        }
    )
    return BotInstance(
        "team-a",
        "dry",
        UID,
        spec,
        "ema-rsi",
        "EmaRsi",
        "class EmaRsi: ...",
        {"strategy": "EmaRsi", "api_server": {"enabled": True}},
    )


def _containers(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in p["spec"]["containers"]}


def test_the_pod_has_the_sidecar_with_the_bots_deadline():
    b = _bot(supervision={"deadline": "90s"})
    p = pod(b, Settings())
    containers = _containers(p)
    assert set(containers) == {bots.CONTAINER, supervision.CONTAINER}
    side = containers[supervision.CONTAINER]
    assert side["image"] == containers[bots.CONTAINER]["image"]
    assert side["command"] == [
        "python3",
        "/etc/freqtrade/tradebot-deadman.py",
        "--deadline-seconds",
        "90",
        "--annotations",
        "/etc/tradebot/podinfo/annotations",
        "--url",
        "http://127.0.0.1:8080",
        "--state-file",
        supervision.STATE_PATH,
    ]
    assert side["securityContext"] == containers[bots.CONTAINER]["securityContext"]
    assert side["securityContext"]["readOnlyRootFilesystem"] is True
    # The bot API's username and password, from the operator's Secret; nothing else secret.
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in side["env"] if "valueFrom" in e
    }
    assert secret_env == {
        deadman.USERNAME_ENV: {"name": b.api_secret_name, "key": "username", "optional": False},
        deadman.PASSWORD_ENV: {"name": b.api_secret_name, "key": "password", "optional": False},
    }
    # Read-only but for the bot's kept state, which it writes.
    assert all(m["readOnly"] for m in side["volumeMounts"] if m["name"] != "bot-state")
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    assert volumes["podinfo"]["downwardAPI"]["items"] == [
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
    ]
    items = volumes["config"]["configMap"]["items"]
    assert {"key": "tradebot-deadman.py", "path": "tradebot-deadman.py"} in items
    # The bot's own container is as before: it does not mount the annotations.
    assert {m["name"] for m in containers[bots.CONTAINER]["volumeMounts"]} == {
        "config",
        "user-data",
        "tmp",
        "bot-state",
    }


def test_the_default_deadline_is_ten_minutes():
    side = _containers(pod(_bot(), Settings()))[supervision.CONTAINER]
    assert side["command"][side["command"].index("--deadline-seconds") + 1] == "600"


def test_the_config_map_ships_the_script_and_a_new_script_replaces_the_pod(
    monkeypatch: pytest.MonkeyPatch,
):
    b = _bot()
    assert config_map(b)["data"]["tradebot-deadman.py"] == supervision.SCRIPT
    before = b.config_hash
    monkeypatch.setattr(supervision, "SCRIPT", supervision.SCRIPT + "\n# changed\n")
    assert b.config_hash != before


def test_the_sidecar_takes_only_the_api_login():
    with pytest.raises(ValueError, match="exactly"):
        supervision.sidecar(
            image="i",
            deadline=DEADLINE,
            config_dir="/c",
            config_volume="c",
            api_port=8080,
            credentials_env=[
                {"name": deadman.USERNAME_ENV, "value": "u"},
                {"name": "FREQTRADE__API_SERVER__JWT_SECRET_KEY", "value": "j"},
            ],
        )


def test_the_sidecar_reads_the_same_env_names_the_bot_does():
    assert bots.API_SECRET_ITEMS["username"] == deadman.USERNAME_ENV
    assert bots.API_SECRET_ITEMS["password"] == deadman.PASSWORD_ENV
