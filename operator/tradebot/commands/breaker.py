"""`tradebot breaker`: trip (the kill switch), reset and inspect CircuitBreakers."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from tradebot.commands import cluster_access

PLURAL = "circuitbreakers"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "breaker",
        help="trip, reset or show CircuitBreakers",
        description="Trip a CircuitBreaker by hand (the kill switch: every bot it selects is "
        "stopped at once and an incident is recorded), reset a tripped one, or show their "
        "state. trip and reset annotate the breaker (tradebot.dev/trip, tradebot.dev/reset) "
        "with a new token; the operator acts on each token once.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("trip", "trip it now and stop its bots"),
        ("reset", "close a tripped breaker: its bots may run again"),
    ):
        p = actions.add_parser(action, help=text, description=text)
        p.add_argument("name", help="the CircuitBreaker")
        p.add_argument(
            "--token",
            help="the token to annotate (default: a new one from the "
            "time); the same token never acts twice",
        )
        p.add_argument(
            "--wait",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="wait this long for the operator to act (0: do not wait; default: %(default)s)",
        )
        cluster_access.add_options(p)
        p.set_defaults(handler=_act)
    show = actions.add_parser(
        "status", help="show breakers and their state", description="show breakers and their state"
    )
    show.add_argument("name", nargs="?", help="one CircuitBreaker (default: all)")
    cluster_access.add_options(show)
    show.set_defaults(handler=_status)


def _get(namespace: str, name: str) -> dict[str, Any]:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION

    result: dict[str, Any] = kube.custom().get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return result


def _act(args: argparse.Namespace) -> int:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION

    namespace = cluster_access.connect(args)
    token = args.token or f"{args.action}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
    annotation = f"tradebot.dev/{args.action}"
    what = f"CircuitBreaker {namespace}/{args.name}"
    try:
        before = _get(namespace, args.name)
        used = (before.get("status") or {}).get(
            "lastTripToken" if args.action == "trip" else "lastResetToken"
        )
        if used == token:
            print(
                f"tradebot breaker {args.action}: token {token!r} was used already; "
                "pass a new --token",
                file=sys.stderr,
            )
            return 2
        kube.custom().patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            args.name,
            {"metadata": {"annotations": {annotation: token}}},
        )
    except ApiException as e:
        print(
            f"tradebot breaker {args.action}: {cluster_access.describe(e, what)}", file=sys.stderr
        )
        return 1
    print(f"{what}: annotated {annotation}={token}")
    if args.wait <= 0:
        return 0
    deadline = time.monotonic() + args.wait
    key = "lastTripToken" if args.action == "trip" else "lastResetToken"
    while time.monotonic() < deadline:
        status = _get(namespace, args.name).get("status") or {}
        if status.get(key) == token:
            print(_line(args.name, status))
            return 0
        time.sleep(0.5)
    print(
        f"tradebot breaker {args.action}: the operator has not acted on the token within "
        f"{args.wait:g}s (is it running and watching {namespace}?)",
        file=sys.stderr,
    )
    return 3


def _line(name: str, status: dict[str, Any]) -> str:
    state = status.get("state") or "Closed"
    parts = [f"{name}: {state}"]
    if state != "Closed" and status.get("trippedAt"):
        parts.append(f"tripped at {status['trippedAt']}: {status.get('reason') or ''}")
        bots = status.get("affectedBots") or []
        parts.append(f"bots stopped: {', '.join(bots) if bots else 'none'}")
        if status.get("incidentId"):
            parts.append(f"incident {status['incidentId']}")
    return "; ".join(parts)


def _status(args: argparse.Namespace) -> int:
    from tradebot import kube
    from tradebot.api.base import GROUP, VERSION

    namespace = cluster_access.connect(args)
    try:
        if args.name:
            items = [_get(namespace, args.name)]
        else:
            items = kube.custom().list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
                "items"
            ]
    except ApiException as e:
        print(
            "tradebot breaker status: "
            + cluster_access.describe(e, f"CircuitBreaker {namespace}/{args.name or '*'}"),
            file=sys.stderr,
        )
        return 1
    if not items:
        print(f"no CircuitBreakers in {namespace}")
    for item in items:
        print(_line(item["metadata"]["name"], item.get("status") or {}))
    return 0
