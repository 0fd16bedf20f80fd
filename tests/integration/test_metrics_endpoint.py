"""/metrics serves every documented series."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from tradebot.localcluster import Ports
from tradebot.observability import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability.md"


def test_metrics_endpoint_lists_the_documented_series():
    port = Ports.free().kwok
    metrics.serve(port)
    metrics.RECONCILIATIONS.labels("Backtest", "ok").inc()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    documented = set(re.findall(r"^\| `(tradebot_[a-z_]+)`", DOCS.read_text(), re.M))
    assert len(documented) >= 8
    for name in documented:
        assert f"# TYPE {name} " in body, f"{name} documented but not served"
    assert 'tradebot_reconciliations_total{kind="Backtest",outcome="ok"}' in body
