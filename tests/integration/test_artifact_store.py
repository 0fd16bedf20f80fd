"""The artifact store against real things: a local S3 server (moto's, on loopback), a claim's
directory, and the records on SQLite and PostgreSQL. What the runner pod and the local executor
keep comes back through `tradebot artifacts get` byte for byte, and a copy that differs from
its record is refused without leaving a file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.s3 import SECRET, local_s3

from tradebot.api.backtest import Artifact
from tradebot.artifacts import store as artifact_store
from tradebot.artifacts import uploader
from tradebot.artifacts.fetch import ArtifactMismatch, get
from tradebot.artifacts.store import PvcStore, S3Store, StoreError
from tradebot.cli import main
from tradebot.executors.local import Outcome, keep_artifacts
from tradebot.freqtrade import runner
from tradebot.freqtrade.summary import RunSummary
from tradebot.observability.logging import logger
from tradebot.records import RecordStore, RunRecord
from tradebot.settings import Settings

BUCKET = "tradebot-artifacts"
RUN = "bt-0b1e7c1e-1111-2222-3333-444455556666"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with local_s3(monkeypatch, BUCKET) as endpoint:
        yield endpoint


def _file(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(content)
    return path


def _run(store: RecordStore, run_id: str = RUN, namespace: str = "team-a") -> None:
    store.record_run(
        RunRecord(
            id=run_id,
            resource_uid=f"uid-{run_id}",
            namespace=namespace,
            name="ema-rsi",
            kind="backtest",
            status="succeeded",
        )
    )


def _get(dsn: str, run_id: str, name: str, target: Path, *extra: str) -> int:
    return main(["artifacts", "get", run_id, name, "-o", str(target), "--dsn", dsn, *extra])


def test_a_bucket_keeps_a_run_and_hands_it_back_verified(
    s3: str, store: RecordStore, dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content = b"PK\x03\x04 result " * 5000
    source = _file(tmp_path / "out", "backtest-result.zip", content)
    bucket = S3Store(BUCKET, "team/", endpoint_url=s3)
    record = artifact_store.put(RUN, source, store=bucket)
    assert record.path == f"s3://{BUCKET}/team/{RUN}/backtest-result.zip"
    assert record.sha256 == hashlib.sha256(content).hexdigest()
    _run(store)
    store.record_artifacts(RUN, [record])

    target = tmp_path / "fetched.zip"
    assert _get(dsn, RUN, "backtest-result.zip", target, "--s3-endpoint-url", s3) == 0
    assert target.read_bytes() == content
    assert "verified" in capsys.readouterr().out

    # The object changed behind the record's back: refused, and nothing is written.
    bucket.client().put_object(
        Bucket=BUCKET, Key=f"team/{RUN}/backtest-result.zip", Body=content[:-1] + b"X"
    )
    tampered = tmp_path / "tampered.zip"
    assert _get(dsn, RUN, "backtest-result.zip", tampered, "--s3-endpoint-url", s3) == 1
    assert "does not match its record" in capsys.readouterr().err
    assert not tampered.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # An existing file is left as it was.
    target.write_bytes(b"mine")
    assert _get(dsn, RUN, "backtest-result.zip", target, "--s3-endpoint-url", s3) == 1
    assert target.read_bytes() == b"mine"


def test_what_cannot_be_fetched_says_why(
    s3: str, store: RecordStore, dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradebot.records import ArtifactRecord

    _run(store)
    store.record_artifacts(
        RUN,
        [
            ArtifactRecord(name="old.log", path="old.log", sha256="a" * 64, size=3),
            ArtifactRecord(
                name="gone.zip", path=f"s3://{BUCKET}/{RUN}/gone.zip", sha256="b" * 64, size=3
            ),
        ],
    )
    target = tmp_path / "x"
    assert _get(dsn, RUN, "old.log", target) == 1
    assert "emptyDir" in capsys.readouterr().err
    assert _get(dsn, RUN, "gone.zip", target, "--s3-endpoint-url", s3) == 1
    err = capsys.readouterr().err
    assert f"s3://{BUCKET}/{RUN}/gone.zip" in err
    assert SECRET not in err
    assert _get(dsn, RUN, "nope", target) == 1
    assert "has no artifact nope (it has: gone.zip, old.log)" in capsys.readouterr().err
    assert _get(dsn, "bt-unknown", "nope", target) == 1
    assert "no run bt-unknown" in capsys.readouterr().err
    assert not target.exists()
    assert main(["artifacts", "list", RUN, "--dsn", dsn]) == 0
    assert "gone.zip\t3\t" + "b" * 64 in capsys.readouterr().out


def test_a_claim_keeps_a_run_and_hands_it_back_verified(store: RecordStore, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    source = _file(tmp_path / "out", "config.json", b'{"strategy": "EmaRsi"}')
    record = PvcStore("artifacts", volume).put(RUN, source)
    assert record.path == f"pvc://artifacts/{RUN}/config.json"
    _run(store)
    store.record_artifacts(RUN, [record])
    (back,) = store.get_artifacts(RUN)
    asked: list[tuple[str, str]] = []

    def claim_root(namespace: str, claim: str) -> Path:
        asked.append((namespace, claim))
        return volume

    target = get(back, "team-a", tmp_path / "got.json", Settings(), claim_root)
    assert target.read_bytes() == source.read_bytes()
    assert asked == [("team-a", "artifacts")]  # the claim of the run's namespace
    (volume / RUN / "config.json").write_bytes(b'{"strategy": "Other"}')
    with pytest.raises(ArtifactMismatch):
        get(back, "team-a", tmp_path / "bad.json", Settings(), claim_root)
    assert not (tmp_path / "bad.json").exists()


def _summary(directory: Path) -> RunSummary:
    arts = []
    for name, content in (("backtest-result.zip", b"zip" * 100), ("freqtrade.log", b"log")):
        path = _file(directory, name, content)
        arts.append(
            Artifact(
                name=name, sha256=hashlib.sha256(content).hexdigest(), size=path.stat().st_size
            )
        )
    return RunSummary(ok=True, strategy="EmaRsiStrategy", artifacts=arts)


def _objects(endpoint: str) -> dict[str, bytes]:
    client: Any = S3Store(BUCKET, endpoint_url=endpoint).client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def test_the_runner_pod_uploads_its_artifacts(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the Job's environment holds (domain/jobs.py artifact_env + the Secret's keys).
    monkeypatch.setenv("TRADEBOT_RUN_ID", RUN)
    monkeypatch.setenv("TRADEBOT_ARTIFACTS_STORE", "s3")
    monkeypatch.setenv("TRADEBOT_ARTIFACTS_S3_BUCKET", BUCKET)
    monkeypatch.setenv("TRADEBOT_ARTIFACTS_S3_PREFIX", "p/")
    monkeypatch.setenv("TRADEBOT_ARTIFACTS_S3_ENDPOINT_URL", s3)
    out = tmp_path / "artifacts"
    summary, code = runner._keep_artifacts(_summary(out), 0, out, logger())
    assert code == 0
    assert [a.path for a in summary.artifacts] == [
        f"s3://{BUCKET}/p/{RUN}/backtest-result.zip",
        f"s3://{BUCKET}/p/{RUN}/freqtrade.log",
    ]
    assert _objects(s3) == {
        f"p/{RUN}/backtest-result.zip": b"zip" * 100,
        f"p/{RUN}/freqtrade.log": b"log",
    }

    # A bucket that is not there: the run fails saying so, and names no credential.
    monkeypatch.setenv("TRADEBOT_ARTIFACTS_S3_BUCKET", "no-such-bucket")
    failed, code = runner._keep_artifacts(_summary(out), 0, out, logger())
    assert code == 1
    assert not failed.ok
    assert failed.results is None
    assert failed.error is not None
    assert failed.error.startswith(
        "artifacts not kept: cannot upload backtest-result.zip to "
        f"s3://no-such-bucket/p/{RUN}/backtest-result.zip"
    )
    assert SECRET not in failed.error


def test_without_a_store_the_runner_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEBOT_RUN_ID", RUN)
    out = tmp_path / "artifacts"
    summary = _summary(out)
    assert runner._keep_artifacts(summary, 0, out, logger()) == (summary, 0)


def test_the_local_executor_uploads_before_it_reports(s3: str, tmp_path: Path) -> None:
    out = tmp_path / "run" / "artifacts"
    outcome = Outcome(True, 0, _summary(out).to_message())
    settings = Settings(artifacts_s3_bucket=BUCKET, artifacts_s3_endpoint_url=s3)
    kept = keep_artifacts(outcome, "team-a", RUN, out, settings)
    summary = RunSummary.model_validate_json(kept.message)
    assert [a.path for a in summary.artifacts] == [
        f"s3://{BUCKET}/{RUN}/backtest-result.zip",
        f"s3://{BUCKET}/{RUN}/freqtrade.log",
    ]
    assert (kept.succeeded, kept.exit_code) == (True, 0)
    assert set(_objects(s3)) == {f"{RUN}/backtest-result.zip", f"{RUN}/freqtrade.log"}
    # Unreachable store: an error the controller retries on, never a half-reported outcome.
    down = Settings(artifacts_s3_bucket=BUCKET, artifacts_s3_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match="cannot upload"):
        keep_artifacts(outcome, "team-a", RUN, out, down)


def test_the_runner_hands_over_to_an_upload_step_that_alone_has_the_keys(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Job's two containers as two processes sharing the artifacts directory: the upload
    step (a real `python -m tradebot.artifacts.uploader`) with the bucket's settings and keys,
    the runner with neither, only the hand-over (domain/jobs.py upload_step)."""
    out = tmp_path / "artifacts"
    summary = _summary(out)
    # A link to the upload step's own environment is refused, never uploaded.
    (out / "environ").symlink_to("/proc/self/environ")
    # A request for the link (as a strategy could write one) fails the run; nothing uploaded.
    refused = uploader.upload(
        out, RUN, {"artifacts": ["environ"]}, S3Store(BUCKET, "q/", endpoint_url=s3)
    )
    assert "error" in refused
    assert not [k for k in _objects(s3) if k.startswith("q/")]
    # The control: a plain file in the same request shape is uploaded.
    fine = uploader.upload(
        out, RUN, {"artifacts": ["freqtrade.log"]}, S3Store(BUCKET, "q/", endpoint_url=s3)
    )
    assert "error" not in fine, fine
    assert _objects(s3)[f"q/{RUN}/freqtrade.log"] == b"log"

    step_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HOME": str(tmp_path),
        "TRADEBOT_RUN_ID": RUN,
        "TRADEBOT_ARTIFACTS_STORE": "s3",
        "TRADEBOT_ARTIFACTS_S3_BUCKET": BUCKET,
        "TRADEBOT_ARTIFACTS_S3_PREFIX": "p/",
        "TRADEBOT_ARTIFACTS_S3_ENDPOINT_URL": s3,
        **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    step = subprocess.Popen(
        [sys.executable, "-m", "tradebot.artifacts.uploader", "--dir", str(out)],
        env=step_env,
    )
    try:
        # The runner's own environment: no keys, no bucket.
        for name in list(os.environ):
            if name.startswith(("AWS_", "TRADEBOT_ARTIFACTS_")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("TRADEBOT_RUN_ID", RUN)
        monkeypatch.setenv("TRADEBOT_ARTIFACTS_HANDOFF", "1")
        monkeypatch.setenv("TRADEBOT_ARTIFACTS_HANDOFF_TIMEOUT", "60")
        kept, code = runner._keep_artifacts(summary, 0, out, logger())
        assert code == 0, kept.error
        # The control for the hand-over: the runner itself could not have uploaded.
        with pytest.raises(StoreError):
            artifact_store.from_env()
        assert [a.path for a in kept.artifacts] == [
            f"s3://{BUCKET}/p/{RUN}/backtest-result.zip",
            f"s3://{BUCKET}/p/{RUN}/freqtrade.log",
        ]
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, step_env[name])  # the test's own reads of the bucket
        assert {k: v for k, v in _objects(s3).items() if k.startswith("p/")} == {
            f"p/{RUN}/backtest-result.zip": b"zip" * 100,
            f"p/{RUN}/freqtrade.log": b"log",
        }
    finally:
        step.terminate()
        assert step.wait(30) == 0  # SIGTERM, as the kubelet stops a native sidecar


def test_the_api_server_keeps_the_upload_step_a_native_sidecar(
    api_client: Any, namespace: str
) -> None:
    """The Job as built for a bucket, accepted by the real API server (a server-side dry run)
    with its upload step still `restartPolicy: Always` (a server without native sidecars
    refuses or drops it), and the runner still without the keys."""
    from kubernetes import client
    from tests.support.manifests import example

    from tradebot.api.backtest import BacktestSpec
    from tradebot.domain.jobs import BacktestRun, job

    spec = BacktestSpec.model_validate(example("Backtest", "ema-rsi-sample")["spec"])
    run = BacktestRun(
        namespace,
        "bt",
        "0b1e7c1e-1111-2222-3333-444455556666",
        spec,
        "ema-rsi",
        "EmaRsi",
        "class EmaRsi: ...",
        {},
        RUN,
        "corr",
    )
    settings = Settings(artifacts_s3_bucket=BUCKET, artifacts_s3_secret="artifact-keys")
    made = client.BatchV1Api(api_client).create_namespaced_job(
        namespace, job(run, settings), dry_run="All"
    )
    pod = made.spec.template.spec
    (step,) = pod.init_containers
    assert (step.name, step.restart_policy) == ("upload", "Always")
    assert step.env_from[0].secret_ref.name == "artifact-keys"
    (runner_container,) = pod.containers
    assert not runner_container.env_from
    assert not [
        e.name for e in runner_container.env if e.name.startswith(("AWS", "TRADEBOT_ARTIFACTS_S3"))
    ]
