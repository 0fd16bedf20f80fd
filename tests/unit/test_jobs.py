"""The Job and ConfigMap built for a Backtest run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.domain.jobs import (
    CONFIG_MAP_MAX_BYTES,
    BacktestRun,
    config_map,
    config_map_size,
    config_map_too_large,
    job,
)
from tradebot.domain.naming import child_name, label_value, named
from tradebot.settings import Settings

UID = "0b1e7c1e-1111-2222-3333-444455556666"


def run(**spec_changes: Any) -> BacktestRun:
    spec = BacktestSpec.model_validate(
        {**example("Backtest", "ema-rsi-sample")["spec"], **spec_changes}
    )
    return BacktestRun(
        "team-a",
        "ema-rsi-sample",
        UID,
        spec,
        "ema-rsi",
        "EmaRsiStrategy",
        "class EmaRsiStrategy: ...",
        {"strategy": "EmaRsiStrategy"},
        f"bt-{UID}",
        "corr-1",
    )


def test_names_are_deterministic_and_bounded():
    # A value fixed here: a name that varied per process (a hash() seed) or per call fails.
    assert run().job_name == "bt-ema-rsi-sample-a5ec37d0"
    long = child_name("bt", "x" * 200, UID)
    assert len(long) <= 63
    assert child_name("bt", "a", UID) != child_name("bt", "a", UID.replace("1", "9"))


def long_run(name: str, strategy: str, code: str = "class EmaRsiStrategy: ...") -> BacktestRun:
    base = run()
    return BacktestRun(
        base.namespace,
        name,
        UID,
        base.spec,
        strategy,
        base.strategy_class,
        code,
        base.config,
        base.run_id,
        base.correlation_id,
    )


def test_long_names_fit_every_label_and_are_kept_whole_in_annotations():
    """Before: a name over 63 characters became a label value as it was, and the API server
    refused the Job and the ConfigMap (422)."""
    name, strategy = "b" * 253, "s" * 100
    r = long_run(name, strategy)
    j, cm = job(r, Settings()), config_map(r)
    pod_meta = j["spec"]["template"]["metadata"]
    for meta in (j["metadata"], cm["metadata"], pod_meta):
        assert all(len(v) <= 63 for v in meta["labels"].values()), meta["labels"]
        assert meta["labels"]["tradebot.dev/backtest"] == "b" * 54 + "-" + label_value(name)[-8:]
        # Read back whole: what the queue and the Backtest watch use.
        assert named(meta, "tradebot.dev/backtest") == name
        assert named(meta, "tradebot.dev/strategy") == strategy
    assert len(j["metadata"]["name"]) <= 63
    # Positive control: short names are their own label values, unchanged.
    short = job(run(), Settings())["metadata"]
    assert short["labels"]["tradebot.dev/backtest"] == "ema-rsi-sample"
    assert named(short, "tradebot.dev/backtest") == "ema-rsi-sample"
    assert named({"labels": {"tradebot.dev/backtest": "x"}}, "tradebot.dev/backtest") == "x"


def test_label_values_are_fixed_values():
    assert label_value("x" * 63) == "x" * 63
    assert label_value("x" * 200) == "x" * 54 + "-aa20c23e"


def test_a_run_too_large_for_a_configmap_says_so():
    fits = config_map(run())
    assert config_map_too_large(fits) is None
    room = CONFIG_MAP_MAX_BYTES - config_map_size(fits)
    code = "class EmaRsiStrategy: ..."
    at_limit = config_map(long_run("ema-rsi-sample", "ema-rsi", code + "#" * room))
    assert config_map_size(at_limit) == CONFIG_MAP_MAX_BYTES
    assert config_map_too_large(at_limit) is None
    over = config_map(long_run("ema-rsi-sample", "ema-rsi", code + "#" * (room + 1)))
    why = config_map_too_large(over)
    assert why is not None
    assert f"take {CONFIG_MAP_MAX_BYTES + 1} bytes" in why
    assert "at most 1048576" in why


def test_job_shape():
    j = job(run(), Settings())
    assert j["metadata"]["ownerReferences"][0]["uid"] == UID
    assert j["metadata"]["ownerReferences"][0]["controller"] is True
    spec = j["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 3600)
    assert spec["ttlSecondsAfterFinished"] == 86400
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"][:1] == ["backtest"]
    assert c["args"][c["args"].index("--timerange") + 1] == "20240102-20240201"
    assert c["args"][c["args"].index("--data") + 1] == "sample"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["securityContext"]["runAsNonRoot"] is True
    assert {"name": "TRADEBOT_CORRELATION_ID", "value": "corr-1"} in c["env"]
    # CPU runs stay off GPU nodes.
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = {e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
    assert keys == {"feature.node.kubernetes.io/amd-gpu", "nvidia.com/gpu.present"}
    assert "tolerations" not in pod


@pytest.mark.parametrize(
    ("vendor", "resource", "selector"),
    [
        ("amd", "amd.com/gpu", "feature.node.kubernetes.io/amd-gpu"),
        ("nvidia", "nvidia.com/gpu", "nvidia.com/gpu.present"),
    ],
)
def test_gpu_job_uses_the_vendor_profile(vendor: str, resource: str, selector: str):
    j = job(run(gpu={"count": 2, "vendor": vendor}), Settings())
    pod = j["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"][resource] == "2"
    assert selector in pod["nodeSelector"]
    assert pod["tolerations"][0]["key"] == resource
    assert "affinity" not in pod
    if vendor == "amd":
        assert pod["containers"][0]["image"] == Settings().runner_image_rocm


def test_config_map_holds_config_and_code():
    cm = config_map(run())
    assert json.loads(cm["data"]["config.json"]) == {"strategy": "EmaRsiStrategy"}
    assert cm["data"]["EmaRsiStrategy.py"].startswith("class EmaRsiStrategy")
    assert cm["metadata"]["name"] == run().job_name
