"""`tradebot ui`: the fleet page over HTTP. GET and HEAD only: every other method answers 405,
so nothing can be changed from the page (it holds no credentials that could, either)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tradebot.observability.logging import logger
from tradebot.records.errors import RecordsError
from tradebot.ui.pages import NotFound, Pages
from tradebot.ui.render import PLOTLY_JS, plotly_js

_log = logger(component="ui")
READ_ONLY = "GET, HEAD"


def route(pages: Pages, path: str) -> str:
    """The HTML of the page at `path`; raises NotFound."""
    parts = [unquote(p) for p in urlsplit(path).path.split("/") if p]
    match parts:
        case []:
            return pages.home()
        case ["backtests", run_id]:
            return pages.backtest(run_id)
        case ["hyperopts", run_id]:
            return pages.hyperopt(run_id)
        case ["strategies", namespace, name]:
            return pages.strategy(namespace, name)
        case ["bots", namespace, name]:
            return pages.bot(namespace, name)
    raise NotFound(f"no page at {path}")


def handler(pages: Pages, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    script = plotly_js().read_bytes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "tradebot-ui"

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header(
                "Cache-Control",
                "no-store" if content_type.startswith("text/html") else "max-age=86400",
            )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if urlsplit(self.path).path == f"/static/{PLOTLY_JS}":
                self._send(HTTPStatus.OK, script, "text/javascript; charset=utf-8")
                return
            try:
                # One store connection serves every request: one request at a time uses it.
                with lock:
                    html, status = route(pages, self.path), HTTPStatus.OK
            except NotFound as e:
                html, status = pages.error(str(e)), HTTPStatus.NOT_FOUND
            except RecordsError as e:
                _log.warning("records unreadable", path=self.path, error=str(e))
                html, status = (
                    pages.error(f"records unreadable: {e}"),
                    HTTPStatus.SERVICE_UNAVAILABLE,
                )
            self._send(status, html.encode(), "text/html; charset=utf-8")

        do_HEAD = do_GET

        def _refuse(self) -> None:
            self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
            self.send_header("Allow", READ_ONLY)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse

        def log_message(self, format: str, *args: object) -> None:
            _log.info("request", line=format % args)

    return Handler


def serve(pages: Pages, host: str, port: int, ready: Callable[[str], None] | None = None) -> None:
    """Serves until interrupted; `ready` gets the page's URL once it listens."""
    server = ThreadingHTTPServer((host, port), handler(pages, threading.Lock()))
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host!s}:{bound_port}/"
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
