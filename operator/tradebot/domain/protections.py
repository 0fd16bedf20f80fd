"""Freqtrade protections that keep a bot from entering trades by itself once it has lost what
its limits allow, whether or not the operator is there to trip a breaker (pure: no I/O).

Freqtrade 2026.9 refuses `protections` in the configuration (configuration/
deprecated_settings.py: "DEPRECATED: Setting 'protections' in the configuration is
deprecated"); only the strategy's `protections` property counts. So the operator puts its
protections into the config under its own key (`tradebot.protections`, which Freqtrade ignores)
and runs the user's strategy code with a small block appended (`guarded_code`) that makes the
class's `protections` return the strategy's own list plus the operator's.
"""

from __future__ import annotations

import keyword
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradebot.api.circuitbreaker import BreakerLimits
from tradebot.api.livebot import BotLimits
from tradebot.domain.freqtrade_config import TRADEBOT_KEY

__all__ = ["LOOKBACK_MINUTES", "PROTECTIONS_KEY", "STOP_MINUTES", "guarded_code", "protections"]

# The operator's protections live in config[TRADEBOT_KEY][PROTECTIONS_KEY].
PROTECTIONS_KEY = "protections"

# Losses are judged over the last day: the horizon of the breakers' daily figures
# (maxDailyLoss) and long enough that a slow strategy's few trades still add up to a crossed
# limit, yet short enough that one bad week does not lock a bot for good (Freqtrade's
# MaxDrawdown takes the largest drawdown within the window, recovered or not).
LOOKBACK_MINUTES = 24 * 60
# Once crossed, entries stay locked for a day: these protections matter when nobody is
# watching (operator down, dead-man's switch not yet acting), so the lock must outlast a night
# without supervision rather than re-open after a candle or two. A person who has looked can
# lift it earlier (Freqtrade's REST API: DELETE /api/v1/locks/<id>); the lock is kept in the
# trade database, so a pod replacement does not lift it either.
STOP_MINUTES = 24 * 60


def _strictest_drawdown(bot: BotLimits | None, breakers: Sequence[BreakerLimits]) -> Decimal | None:
    found = [
        limits.max_drawdown
        for limits in (bot, *breakers)
        if limits is not None and limits.max_drawdown is not None
    ]
    return min(found) if found else None


def _strictest_losses(bot: BotLimits | None, breakers: Sequence[BreakerLimits]) -> int | None:
    found = [
        limits.max_consecutive_losses
        for limits in (bot, *breakers)
        if limits is not None and limits.max_consecutive_losses is not None
    ]
    return min(found) if found else None


def protections(
    bot: BotLimits | None, breakers: Sequence[BreakerLimits] = ()
) -> list[dict[str, Any]]:
    """Freqtrade protection entries for a bot with limits `bot`, selected by breakers with
    `breakers`; where both set a limit the strictest wins. Empty when no limit applies."""
    found: list[dict[str, Any]] = []
    drawdown = _strictest_drawdown(bot, breakers)
    if drawdown is not None:
        found.append(
            {
                "method": "MaxDrawdown",
                # Relative drawdown of the account's equity (starting balance plus closed
                # profit), the same base as the operator's drawdown from peak equity; Freqtrade's
                # default "ratios" mode sums trade ratios instead, whatever each trade's stake.
                "calculation_mode": "equity",
                "max_allowed_drawdown": float(drawdown),
                # One losing trade may be enough: a limit is a limit, however few trades.
                "trade_limit": 1,
                "lookback_period": LOOKBACK_MINUTES,
                "stop_duration": STOP_MINUTES,
            }
        )
    losses = _strictest_losses(bot, breakers)
    if losses is not None:
        found.append(
            {
                # The nearest Freqtrade has to "losses in a row": that many stop-loss exits (stop
                # loss, trailing stop, stop-loss on exchange, liquidation) at a loss within the
                # lookback. N losses in a row within a day are always caught.
                "method": "StoplossGuard",
                "trade_limit": losses,
                "required_profit": 0.0,
                # The whole bot stops entering, as a breaker trip would, not just the pair.
                "only_per_pair": False,
                "lookback_period": LOOKBACK_MINUTES,
                "stop_duration": STOP_MINUTES,
            }
        )
    return found


# Appended to the user's module: it runs right after the class is defined, so Freqtrade's
# resolver finds the same class (same name: its arguments and trade database stay the same)
# with `protections` wrapped. It handles `protections` as a property (or any descriptor), a
# plain list attribute, inherited from IStrategy (empty), or assigned on the instance later.
_GUARD = """

# ---- appended by the tradebot operator --------------------------------------------------------
# The operator's protections (from the bot's limits and the CircuitBreakers that select it) are
# in the config under "{tradebot}"/"{key}"; Freqtrade reads protections only from the strategy.
def _tradebot_guard_protections(cls):
    import inspect

    own = inspect.getattr_static(cls, "protections", [])

    def protections(self):
        if "_tradebot_own_protections" in self.__dict__:
            mine = self.__dict__["_tradebot_own_protections"]
        elif hasattr(type(own), "__get__"):
            mine = own.__get__(self, type(self))
        else:
            mine = own
        operator = ((getattr(self, "config", None) or {{}}).get("{tradebot}") or {{}}).get(
            "{key}") or []
        return [*(mine or []), *(dict(p) for p in operator)]

    def set_protections(self, value):
        self.__dict__["_tradebot_own_protections"] = value

    cls.protections = property(protections, set_protections)


_tradebot_guard_protections({class_name})
del _tradebot_guard_protections
"""


def guarded_code(code: str, class_name: str) -> str:
    """The strategy module `code` with the block appended that adds the operator's protections
    (config["tradebot"]["protections"]) to class `class_name`'s own. Write this, not `code`,
    as the bot's strategy file; hash `code` itself for approvals."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(f"{class_name!r} is not a Python class name")
    return (
        code.rstrip("\n")
        + "\n"
        + _GUARD.format(tradebot=TRADEBOT_KEY, key=PROTECTIONS_KEY, class_name=class_name)
    )
