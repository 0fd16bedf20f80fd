"""kopf's HTTP session: its pool is bounded, and the bound leaves room for every watch."""

from __future__ import annotations

import asyncio

import kopf
from kopf._core.intents.registries import OperatorRegistry

import tradebot.controllers  # noqa: F401  (registers every handler and index with kopf)
from tradebot.controllers import kopf_session
from tradebot.controllers.informer import trimmed


def _kinds(registry: OperatorRegistry) -> set[object]:
    handlers = [
        *registry._indexing.get_all_handlers(),
        *registry._watching.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
        *registry._changing.get_all_handlers(),
    ]
    return {h.selector for h in handlers}


def test_the_watched_kinds_fit_the_bound() -> None:
    kinds = _kinds(kopf.get_default_registry())
    # A positive control: the kinds we know the operator handles are counted.
    assert len(kinds) >= 6
    assert len(kinds) <= kopf_session.WATCHED_KINDS


def test_kopf_watches_no_backtests() -> None:
    """Backtests are driven by the admission queue's informers (controllers/backtest_watch.py):
    kopf would keep a body, a memory and a finalizer for each of a flood."""
    plurals = {getattr(k, "any_name", None) for k in _kinds(kopf.get_default_registry())}
    assert "strategies" in plurals  # the registry was read (positive control)
    assert "backtests" not in plurals


def test_the_limit_grows_with_the_namespaces() -> None:
    cluster_wide = kopf_session.connection_limit(32, ())
    assert cluster_wide == kopf_session.WATCHED_KINDS + 1 + 32
    assert kopf_session.connection_limit(32, ("a", "b", "c")) == (
        3 * kopf_session.WATCHED_KINDS + 1 + 32
    )


def test_the_session_is_bounded_and_carries_the_credentials() -> None:
    info = kopf.ConnectionInfo(
        server="https://127.0.0.1:6443", scheme="Bearer", token="t0k", insecure=True
    )

    async def build() -> tuple[int, str, str]:
        made = kopf_session.session(info, 50)
        http = made.aiohttp_session
        try:
            return http.connector.limit, made.server, http.headers["Authorization"]  # type: ignore[union-attr]
        finally:
            await http.close()

    limit, server, auth = asyncio.run(build())
    assert (limit, server, auth) == (50, "https://127.0.0.1:6443", "Bearer t0k")


def test_trimmed_drops_only_managed_fields() -> None:
    obj = {
        "metadata": {"name": "a", "labels": {"x": "y"}, "managedFields": [{"manager": "m"}]},
        "spec": {"k": 1},
    }
    assert trimmed(obj) == {"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"k": 1}}
    assert trimmed({"metadata": {"name": "b"}}) == {"metadata": {"name": "b"}}
