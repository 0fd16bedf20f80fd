"""Where an artifact is, as the records keep it: `pvc://<claim>/<runId>/<name>` or
`s3://<bucket>/<prefix><runId>/<name>`; a bare name for a file that only ever lived in its Job's
emptyDir. Pure: building and reading these strings, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from tradebot.settings import Settings

Scheme = Literal["pvc", "s3"]


class BadLocation(ValueError):
    """A recorded path or a name that cannot be an artifact's place."""


def check_part(what: str, value: str) -> str:
    """A run id or a file name: one path segment, so a key can never climb out of its run."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise BadLocation(f"{what} {value!r} is not a single path segment")
    return value


def run_key(prefix: str, run_id: str, name: str) -> str:
    """The artifact's key below the store's root."""
    return f"{prefix}{check_part('run id', run_id)}/{check_part('artifact name', name)}"


@dataclass(frozen=True)
class Location:
    scheme: Scheme
    container: str  # the claim or the bucket
    key: str  # below the claim's root or in the bucket

    def url(self) -> str:
        return f"{self.scheme}://{self.container}/{quote(self.key, safe='/')}"


def parse(path: str) -> Location | None:
    """The location a recorded path names; None for a bare name (no store was configured)."""
    if "://" not in path:
        return None
    parts = urlsplit(path)
    if parts.scheme not in ("pvc", "s3"):
        raise BadLocation(
            f"{path!r}: unknown artifact store scheme {parts.scheme!r} (pvc:// or s3://)"
        )
    key = unquote(parts.path.lstrip("/"))
    if not parts.netloc or not key or any(p in ("", ".", "..") for p in key.split("/")):
        raise BadLocation(f"{path!r} names no artifact (want {parts.scheme}://CONTAINER/KEY)")
    scheme: Scheme = "pvc" if parts.scheme == "pvc" else "s3"
    return Location(scheme, parts.netloc, key)


def store_kind(settings: Settings) -> Scheme | None:
    """The configured store: "pvc", "s3", or None (artifacts die with the Job). Raises
    BadLocation for a store chosen without its place."""
    chosen = settings.artifacts_store
    if chosen == "pvc" or (chosen == "auto" and settings.artifacts_pvc):
        if not settings.artifacts_pvc:
            raise BadLocation("artifacts_store is pvc but TRADEBOT_ARTIFACTS_PVC is not set")
        return "pvc"
    if chosen == "s3" or (chosen == "auto" and settings.artifacts_s3_bucket):
        if not settings.artifacts_s3_bucket:
            raise BadLocation("artifacts_store is s3 but TRADEBOT_ARTIFACTS_S3_BUCKET is not set")
        return "s3"
    return None
