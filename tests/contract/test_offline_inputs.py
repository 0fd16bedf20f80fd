"""The runner's offline inputs: the bundled candles, the markets file, and how they are found."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from tradebot.freqtrade import datasets, offline

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "user_data" / "data"
PAIRS = ("BTC/USDT", "ETH/USDT")


def _sums() -> dict[str, str]:
    lines = (DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def test_committed_candles_match_their_recorded_sums() -> None:
    sums = _sums()
    assert set(sums) == {"binance/BTC_USDT-5m.feather", "binance/ETH_USDT-5m.feather"}
    for name, digest in sums.items():
        path = DATA / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        assert path.stat().st_size < 1_000_000, f"{name} is too big to commit"


def test_readme_records_the_same_sums_and_the_generator() -> None:
    readme = (ROOT / "user_data" / "README.md").read_text()
    for name, digest in _sums().items():
        assert re.search(rf"{digest}\s+`?{re.escape(name)}", readme), name
    assert "hack/gen-sample-data.py" in readme
    markets = offline.MARKETS_DIR / "binance.json"
    assert hashlib.sha256(markets.read_bytes()).hexdigest() in readme


@pytest.mark.parametrize(
    ("pair", "low", "high"), [("BTC/USDT", 20_000, 80_000), ("ETH/USDT", 1_000, 5_000)]
)
def test_sample_candles_are_plausible(pair: str, low: float, high: float) -> None:
    frame = pd.read_feather(DATA / "binance" / f"{pair.replace('/', '_')}-5m.feather")
    assert list(frame.columns) == ["date", "open", "high", "low", "close", "volume"]
    assert len(frame) == 10_000
    assert frame["date"].iloc[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    assert (frame["date"].diff().dropna() == pd.Timedelta(minutes=5)).all()
    # The example Backtest (2024-01-02..2024-02-01) plus a day of startup candles fits.
    assert frame["date"].iloc[-1] >= pd.Timestamp("2024-02-01T00:00:00Z")
    assert frame["close"].between(low, high).all()
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["volume"] > 0).all()
    returns = frame["close"].pct_change().dropna()
    # Volatility clusters: large moves follow large moves.
    assert returns.abs().autocorr(1) > 0.05


def test_markets_file_is_ccxt_unified_binance_spot() -> None:
    markets = offline.load_markets(offline.markets_file("binance"))
    assert set(PAIRS) <= set(markets)
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["base"], btc["quote"], btc["spot"], btc["active"]) == (
        "BTCUSDT",
        "BTC",
        "USDT",
        True,
        True,
    )
    assert btc["precision"]["price"] == 0.01
    assert btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 5.0
    assert (btc["maker"], btc["taker"]) == (0.001, 0.001)
    assert markets["ETH/USDT"]["precision"]["amount"] == 0.0001


def test_exchange_without_markets_file_fails_clearly() -> None:
    with pytest.raises(
        offline.OfflineMarketsError,
        match="no offline markets for exchange 'kraken' \\(bundled: binance\\)",
    ):
        offline.markets_file("kraken")


def test_missing_pairs_are_the_plain_pairs_the_markets_lack() -> None:
    markets = {"BTC/USDT": {}, "ETH/USDT": {}}
    assert offline.missing_pairs(["BTC/USDT", "DOGE/USDT", ".*/USDT"], markets) == ["DOGE/USDT"]


def test_sample_resolves_to_the_checkout_without_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(datasets.DATA_ROOT_ENV, raising=False)
    assert datasets.resolve_datadir("sample", "binance") == (DATA / "binance").resolve()


def test_data_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "binance").mkdir()
    monkeypatch.setenv(datasets.DATA_ROOT_ENV, str(tmp_path))
    assert datasets.resolve_datadir("sample", "binance") == (tmp_path / "binance").resolve()
    with pytest.raises(datasets.DataError, match="has no kraken candles"):
        datasets.resolve_datadir("sample", "kraken")


def test_unknown_set_and_missing_directory_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(datasets.DataError, match="unknown bundled data set 'huge'"):
        datasets.resolve_datadir("huge", "binance")
    with pytest.raises(datasets.DataError, match="does not exist"):
        datasets.resolve_datadir(str(tmp_path / "nope"), "binance")
    # A path is used as Freqtrade's datadir as it is, without the exchange appended.
    assert datasets.resolve_datadir(str(tmp_path), "binance") == tmp_path.resolve()


def test_data_hash_covers_names_and_contents(tmp_path: Path) -> None:
    a, b = tmp_path / "A-5m.feather", tmp_path / "B-5m.feather"
    a.write_bytes(b"aaa")
    b.write_bytes(b"bbb")
    first = datasets.data_hash([a, b], tmp_path)
    assert datasets.data_hash([b, a, a], tmp_path) == first  # order and repeats do not matter
    expected = hashlib.sha256(b"A-5m.feather\n3\naaaB-5m.feather\n3\nbbb").hexdigest()
    assert first == expected
    b.write_bytes(b"bbc")
    assert datasets.data_hash([a, b], tmp_path) != first
    b.write_bytes(b"bbb")
    c = b.rename(tmp_path / "C-5m.feather")
    assert datasets.data_hash([a, c], tmp_path) != first
