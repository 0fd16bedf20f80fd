"""The hyperopt worker's pure parts: distributions, parameter hash, epoch records and lines,
the space check, the worker's bookkeeping in a study (Optuna's in-memory storage) and the
termination message."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import optuna
import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import TrialState

from tradebot.domain.parameters_hash import parameters_hash
from tradebot.freqtrade import hyperopt_epochs, hyperopt_run, optuna_study
from tradebot.freqtrade.hyperopt_summary import EPOCH_PREFIX, EpochRecord, HyperoptSummary
from tradebot.freqtrade.study_storage import redact
from tradebot.freqtrade.summary import TERMINATION_MESSAGE_LIMIT

optuna.logging.set_verbosity(optuna.logging.WARNING)

PARAMS = {
    "roi": {"0": 0.04, "60": 0.02},
    "stoploss": {"stoploss": -0.08},
    "buy": {"buy_rsi_max": 59},
}
STATS = {
    "profit_total": -0.006455178950000001,
    "profit_total_abs": -6.45517895,
    "max_drawdown_account": 0.013396446,
    "total_trades": 84,
    "wins": 26,
    "losses": 58,
    "draws": 0,
    "sharpe": float("inf"),
    "backtest_start_ts": 1704153600000,
    "backtest_end_ts": 1706745600000,
}


# ---- distributions -------------------------------------------------------------------------
def test_freqtrade_distributions_become_optunas_own() -> None:
    from freqtrade.optimize.space import (  # type: ignore[import-untyped]
        SKDecimal,
        ft_CategoricalDistribution,
        ft_FloatDistribution,
        ft_IntDistribution,
    )

    dims = {
        "a": ft_IntDistribution(50, 80, name="a"),
        "b": ft_FloatDistribution(0.01, 0.2, name="b"),
        "c": SKDecimal(0.01, 0.2, decimals=3, name="c"),
        "d": ft_CategoricalDistribution([True, False], name="d"),
    }
    # Freqtrade's classes do not load back from a storage: the reason for the conversion.
    with pytest.raises(ValueError, match="ft_IntDistribution"):
        json_to_distribution(distribution_to_json(dims["a"]))
    plain = optuna_study.plain_distributions(dims)
    assert [type(d) for d in plain.values()] == [
        IntDistribution,
        FloatDistribution,
        FloatDistribution,
        CategoricalDistribution,
    ]
    for name, dist in plain.items():
        assert json_to_distribution(distribution_to_json(dist)) == dist
        original = dims[name]
        # The same space, only the class differs.
        if isinstance(dist, CategoricalDistribution):
            assert dist.choices == (True, False)
        else:
            assert (dist.low, dist.high, dist.step, dist.log) == (  # type: ignore[attr-defined]
                original.low,
                original.high,
                original.step,
                original.log,
            )
    assert plain["c"].step == pytest.approx(0.001)  # type: ignore[attr-defined]


def test_an_unknown_distribution_is_refused() -> None:
    class Odd(optuna.distributions.BaseDistribution):
        def single(self) -> bool:
            return False

        def _contains(self, param_value_in_internal_repr: float) -> bool:
            return True

        def to_external_repr(self, param_value_in_internal_repr: float) -> Any:
            return param_value_in_internal_repr

        def to_internal_repr(self, param_value_in_external_repr: Any) -> float:
            return float(param_value_in_external_repr)

    with pytest.raises(optuna_study.StudyError, match="Odd"):
        optuna_study.plain_distribution(Odd())


# ---- parameters hash -----------------------------------------------------------------------
def test_parameters_hash_is_sha256_of_canonical_json() -> None:
    expected = hashlib.sha256(
        b'{"buy":{"buy_rsi_max":59},"roi":{"0":0.04,"60":0.02},"stoploss":{"stoploss":-0.08}}'
    ).hexdigest()
    assert parameters_hash(PARAMS) == expected
    reordered = {
        "stoploss": {"stoploss": -0.08},
        "buy": {"buy_rsi_max": 59},
        "roi": {"60": 0.02, "0": 0.04},
    }
    assert parameters_hash(reordered) == expected
    assert parameters_hash({**PARAMS, "buy": {"buy_rsi_max": 60}}) != expected


# ---- epoch records -------------------------------------------------------------------------
def test_epoch_record_has_exact_figures_and_the_hash() -> None:
    record = hyperopt_epochs.epoch_record(
        epoch=3, worker=1, loss=4.940804081234, params=PARAMS, stats=STATS
    )
    assert record is not None
    assert record.loss == Decimal("4.94080408")
    assert record.profit_total == Decimal("-0.00645518")
    assert record.max_drawdown == Decimal("0.01339645")
    assert record.trades == 84
    assert record.parameters_hash == parameters_hash(PARAMS)
    assert (
        hyperopt_epochs.epoch_record(
            epoch=1, worker=0, loss=float("nan"), params=PARAMS, stats=STATS
        )
        is None
    )


def test_stats_subset_keeps_only_the_figures() -> None:
    metrics = {
        **STATS,
        "trades": [{"pair": "BTC/USDT"}],
        "results_per_pair": [],
        "strategy_name": "X",
    }
    subset = hyperopt_epochs.stats_subset(metrics)
    assert set(subset) == set(STATS)
    assert json.loads(json.dumps(subset)) == subset or subset["sharpe"] == float("inf")


def test_epoch_from_trial_attributes() -> None:
    attrs = {
        hyperopt_epochs.ATTR_WORKER: 2,
        hyperopt_epochs.ATTR_PARAMS: PARAMS,
        hyperopt_epochs.ATTR_STATS: STATS,
    }
    record = hyperopt_epochs.epoch_from_attrs(6, 1.5, attrs)
    assert record is not None
    assert (record.epoch, record.worker, record.loss) == (7, 2, Decimal("1.50000000"))
    assert hyperopt_epochs.epoch_from_attrs(6, 1.5, {}) is None
    assert hyperopt_epochs.epoch_from_attrs(6, None, attrs) is None


def test_epoch_lines_round_trip_and_other_lines_are_skipped() -> None:
    one = EpochRecord(epoch=1, worker=0, loss=Decimal("2.5"), parameters_hash="a" * 64)
    two = EpochRecord(epoch=2, worker=0, loss=Decimal("1.25"), trades=3, parameters_hash="b" * 64)
    again = two.model_copy(update={"loss": Decimal("1.00")})
    text = "\n".join(
        [
            "freqtrade noise",
            hyperopt_epochs.epoch_line(two),
            hyperopt_epochs.epoch_line(one),
            EPOCH_PREFIX + "{not json",
            EPOCH_PREFIX + '{"epoch": 3}',
            hyperopt_epochs.epoch_line(again) + "\r",
        ]
    )
    assert hyperopt_epochs.epoch_line(one).startswith(EPOCH_PREFIX + '{"epoch":1,')
    assert hyperopt_epochs.parse_epoch_line(hyperopt_epochs.epoch_line(one)) == one
    assert hyperopt_epochs.parse_epoch_line("tradebot-epochx {}") is None
    assert hyperopt_epochs.parse_epoch_lines(text) == [one, again]


# ---- the space check -----------------------------------------------------------------------
CODE = """
from freqtrade.strategy import IStrategy, IntParameter, DecimalParameter

class Base(IStrategy):
    sell_x = DecimalParameter(0.1, 0.5, default=0.2)

class Mine(Base):
    buy_rsi = IntParameter(10, 40, default=30)

class Bare(IStrategy):
    stoploss = -0.1

class Foreign(SomewhereElse):
    pass
"""


def test_searchable_spaces_follow_same_file_bases() -> None:
    assert hyperopt_run.searchable_spaces(CODE, "Mine") == {"buy", "sell"}
    assert hyperopt_run.searchable_spaces(CODE, "Base") == {"sell"}
    assert hyperopt_run.searchable_spaces(CODE, "Bare") == set()
    assert hyperopt_run.searchable_spaces(CODE, "Foreign") is None


def test_a_search_with_nothing_to_search_is_refused_naming_the_spaces() -> None:
    with pytest.raises(
        hyperopt_run.HyperoptError,
        match=r"Bare has no hyperoptable parameters .* space\(s\) buy, sell$",
    ):
        hyperopt_run.check_spaces(CODE, "Bare", ["buy", "sell"])
    with pytest.raises(
        hyperopt_run.HyperoptError,
        match=r"protection.*has parameters in: "
        r"buy, sell",
    ):
        hyperopt_run.check_spaces(CODE, "Mine", ["protection"])
    # Positive controls: a space with parameters, a built-in space, an unknowable base.
    hyperopt_run.check_spaces(CODE, "Mine", ["buy", "protection"])
    hyperopt_run.check_spaces(CODE, "Bare", ["buy", "roi"])
    hyperopt_run.check_spaces(CODE, "Foreign", ["buy"])


# ---- the worker's bookkeeping in a study ---------------------------------------------------
def _study() -> optuna.Study:
    return optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=1))


DIMS: dict[str, BaseDistribution] = {"x": IntDistribution(1, 50)}


def _tell(study: optuna.Study, worker: int, value: float | None) -> optuna.trial.Trial:
    trial = study.ask(DIMS)
    trial.set_user_attr(hyperopt_epochs.ATTR_WORKER, worker)
    if value is not None:
        study.tell(trial, value)
    return trial


def test_resume_fails_own_stale_trials_and_counts_what_is_owed() -> None:
    study = _study()
    for value in (3.0, 2.0):
        _tell(study, 0, value)
    stale = _tell(study, 0, None)
    other_running = _tell(study, 1, None)
    _tell(study, 1, 1.0)
    resumed = optuna_study.resume(study, worker=0, share=5)
    assert resumed.failed_stale == 1
    assert [t.number for t in resumed.done] == [0, 1]
    assert resumed.owed == 3
    frozen = study.trials
    assert frozen[stale.number].state == TrialState.FAIL
    assert frozen[stale.number].user_attrs[hyperopt_epochs.ATTR_DROPPED] == "stale"
    assert frozen[other_running.number].state == TrialState.RUNNING  # not this worker's
    assert optuna_study.resume(study, worker=0, share=2).owed == 0
    assert optuna_study.complete_count(study) == 3
    best = optuna_study.best_trial(study)
    assert best is not None
    assert best.value == 1.0


def test_duplicates_of_done_or_earlier_running_points() -> None:
    study = _study()
    done = study.ask(DIMS)
    study.tell(done, 1.0)
    running = study.ask(DIMS)
    x_done, x_running = done.params["x"], running.params["x"]

    def fixed(x: int) -> optuna.trial.Trial:
        study.enqueue_trial({"x": x})
        return study.ask(DIMS)

    assert optuna_study.is_duplicate(study, fixed(x_done), [])
    assert optuna_study.is_duplicate(study, fixed(x_running), [])
    fresh = next(x for x in range(1, 51) if x not in (x_done, x_running))
    first = fixed(fresh)
    assert not optuna_study.is_duplicate(study, first, [])
    assert optuna_study.is_duplicate(study, fixed(fresh), [first])
    # The earlier of two running twins is not the duplicate; the later one is.
    assert not optuna_study.is_duplicate(study, running, [])
    optuna_study.drop(study, first, "duplicate")
    assert study.trials[first.number].state == TrialState.FAIL


# ---- summary ------------------------------------------------------------------------------
def _summary(**update: Any) -> HyperoptSummary:
    from tradebot.api.backtest import Artifact

    base = HyperoptSummary(
        ok=True,
        strategy="S",
        worker=0,
        storage="shared",
        artifacts=[Artifact(name=f"f{i}.log", sha256="0" * 64, size=1) for i in range(40)],
    )
    return base.model_copy(update=update)


def test_termination_message_fits_and_says_so() -> None:
    small = _summary(artifacts=[])
    assert hyperopt_run.to_message(small) == small.model_dump_json(by_alias=True, exclude_none=True)
    big = _summary(error="x" * 5000)
    message = hyperopt_run.to_message(big)
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = HyperoptSummary.model_validate_json(message)
    assert parsed.truncated is True
    assert parsed.artifacts == []
    assert parsed.error is not None
    assert parsed.error.endswith("[truncated]")


def test_redact_takes_the_url_and_its_password_out() -> None:
    url = "postgresql+psycopg://user:s3cret@db:5432/records"
    text = f"cannot connect to {url}; password s3cret rejected"
    assert redact(text, url) == "cannot connect to [storage]; password *** rejected"
    assert redact(text, None) == text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u:s3cret@host:port/db",
        "s3cret-nonsense",
        "postgresql+nodriver://u:s3cret@h/db",
    ],
)
def test_a_study_that_cannot_open_says_why_without_the_url(url: str) -> None:
    with pytest.raises(optuna_study.StudyError, match=r"^cannot open study 'st': \w+") as e:
        optuna_study.open_study(url, "st", None)
    assert "s3cret" not in str(e.value)
    assert e.value.__cause__ is None
