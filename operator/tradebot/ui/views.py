"""What each page of the fleet page shows, built from records and cluster objects already read:
pure (no I/O), so every page can be checked without a server, a database or a cluster.

A view is a plain dict the templates render. Figures stay exact: money is text from the
Decimal (8 places), and chart data carries the same text (Plotly reads numeric strings as
numbers), so no figure passes through a float on its way to the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records.models import (
    ArtifactRecord,
    BacktestDetail,
    BotSnapshot,
    IncidentRecord,
    RunRecord,
)
from tradebot.reports.model import StrategyEntry

# The metrics a run's row shows, as the Backtest controller records them (the API's names).
RUN_FIGURES = ("profitTotal", "profitTotalAbs", "maxDrawdown", "trades", "winRate", "sharpe")
# The colours of the charts: one palette for every page.
UP, DOWN, LINE = "#2e7d32", "#c62828", "#1565c0"


def text(value: object) -> str:
    """A figure or time as the page shows it: Decimal without exponent, times in UTC."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def when(value: object) -> str:
    """A time from a status (ISO 8601 text) as the page shows times; other text as it is."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        return text(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC))
    return text(value)


def chart_time(value: dt.datetime) -> str:
    """A time as Plotly reads a date axis: UTC, no zone suffix (Plotly has no time zones)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def count(value: Decimal | None) -> str:
    """A count the metrics keep as an exact figure (12.00000000) as the integer it is."""
    if value is None:
        return ""
    return str(int(value)) if value == value.to_integral_value() else format(value, "f")


def percent(value: Decimal | str | None) -> str:
    """A ratio (0.0123) as a percentage with two places (1.23 %)."""
    if value is None or value == "":
        return ""
    return f"{(Decimal(str(value)) * 100).quantize(Decimal('0.01'))} %"


def _figures(metrics: Mapping[str, Decimal]) -> dict[str, str]:
    figures = {key: text(metrics.get(key)) for key in RUN_FIGURES}
    figures["trades"] = count(metrics.get("trades"))
    return figures


def run_row(run: RunRecord, metrics: Mapping[str, Decimal]) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "namespace": run.namespace,
        "name": run.name,
        "status": run.status,
        "code_hash": (run.strategy_code_hash or "")[:12],
        "created": text(run.created_at),
        "finished": text(run.finished_at),
        "profit": percent(metrics.get("profitTotal")),
        **_figures(metrics),
        "drawdown": percent(metrics.get("maxDrawdown")),
    }


# ---- home ----------------------------------------------------------------------------------
def _status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("metadata") or {})


def bot_row(bot: Mapping[str, Any]) -> dict[str, Any]:
    status, spec, meta = _status(bot), dict(bot.get("spec") or {}), _meta(bot)
    gates = status.get("gates") or []
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "mode": status.get("mode") or spec.get("mode") or "dryRun",
        "state": spec.get("state") or "running",
        "phase": status.get("phase") or "",
        "profit": text(status.get("profit")),
        "drawdown": percent(status.get("drawdown")),
        "equity": text(status.get("equity")),
        "open_trades": text(status.get("openTrades")),
        "heartbeat": when(status.get("lastHeartbeat")),
        "gates": [
            {
                "name": g.get("name", ""),
                "passed": bool(g.get("passed")),
                "message": g.get("message", ""),
            }
            for g in gates
        ],
    }


def breaker_row(breaker: Mapping[str, Any], incidents: Sequence[IncidentRecord]) -> dict[str, Any]:
    status, meta = _status(breaker), _meta(breaker)
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    mine = [i for i in incidents if i.namespace == ns and i.breaker == name]
    last = max(mine, key=lambda i: i.created_at, default=None)
    return {
        "namespace": ns,
        "name": name,
        "state": status.get("state") or "Closed",
        "reason": status.get("reason") or "",
        "tripped_at": when(status.get("trippedAt")),
        "affected": ", ".join(status.get("affectedBots") or []),
        "last_incident": None
        if last is None
        else {
            "at": text(last.created_at),
            "reason": last.reason,
            "description": last.description,
            "severity": last.severity,
        },
    }


def queue_rows(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Backtests and Hyperopts waiting or running, the queue's order first (position), then
    the running ones."""
    rows = []
    for obj in objects:
        status, meta = _status(obj), _meta(obj)
        phase = status.get("phase") or "Pending"
        if phase not in ("Pending", "Queued", "Running"):
            continue
        rows.append(
            {
                "kind": obj.get("kind", ""),
                "namespace": meta.get("namespace", ""),
                "name": meta.get("name", ""),
                "phase": phase,
                "position": status.get("queuePosition"),
                "started": when(status.get("startedAt")),
                "progress": _progress(status),
            }
        )
    return sorted(
        rows,
        key=lambda r: (r["phase"] == "Running", r["position"] or 0, r["namespace"], r["name"]),
    )


def backtest_rows(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The cluster's Backtests, each with its run's page when it has a run id."""
    rows = []
    for obj in objects:
        if obj.get("kind") != "Backtest":
            continue
        status, meta = _status(obj), _meta(obj)
        results = status.get("results") or {}
        rows.append(
            {
                "namespace": meta.get("namespace", ""),
                "name": meta.get("name", ""),
                "phase": status.get("phase") or "Pending",
                "run_id": status.get("runId"),
                "profit": percent(results.get("profitTotal")),
                "drawdown": percent(results.get("maxDrawdown")),
                "trades": text(results.get("trades")),
                "finished": when(status.get("finishedAt")),
            }
        )
    return sorted(rows, key=lambda r: (r["namespace"], r["name"]))


def _progress(status: Mapping[str, Any]) -> str:
    done, total = status.get("epochsDone"), status.get("epochsTotal")
    return f"{done}/{total} epochs" if done is not None and total else ""


def home_view(
    *,
    bots: Sequence[Mapping[str, Any]],
    breakers: Sequence[Mapping[str, Any]],
    work: Sequence[Mapping[str, Any]],
    runs: Sequence[RunRecord],
    metrics: Mapping[str, Mapping[str, Decimal]],
    incidents: Sequence[IncidentRecord],
    strategies: Sequence[tuple[str, str]],
    cluster_error: str | None = None,
    recent: int = 20,
) -> dict[str, Any]:
    """`work`: the cluster's Backtests and Hyperopts (each with its `kind`)."""
    latest = sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)[:recent]
    return {
        "title": "Fleet",
        "bots": [bot_row(b) for b in sorted(bots, key=_key)],
        "breakers": [breaker_row(b, incidents) for b in sorted(breakers, key=_key)],
        "queue": queue_rows(work),
        "backtests": backtest_rows(work),
        "runs": [run_row(r, metrics.get(r.id, {})) for r in latest],
        "strategies": [{"namespace": ns, "name": n} for ns, n in sorted(set(strategies))],
        "cluster_error": cluster_error,
        "charts": [],
    }


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


# ---- charts (Plotly figures as plain data) --------------------------------------------------
def _layout(title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "height": 320,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "yaxis": {"title": {"text": y_title}},
        "showlegend": False,
        **extra,
    }


def equity_figure(detail: BacktestDetail) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [chart_time(p.at) for p in detail.equity],
                "y": [text(p.equity) for p in detail.equity],
                "line": {"color": LINE, "shape": "hv"},
                "name": "equity",
            }
        ],
        "layout": _layout("Equity", detail.stake_currency),
    }


def drawdown_figure(detail: BacktestDetail) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "fill": "tozeroy",
                "x": [chart_time(p.at) for p in detail.equity],
                "y": [text(-p.drawdown * 100) for p in detail.equity],
                "line": {"color": DOWN, "shape": "hv"},
                "name": "drawdown",
            }
        ],
        "layout": _layout("Drawdown below the peak", "%"),
    }


def daily_figure(detail: BacktestDetail) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "bar",
                "x": [d.day.isoformat() for d in detail.daily],
                "y": [text(d.profit_abs) for d in detail.daily],
                "marker": {"color": [UP if d.profit_abs >= 0 else DOWN for d in detail.daily]},
                "name": "daily profit",
            }
        ],
        "layout": _layout("Daily profit", detail.stake_currency),
    }


# ---- run pages -----------------------------------------------------------------------------
def launched_rows(run: RunRecord, resource: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What the run launched: the Backtest's status.launched when it has one, else the hashes
    its status and the run record carry."""
    status = _status(resource or {})
    launched = status.get("launched")
    if isinstance(launched, Mapping) and launched:
        return [(str(k), _flat(v)) for k, v in sorted(launched.items())]
    spec = dict((resource or {}).get("spec") or {})
    rows = [
        ("codeHash", status.get("codeHash") or run.strategy_code_hash or ""),
        ("parametersHash", status.get("parametersHash") or run.parameters_hash or ""),
        ("configHash", status.get("configHash") or run.config_hash or ""),
        ("dataHash", status.get("dataHash") or run.data_hash or ""),
        ("dataWindow", f"{text(run.data_window_start)} to {text(run.data_window_end)}"),
        ("image", spec.get("image") or ""),
        ("pairs", ", ".join(spec.get("pairs") or [])),
    ]
    return [(k, str(v)) for k, v in rows if v]


def _flat(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return text(value)


def backtest_view(
    run: RunRecord,
    metrics: Mapping[str, Decimal],
    detail: BacktestDetail | None,
    resource: Mapping[str, Any] | None,
    artifacts: Sequence[ArtifactRecord] = (),
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "title": f"Backtest {run.namespace}/{run.name}",
        "run": run_row(run, metrics),
        "metrics": [(k, text(v)) for k, v in sorted(metrics.items())],
        "launched": launched_rows(run, resource),
        "artifacts": [{"name": a.name, "sha256": a.sha256, "size": a.size} for a in artifacts],
        "detail": detail is not None,
        "charts": [],
        "trades": [],
        "per_pair": [],
        "exit_reasons": [],
    }
    if detail is None:
        return view
    view["currency"] = detail.stake_currency
    view["charts"] = [
        ("equity", equity_figure(detail)),
        ("drawdown", drawdown_figure(detail)),
        ("daily", daily_figure(detail)),
    ]
    view["trades"] = [
        {
            "pair": t.pair,
            "side": "short" if t.is_short else "long",
            "open": text(t.open_date),
            "close": text(t.close_date),
            "profit_ratio": percent(t.profit_ratio),
            "profit_abs": text(t.profit_abs),
            "exit_reason": t.exit_reason,
            "won": t.profit_abs > 0,
        }
        for t in detail.trades
    ]
    for key, rows in (("per_pair", detail.per_pair), ("exit_reasons", detail.exit_reasons)):
        view[key] = [
            {
                "key": r.key,
                "trades": r.trades,
                "profit_abs": text(r.profit_total_abs),
                "profit": percent(r.profit_total),
                "mean": percent(r.profit_mean),
                "wins": r.wins,
                "draws": r.draws,
                "losses": r.losses,
            }
            for r in rows
        ]
    return view


def strategy_view(entry: StrategyEntry) -> dict[str, Any]:
    """Its versions (code hashes, newest first) and every run of each side by side, with a
    chart of each run's profit and drawdown."""
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for e in entry.runs:
        by_hash.setdefault(e.run.strategy_code_hash or "", []).append(run_row(e.run, e.metrics))
    versions = []
    seen: set[str] = set()
    for v in sorted(entry.versions, key=lambda v: v.first_seen, reverse=True):
        if v.code_hash in seen:
            continue
        seen.add(v.code_hash)
        versions.append(
            {
                "code_hash": v.code_hash,
                "class_name": v.class_name,
                "first_seen": text(v.first_seen),
                "last_seen": text(v.last_seen),
                "runs": by_hash.pop(v.code_hash, []),
            }
        )
    for code_hash, rows in sorted(by_hash.items()):
        versions.append(
            {
                "code_hash": code_hash,
                "class_name": "",
                "first_seen": "",
                "last_seen": "",
                "runs": rows,
            }
        )
    finished = [e for e in entry.runs if "profitTotal" in e.metrics]
    labels = [f"{e.run.name} ({(e.run.strategy_code_hash or '')[:8]})" for e in finished]
    chart = {
        "data": [
            {
                "type": "bar",
                "name": "profit %",
                "x": labels,
                "y": [text(e.metrics["profitTotal"] * 100) for e in finished],
                "marker": {"color": UP},
            },
            {
                "type": "bar",
                "name": "max drawdown %",
                "x": labels,
                "y": [text(e.metrics.get("maxDrawdown", Decimal(0)) * 100) for e in finished],
                "marker": {"color": DOWN},
            },
        ],
        "layout": _layout("Runs side by side", "%", barmode="group", showlegend=True),
    }
    return {
        "title": f"Strategy {entry.namespace}/{entry.name}",
        "namespace": entry.namespace,
        "name": entry.name,
        "versions": versions,
        "charts": [("runs", chart)] if finished else [],
    }


def hyperopt_view(
    run: RunRecord,
    metrics: Mapping[str, Decimal],
    epochs: Sequence[EpochRecord],
    resource: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Loss against epoch with the best so far, and the best epoch's parameters (from the
    Hyperopt's status, which holds them exactly)."""
    ordered = sorted(epochs, key=lambda e: (e.epoch, e.worker))
    best_so_far: list[Decimal] = []
    for e in ordered:
        best_so_far.append(min(e.loss, best_so_far[-1]) if best_so_far else e.loss)
    chart = {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "name": "loss",
                "x": [e.epoch for e in ordered],
                "y": [text(e.loss) for e in ordered],
                "marker": {"color": LINE},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "best so far",
                "x": [e.epoch for e in ordered],
                "y": [text(b) for b in best_so_far],
                "line": {"color": UP, "shape": "hv"},
            },
        ],
        "layout": _layout("Loss by epoch", "loss", showlegend=True),
    }
    status = _status(resource or {})
    best = status.get("best") or {}
    validation = status.get("validation") or {}
    inside, outside = validation.get("inSample") or {}, validation.get("outOfSample") or {}
    return {
        "title": f"Hyperopt {run.namespace}/{run.name}",
        "run": run_row(run, metrics),
        "metrics": [(k, text(v)) for k, v in sorted(metrics.items())],
        "epochs": [
            {
                "epoch": e.epoch,
                "worker": e.worker,
                "loss": text(e.loss),
                "profit": percent(e.profit_total),
                "trades": text(e.trades),
                "drawdown": percent(e.max_drawdown),
            }
            for e in ordered
        ],
        "best": [(str(k), _flat(v)) for k, v in sorted(best.items())],
        # Walk-forward: the best parameters in sample against the same out of sample.
        "samples": [
            (key, text(inside.get(key)), text(outside.get(key)))
            for key in sorted({*inside, *outside})
        ],
        "validation_backtest": validation.get("backtestName") or "",
        "charts": [("loss", chart)] if ordered else [],
    }


def bot_view(resource: Mapping[str, Any], snapshots: Sequence[BotSnapshot]) -> dict[str, Any]:
    row = bot_row(resource)
    points = [s for s in snapshots if s.equity is not None]
    chart = {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "x": [chart_time(s.taken_at) for s in points],
                "y": [text(s.equity) for s in points],
                "line": {"color": LINE},
                "name": "equity",
            }
        ],
        "layout": _layout("Equity (recorded snapshots)", "equity"),
    }
    return {
        "title": f"LiveBot {row['namespace']}/{row['name']}",
        "bot": row,
        "snapshots": [
            {
                "at": text(s.taken_at),
                "mode": s.mode,
                "profit": text(s.profit),
                "drawdown": percent(s.drawdown),
                "open_trades": s.open_trades,
                "equity": text(s.equity),
                "code_hash": s.code_hash[:12],
            }
            for s in reversed(snapshots[-50:])
        ],
        "charts": [("equity", chart)] if points else [],
    }
