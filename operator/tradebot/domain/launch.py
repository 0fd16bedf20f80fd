"""What the operator launches for a run (a Backtest, a Hyperopt's workers), as it records it in
`status.launched`, and the check of a finished run's own report against it.

The record is the operator's account of the run, made from what it put into the run's
ConfigMap and Job, not from what the container prints: a runner image can print anything. It
is deterministic (the same inputs give the same record), so a record lost to a crash between
the Job's creation and the status write is made again, equal, from the same inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tradebot.api.backtest import LaunchRecord, RunSettings
from tradebot.api.strategy import StrategySpec
from tradebot.api.types import Timerange

REASON_MISMATCH = "EvidenceMismatch"
# On a run's Job: its launch record, from which a status write lost to a crash is made again.
ANNOTATION = "tradebot.dev/launched"


def code_hash(code: str) -> str:
    """sha256 of the code text, as the runner hashes the strategy file it was given."""
    return hashlib.sha256(code.encode()).hexdigest()


def freqai_hash(strategy: StrategySpec) -> str | None:
    """sha256 of the Strategy's freqai settings in canonical JSON; None without FreqAI."""
    if strategy.freqai is None:
        return None
    wire = strategy.freqai.model_dump(by_alias=True, mode="json", exclude_none=True)
    canonical = json.dumps(wire, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def timeframe(
    override: str | None, strategy: StrategySpec, strategy_status: Mapping[str, Any] | None
) -> str | None:
    """The timeframe a run of the Strategy uses: the run's override, the Strategy's, else the
    one its code declares (as introspected)."""
    interface = (strategy_status or {}).get("interface") or {}
    found = override or strategy.timeframe or interface.get("timeframe")
    return str(found) if found else None


def launch_record(
    run: RunSettings,
    timerange: Timerange | None,
    strategy: StrategySpec,
    strategy_status: Mapping[str, Any] | None,
    code: str,
    parameters_hash: str | None,
    image: str,
) -> dict[str, Any]:
    """`status.launched` of a run, in its wire form."""
    wire = run.model_dump(by_alias=True, mode="json")
    record = LaunchRecord(
        code_hash=code_hash(code),
        class_name=strategy.class_name,
        timeframe=timeframe(run.timeframe, strategy, strategy_status),
        parameters_hash=parameters_hash,
        freqai_hash=freqai_hash(strategy),
        image=image,
        exchange=run.exchange,
        pairs=list(run.pairs),
        timerange=timerange,
        stake_currency=run.stake_currency,
        stake_amount=str(wire["stakeAmount"]),
        max_open_trades=run.max_open_trades,
        dry_run_wallet=str(wire["dryRunWallet"]),
    )
    return record.model_dump(by_alias=True, mode="json", exclude_none=True)


def evidence_mismatch(launched: Mapping[str, Any] | None, reported: str | None) -> str | None:
    """Why a finished run's report is no evidence: the code hash its runner reported is not
    the code the operator launched (None: it matches, or there is nothing to compare)."""
    if not launched or not launched.get("codeHash"):
        return None
    expected = str(launched["codeHash"])
    if reported == expected:
        return None
    return (
        f"the run reported code {(reported or 'none')[:12]}, the operator launched code "
        f"{expected[:12]}: its result is no evidence"
    )
