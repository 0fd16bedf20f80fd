"""A view into HTML through the package's Jinja2 templates, with links for the server (paths)
or for a directory of static files (file names)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

PLOTLY_JS = "plotly.min.js"


class Links:
    """Where each page is: server paths (`/backtests/ID`) or, for static files, file names
    in one directory (`backtest-ID.html`)."""

    def __init__(self, *, static: bool = False) -> None:
        self.static = static

    # The server's path of each kind of page (server.route reads the same names).
    PATHS: Final[Mapping[str, str]] = MappingProxyType(
        {"backtest": "backtests", "hyperopt": "hyperopts", "strategy": "strategies", "bot": "bots"}
    )

    def _page(self, kind: str, *parts: str) -> str:
        if self.static:
            return f"{kind}-{'-'.join(quote(p, safe='') for p in parts)}.html"
        return "/" + "/".join([self.PATHS[kind], *(quote(p, safe="") for p in parts)])

    def home(self) -> str:
        return "index.html" if self.static else "/"

    def backtest(self, run_id: str) -> str:
        return self._page("backtest", run_id)

    def hyperopt(self, run_id: str) -> str:
        return self._page("hyperopt", run_id)

    def strategy(self, namespace: str, name: str) -> str:
        return self._page("strategy", namespace, name)

    def bot(self, namespace: str, name: str) -> str:
        return self._page("bot", namespace, name)

    def asset(self, name: str) -> str:
        return name if self.static else f"/static/{name}"


_ENV = Environment(
    loader=PackageLoader("tradebot.ui", "templates"),
    autoescape=select_autoescape(["html"]),
    # A view missing a field the template asks for is a bug: fail, never print nothing.
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, view: dict[str, Any], links: Links) -> str:
    return _ENV.get_template(f"{template}.html").render(view=view, links=links)


def plotly_js() -> Path:
    """plotly.js as the plotly package ships it (served and copied from there: the page works
    without any network). Found without importing plotly, which loads much more."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the plotly package is not installed (pip install plotly)")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the plotly package")
    return path
