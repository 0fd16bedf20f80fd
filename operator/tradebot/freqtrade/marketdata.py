"""Downloads a MarketData into its data directory: one run, in a Job or (local executor) a
subprocess of the operator.

    python -m tradebot.freqtrade.marketdata --spec SPEC.json --datadir DIR [--exchange-url URL]

Freqtrade downloads into a staging directory beside DIR (same file system), seeded with copies
of the files already there so it only fetches new candles. Then each series Freqtrade logged no
problem for is checked (readable, candles in order) and moved into DIR with an atomic rename,
with the exchange's markets. A series that failed, or a run that is killed, leaves DIR as it
was: a half-written file never takes the place of a good one. The result (per series: first and
last candle, count, sha256; the problems, by pair) goes to DIR/.tradebot-marketdata.json and,
as one JSON line, to stdout (the Job's termination message)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tradebot.api.marketdata import MarketDataSpec
from tradebot.domain import market_data
from tradebot.domain.freqtrade_trade_config import exchange_double_overrides
from tradebot.freqtrade import offline

TERMINATION_LOG = Path("/dev/termination-log")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path: Path, pair: str, timeframe: str) -> dict[str, Any]:
    """What the status says of one file."""
    feather: Any = importlib.import_module("pyarrow.feather")  # Freqtrade's own dependency
    frame = feather.read_table(str(path), columns=["date"]).to_pandas()
    dates = frame["date"]
    if not dates.is_monotonic_increasing:
        raise ValueError(f"{path.name}: candles out of order")
    return {
        "pair": pair,
        "timeframe": timeframe,
        "file": path.name,
        "candles": len(frame),
        "first": dates.iloc[0].isoformat() if len(frame) else None,
        "last": dates.iloc[-1].isoformat() if len(frame) else None,
        "sha256": sha256(path),
    }


def _seed(spec: MarketDataSpec, datadir: Path, staging: Path) -> None:
    """Copies of the files already downloaded, for Freqtrade to continue (copies, not links:
    Freqtrade rewrites a file in place). A file starting after the requested start is left
    out, so Freqtrade downloads that series whole."""
    start, _ = market_data.window(spec.timerange, spec.days, dt.datetime.now(dt.UTC))
    for pair, timeframe in market_data.requested(spec):
        name = market_data.data_file(pair, timeframe)
        if not (datadir / name).is_file():
            continue
        try:
            first = describe(datadir / name, pair, timeframe)["first"]
        except (OSError, ValueError):
            continue
        step = dt.timedelta(seconds=market_data.timeframe_seconds(timeframe))
        if (
            spec.timerange is not None
            and first is not None
            and dt.datetime.fromisoformat(first) > start + step
        ):
            continue
        shutil.copy2(datadir / name, staging / name)


def run(
    spec: MarketDataSpec,
    datadir: Path,
    exchange_url: str | None,
    freqtrade: list[str] | None = None,
) -> dict[str, Any]:
    datadir.mkdir(parents=True, exist_ok=True)
    for stale in datadir.glob(market_data.STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)  # a run killed half-way
    staging = Path(tempfile.mkdtemp(prefix=market_data.STAGING_PREFIX, dir=datadir))
    try:
        return _run(spec, datadir, staging, exchange_url, freqtrade)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(
    spec: MarketDataSpec,
    datadir: Path,
    staging: Path,
    exchange_url: str | None,
    freqtrade: list[str] | None,
) -> dict[str, Any]:
    _seed(spec, datadir, staging)
    (staging / "user_data").mkdir()
    overrides = exchange_double_overrides(exchange_url) if exchange_url else None
    config = market_data.download_config(
        spec.exchange, spec.trading_mode, str(staging / "user_data"), overrides
    )
    (staging / "config.json").write_text(json.dumps(config))
    markets = staging / market_data.MARKETS_FILE
    command = [
        *(freqtrade or [sys.executable, "-m", "tradebot.freqtrade.download"]),
        "--save-markets",
        str(markets),
        *market_data.download_args(spec, str(staging / "config.json"), str(staging)),
    ]
    # Freqtrade's own log file: one plain line per record (its console output is wrapped to
    # the terminal's width by rich, which splits the lines parse_download_log reads).
    log_path = staging / "download.log"
    command += ["--logfile", str(log_path)]
    with (staging / "console.log").open("wb") as console:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, check=False
        )
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    if not text:  # it died before logging: its console says why
        text = (staging / "console.log").read_text(errors="replace")
    sys.stderr.write(text)  # the Job's log, or the local run's runner.log
    parsed = market_data.parse_download_log(text.splitlines())
    problems: dict[str, list[str]] = {}
    # Freqtrade drops a pair its markets lack from the list without a word (expand_pairlist);
    # the markets it saved say which.
    if markets.is_file():
        listed = offline.load_markets(markets)
        parsed.unknown_pairs += [
            p for p in spec.pairs if p not in listed and p not in parsed.unknown_pairs
        ]
    for pair in parsed.unknown_pairs:
        problems.setdefault(pair, []).append(f"{pair} is not listed on {spec.exchange}")
    for (pair, timeframe), lines in parsed.problems.items():
        problems.setdefault(pair, []).append(f"{timeframe}: {lines[0]}")
    series: list[dict[str, Any]] = []
    moved = False
    for pair, timeframe in market_data.requested(spec):
        name = market_data.data_file(pair, timeframe)
        if parsed.failed(pair, timeframe):
            continue
        staged = staging / name
        if not staged.is_file():
            if pair not in problems:
                problems.setdefault(pair, []).append(f"{timeframe}: no candles downloaded")
            continue
        try:
            described = describe(staged, pair, timeframe)
        except (OSError, ValueError) as e:
            problems.setdefault(pair, []).append(f"{timeframe}: {e}")
            continue
        os.replace(staged, datadir / name)
        series.append(described)
        moved = True
    result: dict[str, Any] = {
        "ok": not problems and not parsed.general and done.returncode == 0,
        "exitCode": done.returncode,
        "series": series,
        "problems": problems,
        "errors": parsed.general[:5],
    }
    if markets.is_file() and (moved or not (datadir / market_data.MARKETS_FILE).exists()):
        os.replace(markets, datadir / market_data.MARKETS_FILE)
    if (datadir / market_data.MARKETS_FILE).is_file():
        result["marketsSha256"] = sha256(datadir / market_data.MARKETS_FILE)
    elif result["ok"]:
        result["ok"] = False
        result["errors"].append("the exchange's markets were not saved")
    # Series of the request not touched this time keep what an earlier run downloaded.
    have = {(s["pair"], s["timeframe"]) for s in series}
    for pair, timeframe in market_data.requested(spec):
        old = datadir / market_data.data_file(pair, timeframe)
        if (pair, timeframe) not in have and old.is_file():
            try:
                series.append(describe(old, pair, timeframe))
            except (OSError, ValueError):
                continue
    result["series"] = sorted(series, key=lambda s: (s["pair"], s["timeframe"]))
    tmp = datadir / (market_data.RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, datadir / market_data.RESULT_FILE)
    return result


def termination_message(result: dict[str, Any], limit: int = 4000) -> str:
    """The result, short enough for a termination message (4 KiB, all the operator learns
    from a Job): the problems, then as many series as fit (the rest are in the data
    directory's result file)."""
    brief: dict[str, Any] = {
        "ok": result["ok"],
        "exitCode": result["exitCode"],
        "problems": {p: v[:1] for p, v in list(result["problems"].items())[:5]},
        "errors": [e[:200] for e in result["errors"][:2]],
        "marketsSha256": result.get("marketsSha256"),
        "series": [],
    }
    for series in result["series"]:
        brief["series"].append(series)
        if len(json.dumps(brief)) > limit:
            brief["series"].pop()
            brief["truncated"] = True
            break
    return json.dumps(brief)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tradebot.freqtrade.marketdata",
        description="Download a MarketData's candles.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec", type=Path, help="MarketData spec (a JSON file)")
    source.add_argument("--spec-json", help="MarketData spec (JSON text)")
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument(
        "--result", type=Path, default=None, help="also write the whole result (JSON) here"
    )
    parser.add_argument(
        "--exchange-url", default=None, help="a local exchange double's URL (tests and the demo)"
    )
    args = parser.parse_args(argv)
    spec = MarketDataSpec.model_validate_json(
        args.spec.read_text() if args.spec is not None else args.spec_json
    )
    result = run(spec, args.datadir, args.exchange_url)
    if args.result is not None:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(result, indent=1))
    message = termination_message(result)
    print(message, flush=True)
    if TERMINATION_LOG.exists():
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(message)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
