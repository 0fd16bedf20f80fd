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
    return {"eval_time": at, "alertname": "TradebotOperatorAbsent",
            "exp_alerts": [{"exp_labels": {"severity": "critical",
                                           "namespace": "tradebot-system"},
                            "exp_annotations": annotations}]}


def test_operator_absent_alert_fires_only_without_an_answering_operator(
        helm: Helm, tmp_path: Path):
    promtool = _promtool()
    docs = helm.template("--set", "metrics.prometheusRule.enabled=true")
    rule_doc = next(d for d in docs if d["kind"] == "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_doc["spec"]["groups"]}))
    rule = next(r for g in rule_doc["spec"]["groups"] for r in g["rules"]
                if r["alert"] == "TradebotOperatorAbsent")
    assert rule["for"] == "5m"
    assert "tradebot-system" in rule["annotations"]["summary"]
    annotations = rule["annotations"]
    quiet = {"alertname": "TradebotOperatorAbsent", "exp_alerts": []}
    tests = [
        {   # Up the whole time (positive control: the same rules stay quiet).
            "interval": "1m",
            "input_series": [{"series": UP, "values": "1x30"}],
            "alert_rule_test": [{**quiet, "eval_time": t} for t in ("1m", "15m", "30m")],
        },
        {   # Scraped, then the target disappears at 10m (stale): pending 5m, then firing.
            "interval": "1m",
            "input_series": [{"series": UP, "values": "1x10 stale"}],
            "alert_rule_test": [{**quiet, "eval_time": "10m"}, {**quiet, "eval_time": "14m"},
                                _absent_alert(annotations, "16m")],
        },
        {   # The target is there but the operator does not answer (up 0).
            "interval": "1m",
            "input_series": [{"series": UP, "values": "1x5 0x15"}],
            "alert_rule_test": [{**quiet, "eval_time": "9m"},
                                _absent_alert(annotations, "12m")],
        },
        {   # Another release's operator answering does not count for this one.
            "interval": "1m",
            "input_series": [{"series": 'up{job="other-tradebot-operator-metrics", '
                                        'namespace="tradebot-system"}', "values": "1x20"}],
            "alert_rule_test": [_absent_alert(annotations, "6m")],
        },
        {   # Never scraped at all (no ServiceMonitor, wrong job): it alerts, not hides.
            "interval": "1m",
            "input_series": [],
            "alert_rule_test": [_absent_alert(annotations, "6m")],
        },
    ]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": [str(tmp_path / "rules.yaml")], "evaluation_interval": "1m",
         "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(tmp_path / "tests.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
