"""The shared Optuna study of a hyperopt search: opening it, a worker's bookkeeping in it.

Every worker opens the same study (`create_study(load_if_exists=True)`) on an RDB storage.
A trial belongs to the worker whose index is in its ATTR_WORKER user attribute; from that a
restarted worker finds what it left RUNNING (failed: nobody will ever tell it) and what it
still owes (its share minus its COMPLETE trials). The storage URL is a secret: nothing here
logs it or puts it in an exception message of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tradebot.freqtrade.hyperopt_epochs import ATTR_DROPPED, ATTR_WORKER
from tradebot.freqtrade.study_storage import redact

OPEN_ATTEMPTS = 5


class StudyError(Exception):
    """The study cannot be opened or used; the message never holds the storage URL."""


def plain_distribution(dist: BaseDistribution) -> BaseDistribution:
    """Optuna's own class for one of Freqtrade's distributions (ft_IntDistribution, SKDecimal
    and friends are subclasses): an RDB storage records a distribution by its class name and
    can load back only Optuna's, so a study holding Freqtrade's is unreadable afterwards."""
    if isinstance(dist, IntDistribution):
        return IntDistribution(dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, FloatDistribution):
        return FloatDistribution(dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return CategoricalDistribution(tuple(dist.choices))
    raise StudyError(f"unsupported search dimension {type(dist).__name__}")


def plain_distributions(dims: Mapping[str, BaseDistribution]) -> dict[str, BaseDistribution]:
    return {name: plain_distribution(d) for name, d in dims.items()}


def open_study(url: str, name: str, sampler: optuna.samplers.BaseSampler | None) -> optuna.Study:
    """The study `name`, created by whichever worker comes first. Workers starting together
    race to create the storage's tables too, which PostgreSQL can refuse to one of them; a
    few tries settle it."""
    last: Exception | None = None
    for attempt in range(OPEN_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
            return optuna.create_study(
                storage=storage,
                study_name=name,
                load_if_exists=True,
                direction="minimize",
                sampler=sampler,
            )
        except ArgumentError as e:
            last = e  # a URL that cannot work: no point in trying again
            break
        except SQLAlchemyError as e:
            last = e
            time.sleep(0.5 * (attempt + 1))
        except Exception as e:
            last = e
            break
    # `from None`: Freqtrade logs the traceback of what escapes it, chained causes included,
    # and a driver's message may quote the URL.
    detail = _first_line(str(getattr(last, "orig", None) or last))
    raise StudyError(
        f"cannot open study {name!r}: {type(last).__name__}: {redact(detail, url)}"
    ) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def worker_of(trial: FrozenTrial) -> int | None:
    value = trial.user_attrs.get(ATTR_WORKER)
    return value if isinstance(value, int) else None


def own_trials(study: optuna.Study, worker: int, states: Sequence[TrialState]) -> list[FrozenTrial]:
    return [
        t for t in study.get_trials(deepcopy=False, states=tuple(states)) if worker_of(t) == worker
    ]


def own_complete(study: optuna.Study, worker: int) -> list[FrozenTrial]:
    return own_trials(study, worker, (TrialState.COMPLETE,))


def drop(study: optuna.Study, trial: Trial, reason: str) -> None:
    """Fail a trial that will never be evaluated, saying why: a trial left RUNNING stays so
    for ever (ask/tell has no heartbeat) and counts as in flight."""
    trial.set_user_attr(ATTR_DROPPED, reason)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


@dataclass(frozen=True)
class Resume:
    """What a (re)starting worker found in the study."""

    failed_stale: int
    done: list[FrozenTrial]
    owed: int


def resume(study: optuna.Study, worker: int, share: int) -> Resume:
    """Fail this worker's trials a killed predecessor left RUNNING, then count what it owes.
    (Only one pod runs a given index at a time; the controller sees to that.)"""
    stale = own_trials(study, worker, (TrialState.RUNNING, TrialState.WAITING))
    for trial in stale:
        drop(study, Trial(study, trial._trial_id), "stale")
    done = own_complete(study, worker)
    return Resume(failed_stale=len(stale), done=done, owed=max(0, share - len(done)))


def is_duplicate(study: optuna.Study, trial: Trial, batch: Sequence[Trial]) -> bool:
    """Whether `trial` proposes a point already evaluated, being evaluated by an earlier trial
    (of any worker), or already in this batch: evaluating it again would only repeat a
    result. Freqtrade's own check sees COMPLETE trials and the batch, not other workers'."""
    params = trial.params
    if any(t.params == params for t in batch):
        return True
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number == trial.number:
            continue
        if other.params == params and (
            other.state == TrialState.COMPLETE or other.number < trial.number
        ):
            return True
    return False


def complete_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE trial of least loss (the earliest of equals), or None before any."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    scored = [t for t in trials if t.value is not None]
    return min(scored, key=lambda t: (t.value, t.number)) if scored else None


def attrs(trial: FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs)
