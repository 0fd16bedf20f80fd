"""The operator reads a shared study's progress with plain SQL over Optuna's own tables on a
real PostgreSQL server (the study made and filled by Optuna itself here, as the workers do)."""

from __future__ import annotations

from decimal import Decimal

import optuna

from tradebot.controllers.hyperopt_storage import StudyProgress, progress
from tradebot.records.bot_databases import FREQTRADE_SCHEME


def test_progress_counts_complete_trials_and_their_lowest_loss(postgres_dsn: str) -> None:
    url = postgres_dsn.replace("postgresql://", FREQTRADE_SCHEME + "://", 1)
    # No study yet (no worker has started): nothing done, and no error.
    assert progress(url, "ho-x") == StudyProgress(0, None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="ho-x", direction="minimize")
    other = optuna.create_study(storage=url, study_name="ho-other", direction="minimize")
    for loss in (0.5, -1.25, 3.0):
        trial = study.ask()
        study.tell(trial, loss)
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.ask()  # still running: not done
    other.tell(other.ask(), -99.0)  # another Hyperopt's study on the same server
    assert progress(url, "ho-x") == StudyProgress(3, Decimal("-1.25"))
    assert progress(url, "ho-missing") == StudyProgress(0, None)
