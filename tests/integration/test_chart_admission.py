"""The chart's ValidatingAdmissionPolicy on the real API server: only a configured group may
put a LiveBot on live or touch its approval; other people's edits and the operator's status
writes still go through. Users are impersonated with `kubectl --as/--as-group`."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.support.cluster import temporary_namespace
from tests.support.helm import CHART, Helm
from tests.support.manifests import example
from tests.support.wait import wait_for

MODE_DENIED = "only members of traders may set mode: live on a LiveBot"
APPROVAL_DENIED = "only members of traders may set or change spec.promotion.approval"
MALLORY = ("--as=mallory", "--as-group=devs")
ALICE = ("--as=alice", "--as-group=traders")


@pytest.fixture
def release_ns(api_client: Any) -> Iterator[str]:
    with temporary_namespace(api_client, "tb-sys-") as name:
        yield name


@pytest.fixture
def release(
    tools_bin: Path,
    cluster: Any,
    tmp_path: Path,
    crds_installed: None,
    release_ns: str,
    namespace: str,
) -> Iterator[str]:
    """The chart installed with the policy on, watching `namespace`; uninstalled after (the
    policy and its binding are cluster-scoped)."""
    helm = Helm(tools_bin / "helm", cluster.kubeconfig, tmp_path)
    name = f"tb-{uuid.uuid4().hex[:6]}"
    values = tmp_path / "values.yaml"
    values.write_text(
        json.dumps(
            {
                "watchNamespaces": [namespace],
                "admission": {"restrictPromotion": {"enabled": True, "allowedGroups": ["traders"]}},
            }
        )
    )
    helm("install", name, str(CHART), "--namespace", release_ns, "-f", str(values))
    try:
        yield name
    finally:
        helm("uninstall", name, "-n", release_ns, check=False)


@pytest.fixture
def editors(kubectl: Any, namespace: str) -> None:
    """Both people may create and edit LiveBots in `namespace` (RBAC says yes to both: only
    the policy tells them apart)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "livebot-editor"},
        "rules": [
            {
                "apiGroups": ["tradebot.dev"],
                "resources": ["livebots"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "livebot-editors"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "livebot-editor",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
            for g in ("devs", "traders")
        ],
    }
    for doc in (role, binding):
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _bot(name: str, mode: str = "live", approval: bool = True) -> dict[str, Any]:
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": name}
    spec = bot["spec"]
    spec["mode"] = mode
    if mode != "dryRun":
        spec["exchange"]["credentialsSecretRef"] = {"name": "binance-live-keys"}
    if approval:
        spec["promotion"]["approval"] = {
            "approvedBy": "bob",
            "approvedAt": "2026-11-08T09:30:00Z",
            "reference": "https://git.example/org/bots/pull/57",
            "codeHash": "a" * 64,
        }
    return bot


def _as(
    kubectl: Any,
    who: tuple[str, ...],
    namespace: str,
    *args: str,
    doc: dict[str, Any] | None = None,
) -> Any:
    return kubectl(
        *who,
        "-n",
        namespace,
        *args,
        check=False,
        stdin=json.dumps(doc) if doc is not None else None,
    )


def _live_denied_to_mallory(kubectl: Any, namespace: str) -> bool:
    # A server-side dry run goes through admission and stores nothing.
    result = _as(
        kubectl, MALLORY, namespace, "create", "--dry-run=server", "-f", "-", doc=_bot("probe")
    )
    return MODE_DENIED in result.stderr


def _livebots(namespace: str) -> tuple[str, str, str, str]:
    return ("tradebot.dev", "v1alpha1", namespace, "livebots")


@contextmanager
def _impersonating(api_client: Any, user: str) -> Iterator[Any]:
    with client.ApiClient(api_client.configuration) as api:
        api.set_default_header("Impersonate-User", user)
        yield client.CustomObjectsApi(api)


def _spec(api_client: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "tradebot.dev", "v1alpha1", namespace, "livebots", name
    )
    return dict(obj["spec"])


@pytest.mark.usefixtures("editors")
def test_only_the_configured_group_puts_a_bot_on_live_or_touches_its_approval(
    release: str, release_ns: str, namespace: str, kubectl: Any, api_client: Any
):
    # The policy is enforced once the API server has loaded it and its binding.
    wait_for(
        lambda: _live_denied_to_mallory(kubectl, namespace),
        30,
        what="the promotion policy denying mallory",
    )

    denied = _as(kubectl, MALLORY, namespace, "apply", "-f", "-", doc=_bot("m-live"))
    assert denied.returncode != 0
    assert MODE_DENIED in denied.stderr, denied.stderr
    assert f"{release}-tradebot-operator-restrict-promotion" in denied.stderr

    allowed = _as(kubectl, ALICE, namespace, "apply", "-f", "-", doc=_bot("a-live"))
    assert allowed.returncode == 0, allowed.stderr
    assert _spec(api_client, namespace, "a-live")["mode"] == "live"

    # Mallory may edit a live bot's other fields ...
    edited = _bot("a-live")
    edited["spec"]["pairs"] = ["BTC/USDT"]
    pairs = _as(kubectl, MALLORY, namespace, "apply", "-f", "-", doc=edited)
    assert pairs.returncode == 0, pairs.stderr
    assert _spec(api_client, namespace, "a-live")["pairs"] == ["BTC/USDT"]

    # ... but not its approval: changing it, nor removing it (the bot goes dry-run for that).
    for patch in (
        {"spec": {"promotion": {"approval": {"approvedBy": "mallory"}}}},
        {"spec": {"mode": "dryRun", "promotion": {"approval": None}}},
    ):
        result = _as(
            kubectl,
            MALLORY,
            namespace,
            "patch",
            "livebot",
            "a-live",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        assert result.returncode != 0, patch
        assert APPROVAL_DENIED in result.stderr, result.stderr
    assert _spec(api_client, namespace, "a-live")["promotion"]["approval"]["approvedBy"] == "bob"
    changed = _as(
        kubectl,
        ALICE,
        namespace,
        "patch",
        "livebot",
        "a-live",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"promotion": {"approval": {"approvedBy": "carol"}}}}),
    )
    assert changed.returncode == 0, changed.stderr
    assert _spec(api_client, namespace, "a-live")["promotion"]["approval"]["approvedBy"] == "carol"

    # A dry-run bot is anyone's, unless it carries an approval (a pre-approved bot someone
    # else would only have to switch to live).
    dry = _as(
        kubectl,
        MALLORY,
        namespace,
        "apply",
        "-f",
        "-",
        doc=_bot("m-dry", mode="dryRun", approval=False),
    )
    assert dry.returncode == 0, dry.stderr
    pre_approved = _as(
        kubectl, MALLORY, namespace, "apply", "-f", "-", doc=_bot("m-dry-approved", mode="dryRun")
    )
    assert pre_approved.returncode != 0
    assert APPROVAL_DENIED in pre_approved.stderr, pre_approved.stderr
    # testnet is not live: the policy leaves it to the gates.
    testnet = _as(
        kubectl,
        MALLORY,
        namespace,
        "apply",
        "-f",
        "-",
        doc=_bot("m-testnet", mode="testnet", approval=False),
    )
    assert testnet.returncode == 0, testnet.stderr


@pytest.mark.usefixtures("editors")
def test_the_operator_still_writes_status_and_finalizers_of_a_live_bot(
    release: str, release_ns: str, namespace: str, kubectl: Any, api_client: Any
):
    wait_for(
        lambda: _live_denied_to_mallory(kubectl, namespace),
        30,
        what="the promotion policy denying mallory",
    )
    created = _as(kubectl, ALICE, namespace, "apply", "-f", "-", doc=_bot("a-live"))
    assert created.returncode == 0, created.stderr
    # The operator's own identity, from the chart's ServiceAccount (not in traders), calling
    # the API as the operator does (kubectl would first GET livebots/status, which it may not).
    sa = f"system:serviceaccount:{release_ns}:{release}-tradebot-operator"
    bots = _livebots(namespace)
    with _impersonating(api_client, sa) as operator:
        try:
            operator.patch_namespaced_custom_object_status(
                *bots, "a-live", {"status": {"phase": "Blocked"}}
            )
            operator.patch_namespaced_custom_object(
                *bots, "a-live", {"metadata": {"finalizers": ["tradebot.dev/pod"]}}
            )
            obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(*bots, "a-live")
            assert obj["status"]["phase"] == "Blocked"
            assert obj["metadata"]["finalizers"] == ["tradebot.dev/pod"]
            # The same identity may not touch the approval: the policy names no exception.
            with pytest.raises(ApiException) as sneaky:
                operator.patch_namespaced_custom_object(
                    *bots, "a-live", {"spec": {"promotion": {"approval": {"approvedBy": "op"}}}}
                )
            assert APPROVAL_DENIED in str(sneaky.value.body)
        finally:
            # Nothing runs here to remove the finalizer; the namespace must be able to go.
            kubectl(
                "patch",
                "livebot",
                "a-live",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                json.dumps({"metadata": {"finalizers": None}}),
            )


DIGEST_MISSING = "a live LiveBot needs spec.promotion.approval.digest"
DIGEST_STALE = "this change to a live LiveBot needs a new approval"


@pytest.fixture
def live_release(
    tools_bin: Path,
    cluster: Any,
    tmp_path: Path,
    crds_installed: None,
    release_ns: str,
    namespace: str,
) -> Iterator[str]:
    """The chart installed allowing live (durable records on a claim): the approval digest
    policy ships with it, with no switch of its own."""
    helm = Helm(tools_bin / "helm", cluster.kubeconfig, tmp_path)
    name = f"tb-{uuid.uuid4().hex[:6]}"
    values = tmp_path / "values.yaml"
    values.write_text(
        json.dumps(
            {
                "watchNamespaces": [namespace],
                "allowedModes": ["dryRun", "testnet", "live"],
                "state": {"existingClaim": "operator-state"},
            }
        )
    )
    helm("install", name, str(CHART), "--namespace", release_ns, "-f", str(values))
    try:
        yield name
    finally:
        helm("uninstall", name, "-n", release_ns, check=False)


def _digested(name: str, digest: str | None, mode: str = "live") -> dict[str, Any]:
    bot = _bot(name, mode=mode)
    if digest is not None:
        bot["spec"]["promotion"]["approval"]["digest"] = digest
    return bot


def _patch(kubectl: Any, namespace: str, name: str, patch: dict[str, Any]) -> Any:
    return kubectl(
        "patch",
        "livebot",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(patch),
        check=False,
    )


def test_a_live_change_needs_a_new_approval_digest(
    live_release: str, release_ns: str, namespace: str, kubectl: Any, api_client: Any
):
    d1, d2, d3 = "1" * 64, "2" * 64, "3" * 64

    def refused_without_digest() -> bool:
        probe = kubectl(
            "create",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            check=False,
            stdin=json.dumps(_digested("probe", None)),
        )
        return DIGEST_MISSING in probe.stderr

    wait_for(refused_without_digest, 30, what="the approval digest policy in force")
    missing = kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, stdin=json.dumps(_digested("x", None))
    )
    assert missing.returncode != 0
    assert f"{live_release}-tradebot-operator-live-approval" in missing.stderr

    created = kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, stdin=json.dumps(_digested("bot", d1))
    )
    assert created.returncode == 0, created.stderr

    # A bound field changed under the old digest: refused, and nothing is stored.
    for change in (
        {"spec": {"pairs": ["BTC/USDT", "ETH/USDT", "SOL/USDT"]}},
        {"spec": {"image": "evil/freqtrade@sha256:" + "e" * 64}},
        {"spec": {"exchange": {"credentialsSecretRef": {"name": "other-keys"}}}},
        {"spec": {"dryRunWallet": "5000"}},
    ):
        refused = _patch(kubectl, namespace, "bot", change)
        assert refused.returncode != 0, change
        assert DIGEST_STALE in refused.stderr, refused.stderr
    assert _spec(api_client, namespace, "bot")["pairs"] == ["BTC/USDT", "ETH/USDT"]

    # Positive control: the same change with a renewed digest goes through ...
    renewed = _patch(
        kubectl,
        namespace,
        "bot",
        {
            "spec": {
                "pairs": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
                "promotion": {"approval": {"digest": d2}},
            }
        },
    )
    assert renewed.returncode == 0, renewed.stderr
    assert _spec(api_client, namespace, "bot")["pairs"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    # ... as do safer fields, the same pairs in another order, and a pause, under the same
    # digest (the operator checks that they only tighten).
    for change in (
        {"spec": {"stakeAmount": "20", "maxOpenTrades": 1}},
        {"spec": {"limits": {"maxStakePerTrade": "50", "maxDrawdown": 0.1}}},
        {"spec": {"supervision": {"deadline": "5m"}}},
        {"spec": {"pairs": ["SOL/USDT", "BTC/USDT", "ETH/USDT"]}},
        {"spec": {"suspend": True}},
    ):
        kept = _patch(kubectl, namespace, "bot", change)
        assert kept.returncode == 0, (change, kept.stderr)

    # A testnet bot's approval does not carry over to live.
    testnet = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        stdin=json.dumps(_digested("tn", d3, mode="testnet")),
    )
    assert testnet.returncode == 0, testnet.stderr
    switched = _patch(kubectl, namespace, "tn", {"spec": {"mode": "live"}})
    assert switched.returncode != 0
    assert DIGEST_STALE in switched.stderr, switched.stderr
    # Other modes are the gates' business: a testnet bot changes freely.
    free = _patch(kubectl, namespace, "tn", {"spec": {"pairs": ["BTC/USDT"]}})
    assert free.returncode == 0, free.stderr

    # The operator's status writes never reach the policy.
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        *_livebots(namespace), "bot", {"status": {"phase": "Blocked"}}
    )


def test_a_live_bot_from_before_digests_can_still_be_labelled_and_stopped(
    request: pytest.FixtureRequest, namespace: str, kubectl: Any, crds_installed: None
):
    # Applied before the release (and its policy) exists: a bot from an older operator.
    legacy = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        stdin=json.dumps(_digested("legacy", None)),
    )
    assert legacy.returncode == 0, legacy.stderr
    request.getfixturevalue("live_release")
    wait_for(
        lambda: (
            DIGEST_MISSING
            in kubectl(
                "create",
                "--dry-run=server",
                "-n",
                namespace,
                "-f",
                "-",
                check=False,
                stdin=json.dumps(_digested("probe", None)),
            ).stderr
        ),
        30,
        what="the approval digest policy in force",
    )
    # Metadata writes (the operator's finalizer, a label) leave the spec as it was: they pass.
    for patch in (
        {"metadata": {"labels": {"tradebot.dev/fleet": "main"}}},
        {"metadata": {"finalizers": ["tradebot.dev/test"]}},
        {"metadata": {"finalizers": None}},
    ):
        result = _patch(kubectl, namespace, "legacy", patch)
        assert result.returncode == 0, (patch, result.stderr)
    # Positive control: a spec change still needs the digest.
    refused = _patch(kubectl, namespace, "legacy", {"spec": {"stakeAmount": "20"}})
    assert refused.returncode != 0
    assert DIGEST_MISSING in refused.stderr, refused.stderr
