"""Fetching a recorded artifact back: resolve its path, copy the bytes beside the target, check
their sha256 against the record, and only then rename the copy into place. A mismatch (or any
failure) is an error and leaves no file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tradebot.artifacts.location import BadLocation, Location, parse
from tradebot.artifacts.store import ArtifactStore, PvcStore, S3Store, StoreError, sha256_file
from tradebot.records.models import ArtifactRecord
from tradebot.settings import Settings

# (namespace, claim) -> where the claim's volume is on this machine; raises StoreError.
ClaimRoot = Callable[[str, str], Path]


class ArtifactMismatch(StoreError):
    """The fetched bytes are not the ones recorded (sha256 or size differ)."""


def store_for(
    location: Location, namespace: str, settings: Settings, claim_root: ClaimRoot
) -> ArtifactStore:
    """The store that holds `location`: the bucket it names, on the configured endpoint; the
    claim it names, in the run's namespace."""
    if location.scheme == "s3":
        return S3Store(
            location.container, "", settings.artifacts_s3_endpoint_url, settings.artifacts_s3_region
        )
    return PvcStore(location.container, claim_root(namespace, location.container))


def get(
    record: ArtifactRecord, namespace: str, target: Path, settings: Settings, claim_root: ClaimRoot
) -> Path:
    """Writes the artifact to `target`, checked against the record; returns `target`. Raises
    StoreError (ArtifactMismatch when the bytes differ); `target` is then left untouched."""
    try:
        location = parse(record.path)
    except BadLocation as e:
        raise StoreError(str(e)) from None
    if location is None:
        raise StoreError(
            f"artifact {record.name} was recorded as a bare name ({record.path}): "
            "no artifact store was configured when the run ran, so it lived only "
            "in its Job's emptyDir"
        )
    store = store_for(location, namespace, settings, claim_root)
    target = target.resolve()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        store.download(location, tmp)
        got, size = sha256_file(tmp), tmp.stat().st_size
        if got != record.sha256 or size != record.size:
            raise ArtifactMismatch(
                f"{location.url()} does not match its record: sha256 {got} ({size} bytes), "
                f"recorded {record.sha256} ({record.size} bytes); nothing written"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
