"""MarketData on the local cluster: the operator in-process with the local executor downloads
with real Freqtrade from the exchange double onto the claim's volume, and Backtests run on it.

One operator, one double, several MarketData: 5 pairs x 2 timeframes; a pair the exchange
does not list; an outage of the exchange mid-download, retried with backoff; a refresh that
fetches only new candles."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.controllers.bot_storage import _claim_dir
from tradebot.domain import market_data
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
PAIRS = ["SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "BNB/USDT"]


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return dt.datetime.now(dt.UTC).timestamp() + self.offset


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _md(name: str, pairs: list[str], timeframes: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "MarketData",
        "metadata": {"name": name},
        "spec": {
            "pairs": pairs,
            "timeframes": timeframes,
            "storage": {"volumeClaimTemplate": {"storage": "1Gi"}},
            **spec,
        },
    }


def _backtest(name: str, pairs: list[str], md: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    doc["metadata"] = {"name": name}
    doc["spec"].update(
        pairs=pairs,
        data={"marketDataRef": {"name": md}},
        timerange={"start": "2024-01-02", "end": "2024-01-09"},
    )
    return doc


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(G, V, namespace, plural, name)
    return dict(obj.get("status") or {})


def _cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def test_marketdata_downloads_backtests_fails_retries_and_refreshes(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
) -> None:
    api = client.CustomObjectsApi(api_client)
    clock = Clock()
    with (
        ExchangeDouble(clock=clock) as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            local_state_dir=tmp_path / "state",
            database_dsn=f"sqlite://{tmp_path / 'records.db'}",
            reconcile_interval_seconds=1.0,
            exchange_double_url=double.url,
        ),
    ):
        _apply(
            kubectl,
            namespace,
            example("Strategy", "ema-rsi"),
            _md(
                "majors",
                PAIRS,
                ["5m", "1h"],
                timerange={"start": "2024-01-01", "end": "2024-01-10"},
            ),
            _md("unlisted", ["SOL/USDT", "NOPE/USDT"], ["1h"], days=3),
        )

        # 5 pairs x 2 timeframes download; the status describes every file on the volume.
        ready = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "majors")).get("phase") == "Ready" and s
            ),
            240,
            what="MarketData Ready",
        )
        assert ready["pairsReady"] == "10/10"
        assert _cond(ready, "Ready")["status"] == "True"
        directory = _claim_dir(namespace, "md-majors") / market_data.volume_path("majors")
        series = {(s["pair"], s["timeframe"]): s for s in ready["series"]}
        assert set(series) == {(p, t) for p in PAIRS for t in ("5m", "1h")}
        import hashlib

        for (pair, timeframe), s in series.items():
            path = directory / market_data.data_file(pair, timeframe)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == s["sha256"]
            assert s["first"].startswith("2024-01-01T00:00:00")
        assert (directory / market_data.MARKETS_FILE).is_file()
        # kubectl get md (short name, printer columns)
        table = kubectl("get", "md", "majors", "-n", namespace).stdout.split("\n")
        assert table[0].split()[:5] == ["NAME", "EXCHANGE", "PAIRS", "PHASE", "COVERAGE"]
        assert table[1].split()[:4] == ["majors", "binance", "10/10", "Ready"]
        assert "2024-01-01" in table[1]

        # A pair the exchange does not list: Failed, naming it; the listed one is kept.
        failed = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "unlisted")).get("phase") == "Failed"
                and s
            ),
            120,
            what="unlisted Failed",
        )
        assert "NOPE/USDT" in _cond(failed, "Failed")["message"]
        assert "SOL/USDT" not in _cond(failed, "Failed")["message"]
        assert [s["pair"] for s in failed["series"]] == ["SOL/USDT"]

        # A Backtest of a pair that is not bundled succeeds on it, with its markets; one of
        # a pair the MarketData lacks waits, naming it.
        _apply(
            kubectl,
            namespace,
            _backtest("sol", ["SOL/USDT", "ADA/USDT"], "majors"),
            _backtest("trx", ["TRX/USDT"], "majors"),
        )
        done = wait_for(
            lambda: (
                (s := _status(api, namespace, "backtests", "sol")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            240,
            what="Backtest finished",
        )
        assert done["phase"] == "Succeeded", done.get("message")
        assert done["dataHash"]
        waiting = _status(api, namespace, "backtests", "trx")
        assert waiting["phase"] == "Pending"
        assert _cond(waiting, "DataMissing")["status"] == "True"
        assert "TRX/USDT 5m: not downloaded" in _cond(waiting, "DataMissing")["message"]

        # The exchange goes dark mid-download: Failed with a retry time, nothing counted;
        # back up, the retry (after its backoff) completes it.
        double.outage(after_klines=3)
        _apply(
            kubectl,
            namespace,
            _md(
                "flaky",
                ["LINK/USDT"],
                ["5m"],
                timerange={"start": "2024-02-01", "end": "2024-03-01"},
            ),
        )
        broken = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "flaky")).get("phase") == "Failed" and s
            ),
            180,
            what="flaky Failed",
        )
        assert "LINK/USDT" in broken["message"]
        assert broken["attempts"] == 1
        assert broken["retryAt"]
        assert not broken.get("series")
        flaky_dir = _claim_dir(namespace, "md-flaky") / market_data.volume_path("flaky")
        assert not (flaky_dir / "LINK_USDT-5m.feather").exists()
        double.end_outage()
        healed = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "flaky")).get("phase") == "Ready" and s
            ),
            180,
            what="flaky Ready after retry",
        )
        frame = pd.read_feather(flaky_dir / "LINK_USDT-5m.feather")
        assert frame["date"].diff().dropna().eq(pd.Timedelta("5m")).all()
        assert healed["series"][0]["candles"] == len(frame)

        # A refresh adds only the new candles: the exchange is 2 h behind, then catches up.
        clock.offset = -2 * 3600
        start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%d")
        _apply(
            kubectl,
            namespace,
            _md("live", ["ETH/USDT"], ["5m"], timerange={"start": start}, refresh="5s"),
        )
        first = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "live")).get("phase") == "Ready" and s
            ),
            120,
            what="live Ready",
        )
        before = first["series"][0]
        calls = double.calls["GET /api/v3/klines"]
        clock.offset = 0
        later = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "live"))["series"][0]["candles"]
                > before["candles"]
                and s
            ),
            120,
            what="refresh with new candles",
        )
        after = later["series"][0]
        assert after["first"] == before["first"]
        assert 20 <= after["candles"] - before["candles"] <= 26
        assert double.calls["GET /api/v3/klines"] - calls <= 4  # new pages, not the day again
