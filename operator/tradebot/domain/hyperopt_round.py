"""What the Hyperopt controller decides (pure: no I/O): how the epochs split across workers,
whether the strategy has anything to search in the chosen spaces, and what the search does next
from its workers' states. (Merging the workers' results: controllers/hyperopt_results.py.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from tradebot.api.backtest import BacktestSpec
from tradebot.api.hyperopt import HyperoptSpec
from tradebot.api.types import Timerange

TERMINAL = ("Succeeded", "Failed")
# Spaces Freqtrade fills from the strategy's declared parameters (by the parameter's space, or
# the prefix of its name); the others (roi, stoploss, trailing, trades) Freqtrade generates for
# every strategy, so they always have something to search.
PARAMETER_SPACES = {
    "buy": "buy",
    "enter": "buy",
    "sell": "sell",
    "exit": "sell",
    "protection": "protection",
}

WorkerPhase = Literal["Queued", "Running", "Succeeded", "Failed"]
_PLACES = Decimal("0.00000001")


def epoch_shares(epochs: int, workers: int) -> list[int]:
    """Each worker's share of the epochs: as even as can be, the first ones taking the
    remainder; never a worker with nothing to do (fewer workers when epochs < workers)."""
    n = max(1, min(workers, epochs))
    base, extra = divmod(epochs, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def nothing_to_search(
    spaces: Iterable[str], parameters: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Why the search would have nothing to vary (naming the spaces), or None when at least
    one chosen space has a parameter. `parameters` is freqtrade/parameters.py's view of the
    strategy: {name: {"space": ...}}."""
    chosen = list(dict.fromkeys(spaces))
    if any(s not in PARAMETER_SPACES for s in chosen):
        return None  # roi, stoploss, trailing or trades: Freqtrade generates those spaces
    declared = {
        PARAMETER_SPACES.get(str(p.get("space") or ""), str(p.get("space")))
        for p in parameters.values()
    }
    if any(PARAMETER_SPACES[s] in declared for s in chosen):
        return None
    found = ", ".join(sorted(s for s in declared if s)) or "none"
    return (
        f"the strategy has no hyperoptable parameters in the chosen spaces "
        f"({', '.join(chosen)}); spaces with parameters: {found}"
    )


def backtest_spec(
    spec: HyperoptSpec, timerange: Timerange, parameters: str | None = None
) -> BacktestSpec:
    """The Backtest the search's runs are made of: the same pairs, data and money on
    `timerange` (the training window for the search's config, the validation window for the
    out-of-sample check, with the best `parameters`)."""
    fields = spec.model_dump(
        include={
            "strategy_ref",
            "exchange",
            "pairs",
            "timeframe",
            "stake_currency",
            "stake_amount",
            "dry_run_wallet",
            "max_open_trades",
            "fee",
            "enable_protections",
            "data",
            "priority",
            "resources",
            "gpu",
            "image",
        },
        exclude_none=True,
    )
    return BacktestSpec.model_validate(
        {**fields, "timerange": timerange, **({"parameters": parameters} if parameters else {})}
    )


# --- the workers' states -> the search's phase ------------------------------------------------


@dataclass(frozen=True)
class WorkerSeen:
    index: int
    job_name: str | None
    phase: WorkerPhase
    epochs_done: int | None = None


SearchStep = Literal["wait", "run", "merge", "fail"]


def search_step(workers: Sequence[WorkerSeen]) -> SearchStep:
    """merge once every worker finished and one succeeded (a failed worker's epochs are lost,
    the study's others count); fail when all failed; run while any has work left."""
    if any(w.phase in ("Queued", "Running") for w in workers):
        return "run" if any(w.phase != "Queued" for w in workers) else "wait"
    if any(w.phase == "Succeeded" for w in workers):
        return "merge"
    return "fail"


def progress(done: int, total: int) -> str:
    return f"{min(done, total)}/{total}"


# --- merging the workers' results ---------------------------------------------------------


def figure(value: Decimal | str | None) -> str | None:
    return None if value is None else str(Decimal(str(value)).quantize(_PLACES))


def ratio(out_of_sample: str | None, in_sample: str | None) -> str | None:
    """Out-of-sample profit over in-sample profit, 8 places; None when either is unknown
    or the in-sample profit is zero."""
    if out_of_sample is None or in_sample is None or Decimal(in_sample) == 0:
        return None
    return figure(Decimal(out_of_sample) / Decimal(in_sample))
