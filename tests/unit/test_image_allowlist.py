"""The operator's image allowlist: references parsed as runtimes read them, matched by
repository, digests required where bots trade, and the LiveBot round's order (the image before
the promotion gates)."""

from __future__ import annotations

import string
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from tests.unit.test_livebot_round import observe, spec

from tradebot.domain import images
from tradebot.domain.images import image_allowed, image_problem, parse_image, repository_pattern
from tradebot.domain.livebot_round import Hold, Observe, decide
from tradebot.settings import Settings

DIGEST = "sha256:" + "ab" * 32
RUNNER = "ghcr.io/tradebot-operator/runner"


@pytest.mark.parametrize(
    ("ref", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx", "latest", None),
        ("nginx:1.27", "docker.io/library/nginx", "1.27", None),
        ("freqtradeorg/freqtrade:2026.9", "docker.io/freqtradeorg/freqtrade", "2026.9", None),
        ("index.docker.io/library/nginx", "docker.io/library/nginx", "latest", None),
        ("localhost/x", "localhost/x", "latest", None),
        ("localhost:5000/team/x:v1", "localhost:5000/team/x", "v1", None),
        ("registry.example:5000/x", "registry.example:5000/x", "latest", None),
        (f"{RUNNER}@{DIGEST}", RUNNER, None, DIGEST),
        (f"{RUNNER}:0.1.0@{DIGEST}", RUNNER, "0.1.0", DIGEST),
        ("Registry.Example/a/b", "registry.example/a/b", "latest", None),
    ],
)
def test_references_parse_as_runtimes_read_them(
    ref: str, repository: str, tag: str | None, digest: str | None
):
    parsed = parse_image(ref)
    assert (parsed.repository, parsed.tag, parsed.digest) == (repository, tag, digest)


@pytest.mark.parametrize(
    "ref",
    ["", " nginx", "Nginx", "a//b", "x:bad tag", "x@sha256:short", "x@notadigest", "x:"],
)
def test_what_no_runtime_would_pull_is_refused(ref: str):
    with pytest.raises(ValueError, match="image"):
        parse_image(ref)
    # ... and is never allowed, whatever the list.
    assert image_allowed(ref, ["docker.io/library/nginx", "docker.io/*"]) is not None


def test_the_allowlist_matches_repositories_not_prefixes_of_names():
    allowed = [RUNNER]
    assert image_allowed(f"{RUNNER}:0.2.0", allowed) is None
    assert image_allowed(f"{RUNNER}@{DIGEST}", allowed) is None
    # A longer name with the same start is another repository.
    assert image_allowed(f"{RUNNER}-evil:1", allowed) is not None
    assert image_allowed("ghcr.io/tradebot-operator/runner/sub:1", allowed) is not None
    # The same path on another registry is another image.
    assert image_allowed("evil.example/tradebot-operator/runner:1", allowed) is not None


def test_a_path_entry_takes_every_repository_under_it():
    allowed = [repository_pattern("ghcr.io/tradebot-operator/*")]
    assert image_allowed(f"{RUNNER}:1", allowed) is None
    assert image_allowed("ghcr.io/tradebot-operator-evil/runner:1", allowed) is not None


def test_the_refusal_names_the_image_and_the_list():
    message = image_allowed("evil.example/miner:1", [RUNNER, "docker.io/freqtradeorg/freqtrade"])
    assert message is not None
    assert "evil.example/miner:1" in message
    assert f"{RUNNER}, docker.io/freqtradeorg/freqtrade" in message


def test_docker_hub_short_forms_match_their_long_form():
    allowed = [repository_pattern("freqtradeorg/freqtrade")]
    assert allowed == ["docker.io/freqtradeorg/freqtrade"]
    assert image_allowed("docker.io/freqtradeorg/freqtrade:2026.9", allowed) is None
    assert image_allowed("index.docker.io/freqtradeorg/freqtrade:x", allowed) is None


@pytest.mark.parametrize("entry", ["nginx:1.27", f"{RUNNER}@{DIGEST}", "UPPER/case"])
def test_an_entry_names_a_repository_only(entry: str):
    with pytest.raises(ValueError, match=r"image|repository"):
        repository_pattern(entry)


def test_trading_modes_need_a_digest_and_dry_run_does_not():
    allowed = [RUNNER]
    tagged = f"{RUNNER}:0.1.0"
    assert image_problem(tagged, allowed, "dryRun") is None
    for mode in ("testnet", "live"):
        problem = image_problem(tagged, allowed, mode)
        assert problem is not None
        assert "pinned by digest" in problem
        assert image_problem(f"{RUNNER}@{DIGEST}", allowed, mode) is None
    # A digest does not make a foreign image trusted.
    assert image_problem(f"evil.example/x@{DIGEST}", allowed, "live") is not None


def test_the_default_allowlist_is_the_operators_own_images():
    s = Settings()
    assert images.allowed(s) == (
        "ghcr.io/tradebot-operator/runner",
        "ghcr.io/tradebot-operator/runner-rocm",
        "docker.io/freqtradeorg/freqtrade",
    )
    assert image_allowed(s.runner_image, images.allowed(s)) is None
    assert image_allowed(s.bot_image, images.allowed(s)) is None
    assert image_allowed("evil.example/x:1", images.allowed(s)) is not None


def test_the_setting_is_a_comma_list_and_checked_at_start():
    s = Settings.from_env({"TRADEBOT_IMAGES_ALLOWED": "ghcr.io/me/runner, ghcr.io/team/*"})
    assert images.allowed(s) == ("ghcr.io/me/runner", "ghcr.io/team/*")
    # Then the operator's own images are only allowed if listed.
    assert image_allowed(s.runner_image, images.allowed(s)) is not None
    with pytest.raises(ValidationError, match=r"images\.allowed"):
        Settings.from_env({"TRADEBOT_IMAGES_ALLOWED": "ghcr.io/me/runner:1.0"})


_lower = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)


@given(
    registry=st.sampled_from(["", "ghcr.io/", "localhost:5000/", "r.example:443/"]),
    path=st.lists(_lower, min_size=1, max_size=3),
    tag=st.one_of(st.none(), _lower),
    digest=st.one_of(st.none(), st.binary(min_size=32, max_size=32).map(bytes.hex)),
)
def test_a_reference_round_trips_and_its_repository_is_what_is_matched(
    registry: str, path: list[str], tag: str | None, digest: str | None
):
    ref = (
        registry
        + "/".join(path)
        + (f":{tag}" if tag else "")
        + (f"@sha256:{digest}" if digest else "")
    )
    parsed = parse_image(ref)
    assert parse_image(str(parsed)) == parsed
    assert parsed.pinned == (digest is not None)
    assert image_allowed(ref, [parsed.repository]) is None
    assert image_allowed(ref, [parsed.repository + "x"]) is not None


# --- the LiveBot round ----------------------------------------------------------------------


def test_a_foreign_image_blocks_the_bot_before_strategy_credentials_and_gates():
    foreign = replace(
        observe(spec("testnet")), image=f"evil.example/bot@{DIGEST}", allowed_images=(RUNNER,)
    )
    decision = decide(foreign).decision
    assert isinstance(decision, Hold)
    assert (decision.phase, decision.reason) == ("Blocked", "ImageNotAllowed")
    assert "evil.example/bot" in decision.message
    # Even with no Strategy: the image is judged first.
    assert isinstance(decide(replace(foreign, strategy=None)).decision, Hold)
    assert decide(replace(foreign, strategy=None)).decision.reason == "ImageNotAllowed"  # type: ignore[union-attr]
    # Positive control: the allowed, pinned image goes on to the credentials stage.
    ok = replace(foreign, image=f"{RUNNER}@{DIGEST}")
    assert decide(ok).decision == Observe("credentials")


def test_a_tag_alone_blocks_a_testnet_bot_and_not_a_dry_run_one():
    tagged = replace(observe(spec("testnet")), image=f"{RUNNER}:0.1.0", allowed_images=(RUNNER,))
    decision = decide(tagged).decision
    assert isinstance(decision, Hold)
    assert decision.reason == "ImageNotAllowed"
    assert "pinned by digest" in decision.message
    dry = replace(observe(spec("dryRun")), image=f"{RUNNER}:0.1.0", allowed_images=(RUNNER,))
    assert not isinstance(decide(dry).decision, Hold)


def test_a_new_image_is_judged_again_before_its_pod_replaces_the_running_one():
    """The operator's default image changing (no new generation) voids the kept decision."""
    from tests.unit.test_livebot_round import complete

    pinned = f"{RUNNER}@{DIGEST}"
    # The Backtest of tests/unit/test_livebot_round ran image runner:1: allowed here too.
    allowed = (RUNNER, "docker.io/library/runner")
    o = replace(complete(observe(spec("testnet"))), image=pinned, allowed_images=allowed)
    kept = decide(o).status["gateDecision"]
    assert kept["image"] == pinned
    same = replace(o, status={"gateDecision": kept}, observed=frozenset({"credentials"}))
    assert decide(same).decision == Observe("config")  # kept: no evidence asked for
    other = replace(same, image=f"{RUNNER}@sha256:{'cd' * 32}")
    assert decide(other).decision == Observe("evidence")  # judged again first
