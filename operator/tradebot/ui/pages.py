"""Reading what each page shows from the records store and the cluster, then building its view
(views.py) and its HTML (render.py). Reads only: nothing here writes to either."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from tradebot.api.base import GROUP, VERSION
from tradebot.records.reporting import list_strategies, metrics_of_runs
from tradebot.records.store import RecordStore
from tradebot.reports.collect import collect
from tradebot.reports.model import Filters, UnknownStrategy
from tradebot.ui import views
from tradebot.ui.render import Links, render


class NotFound(LookupError):
    """No such run, strategy or bot: the page answers 404 with this message."""


class Cluster:
    """The cluster's objects of the tradebot kinds, all namespaces; reading it may fail (no
    kubeconfig, API server down): the pages then show the records alone and say why."""

    def __init__(self, lister: Callable[[str], list[dict[str, Any]]] | None = None) -> None:
        self._lister = lister or _list_all

    def list(self, plural: str) -> list[dict[str, Any]]:
        return self._lister(plural)

    def find(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        for obj in self.list(plural):
            meta = obj.get("metadata") or {}
            if meta.get("namespace") == namespace and meta.get("name") == name:
                return obj
        return None


def _list_all(plural: str) -> list[dict[str, Any]]:
    from tradebot import kube

    answer = kube.custom().list_cluster_custom_object(GROUP, VERSION, plural)
    return list(answer.get("items") or [])


def _try(read: Callable[[], Any], default: Any) -> tuple[Any, str | None]:
    # Any failure to read the cluster (config, network, RBAC) leaves the records' part of the
    # page standing; the message says what went wrong.
    try:
        return read(), None
    except Exception as e:
        return default, f"{type(e).__name__}: {e}"


class Pages:
    def __init__(self, store: RecordStore, dsn: str, cluster: Cluster | None, links: Links) -> None:
        self.store, self.dsn, self.cluster, self.links = store, dsn, cluster, links

    def _resource(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cluster is None:
            return None
        cluster = self.cluster
        found, _ = _try(lambda: cluster.find(plural, namespace, name), None)
        return dict(found) if found else None

    def home(self) -> str:
        runs = self.store.list_runs()
        bots: list[dict[str, Any]] = []
        breakers: list[dict[str, Any]] = []
        work: list[dict[str, Any]] = []
        error: str | None = "no cluster configured"
        if self.cluster is not None:
            cluster = self.cluster

            def read() -> None:
                bots.extend(cluster.list("livebots"))
                breakers.extend(cluster.list("circuitbreakers"))
                for plural, kind in (("backtests", "Backtest"), ("hyperopts", "Hyperopt")):
                    work.extend({**o, "kind": kind} for o in cluster.list(plural))

            _, error = _try(read, None)
        view = views.home_view(
            bots=bots,
            breakers=breakers,
            work=work,
            runs=runs,
            metrics=metrics_of_runs(self.dsn),
            incidents=self.store.list_incidents(),
            strategies=[(s.namespace, s.name) for s in list_strategies(self.dsn)],
            cluster_error=error,
        )
        return render("home", view, self.links)

    def _report(self, namespace: str | None = None, strategy: str | None = None) -> Any:
        return collect(
            self.store,
            self.dsn,
            Filters(namespace=namespace, strategy=strategy),
            dt.datetime.now(dt.UTC),
        )

    def backtest(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        if run is None or run.kind != "backtest":
            raise NotFound(f"no backtest run {run_id!r} is recorded")
        view = views.backtest_view(
            run,
            self.store.get_metrics(run_id),
            self.store.backtest_detail(run_id),
            self._resource("backtests", run.namespace, run.name),
            self.store.get_artifacts(run_id),
        )
        return render("backtest", view, self.links)

    def hyperopt(self, run_id: str) -> str:
        run = self.store.get_run(run_id)
        if run is None or run.kind != "hyperopt":
            raise NotFound(f"no hyperopt run {run_id!r} is recorded")
        view = views.hyperopt_view(
            run,
            self.store.get_metrics(run_id),
            self.store.epochs(run_id),
            self._resource("hyperopts", run.namespace, run.name),
        )
        return render("hyperopt", view, self.links)

    def strategy(self, namespace: str, name: str) -> str:
        try:
            report = self._report(namespace, name)
        except UnknownStrategy as e:
            raise NotFound(str(e)) from None
        entry = next((e for e in report.strategies if e.name == name), None)
        if entry is None:
            raise NotFound(f"no strategy {namespace}/{name} is recorded")
        return render("strategy", views.strategy_view(entry), self.links)

    def bot(self, namespace: str, name: str) -> str:
        resource = self._resource("livebots", namespace, name)
        if resource is None:
            raise NotFound(f"no LiveBot {namespace}/{name} in the cluster")
        uid = str((resource.get("metadata") or {}).get("uid", ""))
        view = views.bot_view(resource, self.store.list_snapshots(uid))
        return render("bot", view, self.links)

    def error(self, message: str) -> str:
        return render("error", {"title": "Not found", "message": message, "charts": []}, self.links)
