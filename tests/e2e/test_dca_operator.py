"""DcaSchedules against a real dry-run `freqtrade trade` (local executor, local exchange double):
a buy per slot, visible as the bot's own orders; no buy while a breaker holds the bot; and a
slot whose buy went through before an operator restart is looked up, not bought again."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import operator_process, running_operator
from tests.support.wait import wait_for

from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.faults import EXIT_CODE
from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable
from tradebot.observability import metrics
from tradebot.records import DcaBuyRecord, open_store
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
BOT, SCHEDULE, EVERY = "dca-bot", "btc-dca", 15
STAKE = "20"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _get(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
    )


def _schedule_status(api: Any, namespace: str) -> dict[str, Any]:
    return dict(_get(api, namespace, "dcaschedules", SCHEDULE).get("status") or {})


def _strategy() -> dict[str, Any]:
    """The example Strategy with position adjustment on: each DCA buy after the first adds an
    entry order to the open trade (Freqtrade refuses a second trade of one pair)."""
    doc = copy.deepcopy(example("Strategy", "ema-rsi"))
    code = doc["spec"]["code"]
    marker = "class EmaRsiStrategy(IStrategy):\n"
    assert marker in code
    doc["spec"]["code"] = code.replace(marker, marker + "    position_adjustment_enable = True\n")
    return doc


def _manifests(action: str = "stopEntries") -> list[dict[str, Any]]:
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": BOT, "labels": {"tradebot.dev/fleet": "main"}}
    bot["spec"]["limits"] = {"maxStakePerTrade": "1000"}
    cb = copy.deepcopy(example("CircuitBreaker"))
    # Nothing trips it but a person. stopEntries keeps the bot's process and API up while it
    # holds the bot, so the test can read the bot's orders after the trip.
    cb["spec"].update(limits={"maxDrawdown": 0.9}, action=action, forceExit=False)
    schedule = {
        "apiVersion": f"{G}/{V}",
        "kind": "DcaSchedule",
        "metadata": {"name": SCHEDULE},
        "spec": {
            "botRef": {"name": BOT},
            "pair": "BTC/USDT",
            "stakeAmount": STAKE,
            "schedule": {"every": f"{EVERY}s"},
        },
    }
    return [_strategy(), bot, cb, schedule]


class Bot:
    def __init__(self, api: Any, namespace: str, state: Path) -> None:
        self.uid = str(_get(api, namespace, "livebots", BOT)["metadata"]["uid"])
        self.state = state
        core = client.CoreV1Api(api)
        secret = next(
            s
            for s in core.list_namespaced_secret(namespace).items
            if s.metadata.name.startswith("bot-api-")
        )
        creds = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        self.username, self.password = creds["username"], creds["password"]

    def rest(self) -> BotClient:
        process = LocalBotExecutor(self.state).running(self.uid)
        assert process is not None, "the bot's process is not running"
        return BotClient(process.url, self.username, self.password, timeout=5)

    def dca_orders(self) -> dict[str, list[dict[str, Any]]] | None:
        """The bot's entry orders tagged dca-*, by tag (open and closed trades); None while
        its API does not answer."""
        try:
            rest = self.rest()
            trades = rest.status() + rest.trades(limit=500)
        except (BotUnreachable, BotApiError, AssertionError):
            return None
        found: dict[str, list[dict[str, Any]]] = {}
        for trade in trades:
            for order in trade.get("orders") or []:
                tag = str(order.get("ft_order_tag") or "")
                if tag.startswith("dca-") and order.get("ft_order_side") == "buy":
                    found.setdefault(tag, []).append(order)
        return found


def _counts(orders: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {tag: len(found) for tag, found in orders.items()}


def _bought(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in status.get("history") or [] if h["outcome"] == "Bought"]


def _slot_epoch(entry: dict[str, Any]) -> int:
    return int(dt.datetime.fromisoformat(entry["slot"].replace("Z", "+00:00")).timestamp())


def _recorded_buys(dsn: str, namespace: str) -> dict[int, DcaBuyRecord]:
    """The Bought slots the records database holds for the schedule, by slot epoch."""
    with open_store(dsn) as store:
        records = store.dca_buys(namespace, SCHEDULE)
    return {int(r.slot.timestamp()): r for r in records if r.outcome == "Bought"}


def _records_hold(dsn: str, namespace: str, bought: list[dict[str, Any]]) -> None:
    """Each bought slot of the status history is in the records database, as the status has
    it (the record is written just after the status, hence waited for)."""
    slots = {_slot_epoch(b) for b in bought}

    def all_recorded() -> dict[int, DcaBuyRecord] | None:
        found = _recorded_buys(dsn, namespace)
        return found if slots <= found.keys() else None

    records = wait_for(
        all_recorded,
        30,
        what="the bought slots in the records database",
    )
    for entry in bought:
        record = records[_slot_epoch(entry)]
        assert (record.bot, record.pair, record.entry_tag) == (BOT, "BTC/USDT", entry["entryTag"])
        assert (record.stake, record.cost) == (Decimal(STAKE), Decimal(entry["cost"]))
        assert record.trade_id is not None
        assert record.amount is not None


def test_dca_buys_each_slot_and_never_while_a_breaker_holds_the_bot(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    state = tmp_path / "state"
    dsn = f"sqlite://{tmp_path / 'r.db'}"
    custom = client.CustomObjectsApi(api_client)
    with (
        ExchangeDouble() as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            exchange_double_url=double.url,
            database_dsn=dsn,
            local_state_dir=state,
        ),
    ):
        _apply(kubectl, namespace, *_manifests())
        # Two buys at least, each its own slot: the positive control of what follows.
        status = wait_for(
            lambda: len(_bought(s := _schedule_status(api_client, namespace))) >= 2 and s,
            240,
            interval=1,
            what="two DCA buys",
        )
        bot = Bot(api_client, namespace, state)
        orders = wait_for(bot.dca_orders, 30, what="the bot's DCA orders")
        bought = _bought(status)
        slots = [_slot_epoch(b) for b in bought]
        assert len(set(slots)) == len(slots)
        assert all(s % EVERY == 0 for s in slots)
        for entry in bought:
            # Each recorded buy is one order of the bot, with its slot's tag, of the stake.
            assert len(orders.get(entry["entryTag"], [])) == 1, (entry, orders)
            order = orders[entry["entryTag"]][0]
            assert Decimal(str(order["cost"])).quantize(Decimal("1e-8")) == Decimal(entry["cost"])
            # The stake buys the base amount and pays the fee; the cost is what filled
            # (the amount rounded to the market's precision).
            assert Decimal(STAKE) * Decimal("0.97") <= Decimal(entry["cost"]) <= Decimal(STAKE)
        assert status["buys"] >= 2
        assert Decimal(status["boughtStake"]) == sum(Decimal(b["cost"]) for b in bought)
        labels = (namespace, SCHEDULE, "Bought")
        assert (
            metrics.REGISTRY.get_sample_value(
                "tradebot_dca_slots_total",
                dict(zip(("namespace", "schedule", "outcome"), labels, strict=True)),
            )
            or 0
        ) >= 2
        events = (
            client.CoreV1Api(api_client)
            .list_namespaced_event(namespace, field_selector=f"involvedObject.name={SCHEDULE}")
            .items
        )
        assert sum(e.reason == "Bought" for e in events) >= 2
        _records_hold(dsn, namespace, bought)

        # A person trips the breaker: the bot is held (its entries stopped, its API up).
        custom.patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/trip": "t1"}}},
        )
        wait_for(
            lambda: (
                (_get(api_client, namespace, "livebots", BOT).get("status") or {}).get("phase")
                == "Tripped"
            ),
            60,
            what="the bot Tripped",
        )
        tripped_at = time.time()
        before = _counts(wait_for(bot.dca_orders, 30, what="the held bot's API"))
        # Two slots pass while it is held, each recorded as skipped for the breaker.
        held = wait_for(
            lambda: (
                (
                    s := [
                        h
                        for h in _schedule_status(api_client, namespace).get("history") or []
                        if _slot_epoch(h) > tripped_at
                    ]
                )
                and len(s) >= 2
                and s
            ),
            4 * EVERY + 30,
            interval=1,
            what="two slots while held",
        )
        assert {(h["outcome"], h["reason"]) for h in held} == {("Skipped", "BreakerOpen")}
        after = _counts(wait_for(bot.dca_orders, 30, what="the held bot's API"))
        assert after == before, "a DCA buy reached a bot held by a breaker"
        # The operator decided (a buy sent to the paused bot would be recorded as Failed
        # with Freqtrade's refusal instead), naming the breaker.
        assert all("CircuitBreaker main-fleet holds the bot" in h["message"] for h in held)


def test_an_operator_that_dies_after_a_buy_never_buys_that_slot_again(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """The operator dies (a crash point, like a SIGKILL) right after the bot answered a slot's
    buy, before it recorded the outcome: the intent is in status, the order in the bot. The
    next operator, started while that slot is still the current one, must find the order by
    its tag and record it, not buy the slot again."""
    state = (tmp_path / "state").resolve()
    state.mkdir()
    dsn = f"sqlite://{tmp_path / 'r.db'}"
    docs = _manifests()
    every = 45  # long enough that the slot is still current when the next operator starts
    docs[-1]["spec"]["schedule"] = {"every": f"{every}s"}
    with ExchangeDouble() as double:
        settings = {
            "executor": "local",
            "local_state_dir": str(state),
            "exchange_double_url": double.url,
            "database_dsn": dsn,
        }
        log = tmp_path / "operator.log"
        with operator_process(
            cluster.kubeconfig, namespace, log, crash_at="dca-entry-sent", **settings
        ) as first:
            _apply(kubectl, namespace, *docs)
            assert first.wait(timeout=every + 240) == EXIT_CODE, log.read_text()[-3000:]
        crashed_at = time.time()
        status = _schedule_status(api_client, namespace)
        pending = status["pending"]
        assert not status.get("history")
        bot = Bot(api_client, namespace, state)
        orders = wait_for(bot.dca_orders, 30, what="the bot's DCA orders")
        assert _counts(orders) == {pending["entryTag"]: 1}  # the order went through
        slot_epoch = _slot_epoch(pending)
        assert crashed_at < slot_epoch + every, "too slow to restart within the slot"

        with running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            exchange_double_url=double.url,
            database_dsn=dsn,
            local_state_dir=state,
        ):
            entry = wait_for(
                lambda: next(
                    (
                        h
                        for h in _schedule_status(api_client, namespace).get("history") or []
                        if h["slot"] == pending["slot"]
                    ),
                    None,
                ),
                60,
                interval=0.5,
                what="the pending slot resolved",
            )
            resolved_at = time.time()
            # Positive control: this operator does buy the next slot.
            later = wait_for(
                lambda: [
                    b
                    for b in _bought(_schedule_status(api_client, namespace))
                    if _slot_epoch(b) > slot_epoch
                ],
                2 * every + 30,
                interval=1,
                what="a buy after the restart",
            )
            # (Read while this operator runs: its clean shutdown stops the local bots.)
            orders = wait_for(bot.dca_orders, 30, what="the bot's DCA orders")
            final = _schedule_status(api_client, namespace)
        assert (entry["outcome"], entry["entryTag"]) == ("Bought", pending["entryTag"])
        # Resolved while its slot was still the current one: a naive operator would have
        # bought it again then.
        assert resolved_at < slot_epoch + every
        assert len(orders[pending["entryTag"]]) == 1, "the slot was bought twice"
        assert all(len(orders[b["entryTag"]]) == 1 for b in later)
        assert final["buys"] == len(_bought(final)) <= len(orders)
