"""What the operator keeps of its bot pods' IPs and credentials for a breaker's stops: a
complete list replaces what was known of its namespace, a deletion or a pod without an IP
leaves nothing, and credentials read as absent are forgotten."""

from __future__ import annotations

from typing import Any

from tradebot.controllers.bot_endpoints import Credentials, PodIps
from tradebot.domain.bots import ApiCredentials


def pod(namespace: str, name: str, ip: str | None) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "status": {"podIP": ip}}


def test_a_list_replaces_its_namespace_only() -> None:
    ips = PodIps()
    ips.replace("a", [pod("a", "p1", "127.0.0.1"), pod("a", "gone", "127.0.0.2")])
    ips.replace("b", [pod("b", "p1", "127.0.0.3")])
    ips.replace("a", [pod("a", "p1", "127.0.0.4"), pod("a", "new", None)])
    assert ips.ip("a", "p1") == "127.0.0.4"
    assert ips.ip("a", "gone") is None
    assert ips.ip("a", "new") is None
    assert ips.ip("b", "p1") == "127.0.0.3"
    ips.replace(None, [pod("c", "p", "127.0.0.5")])  # every namespace's list
    assert (ips.ip("a", "p1"), ips.ip("b", "p1"), ips.ip("c", "p")) == (None, None, "127.0.0.5")


def test_events_follow_the_pod() -> None:
    ips = PodIps()
    ips.event("ADDED", pod("a", "p", None))
    assert ips.ip("a", "p") is None
    ips.event("MODIFIED", pod("a", "p", "127.0.0.1"))
    assert ips.ip("a", "p") == "127.0.0.1"
    ips.event("DELETED", pod("a", "p", "127.0.0.1"))
    assert ips.ip("a", "p") is None
    assert len(ips) == 0


def test_credentials_read_as_absent_are_forgotten() -> None:
    known = Credentials()
    creds = ApiCredentials("u", "p", "j", "w")
    known.remember("a", "s", creds)
    assert known.get("a", "s") == creds
    known.remember("a", "s", None)
    assert known.get("a", "s") is None
