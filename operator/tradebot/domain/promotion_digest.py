"""The promotion digest: one sha256 over everything that decides what a LiveBot trades, and
whether a change since the approved digest only makes the bot safer (pure: no I/O).

A live bot runs only what `spec.promotion.approval.digest` names. The inputs of a digest are
kept in the bot's status once approved (`status.approvedInputs`) so that a later change can be
named field by field, and judged: a change that only tightens (a lower stake, fewer open
trades, tighter limits, a shorter dead-man's deadline) applies at once; anything else waits
for a new approval. Kept inputs are trusted only when they hash to the approved digest, so a
status written by someone else cannot widen what was approved.

The inputs hold no secret: the credentials Secret appears by name and by its fingerprint
(bot_credentials.secret_fingerprint), a one-way digest of its content.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.types import UNLIMITED, format_money

# Bumped when the inputs change shape: every approval is then renewed, never reinterpreted.
VERSION = 1


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace, ASCII: the same text in every process and Python version."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StrategyFacts:
    """What of a Strategy decides the trades: its code, class, timeframe, parameter set and
    FreqAI settings."""

    code_hash: str | None
    class_name: str | None
    timeframe: str | None
    parameters_hash: str | None
    freqai_hash: str | None

    @classmethod
    def of(cls, strategy: Mapping[str, Any] | None) -> StrategyFacts:
        """From the Strategy object as the API server has it (defaults applied)."""
        spec = (strategy or {}).get("spec") or {}
        status = (strategy or {}).get("status") or {}
        interface = status.get("interface") or {}
        freqai = spec.get("freqai")
        return cls(
            code_hash=status.get("codeHash") or None,
            class_name=spec.get("className") or None,
            # The override, else the code's own (already bound by the code hash, named here
            # so that a difference reads as one).
            timeframe=spec.get("timeframe") or interface.get("timeframe") or None,
            parameters_hash=status.get("parametersHash") or None,
            freqai_hash=sha256_hex(canonical_json(freqai)) if freqai else None,
        )


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format_money(value)


def promotion_inputs(
    spec: LiveBotSpec,
    strategy: StrategyFacts,
    *,
    image: str,
    credentials_fingerprint: str | None,
) -> dict[str, Any]:
    """The canonical inputs of the bot's digest (JSON values only, money as 8-place strings).
    `suspend` is not among them: stopping never needs an approval, and it comes before the
    approval check."""
    limits = spec.limits
    ref = spec.exchange.credentials_secret_ref
    stake = spec.stake_amount
    return {
        "version": VERSION,
        "image": image,
        "codeHash": strategy.code_hash,
        "className": strategy.class_name,
        "timeframe": strategy.timeframe,
        "parametersHash": strategy.parameters_hash,
        "freqaiHash": strategy.freqai_hash,
        "mode": spec.mode,
        "exchange": spec.exchange.name,
        "pairs": sorted(spec.pairs),
        "stakeCurrency": spec.stake_currency,
        "stakeAmount": stake if isinstance(stake, str) else format_money(stake),
        "dryRunWallet": format_money(spec.dry_run_wallet),
        "maxOpenTrades": spec.max_open_trades,
        "limits": {
            "maxStakePerTrade": _money(limits.max_stake_per_trade if limits else None),
            "maxOpenTrades": limits.max_open_trades if limits else None,
            "maxDrawdown": _money(limits.max_drawdown if limits else None),
            "maxConsecutiveLosses": limits.max_consecutive_losses if limits else None,
        },
        "supervision": {"deadline": spec.supervision.deadline},
        "credentials": {
            "secretName": ref.name if ref is not None else None,
            # Which items are the key: another item of the same Secret is another account.
            "items": [ref.api_key_key, ref.api_secret_key, ref.password_key]
            if ref is not None
            else None,
            "fingerprint": credentials_fingerprint,
        },
    }


def promotion_digest(inputs: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the inputs."""
    return sha256_hex(canonical_json(inputs))


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            out.update(_leaves(value[key], f"{prefix}{key}."))
        return out
    return {prefix.removesuffix("."): value}


@dataclass(frozen=True)
class Difference:
    """One input that differs from the approved one; `safer` when the change only tightens."""

    field: str
    safer: bool


_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_MILLIS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _millis(duration: object) -> int | None:
    # Integer arithmetic: a deadline of 31 nines and a `d` must compare, not overflow.
    if not isinstance(duration, str) or not duration:
        return None
    parts = _DURATION_PART.findall(duration)
    if "".join(n + u for n, u in parts) != duration:
        return None
    return sum(int(n) * _MILLIS[u] for n, u in parts)


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _not_above(approved: object, current: object) -> bool:
    """`current` is a bound at most `approved`; no bound (None) is the loosest of all."""
    now = _number(current)
    if now is None:
        return False
    if approved is None:
        return True
    before = _number(approved)
    return before is not None and now <= before


def _stake_not_above(approved: object, current: object) -> bool:
    if current == UNLIMITED:
        return False
    return _not_above(None if approved == UNLIMITED else approved, current)


def _deadline_not_longer(approved: object, current: object) -> bool:
    before, now = _millis(approved), _millis(current)
    return before is not None and now is not None and now <= before


# The inputs a change may lower without a new approval, and what "lower" means for each.
SAFER_WHEN = {
    "stakeAmount": _stake_not_above,
    "maxOpenTrades": _not_above,
    "limits.maxStakePerTrade": _not_above,
    "limits.maxOpenTrades": _not_above,
    "limits.maxDrawdown": _not_above,
    "limits.maxConsecutiveLosses": _not_above,
    "supervision.deadline": _deadline_not_longer,
}


def differences(approved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Difference]:
    """The inputs that differ, by dotted field name, in name order."""
    before, now = _leaves(approved), _leaves(current)
    found = []
    for name in sorted(set(before) | set(now)):
        if name in before and name in now and before[name] == now[name]:
            continue
        rule = SAFER_WHEN.get(name)
        safer = (
            rule is not None and name in before and name in now and rule(before[name], now[name])
        )
        found.append(Difference(name, safer))
    return found


def only_safer(approved: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Every difference tightens the bot (no difference at all counts too)."""
    return all(d.safer for d in differences(approved, current))


@dataclass(frozen=True)
class ApprovalCheck:
    """Whether a live bot may run its current inputs, and why (not)."""

    runs: bool
    message: str
    # The digest's inputs are exactly the approved ones (kept in status as approvedInputs).
    exact: bool = False
    differences: tuple[Difference, ...] = ()


def _names(found: list[Difference]) -> str:
    return ", ".join(d.field for d in found)


def check_approval(
    approved_digest: str | None,
    current: Mapping[str, Any],
    approved_inputs: Mapping[str, Any] | None,
) -> ApprovalCheck:
    """Judge the current inputs against the approval; `approved_inputs` are the ones kept in
    status, used only when they hash to the approved digest."""
    digest = promotion_digest(current)
    if approved_digest is None:
        return ApprovalCheck(
            False,
            "mode live requires promotion.approval.digest: approve digest "
            f"{digest} (`tradebot promote`)",
        )
    if approved_digest == digest:
        return ApprovalCheck(True, f"runs the approved digest {digest[:12]}", exact=True)
    known = approved_inputs is not None and promotion_digest(approved_inputs) == approved_digest
    if not known or approved_inputs is None:
        return ApprovalCheck(
            False,
            f"the approval is for digest {approved_digest[:12]}, the bot is now {digest[:12]}: "
            f"approve {digest} to apply the change (`tradebot promote` shows what it is)",
        )
    found = differences(approved_inputs, current)
    looser = [d for d in found if not d.safer]
    if not looser:
        return ApprovalCheck(
            True,
            f"runs a safer change of the approved digest {approved_digest[:12]} ({_names(found)})",
            differences=tuple(found),
        )
    return ApprovalCheck(
        False,
        f"changed since the approved digest {approved_digest[:12]}: {_names(looser)}; the "
        f"approved pod runs on until digest {digest} is approved",
        differences=tuple(found),
    )
