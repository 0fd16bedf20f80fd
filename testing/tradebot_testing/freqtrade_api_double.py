"""A double of many Freqtrade bots' REST APIs at once, for benchmarks and tests of what the
operator does to bots (monitoring rounds, the breaker's REST stop) without running Freqtrade
hundreds of times.

One asyncio loop in a thread listens on any number of addresses at the bots' API port: on the
local cluster's kwok nodes a pod's IP can be a loopback address (the node's podCIDR in
127.0.0.0/8), so each bot's API answers at its own pod IP, the way the operator reaches a real
bot. Only the endpoints the operator calls are answered: login (Basic auth -> a token; every
other call but ping wants that token or, as Freqtrade, Basic auth), ping, the monitoring
reads (show_config, profit, balance, status, trades: a flat, idle dry-run bot) and the
controls (stop, stopentry, forceexit, start). Every request is recorded with the address it
arrived at and its monotonic arrival time, so a caller can tell which bot got which call, and
when.

It is a double: it checks that credentials are sent, not what they are, and trades nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_TOKEN = "double-access-token"  # noqa: S105 - the double's, not a secret
_MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # after /api/v1/, without the query
    at: float  # time.monotonic() when the request was read


class FreqtradeApiDouble:
    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._calls: dict[str, list[Call]] = defaultdict(list)
        self._state: dict[str, str] = {}
        self._servers: dict[str, asyncio.base_events.Server] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="freqtrade-api-double", daemon=True)
        self.error: BaseException | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FreqtradeApiDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            for server in self._servers.values():
                server.close()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self._loop)
        self._thread.join(10)

    def __enter__(self) -> FreqtradeApiDouble:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        except BaseException as e:  # raised by check() in the caller's thread
            self.error = e
            raise

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the Freqtrade API double failed: {self.error!r}")
        if not self._thread.is_alive():
            raise RuntimeError("the Freqtrade API double is not running")

    def listen(self, addresses: Iterable[str], timeout: float = 30) -> None:
        """Answers at each address (port `self.port`) from now on; idempotent."""
        wanted = [a for a in addresses if a not in self._servers]
        if wanted:
            asyncio.run_coroutine_threadsafe(self._listen(wanted), self._loop).result(timeout)

    async def _listen(self, addresses: list[str]) -> None:
        for address in addresses:
            if address in self._servers:
                continue
            self._servers[address] = await asyncio.start_server(
                self._serve, host=address, port=self.port, reuse_address=True, backlog=128
            )
            with self._lock:
                self._state.setdefault(address, "running")

    # ---- what happened -----------------------------------------------------------------------
    def calls(self, address: str) -> list[Call]:
        with self._lock:
            return list(self._calls.get(address, ()))

    def first(self, address: str, path: str) -> float | None:
        """When `path` (e.g. "stop") first arrived at `address`, or None."""
        return next((c.at for c in self.calls(address) if c.path == path), None)

    def state(self, address: str) -> str | None:
        with self._lock:
            return self._state.get(address)

    # ---- HTTP --------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            address = str(writer.get_extra_info("sockname")[0])
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEADER:
                raise ValueError("header too large")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
            }
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)
            path = target.split("?", 1)[0].removeprefix("/api/v1/")
            with self._lock:
                self._calls[address].append(Call(method, path, time.monotonic()))
            code, answer = self._answer(address, method, path, headers.get("authorization", ""))
            body = json.dumps(answer).encode()
            writer.write(
                f"HTTP/1.1 {code} {'OK' if code == 200 else 'Error'}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass  # a client that went away, or not HTTP: nothing to answer
        finally:
            writer.close()

    def _answer(self, address: str, method: str, path: str, auth: str) -> tuple[int, Any]:
        if path == "ping":
            return 200, {"status": "pong"}
        if path == "token/login":
            if not auth.startswith("Basic "):
                return 401, {"detail": "Unauthorized"}
            return 200, {"access_token": _TOKEN, "refresh_token": _TOKEN}
        # Freqtrade takes its access token or HTTP Basic credentials on every endpoint.
        if auth != f"Bearer {_TOKEN}" and not auth.startswith("Basic "):
            return 401, {"detail": "Unauthorized"}
        with self._lock:
            state = self._state.get(address, "running")
            if method == "POST" and path in ("stop", "start"):
                self._state[address] = "stopped" if path == "stop" else "running"
        reads: dict[str, Any] = {
            "show_config": {"state": state, "dry_run": True, "stake_currency": "USDT"},
            "profit": {
                "profit_closed_coin": 0,
                "profit_closed_ratio": 0,
                "max_drawdown": 0,
                "trade_count": 0,
            },
            "balance": {"total": 1000, "currencies": []},
            "status": [],
            "trades": {"trades": [], "trades_count": 0},
        }
        controls: dict[str, Any] = {
            "stop": {"status": "stopping trader ..."},
            "start": {"status": "starting trader ..."},
            "stopentry": {"status": "No more entries will occur from now. Run /reload_config."},
            "forceexit": {"result": "Created exit orders for all open trades."},
        }
        if method == "GET" and path in reads:
            return 200, reads[path]
        if method == "POST" and path in controls:
            return 200, controls[path]
        return 404, {"detail": "Not Found"}
