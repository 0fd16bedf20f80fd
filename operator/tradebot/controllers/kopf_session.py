"""kopf's HTTP session to the API server, with a bounded connection pool.

kopf's own session has no limit on connections (`TCPConnector(limit=0)`): every request that
finds no idle connection opens a new TLS connection, and each one holds a 256 KiB read buffer
(asyncio's SSL protocol) plus OpenSSL's state until it has idled for 15 s. A flood of new
Backtests starts a timer round per Backtest, each with its status patch; measured with 2000 of
them, about 170 connections were open at once, 42 MiB of buffers alone (docs/backtests.md,
Floods). Here the pool holds at most the watches kopf keeps open plus `api_connections` for
everything else; a request beyond that waits for a connection instead of opening one.
"""

from __future__ import annotations

import aiohttp
import kopf

# kopf keeps one watch per resource kind and namespace (cluster-wide: one per kind), each
# holding a connection for as long as it streams. An upper bound of the kinds the operator
# handles, indexes or watches (tests/unit/test_kopf_session.py counts kopf's registry).
WATCHED_KINDS = 10


def connection_limit(api_connections: int, namespaces: tuple[str, ...]) -> int:
    """Connections the pool may hold: every watch, one for the namespaces' own watch kopf
    keeps when it serves several, and `api_connections` for requests."""
    return WATCHED_KINDS * max(1, len(namespaces)) + 1 + api_connections


def session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """What kopf builds from `info` (TLS context, Authorization header, proxy), with a pool
    of at most `limit` connections. Must be called in the event loop (aiohttp's rule)."""
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
        aiohttp_session=http,
    )
