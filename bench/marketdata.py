"""MarketData download benchmark: a MarketData downloaded through the operator (local
executor, in-process, on a local cluster) against `freqtrade download-data` run directly with
the same arguments, from the same exchange double, in the same run. Prints both times and the
ratio; the bar is operator <= 1.2 x direct + 2 s.

    .venv/bin/python bench/marketdata.py [--pairs 5] [--days 60] [--timeframes 5m 1h]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import subprocess
import tempfile
import time
from typing import Any

from bench.common import operator_in_process
from kubernetes import client
from tests.support.cluster import tools_dir

from tradebot.api.marketdata import MarketDataSpec
from tradebot.domain import market_data
from tradebot.domain.freqtrade_trade_config import exchange_double_overrides
from tradebot_testing.exchange_double import ExchangeDouble
from tradebot_testing.listing import LISTINGS

G, V = "tradebot.dev", "v1alpha1"


def direct(double: ExchangeDouble, spec: MarketDataSpec, work: Path) -> float:
    """`freqtrade download-data` itself, the arguments the operator gives it."""
    (work / "user_data").mkdir(parents=True)
    config = market_data.download_config(
        spec.exchange,
        spec.trading_mode,
        str(work / "user_data"),
        exchange_double_overrides(double.url),
    )
    (work / "config.json").write_text(json.dumps(config))
    command = [
        str(Path(sys.executable).parent / "freqtrade"),
        *market_data.download_args(spec, str(work / "config.json"), str(work / "data")),
    ]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    return time.monotonic() - started


def through_operator(
    double: ExchangeDouble, spec: MarketDataSpec, tools: Path, work: Path
) -> float:
    with operator_in_process(
        "tradebot-bench-md-",
        "bench",
        tools,
        executor="local",
        local_state_dir=work / "state",
        exchange_double_url=double.url,
    ) as api_client:
        core = client.CoreV1Api(api_client)
        api = client.CustomObjectsApi(api_client)
        # The claim is bound before the clock starts: provisioning a volume is the
        # cluster's work, not the download's (and a real claim is made once).
        core.create_namespaced_persistent_volume_claim(
            "bench",
            {
                "metadata": {"name": "candles"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        while (
            core.read_namespaced_persistent_volume_claim("candles", "bench").status.phase != "Bound"
        ):
            time.sleep(0.1)
        time.sleep(3)  # the operator's watches are up
        body: dict[str, Any] = {
            "apiVersion": f"{G}/{V}",
            "kind": "MarketData",
            "metadata": {"name": "bench"},
            "spec": {**spec.to_wire(), "storage": {"claimName": "candles"}},
        }
        started = time.monotonic()
        api.create_namespaced_custom_object(G, V, "bench", "marketdata", body)
        seen: dict[str, float] = {}
        while True:
            status = (
                api.get_namespaced_custom_object(G, V, "bench", "marketdata", "bench").get("status")
                or {}
            )
            seen.setdefault(str(status.get("phase")), time.monotonic() - started)
            if status.get("phase") in ("Ready", "Failed"):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        # (after the operator: its runner captures stdout while it runs)
        phases = ", ".join(f"{k} at {v:.1f} s" for k, v in seen.items())
    if status["phase"] != "Ready":
        raise SystemExit(f"the MarketData failed: {status.get('message')}")
    print(f"through the operator: {phases}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--timeframes", nargs="+", default=["5m", "1h"])
    args = parser.parse_args()
    pairs = [listing.pair for listing in LISTINGS[2 : 2 + args.pairs]]
    spec = MarketDataSpec.model_validate(
        {
            "pairs": pairs,
            "timeframes": args.timeframes,
            "timerange": {
                "start": "2024-01-01",
                "end": time.strftime("%Y-%m-%d", time.gmtime(1704067200 + args.days * 86400)),
            },
            "storage": {"claimName": "unused"},
        }
    )
    tools = tools_dir()
    with ExchangeDouble() as double, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        baseline = direct(double, spec, work / "direct")
        operator = through_operator(double, spec, tools, work / "operator")
    bar = 1.2 * baseline + 2
    print(
        f"MarketData {len(pairs)} pairs x {len(args.timeframes)} timeframes, {args.days} "
        f"days: freqtrade download-data {baseline:.1f} s, through the operator "
        f"{operator:.1f} s, ratio {operator / baseline:.2f} (bar: <= {bar:.1f} s) "
        f"{'OK' if operator <= bar else 'OVER'}"
    )
    return 0 if operator <= bar else 1


if __name__ == "__main__":
    sys.exit(main())
