"""A client of a running Freqtrade bot's REST API, as the operator uses it: monitoring
(ping, profit, balance, open trades) and control (stop, stop entries, force exit).

Numbers are parsed from the JSON text straight into Decimal, so no figure passes through a
float on its way to status, metrics or records. The password is never put in an error message.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

# The figures one round reads are data of the domain (monitoring decides from them); they are
# named here too for the client's callers.
from tradebot.domain.monitoring import Snapshot as Snapshot


class BotUnreachable(Exception):
    """The bot's API did not answer (connection refused, timeout, 5xx)."""


class BotApiError(Exception):
    """The bot's API answered with an error (4xx other than an expired token)."""


class BotRefused(BotApiError):
    """Freqtrade refused the request and said why (its RPC errors answer HTTP 502 with an
    `error` message): the bot is up and did not do it."""


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if value is None or isinstance(value, bool):
        return Decimal(0)
    return Decimal(str(value))


def _rpc_error(error: urllib.error.HTTPError) -> str | None:
    """Freqtrade's own message for an RPC error (`{"error": "Error querying ...: why"}`)."""
    try:
        answer = json.loads(error.read() or b"null")
    except (ValueError, OSError):
        return None
    message = answer.get("error") if isinstance(answer, dict) else None
    return str(message)[:500] if message else None


def losing_streak(closed: list[dict[str, Any]]) -> int:
    """Losing trades in a row, counted back from the most recently closed one. Sorted here
    by close time (then trade id) rather than trusting the order of the answer: the streak
    must start at the newest trade whatever order the API used."""

    def newest_first(trade: dict[str, Any]) -> tuple[str, int]:
        return str(trade.get("close_date") or ""), int(trade.get("trade_id") or 0)

    streak = 0
    for trade in sorted(closed, key=newest_first, reverse=True):
        if _decimal(trade.get("profit_abs")) < 0:
            streak += 1
        else:
            break
    return streak


class BotClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 5.0,
        *,
        basic_auth: bool = False,
    ) -> None:
        """`basic_auth`: every call carries the credentials (Freqtrade accepts HTTP Basic on
        each endpoint as well as its access token), no login first: for a client that makes
        one or two calls, as a stop does, the login would be half its requests."""
        self.base_url = base_url.rstrip("/")
        self._basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.timeout = timeout
        self.basic_auth = basic_auth
        self._token: str | None = None
        self._lock = threading.Lock()

    # ---- transport ---------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, auth: str | None = None
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is the bot's, built by us
            f"{self.base_url}/api/v1/{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": auth} if auth else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null", parse_float=Decimal)
        except urllib.error.HTTPError as e:
            refusal = _rpc_error(e) if e.code == 502 else None
            if refusal is not None:
                raise BotRefused(f"{method} /api/v1/{path}: {refusal}") from None
            if e.code >= 500:
                raise BotUnreachable(f"{method} /api/v1/{path}: HTTP {e.code}") from None
            raise BotApiError(f"{method} /api/v1/{path}: HTTP {e.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise BotUnreachable(f"{method} {self.base_url}/api/v1/{path}: {reason}") from None

    def _login(self) -> str:
        answer = self._request("POST", "token/login", auth=self._basic)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise BotApiError("login answered without an access token")
        return str(token)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self.basic_auth:
            return self._request(method, path, body, auth=self._basic)
        with self._lock:
            if self._token is None:
                self._token = self._login()
            token = self._token
        try:
            return self._request(method, path, body, auth=f"Bearer {token}")
        except BotApiError as e:
            if "HTTP 401" not in str(e):
                raise
        # The access token lives 15 minutes: log in again once, then give up.
        with self._lock:
            self._token = self._login()
            token = self._token
        return self._request(method, path, body, auth=f"Bearer {token}")

    # ---- monitoring --------------------------------------------------------------------------
    def ping(self) -> bool:
        answer = self._request("GET", "ping")
        return isinstance(answer, dict) and answer.get("status") == "pong"

    def show_config(self) -> dict[str, Any]:
        return dict(self._call("GET", "show_config"))

    def profit(self) -> dict[str, Any]:
        return dict(self._call("GET", "profit"))

    def balance(self) -> dict[str, Any]:
        return dict(self._call("GET", "balance"))

    def status(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "status"))

    def trades(self, limit: int = 50) -> list[dict[str, Any]]:
        """The `limit` most recently closed trades, newest first. Freqtrade's /trades sorts by
        trade id ascending unless told otherwise, so a plain `limit` would return the oldest
        trades forever once the bot has more than `limit` of them; `order_by_id=false` sorts
        by close date, newest first (rpc/api_server/api_trading.py)."""
        answer = self._call("GET", f"trades?limit={limit}&order_by_id=false")
        return list(answer.get("trades", [])) if isinstance(answer, dict) else []

    def snapshot(self) -> Snapshot:
        config = self.show_config()
        profit = self.profit()
        balance = self.balance()
        open_trades = self.status()
        closed = [t for t in self.trades() if not t.get("is_open")]
        streak = losing_streak(closed)
        return Snapshot(
            state=str(config.get("state", "")),
            dry_run=bool(config.get("dry_run", True)),
            total_balance=_decimal(balance.get("total")),
            closed_profit=_decimal(profit.get("profit_closed_coin")),
            closed_profit_ratio=_decimal(profit.get("profit_closed_ratio")),
            max_drawdown=_decimal(profit.get("max_drawdown")),
            open_trades=len(open_trades),
            open_profit=sum((_decimal(t.get("profit_abs")) for t in open_trades), Decimal(0)),
            trade_count=int(profit.get("trade_count") or 0),
            losing_streak=streak,
        )

    # ---- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """The trader stops; open trades stay open."""
        self._call("POST", "stop")

    def stop_entries(self) -> None:
        """No new entries; exits go on."""
        self._call("POST", "stopentry")

    def start(self) -> None:
        self._call("POST", "start")

    def force_exit_all(self) -> None:
        """Closes every open trade at market."""
        self._call("POST", "forceexit", {"tradeid": "all"})

    def force_enter(
        self,
        pair: str,
        *,
        stake_amount: Decimal | None = None,
        entry_tag: str | None = None,
        order_type: str | None = None,
    ) -> dict[str, Any]:
        """Enters `pair` now; the answer is the trade (with its orders). The stake goes as a
        decimal string, which Freqtrade's payload model reads without a float on our side."""
        body: dict[str, Any] = {"pair": pair}
        if stake_amount is not None:
            body["stakeamount"] = format(stake_amount, "f")
        if entry_tag is not None:
            body["entry_tag"] = entry_tag
        if order_type is not None:
            body["ordertype"] = order_type
        return dict(self._call("POST", "forceenter", body))
