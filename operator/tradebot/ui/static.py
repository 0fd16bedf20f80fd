"""The fleet page's Strategy and run pages as static files (`tradebot report --html DIR`): the
same templates, links between files, and plotly.js copied beside them, so the directory opens
in a browser with no server and no network."""

from __future__ import annotations

import shutil
from pathlib import Path

from tradebot.records.reporting import list_strategies
from tradebot.records.store import RecordStore
from tradebot.ui.pages import Pages
from tradebot.ui.render import PLOTLY_JS, Links, plotly_js


def write_site(
    store: RecordStore, dsn: str, directory: Path, *, namespace: str | None = None
) -> list[Path]:
    """Writes index.html, a page per strategy and per backtest or hyperopt run into
    `directory` (created if missing); returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    links = Links(static=True)
    pages = Pages(store, dsn, None, links)
    written: dict[str, str] = {links.home(): pages.home()}
    for s in list_strategies(dsn, namespace=namespace):
        written[links.strategy(s.namespace, s.name)] = pages.strategy(s.namespace, s.name)
    for run in store.list_runs(namespace=namespace):
        if run.kind == "backtest":
            written[links.backtest(run.id)] = pages.backtest(run.id)
        elif run.kind == "hyperopt":
            written[links.hyperopt(run.id)] = pages.hyperopt(run.id)
    paths = []
    for name, html in written.items():
        path = directory / name
        path.write_text(html)
        paths.append(path)
    shutil.copyfile(plotly_js(), directory / PLOTLY_JS)
    return [*paths, directory / PLOTLY_JS]
