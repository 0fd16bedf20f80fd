"""The API server enforces the CRDs generated from the models, and the models agree with it.

Every malformed manifest is rejected by `kubectl apply` with a message naming its field, and
rejected again by the same pydantic model the operator uses (defence in depth).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ValidationError
from tests.support.manifests import example, examples

from tradebot.api.registry import BY_KIND

pytestmark = pytest.mark.usefixtures("crds_installed")

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node[p]
        del node[leaf]

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        for m in mutations:
            m(spec)

    return mutate


APPROVAL = {
    "approvedBy": "alice",
    "approvedAt": "2026-11-01T10:00:00Z",
    "reference": "https://git.example/pr/1",
}


def _live() -> Mutation:
    """The example bot on live, with everything live needs (credentials, an approval of code
    and digest, limits): each case takes one thing away."""
    return _all(
        _set("mode", "live"),
        _set("exchange.credentialsSecretRef", {"name": "keys"}),
        _set("promotion.approval", {**APPROVAL, "codeHash": "a" * 64, "digest": "b" * 64}),
    )


# (id, kind, example name, mutation of its spec, text the API server's message must contain)
CASES: list[tuple[str, str, str | None, Mutation, str]] = [
    ("strategy-no-class", "Strategy", "ema-rsi", _drop("className"), "spec.className"),
    (
        "strategy-class-not-identifier",
        "Strategy",
        "ema-rsi",
        _set("className", "my-strategy"),
        "spec.className",
    ),
    (
        "strategy-both-sources",
        "Strategy",
        "ema-rsi",
        _set("configMapRef", {"name": "code", "key": "s.py"}),
        "spec.code",
    ),
    ("strategy-no-source", "Strategy", "ema-rsi", _drop("code"), "spec.code"),
    (
        "strategy-configmap-without-key",
        "Strategy",
        "ema-rsi",
        _all(_drop("code"), _set("configMapRef", {"name": "code"})),
        "spec.configMapRef.key",
    ),
    ("strategy-bad-timeframe", "Strategy", "ema-rsi", _set("timeframe", "7m"), "spec.timeframe"),
    (
        "strategy-positive-stoploss",
        "Strategy",
        "ema-rsi",
        _set("parameters.stoploss", 0.1),
        "spec.parameters.stoploss",
    ),
    (
        "strategy-zero-stoploss",
        "Strategy",
        "ema-rsi",
        _set("parameters.stoploss", 0),
        "spec.parameters.stoploss",
    ),
    (
        "strategy-roi-key-not-minutes",
        "Strategy",
        "ema-rsi",
        _set("parameters.minimalRoi", {"soon": 0.01}),
        "spec.parameters.minimalRoi",
    ),
    ("strategy-code-wrong-type", "Strategy", "ema-rsi", _set("code", 42), "spec.code"),
    # The example sets inline parameters: a Hyperopt's set on top is refused.
    (
        "strategy-parameters-inline-and-from-a-hyperopt",
        "Strategy",
        "ema-rsi",
        _set("parametersFrom", {"hyperoptRef": {"name": "search"}}),
        "spec.parametersFrom",
    ),
    (
        "strategy-parameters-from-without-a-hyperopt",
        "Strategy",
        "ema-rsi",
        _all(_drop("parameters"), _set("parametersFrom", {})),
        "spec.parametersFrom.hyperoptRef",
    ),
    (
        "backtest-no-strategy",
        "Backtest",
        "ema-rsi-sample",
        _drop("strategyRef"),
        "spec.strategyRef",
    ),
    ("backtest-no-pairs", "Backtest", "ema-rsi-sample", _set("pairs", []), "spec.pairs"),
    (
        "backtest-pairs-not-a-list",
        "Backtest",
        "ema-rsi-sample",
        _set("pairs", "BTC/USDT"),
        "spec.pairs",
    ),
    (
        "backtest-bad-pair",
        "Backtest",
        "ema-rsi-sample",
        _set("pairs", ["BTCUSDT"]),
        "spec.pairs[0]",
    ),
    (
        "backtest-negative-stake",
        "Backtest",
        "ema-rsi-sample",
        _set("stakeAmount", "-5"),
        "spec.stakeAmount",
    ),
    (
        "backtest-zero-stake",
        "Backtest",
        "ema-rsi-sample",
        _set("stakeAmount", 0),
        "spec.stakeAmount",
    ),
    (
        "backtest-float-stake",
        "Backtest",
        "ema-rsi-sample",
        _set("stakeAmount", 10.5),
        "spec.stakeAmount",
    ),
    (
        "backtest-reversed-timerange",
        "Backtest",
        "ema-rsi-sample",
        _set("timerange", {"start": "2024-02-01", "end": "2024-01-01"}),
        "spec.timerange",
    ),
    (
        "backtest-bad-date",
        "Backtest",
        "ema-rsi-sample",
        _set("timerange.start", "01/02/2024"),
        "spec.timerange.start",
    ),
    (
        "backtest-impossible-date",
        "Backtest",
        "ema-rsi-sample",
        _set("timerange", {"start": "2024-13-01", "end": "2024-14-01"}),
        "spec.timerange.start",
    ),
    (
        "backtest-zero-open-trades",
        "Backtest",
        "ema-rsi-sample",
        _set("maxOpenTrades", 0),
        "spec.maxOpenTrades",
    ),
    ("backtest-fee-too-high", "Backtest", "ema-rsi-sample", _set("fee", 0.5), "spec.fee"),
    (
        "backtest-gpu-zero",
        "Backtest",
        "ema-rsi-sample",
        _set("gpu", {"count": 0}),
        "spec.gpu.count",
    ),
    (
        "backtest-unknown-vendor",
        "Backtest",
        "ema-rsi-sample",
        _set("gpu", {"count": 1, "vendor": "intel"}),
        "spec.gpu.vendor",
    ),
    (
        "backtest-two-data-sources",
        "Backtest",
        "ema-rsi-sample",
        _set("data", {"bundled": "sample", "pvc": {"claimName": "candles"}}),
        "spec.data",
    ),
    (
        "backtest-pvc-path-parent",
        "Backtest",
        "ema-rsi-sample",
        _set("data", {"pvc": {"claimName": "candles", "path": "../other"}}),
        "spec.data.pvc.path",
    ),
    (
        "backtest-pvc-path-parent-inside",
        "Backtest",
        "ema-rsi-sample",
        _set("data", {"pvc": {"claimName": "candles", "path": "data/../../etc"}}),
        "spec.data.pvc.path",
    ),
    (
        "backtest-pvc-path-parent-last",
        "Backtest",
        "ema-rsi-sample",
        _set("data", {"pvc": {"claimName": "candles", "path": "data/.."}}),
        "spec.data.pvc.path",
    ),
    (
        "backtest-pair-not-in-stake-currency",
        "Backtest",
        "ema-rsi-sample",
        _set("stakeCurrency", "EUR"),
        "spec.pairs",
    ),
    (
        "backtest-priority-out-of-range",
        "Backtest",
        "ema-rsi-sample",
        _set("priority", 5000),
        "spec.priority",
    ),
    (
        "backtest-wallet-not-money",
        "Backtest",
        "ema-rsi-sample",
        _set("dryRunWallet", "lots"),
        "spec.dryRunWallet",
    ),
    (
        "backtest-money-nine-places",
        "Backtest",
        "ema-rsi-sample",
        _set("dryRunWallet", "1.123456789"),
        "spec.dryRunWallet",
    ),
    (
        "backtest-bad-quantity",
        "Backtest",
        "ema-rsi-sample",
        _set("resources", {"requests": {"cpu": "lots"}}),
        "spec.resources.requests",
    ),
    ("backtest-unknown-field", "Backtest", "ema-rsi-sample", _set("stake", "100"), "spec.stake"),
    (
        "livebot-live-without-approval",
        "LiveBot",
        "ema-rsi-dry",
        _all(_set("mode", "live"), _set("exchange.credentialsSecretRef", {"name": "keys"})),
        "promotion.approval",
    ),
    (
        "livebot-testnet-without-promotion",
        "LiveBot",
        "ema-rsi-dry",
        _all(
            _set("mode", "testnet"),
            _drop("promotion"),
            _set("exchange.credentialsSecretRef", {"name": "keys"}),
        ),
        "spec.mode",
    ),
    (
        "livebot-testnet-without-credentials",
        "LiveBot",
        "ema-rsi-dry",
        _set("mode", "testnet"),
        "credentialsSecretRef",
    ),
    ("livebot-unknown-mode", "LiveBot", "ema-rsi-dry", _set("mode", "paper"), "spec.mode"),
    (
        "livebot-hyperopt-ref-without-name",
        "LiveBot",
        "ema-rsi-dry",
        _set("promotion.hyperoptRef", {"minOutOfSampleProfit": 0.01}),
        "spec.promotion.hyperoptRef.name",
    ),
    (
        "livebot-out-of-sample-minimum-below-a-total-loss",
        "LiveBot",
        "ema-rsi-dry",
        _set("promotion.hyperoptRef", {"name": "search", "minOutOfSampleProfit": -2}),
        "spec.promotion.hyperoptRef.minOutOfSampleProfit",
    ),
    (
        "livebot-plaintext-key",
        "LiveBot",
        "ema-rsi-dry",
        _set("exchange.key", "AKIAFAKEKEY"),
        "spec.exchange",
    ),
    (
        "livebot-plaintext-secret-in-ref",
        "LiveBot",
        "ema-rsi-dry",
        _set("exchange.credentialsSecretRef", {"name": "keys", "secret": "s3cr3t"}),
        "spec.exchange.credentialsSecretRef.secret",
    ),
    (
        "livebot-gate-drawdown-above-one",
        "LiveBot",
        "ema-rsi-dry",
        _set("promotion.maxDrawdown", 1.5),
        "spec.promotion.maxDrawdown",
    ),
    (
        "livebot-approval-without-reference",
        "LiveBot",
        "ema-rsi-dry",
        _set("promotion.approval", {k: v for k, v in APPROVAL.items() if k != "reference"}),
        "spec.promotion.approval.reference",
    ),
    (
        "livebot-approval-bad-time",
        "LiveBot",
        "ema-rsi-dry",
        _set("promotion.approval", {**APPROVAL, "approvedAt": "yesterday"}),
        "spec.promotion.approval.approvedAt",
    ),
    (
        "livebot-negative-limit",
        "LiveBot",
        "ema-rsi-dry",
        _set("limits.maxStakePerTrade", "-1"),
        "spec.limits.maxStakePerTrade",
    ),
    (
        "livebot-live-without-max-stake-per-trade",
        "LiveBot",
        "ema-rsi-dry",
        _all(_live(), _drop("limits.maxStakePerTrade")),
        "limits.maxStakePerTrade",
    ),
    (
        "livebot-live-without-max-open-trades-limit",
        "LiveBot",
        "ema-rsi-dry",
        _all(_live(), _drop("limits.maxOpenTrades")),
        "limits.maxOpenTrades",
    ),
    (
        "livebot-live-unlimited-stake",
        "LiveBot",
        "ema-rsi-dry",
        _all(_live(), _set("stakeAmount", "unlimited")),
        'refuses stakeAmount "unlimited"',
    ),
    (
        # The default stake is unlimited: leaving it out is the same refusal.
        "livebot-live-default-stake",
        "LiveBot",
        "ema-rsi-dry",
        _all(_live(), _drop("stakeAmount")),
        'refuses stakeAmount "unlimited"',
    ),
    (
        "livebot-approval-digest-not-sha256",
        "LiveBot",
        "ema-rsi-dry",
        _set("promotion.approval", {**APPROVAL, "digest": "abc"}),
        "spec.promotion.approval.digest",
    ),
    ("breaker-no-limits", "CircuitBreaker", None, _set("limits", {}), "spec.limits"),
    (
        "breaker-drawdown-above-one",
        "CircuitBreaker",
        None,
        _set("limits.maxDrawdown", 1.5),
        "spec.limits.maxDrawdown",
    ),
    (
        "breaker-bad-duration",
        "CircuitBreaker",
        None,
        _set("limits.staleHeartbeat", "5 minutes"),
        "spec.limits.staleHeartbeat",
    ),
    ("breaker-unknown-action", "CircuitBreaker", None, _set("action", "explode"), "spec.action"),
    (
        "breaker-auto-reset-without-cooldown",
        "CircuitBreaker",
        None,
        _set("reset", {"mode": "auto"}),
        "spec.reset",
    ),
    ("breaker-no-selector", "CircuitBreaker", None, _drop("selector"), "spec.selector"),
    (
        "breaker-negative-daily-loss",
        "CircuitBreaker",
        None,
        _set("limits.maxDailyLoss", "-10"),
        "spec.limits.maxDailyLoss",
    ),
    (
        "breaker-bad-selector-operator",
        "CircuitBreaker",
        None,
        _set("selector", {"matchExpressions": [{"key": "a", "operator": "Matches"}]}),
        "spec.selector.matchExpressions[0].operator",
    ),
    ("md-no-pairs", "MarketData", None, _set("pairs", []), "spec.pairs"),
    ("md-bad-timeframe", "MarketData", None, _set("timeframes", ["7m"]), "spec.timeframes[0]"),
    ("md-days-and-timerange", "MarketData", None, _set("days", 3), "spec"),
    ("md-futures", "MarketData", None, _set("tradingMode", "futures"), "spec.tradingMode"),
    ("md-two-storages", "MarketData", None, _set("storage.claimName", "x"), "spec.storage"),
    ("md-bad-refresh", "MarketData", None, _set("refresh", "hourly"), "spec.refresh"),
    (
        "backtest-two-data-sources",
        "Backtest",
        "ema-rsi-sample",
        _set("data.marketDataRef", {"name": "majors"}),
        "spec.data",
    ),
    ("dca-cron-and-every", "DcaSchedule", None, _set("schedule.every", "1h"), "spec.schedule"),
    ("dca-no-timing", "DcaSchedule", None, _drop("schedule.cron"), "spec.schedule"),
    (
        "dca-bad-every",
        "DcaSchedule",
        None,
        _all(_drop("schedule.cron"), _set("schedule.every", "daily")),
        "spec.schedule.every",
    ),
    ("dca-zero-stake", "DcaSchedule", None, _set("stakeAmount", "0"), "spec.stakeAmount"),
    ("dca-float-stake", "DcaSchedule", None, _set("stakeAmount", 20.5), "spec.stakeAmount"),
    ("dca-lowercase-pair", "DcaSchedule", None, _set("pair", "btc/usdt"), "spec.pair"),
    (
        "dca-zero-deadline",
        "DcaSchedule",
        None,
        _set("startingDeadlineSeconds", 0),
        "spec.startingDeadlineSeconds",
    ),
    (
        "ho-overlapping-windows",
        "Hyperopt",
        None,
        _set("validation.timerange", {"start": "2024-01-10", "end": "2024-01-30"}),
        "must not overlap",
    ),
    (
        "ho-validation-before-overlapping",
        "Hyperopt",
        None,
        _set("validation.timerange", {"start": "2023-12-01"}),
        "must not overlap",
    ),
    ("ho-zero-epochs", "Hyperopt", None, _set("epochs", 0), "spec.epochs"),
    ("ho-no-training-end", "Hyperopt", None, _drop("timerange.end"), "timerange.end is required"),
    ("ho-unknown-space", "Hyperopt", None, _set("spaces", ["everything"]), "spec.spaces[0]"),
    ("ho-unknown-loss", "Hyperopt", None, _set("lossFunction", "MyLoss"), "spec.lossFunction"),
    ("ho-zero-workers", "Hyperopt", None, _set("workers", 0), "spec.workers"),
]


def _malformed(kind: str, name: str | None, mutate: Mutation, case_id: str) -> dict[str, Any]:
    manifest = copy.deepcopy(example(kind, name))
    manifest["metadata"] = {"name": case_id}
    mutate(manifest["spec"])
    return manifest


def test_there_are_enough_cases():
    assert len(CASES) >= 25
    assert {c[1] for c in CASES} == set(BY_KIND)


@pytest.mark.parametrize(
    ("case_id", "kind", "name", "mutate", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_malformed_manifest_is_rejected_naming_its_field(
    kubectl: Any,
    namespace: str,
    case_id: str,
    kind: str,
    name: str | None,
    mutate: Mutation,
    field: str,
):
    manifest = _malformed(kind, name, mutate, case_id)
    result = kubectl("apply", "-n", namespace, "-f", "-", check=False, stdin=json.dumps(manifest))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert field in result.stderr, result.stderr
    # Nothing was stored.
    got = kubectl("get", BY_KIND[kind].plural, case_id, "-n", namespace, check=False)
    assert got.returncode != 0

    model: type[BaseModel] = BY_KIND[kind].spec
    with pytest.raises(ValidationError):
        model.model_validate(manifest["spec"])


def test_a_live_bot_with_its_limits_and_a_stake_applies(kubectl: Any, namespace: str):
    """The positive control of the live cases: the same manifest with nothing taken away."""
    manifest = _malformed("LiveBot", "ema-rsi-dry", _live(), "live-ok")
    BY_KIND["LiveBot"].spec.model_validate(manifest["spec"])
    result = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=json.dumps(manifest)
    )
    assert result.returncode == 0, result.stderr
    # An integer stake is a stake too (the CEL rule compares a string only with a string).
    manifest["spec"]["stakeAmount"] = 50
    BY_KIND["LiveBot"].spec.model_validate(manifest["spec"])
    result = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=json.dumps(manifest)
    )
    assert result.returncode == 0, result.stderr


def test_plaintext_key_is_refused_even_without_strict_field_validation(
    api_client: Any, namespace: str
):
    """Clients that do not ask for strict validation would see an unknown field pruned
    silently; the declared-and-forbidden fields make the server refuse it outright."""
    manifest = _malformed(
        "LiveBot", "ema-rsi-dry", _set("exchange.secret", "S3CR3T-VALUE"), "plaintext"
    )
    api = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object(
            "tradebot.dev", "v1alpha1", namespace, "livebots", manifest
        )
    assert exc.value.status == 422
    assert "credentialsSecretRef" in exc.value.body
    assert "S3CR3T-VALUE" not in exc.value.body


def test_pvc_path_with_dots_that_are_no_parent_segment_applies(kubectl: Any, namespace: str):
    """The counterpart of the `..` cases: dots inside a name are fine, for the API server and
    for the model."""
    manifest = _malformed(
        "Backtest",
        "ema-rsi-sample",
        _set("data", {"pvc": {"claimName": "candles", "path": "data..v2/.hidden/..x"}}),
        "dots",
    )
    BY_KIND["Backtest"].spec.model_validate(manifest["spec"])
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest))
    got = kubectl("get", "backtests", "dots", "-n", namespace, "-o", "json")
    assert json.loads(got.stdout)["spec"]["data"]["pvc"]["path"] == "data..v2/.hidden/..x"


def test_spec_is_missing(kubectl: Any, namespace: str):
    manifest = {
        "apiVersion": "tradebot.dev/v1alpha1",
        "kind": "Backtest",
        "metadata": {"name": "nospec"},
    }
    result = kubectl("apply", "-n", namespace, "-f", "-", check=False, stdin=json.dumps(manifest))
    assert result.returncode != 0
    assert "spec" in result.stderr


@pytest.mark.parametrize("doc", examples(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_example_applies_and_reads_back_with_the_models_defaults(
    kubectl: Any, api_client: Any, namespace: str, doc: dict[str, Any]
):
    kind = BY_KIND[doc["kind"]]
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))
    stored = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "tradebot.dev", "v1alpha1", namespace, kind.plural, doc["metadata"]["name"]
    )
    server_spec = stored["spec"]
    model: type[BaseModel] = kind.spec
    # The API server filled in every top-level default the model declares ...
    defaulted = {
        f.alias or n
        for n, f in model.model_fields.items()
        if not f.is_required() and (f.default is not None or f.default_factory is not None)
    }
    assert defaulted <= set(server_spec), defaulted - set(server_spec)
    # ... with the values the operator would assume: Python and the server agree.
    assert model.model_validate(server_spec) == model.model_validate(doc["spec"])


def test_backtest_spec_is_immutable_but_status_is_writable(
    kubectl: Any, api_client: Any, namespace: str
):
    doc = example("Backtest", "ema-rsi-sample")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))
    api = client.CustomObjectsApi(api_client)
    args = ("tradebot.dev", "v1alpha1", namespace, "backtests", "ema-rsi-sample")
    with pytest.raises(ApiException) as exc:
        api.patch_namespaced_custom_object(*args, {"spec": {"priority": 7}})
    assert exc.value.status == 422
    assert "immutable" in exc.value.body
    api.patch_namespaced_custom_object_status(
        *args,
        {
            "status": {
                "phase": "Succeeded",
                "results": {"profitTotal": "0.01234567", "trades": 12, "maxDrawdown": "0.03000000"},
                "bias": {"summary": "lookahead:future_close"},
            }
        },
    )
    out = kubectl("get", "bt", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "STRATEGY",
        "PHASE",
        "QUEUE",
        "PROFIT",
        "DRAWDOWN",
        "TRADES",
        "BIAS",
        "AGE",
    ]
    assert row.split()[:3] == ["ema-rsi-sample", "ema-rsi", "Succeeded"]
    assert "lookahead:future_close" in row.split()
    assert "0.01234567" in row
    assert "12" in row.split()


def test_category_and_short_names(kubectl: Any, namespace: str):
    for doc in examples():
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))
    listed = kubectl("get", "tradebot", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == sorted(
        f"{BY_KIND[d['kind']].singular}.tradebot.dev/{d['metadata']['name']}" for d in examples()
    )
    for short in ("strat", "bt", "bot", "cb", "dca", "ho"):
        assert kubectl("get", short, "-n", namespace).returncode == 0


def test_hyperopt_spec_is_immutable_and_its_columns_show_progress(
    kubectl: Any, api_client: Any, namespace: str
):
    doc = example("Hyperopt")
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))
    api = client.CustomObjectsApi(api_client)
    args = ("tradebot.dev", "v1alpha1", namespace, "hyperopts", doc["metadata"]["name"])
    with pytest.raises(ApiException) as exc:
        api.patch_namespaced_custom_object(*args, {"spec": {"epochs": 9}})
    assert exc.value.status == 422
    assert "immutable" in exc.value.body
    api.patch_namespaced_custom_object_status(
        *args,
        {
            "status": {
                "phase": "Running",
                "progress": "3/8",
                "bestLoss": "-1.25000000",
                "bestProfit": "0.01234567",
            }
        },
    )
    out = kubectl("get", "ho", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:6] == [
        "NAME",
        "STRATEGY",
        "PHASE",
        "PROGRESS",
        "BEST-LOSS",
        "BEST-PROFIT",
    ]
    assert row.split()[:6] == [
        doc["metadata"]["name"],
        "ema-rsi",
        "Running",
        "3/8",
        "-1.25000000",
        "0.01234567",
    ]
