"""The chart's alert rules, rendered by Helm, evaluated by Prometheus's own rule tester
(`promtool test rules`) over made-up scrape series: TradebotOperatorAbsent fires when the
operator's target is gone or down for its `for` time, and never while it is up."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.helm import Helm

UP = 'up{job="t-tradebot-operator-metrics", namespace="tradebot-system"}'


@pytest.fixture
def helm(tools_bin: Path, tmp_path: Path) -> Helm:
    return Helm(tools_bin / "helm", None, tmp_path)


def _promtool() -> str:
    found = shutil.which("promtool")
    # Not a skip: the alert would go untested. `make deps` installs it (Debian's prometheus).
    assert found, "promtool is not on PATH: run `make deps` (installs Debian's prometheus)"
    return found


def _absent_alert(annotations: dict[str, str], at: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": "TradebotOperatorAbsent",
        "exp_alerts": [
            {
                "exp_labels": {"severity": "critical", "namespace": "tradebot-system"},
                "exp_annotations": annotations,
            }
        ],
    }


def test_operator_absent_alert_fires_only_without_an_answering_operator(helm: Helm, tmp_path: Path):
    promtool = _promtool()
    docs = helm.template("--set", "metrics.prometheusRule.enabled=true")
    rule_doc = next(d for d in docs if d["kind"] == "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_doc["spec"]["groups"]}))
    rule = next(
        r
        for g in rule_doc["spec"]["groups"]
        for r in g["rules"]
        if r["alert"] == "TradebotOperatorAbsent"
    )
    assert rule["for"] == "5m"
    assert "tradebot-system" in rule["annotations"]["summary"]
    annotations = rule["annotations"]
    quiet = {"alertname": "TradebotOperatorAbsent", "exp_alerts": []}
    tests = [
        {  # Up the whole time (positive control: the same rules stay quiet).
            "interval": "1m",
            "input_series": [{"series": UP, "values": "1x30"}],
            "alert_rule_test": [{**quiet, "eval_time": t} for t in ("1m", "15m", "30m")],
        },
        {  # Scraped, then the target disappears at 10m (stale): pending 5m, then firing.
            "interval": "1m",
            "input_series": [{"series": UP, "values": "1x10 stale"}],
            "alert_rule_test": [
                {**quiet, "eval_time": "10m"},
                {**quiet, "eval_time": "14m"},
                _absent_alert(annotations, "16m"),
            ],
        },
        {  # The target is there but the operator does not answer (up 0).
            "interval": "1m",
            "input_series": [{"series": UP, "values": "1x5 0x15"}],
            "alert_rule_test": [{**quiet, "eval_time": "9m"}, _absent_alert(annotations, "12m")],
        },
        {  # Another release's operator answering does not count for this one.
            "interval": "1m",
            "input_series": [
                {
                    "series": 'up{job="other-tradebot-operator-metrics", '
                    'namespace="tradebot-system"}',
                    "values": "1x20",
                }
            ],
            "alert_rule_test": [_absent_alert(annotations, "6m")],
        },
        {  # Never scraped at all (no ServiceMonitor, wrong job): it alerts, not hides.
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [_absent_alert(annotations, "6m")],
        },
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(tmp_path / "rules.yaml")],
                "evaluation_interval": "1m",
                "tests": tests,
            }
        )
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _rules(helm: Helm, tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    docs = helm.template("--set", "metrics.prometheusRule.enabled=true")
    spec = next(d for d in docs if d["kind"] == "PrometheusRule")["spec"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    return path, {r["alert"]: r for g in spec["groups"] for r in g["rules"]}


def _expand(text: str, labels: dict[str, str], value: str) -> str:
    # The templates the chart's annotations use, filled in as Prometheus would.
    for name, label in labels.items():
        text = text.replace(f"{{{{ $labels.{name} }}}}", label)
    return text.replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value)


def _firing(
    rule: dict[str, Any], at: str, labels: dict[str, str], value: str = ""
) -> dict[str, Any]:
    annotations = {k: _expand(v, labels, value) for k, v in rule["annotations"].items()}
    return {
        "eval_time": at,
        "alertname": rule["alert"],
        "exp_alerts": [
            {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}
        ],
    }


def _quiet(rule: dict[str, Any], *at: str) -> list[dict[str, Any]]:
    return [{"eval_time": t, "alertname": rule["alert"], "exp_alerts": []} for t in at]


def _promtool_test(
    promtool: str,
    rules: Path,
    tmp_path: Path,
    cases: list[tuple[list[dict[str, str]], list[dict[str, Any]]]],
) -> None:
    tests = [
        {"interval": "1m", "input_series": series, "alert_rule_test": checks}
        for series, checks in cases
    ]
    path = tmp_path / "tests.yaml"
    path.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_rendered_rules(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    result = subprocess.run(
        [_promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in result.stdout
    # Positive control: a broken expression is caught.
    broken = yaml.safe_load(rules.read_text())
    broken["groups"][0]["rules"][0]["expr"] += " and"
    rules.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [_promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


# Every alert of the chart has a test below (the operator-absent one above).
TESTED = {
    "TradebotOperatorAbsent",
    "TradebotBreakerTripped",
    "TradebotBotHeartbeatStale",
    "TradebotRecordsOutboxGrowing",
    "TradebotBacktestQueueStuck",
    "TradebotRecordFailures",
    "TradebotRecordsSetAside",
    "TradebotReconcileErrors",
}


def test_every_alert_has_a_promtool_test(helm: Helm, tmp_path: Path):
    _, alerts = _rules(helm, tmp_path)
    assert set(alerts) == TESTED


def test_breaker_tripped_fires_on_a_trip_and_while_open_and_then_goes_quiet(
    helm: Helm, tmp_path: Path
):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotBreakerTripped"]
    trips = 'tradebot_breaker_trips_total{namespace="trading", breaker="main"}'
    is_open = 'tradebot_breaker_open{namespace="trading", breaker="main"}'
    labels = {"namespace": "trading", "breaker": "main"}
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # Never tripped: quiet.
            (
                [{"series": trips, "values": "0x30"}, {"series": is_open, "values": "0x30"}],
                _quiet(rule, "5m", "30m"),
            ),
            # Trips at 11m, reset at 16m: fires at once, quiet again once reset and 5m old.
            (
                [
                    {"series": trips, "values": "0x10 1x20"},
                    {"series": is_open, "values": "0x10 1x5 0x15"},
                ],
                [
                    *_quiet(rule, "10m"),
                    _firing(rule, "12m", labels),
                    _firing(rule, "15m", labels),
                    *_quiet(rule, "25m"),
                ],
            ),
            # Open with no trip in the window (the operator restarted: the counter starts at 0).
            (
                [{"series": trips, "values": "0x30"}, {"series": is_open, "values": "1x30"}],
                [_firing(rule, "20m", labels)],
            ),
        ],
    )


def test_heartbeat_stale_fires_after_its_threshold_and_for(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotBotHeartbeatStale"]
    heartbeat = 'tradebot_bot_last_heartbeat_timestamp_seconds{namespace="trading", bot="b"}'
    labels = {"namespace": "trading", "bot": "b"}
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # Answering every minute (the timestamp follows the clock): quiet.
            ([{"series": heartbeat, "values": "0+60x30"}], _quiet(rule, "10m", "30m")),
            # Last answer at 10m: stale (> 300 s) from 16m, firing after 2m more.
            (
                [{"series": heartbeat, "values": "0+60x10 600x20"}],
                [*_quiet(rule, "15m", "17m"), _firing(rule, "19m", labels, "9m 0s")],
            ),
        ],
    )


def test_outbox_growing_fires_only_while_it_grows(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotRecordsOutboxGrowing"]
    depth = "tradebot_records_outbox_depth"
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # Steady (a backlog not growing) or draining: quiet.
            ([{"series": depth, "values": "5x40"}], _quiet(rule, "20m", "40m")),
            ([{"series": depth, "values": "40-1x40"}], _quiet(rule, "20m", "39m")),
            # Growing by one a minute from 6m: firing once it has grown for 15m.
            (
                [{"series": depth, "values": "0x5 1+1x40"}],
                [*_quiet(rule, "15m"), _firing(rule, "30m", {}, "25")],
            ),
        ],
    )


def test_queue_stuck_fires_when_nothing_is_admitted_for_an_hour(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotBacktestQueueStuck"]
    queue, admitted = "tradebot_backtest_queue_length", "tradebot_backtest_admissions_total"
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # Queued but moving (one admission a minute): quiet.
            (
                [{"series": queue, "values": "3x120"}, {"series": admitted, "values": "0+1x120"}],
                _quiet(rule, "30m", "120m"),
            ),
            # Nothing queued, nothing admitted: quiet.
            (
                [{"series": queue, "values": "0x120"}, {"series": admitted, "values": "7x120"}],
                _quiet(rule, "90m"),
            ),
            # Admissions stop at 20m with 3 waiting: the last one leaves the 1h window at 80m,
            # firing 10m later.
            (
                [
                    {"series": queue, "values": "3x120"},
                    {"series": admitted, "values": "0+1x20 20x100"},
                ],
                [*_quiet(rule, "60m", "85m"), _firing(rule, "95m", {}, "3")],
            ),
        ],
    )


def test_record_failures_fire_when_they_persist(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotRecordFailures"]
    failures = "tradebot_record_failures_total"
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # None, and a single failure (retried from the outbox): quiet.
            ([{"series": failures, "values": "0x40"}], _quiet(rule, "20m", "40m")),
            ([{"series": failures, "values": "0x5 1x40"}], _quiet(rule, "10m", "22m", "40m")),
            # One failure a minute: firing after 15m.
            (
                [{"series": failures, "values": "0+1x40"}],
                [*_quiet(rule, "10m"), _firing(rule, "20m", {})],
            ),
        ],
    )


def test_records_set_aside_fires_while_any_is_kept(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotRecordsSetAside"]
    kept = "tradebot_records_set_aside"
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # None set aside: quiet.
            ([{"series": kept, "values": "0x30"}], _quiet(rule, "5m", "30m")),
            # One set aside at 10m: firing at once (nothing retries it), quiet once a person
            # has dealt with it (the file moved away, 0 again at 21m).
            (
                [{"series": kept, "values": "0x10 1x10 0x10"}],
                [*_quiet(rule, "9m"), _firing(rule, "11m", {}, "1"), *_quiet(rule, "25m")],
            ),
        ],
    )


def test_reconcile_errors_fire_per_kind(helm: Helm, tmp_path: Path):
    rules, alerts = _rules(helm, tmp_path)
    rule = alerts["TradebotReconcileErrors"]
    ok = 'tradebot_reconciliations_total{kind="LiveBot", outcome="ok"}'
    error = 'tradebot_reconciliations_total{kind="LiveBot", outcome="error"}'
    _promtool_test(
        _promtool(),
        rules,
        tmp_path,
        [
            # Busy and healthy: quiet.
            (
                [{"series": ok, "values": "0+5x40"}, {"series": error, "values": "0x40"}],
                _quiet(rule, "20m", "40m"),
            ),
            # Errors every minute: firing after 10m, labelled with the kind.
            (
                [{"series": ok, "values": "0+5x40"}, {"series": error, "values": "0+1x40"}],
                [*_quiet(rule, "8m"), _firing(rule, "15m", {"kind": "LiveBot"})],
            ),
        ],
    )
