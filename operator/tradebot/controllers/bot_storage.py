"""Placeholder until the positions work lands: a bot's trade database outside its pod."""

from __future__ import annotations

from tradebot.controllers.bot_control import BotRef
from tradebot.domain.bots import BotInstance
from tradebot.settings import Settings


def ensure(bot: BotInstance, settings: Settings) -> None:
    """Creates what the bot's trade database needs before its pod (idempotent)."""


def remove(ref: BotRef, settings: Settings) -> None:
    """Removes what only the deleted bot's trade database needed."""
