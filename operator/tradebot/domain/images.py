"""Which container images the operator runs: pure checks of image references against the
operator-wide allowlist (settings `images_allowed`, the chart's `images.allowed`).

Every pod the operator creates runs one of these images with something worth protecting: a
runner's results become promotion evidence, a bot's container gets the exchange keys. So the
image is the operator's choice, not the spec's: a spec may pick among the allowed
repositories only, and a bot that trades (testnet, live) runs an image pinned by digest, so
that what was tested is byte for byte what trades.

References are parsed as the container runtimes read them (the distribution reference
grammar): `[registry[:port]/]path[:tag][@digest]`; the first component is a registry only
when it has a `.` or a `:` or is `localhost`; Docker Hub's short forms are normalised
(`nginx` is `docker.io/library/nginx`); no tag and no digest means `:latest`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_REGISTRY = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::\d+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
REASON = "ImageNotAllowed"
PINNED_MODES = frozenset({"testnet", "live"})


class Settings(Protocol):
    """The operator settings the image choice reads (tradebot.settings.Settings; not imported:
    the settings check their allowlist with this module at start)."""

    @property
    def images_allowed(self) -> tuple[str, ...]: ...
    @property
    def runner_image(self) -> str: ...
    @property
    def runner_image_rocm(self) -> str: ...
    @property
    def bot_image(self) -> str: ...


@dataclass(frozen=True)
class ImageRef:
    registry: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """The repository, normalised: `docker.io/library/nginx` for `nginx`."""
        return f"{self.registry}/{self.path}"

    @property
    def pinned(self) -> bool:
        """Pinned by a sha256 digest: the bytes cannot change under the same name."""
        return self.digest is not None and _SHA256.match(self.digest) is not None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.repository}{tag}{digest}"


def parse_image(ref: str) -> ImageRef:
    """The reference's parts; ValueError for what no runtime would pull."""
    if not ref or ref != ref.strip() or any(c.isspace() for c in ref):
        raise ValueError(f"image {ref!r} is not an image reference")
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.match(digest):
        raise ValueError(f"image {ref!r}: {digest!r} is not a digest (algorithm:hex)")
    # The tag is after the last `:` that follows the last `/` (a registry's port comes first).
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag: str | None = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            raise ValueError(f"image {ref!r}: {tag!r} is not a tag")
    parts = name.split("/")
    registry = DOCKER_HUB
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts[0]
        parts = parts[1:]
        if not _REGISTRY.match(registry):
            raise ValueError(f"image {ref!r}: {registry!r} is not a registry")
        registry = registry.lower()
    if not parts or not all(_COMPONENT.match(p) for p in parts):
        raise ValueError(
            f"image {ref!r}: the repository must be lowercase path components "
            "(letters, digits, . _ -)"
        )
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if len(parts) == 1:
            parts = ["library", *parts]
    if tag is None and not at:
        tag = "latest"
    return ImageRef(registry, "/".join(parts), tag, digest if at else None)


def repository_pattern(entry: str) -> str:
    """An allowlist entry, normalised: a repository (`ghcr.io/org/runner`), or every repository
    under a path (`ghcr.io/org/*`). ValueError for a tag or digest: the list names
    repositories, and a pinned bot names its digest itself."""
    prefix = entry.endswith("/*")
    ref = parse_image(entry[:-2] if prefix else entry)
    if "@" in entry or ":" in entry.rsplit("/", 1)[-1]:
        raise ValueError(
            f"images.allowed entry {entry!r}: name a repository (or a path ending in /*), "
            "without tag or digest"
        )
    return f"{ref.repository}/*" if prefix else ref.repository


def _matches(repository: str, pattern: str) -> bool:
    if pattern.endswith("/*"):
        return repository.startswith(pattern[:-1])
    return repository == pattern


def image_allowed(image: str, allowed: Sequence[str]) -> str | None:
    """Why `image` may not run (the message for status and the Event), or None when its
    repository is on the allowlist (entries as `repository_pattern` normalises them)."""
    try:
        ref = parse_image(image)
    except ValueError as e:
        return str(e)
    if any(_matches(ref.repository, p) for p in allowed):
        return None
    return (
        f"image {image} is not allowed by this operator: its repository {ref.repository} is "
        f"not among the allowed ({', '.join(allowed) or 'none'}; the chart's images.allowed)"
    )


def image_problem(image: str, allowed: Sequence[str], mode: str | None = None) -> str | None:
    """`image_allowed`, and for a bot that trades (`mode` testnet or live) a digest pin."""
    problem = image_allowed(image, allowed)
    if problem is not None or mode not in PINNED_MODES:
        return problem
    if not parse_image(image).pinned:
        return (
            f"image {image} is not pinned by digest: mode {mode} runs only an image named "
            "as repository@sha256:<64 hex> (set spec.image, or the operator's bot image, so)"
        )
    return None


def default_allowed(images: Iterable[str]) -> tuple[str, ...]:
    """The repositories of the operator's own images: the allowlist when none is set."""
    seen: dict[str, None] = {}
    for image in images:
        seen[parse_image(image).repository] = None
    return tuple(seen)


def allowed(settings: Settings) -> tuple[str, ...]:
    """The allowlist in force: the setting's entries, else the operator's own images."""
    return _allowed(
        settings.images_allowed,
        (settings.runner_image, settings.runner_image_rocm, settings.bot_image),
    )


@functools.lru_cache(maxsize=8)
def _allowed(entries: tuple[str, ...], own: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: every round of every queued Backtest asks, and the settings rarely change.
    if entries:
        return tuple(repository_pattern(e) for e in entries)
    return default_allowed(own)


def runner_image(image: str | None, amd_gpu: bool, settings: Settings) -> str:
    """The image a run (Backtest, Hyperopt worker, download) runs: its override, else the
    operator's runner for its GPU vendor."""
    return image or (settings.runner_image_rocm if amd_gpu else settings.runner_image)


def bot_image(image: str | None, amd_gpu: bool, settings: Settings) -> str:
    """The image a LiveBot's pod runs: its override, else the operator's bot image (the ROCm
    runner for FreqAI on AMD GPUs)."""
    return image or (settings.runner_image_rocm if amd_gpu else settings.bot_image)
