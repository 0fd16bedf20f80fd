"""The artifact store: a PersistentVolumeClaim or an S3-compatible bucket, as settings choose
(TRADEBOT_ARTIFACTS_*). `put(run_id, path)` keeps one file of a run there and returns its
record, whose `path` resolves (`fetch.get` reads it back and checks its sha256).

Who puts: the runner pod itself with the kubernetes executor (it mounts the claim at its run's
directory, or uploads to the bucket with credentials from a Secret in its environment); the
operator with the local executor; anything else that makes files of a run (hyperopt workers)
through `put`, which builds the store from the environment when not handed one.

Credentials never pass through here: boto3 reads them from its own environment (the Secret's
keys as AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the pod's identity.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tradebot.artifacts.location import BadLocation, Location, check_part, run_key, store_kind
from tradebot.records.models import ArtifactRecord
from tradebot.settings import Settings

# Where a pod (a hyperopt worker, say) mounts the artifacts claim's root; the operator's local
# executor finds the claim's hostPath volume itself.
PVC_ROOT_ENV = "TRADEBOT_ARTIFACTS_PVC_ROOT"


class StoreError(Exception):
    """The store could not keep or hand back a file (unreachable, refused, not configured);
    the message names the place, never a credential."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore(Protocol):
    def url(self, run_id: str, name: str) -> str:
        """Where `put(run_id, <file called name>)` keeps it."""

    def put(self, run_id: str, path: Path, name: str | None = None) -> ArtifactRecord:
        """Keeps the file (as `name`, default its own) for the run; idempotent (the same
        file again replaces itself). Raises StoreError."""

    def download(self, location: Location, target: Path) -> None:
        """Copies the stored bytes to `target` as they are (no check). Raises StoreError."""


def _record(name: str, url: str, path: Path) -> ArtifactRecord:
    return ArtifactRecord(name=name, path=url, sha256=sha256_file(path), size=path.stat().st_size)


@dataclass(frozen=True)
class PvcStore:
    """A claim's volume, reachable here at `root` (the local cluster's hostPath directory, or
    where a pod mounts the whole claim). Without a root, the caller's files are already in
    place: a runner pod mounts the claim with subPath <runId> as its output directory."""

    claim: str
    root: Path | None = None

    def url(self, run_id: str, name: str) -> str:
        return Location("pvc", self.claim, run_key("", run_id, name)).url()

    def put(self, run_id: str, path: Path, name: str | None = None) -> ArtifactRecord:
        name = check_part("artifact name", name or path.name)
        url = self.url(run_id, name)
        if self.root is None:
            return _record(name, url, path)
        target = self.root / run_key("", run_id, name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.exists() and target.samefile(path)):
                # Beside the target, then renamed: a reader never sees half a file.
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
                os.close(fd)
                try:
                    shutil.copyfile(path, tmp)
                    os.replace(tmp, target)
                finally:
                    Path(tmp).unlink(missing_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot keep {name} in claim {self.claim} at {target}: {e.strerror or e}"
            ) from e
        return _record(name, url, target)

    def download(self, location: Location, target: Path) -> None:
        if self.root is None:
            raise StoreError(f"claim {self.claim} is not reachable from here")
        source = self.root / location.key
        try:
            shutil.copyfile(source, target)
        except FileNotFoundError:
            raise StoreError(
                f"{location.url()} is missing: no {source} in the claim's volume"
            ) from None
        except OSError as e:
            raise StoreError(f"cannot read {location.url()} at {source}: {e.strerror or e}") from e


@dataclass(frozen=True)
class S3Store:
    """An S3-compatible bucket through boto3 (AWS, MinIO, Ceph RGW, ...)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    def client(self) -> Any:
        try:
            # Only where a bucket is used; the operator image does not ship it (see
            # pyproject.toml's s3 extra): its kubernetes executor's runner pods upload.
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StoreError(
                "the S3 artifact store needs boto3: pip install 'tradebot-operator[s3]'"
            ) from None

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )

    def url(self, run_id: str, name: str) -> str:
        return Location("s3", self.bucket, run_key(self.prefix, run_id, name)).url()

    def put(self, run_id: str, path: Path, name: str | None = None) -> ArtifactRecord:
        name = check_part("artifact name", name or path.name)
        key = run_key(self.prefix, run_id, name)
        record = _record(name, self.url(run_id, name), path)
        client = self.client()
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client.upload_file(
                str(path), self.bucket, key, ExtraArgs={"Metadata": {"sha256": record.sha256}}
            )
        except (Boto3Error, BotoCoreError, ClientError, OSError) as e:
            raise StoreError(
                f"cannot upload {name} to s3://{self.bucket}/{key}: {_describe(e)}"
            ) from e
        return record

    def download(self, location: Location, target: Path) -> None:
        client = self.client()
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client.download_file(location.container, location.key, str(target))
        except (Boto3Error, BotoCoreError, ClientError, OSError) as e:
            raise StoreError(f"cannot download {location.url()}: {_describe(e)}") from e


def _describe(error: Exception) -> str:
    # botocore's messages name the operation and the service's error code, never the keys.
    return str(error) or type(error).__name__


def from_settings(settings: Settings, *, pvc_root: Path | None = None) -> ArtifactStore | None:
    """The configured store, or None; `pvc_root` is where the claim is reachable here."""
    try:
        chosen = store_kind(settings)
    except BadLocation as e:
        raise StoreError(str(e)) from None
    if chosen == "pvc":
        assert settings.artifacts_pvc is not None
        return PvcStore(settings.artifacts_pvc, pvc_root)
    if chosen == "s3":
        assert settings.artifacts_s3_bucket is not None
        return S3Store(
            settings.artifacts_s3_bucket,
            settings.artifacts_s3_prefix,
            settings.artifacts_s3_endpoint_url,
            settings.artifacts_s3_region,
        )
    return None


def from_env() -> ArtifactStore:
    """The store a process in a pod uses: settings from TRADEBOT_ARTIFACTS_*, the claim's root
    from TRADEBOT_ARTIFACTS_PVC_ROOT. Raises StoreError when none is configured."""
    root = os.environ.get(PVC_ROOT_ENV)
    found = from_settings(Settings.from_env(), pvc_root=Path(root) if root else None)
    if found is None:
        raise StoreError(
            "no artifact store configured (TRADEBOT_ARTIFACTS_PVC or TRADEBOT_ARTIFACTS_S3_BUCKET)"
        )
    if isinstance(found, PvcStore) and found.root is None:
        raise StoreError(f"claim {found.claim}: set {PVC_ROOT_ENV} to where it is mounted")
    return found


def put(
    run_id: str, path: Path, *, name: str | None = None, store: ArtifactStore | None = None
) -> ArtifactRecord:
    """Keeps one file of run `run_id` in the artifact store (`store`, else the one the
    environment configures) and returns its record: name, resolvable path, sha256, size.
    Record it with `RecordStore.record_artifacts(run_id, [record])`."""
    return (store or from_env()).put(run_id, path, name)
