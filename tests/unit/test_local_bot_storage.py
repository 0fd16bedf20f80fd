"""Where the local executor keeps a bot's trade database: where the pod keeps it."""

from __future__ import annotations

from pathlib import Path

from tradebot.executors.local_bots import LocalBotExecutor, PodStorage

POD_DB_URL = "sqlite:////freqtrade/user_data/tradesv3.sqlite"


def test_an_empty_dir_is_new_with_every_pod(tmp_path: Path):
    executor = LocalBotExecutor(tmp_path)
    first, args = executor._user_data("b1", PodStorage("pod-1", None, POD_DB_URL))
    assert args == ["--db-url", f"sqlite:///{first}/tradesv3.sqlite"]
    first.mkdir(parents=True)
    (first / "tradesv3.sqlite").write_text("trades of pod-1")
    second, _ = executor._user_data("b1", PodStorage("pod-2", None, POD_DB_URL))
    assert second != first
    assert not first.exists()  # the old pod's emptyDir went with it


def test_a_claim_is_the_same_directory_for_every_pod(tmp_path: Path):
    executor = LocalBotExecutor(tmp_path / "state")
    volume = tmp_path / "pv-1"
    for pod in ("pod-1", "pod-2"):
        user_data, args = executor._user_data("b1", PodStorage(pod, volume, POD_DB_URL))
        assert user_data == volume
        assert args == ["--db-url", f"sqlite:///{volume}/tradesv3.sqlite"]


def test_a_db_url_from_the_environment_gets_no_argument(tmp_path: Path):
    # Freqtrade's --db-url would override FREQTRADE__DB_URL.
    _, args = LocalBotExecutor(tmp_path)._user_data("b1", PodStorage("pod-1", None, None))
    assert args == []
