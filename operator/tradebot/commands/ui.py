"""`tradebot ui`: the fleet page, a read-only web view of the records and the cluster."""

from __future__ import annotations

import argparse
import os
import sys

from tradebot.commands.common import add_dsn_argument, fail, missing_database, resolve_dsn

DEFAULT_PORT = 8787


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = sub.add_parser(
        "ui",
        help="serve the fleet page: bots, breakers, the queue, runs, equity curves (read-only)",
        description="Serve a read-only web page of the fleet: LiveBots, CircuitBreakers, the "
        "queue and recent runs, with a page per Backtest (equity and drawdown curves, trades, "
        "per-pair and exit-reason tables, what it launched), Strategy (its versions and runs "
        "side by side), Hyperopt (loss by epoch) and LiveBot (recorded equity). It reads the "
        "records and the cluster only; every method but GET and HEAD answers 405.",
    )
    ui.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    ui.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (default: %(default)s; 0: any free one)",
    )
    ui.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the cluster to show (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    ui.add_argument(
        "--no-cluster", action="store_true", help="show the records only, read no cluster"
    )
    add_dsn_argument(ui)
    ui.set_defaults(handler=_ui)


def _ui(args: argparse.Namespace) -> int:
    from tradebot import kube
    from tradebot.records import RecordsError, open_store
    from tradebot.ui.pages import Cluster, Pages
    from tradebot.ui.render import Links
    from tradebot.ui.server import serve

    dsn = resolve_dsn(args.dsn)
    missing = missing_database(dsn)
    if missing is not None:
        return fail("ui", missing)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    kube.reset()

    def ready(url: str) -> None:
        print(f"fleet page: {url}", flush=True)

    try:
        with open_store(dsn) as store:
            pages = Pages(store, dsn, None if args.no_cluster else Cluster(), Links())
            serve(pages, args.host, args.port, ready)
    except (RecordsError, OSError) as exc:
        return fail("ui", str(exc))
    except KeyboardInterrupt:
        print("", file=sys.stderr)
    return 0
