"""The images' Dockerfiles, checked statically (no container engine here) with hadolint-style
rules: pinned bases, a non-root USER last, no `latest`, no ADD of URLs, apt and pip without
caches, HEALTHCHECK or a reason, and COPY only of files that exist and are needed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
# An exact version tag: digits and dots (a bare `3.11` or `bookworm` floats).
EXACT_TAG = re.compile(r":[^:@]*\d+\.\d+\.\d+[^:@]*$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
}


def _instructions(path: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    return [(i["instruction"], i["value"]) for i in parser.structure]


def test_the_three_images_exist():
    assert {p.parent.name for p in DOCKERFILES} == {"operator", "runner", "runner-rocm"}


def problems(text: str, context: Path = ROOT) -> list[str]:
    """hadolint-style findings for one Dockerfile's text (empty: clean)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    found: list[str] = []
    stages: set[str] = set()
    # ARGs before the first FROM may name the base (`FROM ${BASE}`): judged by their default.
    base_args: dict[str, str] = {}
    for ins, value in instructions:
        if ins == "ARG" and not stages and "=" in value:
            name, _, default = value.partition("=")
            base_args[name.strip()] = default.strip().strip('"')
        if ins == "FROM":
            parts = value.split()
            image = re.sub(
                r"\$\{?(\w+)\}?", lambda m: base_args.get(m.group(1), m.group(0)), parts[0]
            )
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
            if image in stages:
                continue
            if image.endswith(":latest") or ":" not in image.split("/")[-1]:
                found.append(f"FROM {image}: untagged or latest")
            elif not (EXACT_TAG.search(image.split("@")[0]) or DIGEST.search(image)):
                found.append(f"FROM {image}: not pinned to an exact version or digest")
        if ins == "ADD" and re.search(r"https?://", value):
            found.append(f"ADD {value}: fetches a URL (use RUN with a checksum, or COPY)")
        if ins == "RUN":
            if re.search(r"apt-get install", value):
                if "--no-install-recommends" not in value:
                    found.append("apt-get install without --no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in value:
                    found.append("apt-get install without removing /var/lib/apt/lists")
            if re.search(r"\bpip3? install", value) and "--no-cache-dir" not in value:
                found.append("pip install without --no-cache-dir")
            if re.search(r"\b(curl|wget)\b.*\|\s*(ba)?sh", value):
                found.append("pipes a download into a shell")
        if ins == "COPY" and "--from=" not in value:
            args = [a for a in value.split() if not a.startswith("--")]
            for src in args[:-1]:
                if src in (".", "./") or src.startswith(("*", "./*")):
                    found.append(f"COPY {src}: copies the whole context")
                elif not (context / src).exists():
                    found.append(f"COPY {src}: no such file in the build context")
    users = [v for i, v in instructions if i == "USER"]
    if not users:
        found.append("no USER: runs as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        found.append("the last USER is root")
    last_user = max(n for n, (i, _) in enumerate(instructions) if i == "USER") if users else -1
    if any(i == "RUN" for i, _ in instructions[last_user + 1 :]):
        found.append("RUN after the last USER")
    if not any(i == "HEALTHCHECK" for i, _ in instructions) and not re.search(
        r"#\s*No HEALTHCHECK:", text
    ):
        found.append("no HEALTHCHECK and no comment saying why")
    labels = set(parser.labels)
    if missing := OCI_LABELS - labels:
        found.append(f"missing OCI labels: {sorted(missing)}")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_follows_the_rules(dockerfile: Path):
    assert problems(dockerfile.read_text()) == []


@pytest.mark.parametrize("name", ["operator", "runner"])
def test_the_base_argument_defaults_to_the_pinned_stage(name: str):
    # `make images` passes BASE only where the pinned base cannot be pulled; by default the
    # images build on the FROM line dependabot bumps.
    instructions = [
        (i, v) for i, v in _instructions(ROOT / "images" / name / "Dockerfile") if i != "COMMENT"
    ]
    assert instructions[0] == ("ARG", "BASE=pinned")
    froms = [v for i, v in instructions if i == "FROM"]
    assert froms[0] == "python:3.11.11-slim-bookworm AS pinned"
    assert froms[1:] == ["${BASE} AS build", "${BASE}"]


def test_an_unpinned_base_argument_is_caught():
    text = (
        "ARG BASE=python:3.11-slim\nFROM ${BASE}\nUSER 1000\n# No HEALTHCHECK: x\n"
        "LABEL " + " ".join(f'{k}="x"' for k in sorted(OCI_LABELS)) + "\n"
    )
    assert problems(text) == ["FROM python:3.11-slim: not pinned to an exact version or digest"]


def test_the_operator_image_holds_the_package_only():
    text = (ROOT / "images" / "operator" / "Dockerfile").read_text()
    copied = [
        v for i, v in _instructions(ROOT / "images" / "operator" / "Dockerfile") if i == "COPY"
    ]
    assert not any("user_data" in c for c in copied)
    assert "[runner]" not in text  # Freqtrade stays out of the operator


def test_the_test_tools_stay_out_of_the_shipped_images():
    """The exchange double (testing/) is never in the operator image, and in the runner image
    only when the kind e2e asks for it with a build argument."""
    operator = _instructions(ROOT / "images" / "operator" / "Dockerfile")
    assert not any("testing" in v for i, v in operator if i in ("COPY", "RUN"))
    runner = _instructions(ROOT / "images" / "runner" / "Dockerfile")
    installs = [v for i, v in runner if i == "RUN" and "./testing" in v]
    assert installs
    assert all('if [ "$WITH_TESTING" = true ]' in v for v in installs)
    assert ("ARG", "WITH_TESTING=false") in runner
    assert not (ROOT / "operator" / "tradebot" / "freqtrade" / "exchange_double.py").exists()


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("**")] == "**"  # everything out, then only what images need
    allowed = {line.lstrip("!").rstrip("/") for line in lines if line.startswith("!")}
    for dockerfile in DOCKERFILES:
        for ins, value in _instructions(dockerfile):
            if ins == "COPY" and "--from=" not in value:
                for src in value.split()[:-1]:
                    assert src.rstrip("/") in allowed, (dockerfile, src)


BAD = [
    ("FROM python:latest\nUSER 1000\n# No HEALTHCHECK: x\n", "latest"),
    ("FROM python\nUSER 1000\n# No HEALTHCHECK: x\n", "untagged"),
    ("FROM python:3.11-slim\nUSER 1000\n# No HEALTHCHECK: x\n", "exact version"),
    ("FROM python:3.11.1\nADD https://x.example/a.tgz /a\nUSER 1000\n", "fetches a URL"),
    (
        "FROM python:3.11.1\nRUN apt-get update && apt-get install -y git\nUSER 1000\n",
        "--no-install-recommends",
    ),
    (
        "FROM python:3.11.1\nRUN apt-get install -y --no-install-recommends git\nUSER 1000\n",
        "/var/lib/apt/lists",
    ),
    ("FROM python:3.11.1\nRUN pip install freqtrade\nUSER 1000\n", "--no-cache-dir"),
    ("FROM python:3.11.1\nUSER 1000\nUSER root\n", "last USER is root"),
    ("FROM python:3.11.1\n", "no USER"),
    ("FROM python:3.11.1\nUSER 1000\n", "no HEALTHCHECK"),
    ("FROM python:3.11.1\nCOPY . /src\nUSER 1000\n", "whole context"),
    ("FROM python:3.11.1\nCOPY nothing-here /src\nUSER 1000\n", "no such file"),
    ("FROM python:3.11.1\nUSER 1000\nRUN make\n", "RUN after the last USER"),
]


@pytest.mark.parametrize(("text", "finding"), BAD, ids=[f for _, f in BAD])
def test_each_rule_catches_its_mistake(text: str, finding: str):
    assert any(finding in p for p in problems(text)), problems(text)
