"""The MarketData controller's pure parts: when a download is due, the download Job, the
claim it creates."""

from __future__ import annotations

import datetime as dt

from tradebot.api.marketdata import MarketDataSpec
from tradebot.controllers.marketdata import _due, claim_name, download_job, pvc
from tradebot.settings import Settings

AT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _spec(**extra: object) -> MarketDataSpec:
    return MarketDataSpec.model_validate(
        {
            "pairs": ["SOL/USDT"],
            "timeframes": ["5m"],
            "days": 3,
            "storage": {"volumeClaimTemplate": {"storage": "5Gi"}},
            **extra,
        }
    )


def test_due_when_new_changed_failed_past_backoff_or_refresh_passed() -> None:
    spec = _spec(refresh="1h")
    assert _due({}, spec, 1, AT) == "new"
    assert _due({"observedGeneration": 1, "phase": "Ready"}, spec, 2, AT) == "spec changed"
    ready = {"observedGeneration": 1, "phase": "Ready", "lastRefresh": "2026-06-01T11:30:00Z"}
    assert _due(ready, spec, 1, AT) is None
    assert _due({**ready, "lastRefresh": "2026-06-01T10:59:00Z"}, spec, 1, AT) == "refresh"
    assert _due({**ready, "lastRefresh": "2026-06-01T10:00:00Z"}, _spec(), 1, AT) is None
    failed = {"observedGeneration": 1, "phase": "Failed", "retryAt": "2026-06-01T12:00:10Z"}
    assert _due(failed, spec, 1, AT) is None
    assert _due(failed, spec, 1, AT + dt.timedelta(seconds=10)) == "retry"


def test_download_job_mounts_the_claim_and_runs_the_download() -> None:
    spec = _spec()
    job = download_job(spec, "ns", "majors", "0123456789", "md-majors-1-x", Settings())
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "tradebot.freqtrade.marketdata"]
    args = container["args"]
    assert args[args.index("--datadir") + 1] == "/data/marketdata/majors"
    assert MarketDataSpec.model_validate_json(args[args.index("--spec-json") + 1]) == spec
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "md-majors"}} in pod["volumes"]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "MarketData"
    assert "--exchange-url" not in args
    doubled = download_job(
        spec, "ns", "majors", "0123456789", "j", Settings(exchange_double_url="http://127.0.0.1:1")
    )
    assert "--exchange-url" in doubled["spec"]["template"]["spec"]["containers"][0]["args"]


def test_claim_from_template_or_by_name() -> None:
    made = pvc(_spec(), "ns", "majors", "uid-1")
    assert made is not None
    assert made["metadata"]["name"] == "md-majors"
    assert made["spec"]["resources"]["requests"]["storage"] == "5Gi"
    named = _spec(storage={"claimName": "shared"})
    assert pvc(named, "ns", "majors", "uid-1") is None
    assert claim_name(named, "majors") == "shared"
