"""The artifact store's pure parts: where an artifact is said to be, which store settings
choose, and what a runner Job is given to keep its files there (and never a credential)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.artifacts.location import BadLocation, Location, parse, run_key, store_kind
from tradebot.artifacts.store import PvcStore, S3Store, StoreError, from_settings, sha256_file
from tradebot.domain.jobs import BacktestRun, job
from tradebot.settings import Settings

UID = "0b1e7c1e-1111-2222-3333-444455556666"
RUN = f"bt-{UID}"


def _run() -> BacktestRun:
    spec = BacktestSpec.model_validate(example("Backtest", "ema-rsi-sample")["spec"])
    return BacktestRun(
        "team-a",
        "ema-rsi-sample",
        UID,
        spec,
        "ema-rsi",
        "EmaRsiStrategy",
        "class EmaRsiStrategy: ...",
        {"strategy": "EmaRsiStrategy"},
        RUN,
        "corr-1",
    )


def test_urls_round_trip_and_name_their_run() -> None:
    pvc = PvcStore("artifacts").url(RUN, "result.zip")
    assert pvc == f"pvc://artifacts/{RUN}/result.zip"
    s3 = S3Store("runs", "team/tradebot/").url(RUN, "freqtrade log.txt")
    assert s3 == f"s3://runs/team/tradebot/{RUN}/freqtrade%20log.txt"
    assert parse(pvc) == Location("pvc", "artifacts", f"{RUN}/result.zip")
    assert parse(s3) == Location("s3", "runs", f"team/tradebot/{RUN}/freqtrade log.txt")
    assert parse("result.zip") is None  # a bare name: no store was configured


@pytest.mark.parametrize(
    "path",
    ["ftp://host/x", "s3://bucket", "pvc:///x/y", "s3://b/a/../../etc/passwd", "pvc://c/a//b"],
)
def test_bad_recorded_paths_are_refused(path: str) -> None:
    with pytest.raises(BadLocation):
        parse(path)


@pytest.mark.parametrize(
    ("run_id", "name"), [("..", "x"), ("r", "../x"), ("r", "a/b"), ("", "x"), ("r", "")]
)
def test_a_key_never_climbs_out_of_its_run(run_id: str, name: str) -> None:
    with pytest.raises(BadLocation):
        run_key("p/", run_id, name)


def test_the_claim_is_the_default_store_when_configured() -> None:
    assert store_kind(Settings()) is None
    assert store_kind(Settings(artifacts_pvc="art")) == "pvc"
    assert store_kind(Settings(artifacts_s3_bucket="runs")) == "s3"
    assert store_kind(Settings(artifacts_pvc="art", artifacts_s3_bucket="runs")) == "pvc"
    assert (
        store_kind(Settings(artifacts_store="s3", artifacts_pvc="art", artifacts_s3_bucket="runs"))
        == "s3"
    )
    assert isinstance(from_settings(Settings(artifacts_s3_bucket="runs")), S3Store)
    assert from_settings(Settings()) is None


@pytest.mark.parametrize(
    "env",
    [
        {"TRADEBOT_ARTIFACTS_STORE": "pvc"},
        {"TRADEBOT_ARTIFACTS_STORE": "s3"},
        {"TRADEBOT_ARTIFACTS_STORE": "ftp"},
    ],
)
def test_a_store_without_its_place_is_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=r"TRADEBOT_ARTIFACTS_STORE|artifacts_store"):
        Settings.from_env(env)


def _container(settings: Settings) -> dict[str, Any]:
    return dict(job(_run(), settings)["spec"]["template"]["spec"]["containers"][0])


def test_on_a_claim_the_runners_output_is_its_place_in_the_store() -> None:
    j = job(_run(), Settings(artifacts_pvc="art"))
    pod = j["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "artifacts")
    assert volume == {"name": "artifacts", "persistentVolumeClaim": {"claimName": "art"}}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "artifacts")
    assert mount["subPath"] == RUN
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["TRADEBOT_RUN_ID"] == RUN
    assert (env["TRADEBOT_ARTIFACTS_STORE"], env["TRADEBOT_ARTIFACTS_PVC"]) == ("pvc", "art")
    assert "envFrom" not in pod["containers"][0]


def test_without_a_store_the_job_is_as_before() -> None:
    c = _container(Settings())
    assert [e["name"] for e in c["env"]] == ["TRADEBOT_CORRELATION_ID"]
    assert "envFrom" not in c


def test_on_a_bucket_only_the_upload_step_gets_the_keys() -> None:
    settings = Settings(
        artifacts_s3_bucket="runs",
        artifacts_s3_prefix="p/",
        artifacts_s3_endpoint_url="http://minio:9000",
        artifacts_s3_secret="artifact-keys",
    )
    pod = job(_run(), settings)["spec"]["template"]["spec"]
    (runner,) = pod["containers"]
    (upload,) = pod["initContainers"]
    # The container that runs Freqtrade (and so the strategy) has no keys, no reference to
    # them, not even the bucket's place: only the hand-over.
    assert runner["name"] == "runner"
    assert "envFrom" not in runner
    env = {e["name"]: e["value"] for e in runner["env"]}
    assert env == {
        "TRADEBOT_CORRELATION_ID": env["TRADEBOT_CORRELATION_ID"],
        "TRADEBOT_RUN_ID": RUN,
        "TRADEBOT_ARTIFACTS_HANDOFF": "1",
    }
    assert not any("secret" in json.dumps(v).lower() for v in runner.get("volumeMounts", []))
    # The control: the upload step has them, a native sidecar of the operator's own image that
    # never mounts the strategy's config.
    assert upload["envFrom"] == [{"secretRef": {"name": "artifact-keys"}}]
    assert upload["restartPolicy"] == "Always"
    assert upload["image"] == settings.runner_image
    assert upload["command"][:3] == ["python", "-m", "tradebot.artifacts.uploader"]
    up_env = {e["name"]: e["value"] for e in upload["env"]}
    assert up_env["TRADEBOT_ARTIFACTS_S3_BUCKET"] == "runs"
    assert up_env["TRADEBOT_ARTIFACTS_S3_PREFIX"] == "p/"
    assert up_env["TRADEBOT_ARTIFACTS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert up_env["TRADEBOT_RUN_ID"] == RUN
    assert not any("AWS" in e["name"] for e in upload["env"])
    assert {m["name"] for m in upload["volumeMounts"]} == {"artifacts", "upload-tmp"}
    shared = next(m for m in runner["volumeMounts"] if m["name"] == "artifacts")
    assert "subPath" not in shared
    # A run that asks for its own image still gets the operator's upload step.
    base = _run()
    custom = dataclasses.replace(base, spec=base.spec.model_copy(update={"image": "x/y:1"}))
    other = job(custom, settings)["spec"]["template"]["spec"]
    assert other["containers"][0]["image"] == "x/y:1"
    assert other["initContainers"][0]["image"] == settings.runner_image


def test_a_claim_store_copies_atomically_and_idempotently(tmp_path: Path) -> None:
    source = tmp_path / "result.zip"
    source.write_bytes(b"zip" * 1000)
    store = PvcStore("art", tmp_path / "volume")
    first = store.put(RUN, source)
    again = store.put(RUN, source)
    assert first == again
    assert first.path == f"pvc://art/{RUN}/result.zip"
    kept = tmp_path / "volume" / RUN / "result.zip"
    assert kept.read_bytes() == source.read_bytes()
    assert first.sha256 == sha256_file(source)
    assert first.size == 3000
    assert [p.name for p in kept.parent.iterdir()] == ["result.zip"]  # no temporary left
    # A file already in place (the runner pod's subPath mount) is recorded where it is.
    assert store.put(RUN, kept) == first
    assert PvcStore("art").put(RUN, source).path == first.path


def test_a_claim_store_says_what_is_missing(tmp_path: Path) -> None:
    store = PvcStore("art", tmp_path)
    location = parse(store.url(RUN, "gone.zip"))
    assert location is not None
    with pytest.raises(StoreError, match="missing"):
        store.download(location, tmp_path / "out")


def test_summary_paths_fit_the_termination_message() -> None:
    from tradebot.api.backtest import Artifact
    from tradebot.freqtrade.summary import TERMINATION_MESSAGE_LIMIT, RunSummary

    store = S3Store("a-bucket-with-a-long-name", "some/deep/prefix/for/tradebot/")
    arts = [
        Artifact(
            name=f"backtest-result-2026-11-29_12-00-0{i}.meta.json",
            sha256="a" * 64,
            size=123456,
            path=store.url(RUN, f"backtest-result-{i}.zip"),
        )
        for i in range(6)
    ]
    summary = RunSummary(ok=True, strategy="EmaRsiStrategy", artifacts=arts)
    message = summary.to_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert json.loads(message)["artifacts"][0]["path"].startswith("s3://")


def test_without_boto3_a_bucket_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # as in the operator image
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(StoreError, match=r"tradebot-operator\[s3\]"):
        S3Store("runs").put(RUN, source)
