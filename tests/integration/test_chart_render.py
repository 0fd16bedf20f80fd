"""The Helm chart as rendered: lint, every value reaching the operator's settings, the values
schema rejecting bad input at `helm install` with the field named, CRDs identical to crds/."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.support.helm import CHART, KUBE_VERSION, Helm
from tests.support.promql import exported_series, metric_names

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain.bots import BotInstance, network_policy
from tradebot.settings import ModeFloor, PromotionFloors, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def helm(tools_bin: Path, tmp_path: Path) -> Helm:
    return Helm(tools_bin / "helm", None, tmp_path)


def _one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def test_chart_lints_with_every_optional_part(helm: Helm):
    result = helm(
        "lint",
        str(CHART),
        "--strict",
        "--kube-version",
        "1.32.4",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.dashboard.enabled=true",
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "database.existingSecret=records-dsn",
        "--set",
        "state.existingClaim=state",
        "--set",
        "allowedModes={dryRun,testnet,live}",
        "--set",
        "admission.restrictPromotion.enabled=true",
        "--set",
        "admission.restrictPromotion.allowedGroups={traders}",
    )
    assert "0 chart(s) failed" in result.stdout


def test_chart_crds_are_the_generated_ones():
    ours = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert chart == ours, "copy crds/ into charts/tradebot-operator/crds/"


def test_every_value_reaches_the_operator_settings(helm: Helm):
    docs = helm.template(
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "executor=local",
        "--set",
        "concurrency.maxConcurrentBacktests=7",
        "--set",
        "concurrency.maxBacktestsPerNamespace=3",
        "--set",
        "concurrency.maxBacktestsPerStrategy=1",
        "--set",
        "concurrency.queueHold=HoldAndDrain",
        "--set",
        "images.runner=reg.example/runner:1.2.3",
        "--set",
        "images.runnerRocm=reg.example/runner-rocm:1.2.3",
        "--set",
        "images.bot=reg.example/bot:1.2.3",
        "--set",
        "images.allowed={reg.example/runner,reg.example/team/*}",
        "--set",
        "backtests.deadlineSeconds=120",
        "--set",
        "backtests.jobTtlSeconds=600",
        "--set",
        "backtests.artifactsPvc=artifacts",
        "--set",
        "artifacts.store=s3",
        "--set",
        "artifacts.s3.bucket=runs-bucket",
        "--set",
        "artifacts.s3.prefix=tradebot/",
        "--set",
        "artifacts.s3.endpointUrl=http://minio.storage.svc:9000",
        "--set",
        "artifacts.s3.region=eu-west-1",
        "--set",
        "artifacts.s3.existingSecret=artifact-keys",
        "--set",
        "backtests.ttlSecondsAfterFinished=3600",
        "--set",
        "concurrency.maxWaitingBacktestsPerNamespace=100",
        "--set-json",
        "reconcileIntervalSeconds=1.5",
        "--set",
        "accountLeaseSeconds=45",
        "--set",
        "exchangeDoubleUrl=http://double.tradebot-system.svc:8765",
        "--set",
        "metrics.port=9200",
        "--set",
        "state.mountPath=/data",
        "--set",
        "gpu.nodeLabels={gpu-node}",
        "--set",
        "gpu.profiles.amd.nodeSelector.gpu=mi300",
        "--set",
        "allowedModes={dryRun,testnet,live}",
        "--set",
        "state.existingClaim=state",
        "--set",
        "promotion.floors.live.minTrades=50",
        "--set",
        "promotion.floors.live.maxDrawdown=0.15",
        "--set",
        "promotion.floors.live.requireHyperopt=true",
        "--set",
        "promotion.floors.live.minOutOfSampleProfit=0.02",
        "--set",
        "promotion.floors.live.maxRecursiveDifference=0.005",
        "--set-json",
        "promotion.floors.testnet.minProfit=-0.05",
        "--set",
        "promotion.floors.testnet.minDryRunHours=2",
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "leaderElection.leaseName=desk",
        "--set",
        "leaderElection.leaseDurationSeconds=20",
        "--set-json",
        "leaderElection.renewDeadlineSeconds=12.5",
        "--set-json",
        "leaderElection.retryPeriodSeconds=3",
        "--set",
        "leaderElection.workStallSeconds=90",
        "--set",
        "shutdownGraceSeconds=15",
        "--set",
        "apiTimeouts.connectSeconds=3",
        "--set",
        "apiTimeouts.requestSeconds=20",
        "--set",
        "apiTimeouts.watchSeconds=45",
    )
    env = dict(_one(docs, "ConfigMap", "-settings")["data"])
    env["TRADEBOT_OPERATOR_NAMESPACE"] = "tradebot-system"  # the downward API's part
    s = Settings.from_env(env)
    assert s.namespaces == ("team-a", "team-b")
    assert (
        s.executor,
        s.max_concurrent_backtests,
        s.max_backtests_per_namespace,
        s.max_backtests_per_strategy,
        s.queue_hold,
    ) == ("local", 7, 3, 1, "HoldAndDrain")
    assert (s.runner_image, s.runner_image_rocm, s.bot_image) == (
        "reg.example/runner:1.2.3",
        "reg.example/runner-rocm:1.2.3",
        "reg.example/bot:1.2.3",
    )
    assert s.images_allowed == ("reg.example/runner", "reg.example/team/*")
    assert (s.backtest_deadline_seconds, s.job_ttl_seconds, s.artifacts_pvc) == (
        120,
        600,
        "artifacts",
    )
    assert (
        s.artifacts_store,
        s.artifacts_s3_bucket,
        s.artifacts_s3_prefix,
        s.artifacts_s3_endpoint_url,
        s.artifacts_s3_region,
        s.artifacts_s3_secret,
    ) == (
        "s3",
        "runs-bucket",
        "tradebot/",
        "http://minio.storage.svc:9000",
        "eu-west-1",
        "artifact-keys",
    )
    # The Secret reaches the operator as a reference, never its keys in the ConfigMap.
    dep = _one(docs, "Deployment")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert {"secretRef": {"name": "artifact-keys"}} in container["envFrom"]
    assert (s.backtest_ttl_seconds, s.max_waiting_backtests_per_namespace) == (3600, 100)
    assert (s.reconcile_interval_seconds, s.account_lease_seconds) == (1.5, 45)
    assert (s.leader_work_stall_seconds, s.shutdown_grace_seconds) == (90, 15)
    assert (
        s.api_connect_timeout_seconds,
        s.api_request_timeout_seconds,
        s.api_watch_timeout_seconds,
    ) == (3, 20, 45)
    assert s.exchange_double_url == "http://double.tradebot-system.svc:8765"
    assert s.metrics_port == 9200
    assert str(s.local_state_dir) == "/data"
    assert s.database_dsn == "sqlite:///data/records.db"
    assert s.gpu_node_labels == ("gpu-node",)
    assert s.gpu_profiles["amd"].node_selector == {
        "feature.node.kubernetes.io/amd-gpu": "true",
        "gpu": "mi300",
    }
    assert s.gpu_profiles["nvidia"].resource == "nvidia.com/gpu"
    assert s.allowed_modes == ("dryRun", "testnet", "live")
    assert s.promotion_floors.live == ModeFloor(
        min_profit=Decimal(0),
        max_drawdown=Decimal("0.15"),
        min_trades=50,
        min_dry_run_hours=24,
        require_hyperopt=True,
        min_out_of_sample_profit=Decimal("0.02"),
        max_recursive_difference=Decimal("0.005"),
    )
    assert s.promotion_floors.testnet == ModeFloor(
        min_profit=Decimal("-0.05"), max_drawdown=Decimal(1), min_trades=1, min_dry_run_hours=2
    )
    assert (
        s.leader_election,
        s.leader_lease_name,
        s.leader_lease_seconds,
        s.leader_renew_deadline_seconds,
        s.leader_retry_seconds,
    ) == (False, "desk", 20, 12.5, 3.0)
    assert s.operator_pod_labels == {
        "app.kubernetes.io/name": "tradebot-operator",
        "app.kubernetes.io/instance": "t",
    }
    # Every settings field is either set by the chart or deliberately left to its default.
    chart_fields = {k.removeprefix("TRADEBOT_").lower() for k in env}
    assert set(Settings.model_fields) - chart_fields == {"database_dsn"}  # from a Secret


def test_the_default_deployment_is_locked_down(helm: Helm):
    docs = helm.template()
    dep = _one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["args"] == ["operator", "--liveness", "http://0.0.0.0:8080/healthz"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    settings = _one(docs, "ConfigMap", "-settings")["data"]
    assert settings["TRADEBOT_LOCAL_STATE_DIR"] in mounts
    assert "TRADEBOT_DATABASE_DSN" not in {e["name"] for e in c["env"]}
    assert dep["spec"]["replicas"] == 1
    # Leader election is on even with one replica: a second can be added at any time.
    assert Settings.from_env(dict(settings)).leader_election is True
    assert {e["name"]: e for e in c["env"]}["POD_NAME"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ValidatingAdmissionPolicy"}
    # Least privilege by default: the release's namespace only, through a Role.
    assert settings["TRADEBOT_NAMESPACES"] == "tradebot-system"
    (role,) = [
        d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader")
    ]
    assert role["metadata"]["namespace"] == "tradebot-system"
    assert settings["TRADEBOT_ALLOWED_MODES"] == "dryRun"
    s = Settings.from_env(dict(settings))
    assert s.promotion_floors == PromotionFloors()  # the chart's defaults are the operator's
    assert s.allowed_modes == Settings().allowed_modes


def _cluster_grants(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (res, verb)
        for rule in _one(docs, "ClusterRole")["rules"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }


def test_only_watch_all_namespaces_grants_pods_and_secrets_cluster_wide(helm: Helm):
    default = _cluster_grants(helm.template())
    assert not {g for g in default if g[0] in ("secrets", "configmaps", "persistentvolumeclaims")}
    assert {verb for res, verb in default if res == "pods"} == {"list"}  # GPU accounting
    docs = helm.template("--set", "watchAllNamespaces=true")
    wide = _cluster_grants(docs)
    assert {("secrets", "get"), ("pods", "create"), ("persistentvolumeclaims", "create")} <= wide
    # Only the leader Lease's Role (test_two_replicas_render_...), in the release namespace.
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Role"] == [
        "t-tradebot-operator-leader"
    ]
    assert _one(docs, "ConfigMap", "-settings")["data"]["TRADEBOT_NAMESPACES"] == ""


def test_bots_admit_the_operator_pods_under_any_name(helm: Helm):
    docs = helm.template("--set", "nameOverride=tb", "--set", "fullnameOverride=desk-op")
    dep = _one(docs, "Deployment")
    labels = json.loads(
        _one(docs, "ConfigMap", "-settings")["data"]["TRADEBOT_OPERATOR_POD_LABELS"]
    )
    assert labels == dep["spec"]["selector"]["matchLabels"]
    assert labels["app.kubernetes.io/name"] == "tb"
    assert labels.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    # Through the operator's settings into a bot's NetworkPolicy: its peer selects these pods.
    env = dict(_one(docs, "ConfigMap", "-settings")["data"])
    spec = LiveBotSpec.model_validate({"strategyRef": {"name": "s"}, "pairs": ["BTC/USDT"]})
    bot = BotInstance(
        "team-a", "b", "5e1f0000-aaaa-bbbb-cccc-ddddeeeeffff", spec, "s", "S", "class S: ...", {}
    )
    policy = network_policy(
        bot,
        operator_namespace="tradebot-system",
        operator_labels=Settings.from_env(env).operator_pod_labels,
    )
    (peer,) = policy["spec"]["ingress"][0]["from"]
    assert peer["podSelector"]["matchLabels"] == labels


REFUSED = [
    (
        ["--set", "allowedModes={dryRun,live}"],
        "allowedModes contains live, but the records store is SQLite on an emptyDir",
    ),
    (
        ["--set", "allowedModes={testnet}"],
        "allowedModes contains testnet, but the records store is SQLite on an emptyDir",
    ),
    # PostgreSQL records, but the outbox (what waits while the database is down) on an
    # emptyDir: a restart during an outage would lose buffered incidents, runs and buys.
    (
        ["--set", "allowedModes={dryRun,live}", "--set", "database.existingSecret=records-dsn"],
        "allowedModes contains live, but the state volume is an emptyDir",
    ),
    (
        ["--set", "allowedModes={testnet}", "--set", "database.existingSecret=records-dsn"],
        "allowedModes contains testnet, but the state volume is an emptyDir",
    ),
    (
        ["--set", "watchAllNamespaces=true", "--set", "watchNamespaces={team-a}"],
        "leave watchNamespaces empty",
    ),
    (
        ["--set", "admission.restrictPromotion.enabled=true"],
        "admission.restrictPromotion.enabled needs admission.restrictPromotion.allowedGroups",
    ),
    (
        ["--set", "promotion.floors.live.maxDrawdown=1.5"],
        "promotion.floors.live.maxDrawdown must be a fraction between 0 and 1",
    ),
    (
        ["--set-json", "promotion.floors.testnet.minProfit=-2"],
        "promotion.floors.testnet.minProfit must be >= -1",
    ),
    (
        [
            "--set",
            "replicaCount=2",
            "--set",
            "database.existingSecret=records-dsn",
            "--set",
            "leaderElection.enabled=false",
        ],
        "replicaCount 2 needs leaderElection.enabled",
    ),
    (["--set", "replicaCount=2"], "replicaCount 2 needs database.existingSecret"),
    (
        ["--set", "leaderElection.renewDeadlineSeconds=10"],
        "leaderElection.leaseDurationSeconds (10) must exceed renewDeadlineSeconds (10)",
    ),
    (["--set-json", "leaderElection.retryPeriodSeconds=6"], "must exceed 1.2 x retryPeriodSeconds"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[m[:40] for _, m in REFUSED])
def test_unsafe_combinations_are_refused_with_the_fix_named(
    helm: Helm, args: list[str], message: str
):
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_two_replicas_render_with_leader_election_and_shared_records(helm: Helm):
    docs = helm.template("--set", "replicaCount=2", "--set", "database.existingSecret=records-dsn")
    dep = _one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    # One pod replaced at a time: the standby takes over the Lease the stopped leader gives up.
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    lease = _one(docs, "ConfigMap", "-settings")["data"]["TRADEBOT_LEADER_LEASE_NAME"]
    assert lease == "t-tradebot-operator"
    role = _one(docs, "Role", "-leader")
    assert role["metadata"]["namespace"] == "tradebot-system"
    grants = {
        (verb, tuple(rule.get("resourceNames") or ()))
        for rule in role["rules"]
        for verb in rule["verbs"]
    }
    # Create cannot be limited by name; reading and renewing are, to the one Lease.
    assert grants == {("create", ()), ("get", (lease,)), ("update", (lease,))}
    binding = _one(docs, "RoleBinding", "-leader")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    # Without leader election (one replica only): no Lease rights, pods replaced by Recreate.
    off = helm.template("--set", "leaderElection.enabled=false")
    assert not [d for d in off if d["metadata"]["name"].endswith("-leader")]
    assert _one(off, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_money_modes_render_with_a_persistent_state_volume(helm: Helm):
    """The positive control of the refusals above: the same modes with the outbox on a PVC,
    with SQLite or PostgreSQL records."""
    for durable in (
        ["--set", "state.existingClaim=state"],
        ["--set", "state.existingClaim=state", "--set", "database.existingSecret=records-dsn"],
    ):
        docs = helm.template("--set", "allowedModes={dryRun,testnet,live}", *durable)
        data = _one(docs, "ConfigMap", "-settings")["data"]
        assert data["TRADEBOT_ALLOWED_MODES"] == "dryRun,testnet,live"
        # Each replica's outbox on the claim, named by its pod (the leader adopts the others').
        assert data["TRADEBOT_OUTBOX_PATH"] == "/var/lib/tradebot/records-outbox-{pod}.jsonl"
        volume = _one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]
        assert volume["persistentVolumeClaim"]["claimName"] == "state"


def test_the_promotion_policy_is_rendered_only_when_enabled(helm: Helm):
    assert not [d for d in helm.template() if d["kind"].startswith("ValidatingAdmission")]
    docs = helm.template(
        "--set",
        "admission.restrictPromotion.enabled=true",
        "--set",
        "admission.restrictPromotion.allowedGroups={traders,risk}",
    )
    policy = _one(docs, "ValidatingAdmissionPolicy")
    binding = _one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["livebots"]  # not livebots/status: the operator's writes
    trusted = next(v for v in policy["spec"]["variables"] if v["name"] == "trusted")
    assert '["traders","risk"]' in trusted["expression"]


def test_the_live_approval_policy_ships_whenever_live_is_allowed(helm: Helm):
    def policies(docs: list[dict[str, Any]]) -> list[str]:
        return [
            d["metadata"]["name"]
            for d in docs
            if d["kind"] == "ValidatingAdmissionPolicy"
            and d["metadata"]["name"].endswith("-live-approval")
        ]

    # Positive control first: testnet alone ships none, live ships it with no switch of its own.
    testnet = helm.template(
        "--set", "allowedModes={dryRun,testnet}", "--set", "state.existingClaim=state"
    )
    assert policies(testnet) == []
    docs = helm.template(
        "--set",
        "allowedModes={dryRun,testnet,live}",
        "--set",
        "state.existingClaim=state",
        "--set",
        "watchNamespaces={team-a,team-b}",
    )
    assert len(policies(docs)) == 1
    policy = _one(docs, "ValidatingAdmissionPolicy", "-live-approval")
    binding = _one(docs, "ValidatingAdmissionPolicyBinding", "-live-approval")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    # Only the namespaces this release runs bots in.
    selector = policy["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]
    assert selector["values"] == ["team-a", "team-b"]
    result = helm(
        "template",
        "t",
        str(CHART),
        "--kube-version",
        "1.29.0",
        "--set",
        "allowedModes={live}",
        "--set",
        "state.existingClaim=state",
        check=False,
    )
    assert result.returncode != 0
    assert "Kubernetes >= 1.30" in result.stderr


def test_the_dsn_comes_from_the_named_secret(helm: Helm):
    docs = helm.template(
        "--set", "database.existingSecret=records-dsn", "--set", "database.secretKey=url"
    )
    (c,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    ref = env["TRADEBOT_DATABASE_DSN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "records-dsn", "key": "url"}  # not optional: fails loudly
    assert "records-dsn" not in json.dumps(_one(docs, "ConfigMap", "-settings"))


def test_namespaced_mode_grants_namespaced_rules_only_per_namespace(helm: Helm):
    docs = helm.template("--set", "watchNamespaces={team-a,team-b}")
    roles = [
        d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-leader")
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    cluster_rules = _one(docs, "ClusterRole")["rules"]
    cluster_resources = {r for rule in cluster_rules for r in rule["resources"]}
    # Secrets, ConfigMaps and the kinds themselves are never granted cluster-wide here.
    assert not cluster_resources & {"secrets", "configmaps", "backtests", "livebots", "leases"}
    for rule in cluster_rules:
        assert set(rule["verbs"]) <= {"list", "watch"}, rule


BAD_VALUES = [
    (["--set", "replicaCount=6"], "replicaCount"),
    (["--set", "leaderElection.leaseDurationSeconds=1"], "leaderElection.leaseDurationSeconds"),
    (["--set", "concurrency.queueHold=Sometimes"], "concurrency.queueHold"),
    (["--set", "concurrency.maxConcurrentBacktests=-1"], "concurrency.maxConcurrentBacktests"),
    (["--set", "executor=docker"], "executor"),
    (["--set", "image.tag=latest"], "image.tag"),
    (["--set", "watchNamespaces={Team_A}"], "watchNamespaces.0"),
    (["--set", "backtests.jobTtlSeconds=10"], "backtests.jobTtlSeconds"),
    (["--set", "metrics.port=70000"], "metrics.port"),
    (["--set", "database.existingSecret=Not A Name"], "database.existingSecret"),
    (["--set", "gpu.profiles.intel.resource=gpu.intel.com/i915"], "gpu.profiles"),
    (["--set", "maxConcurrent=3"], "maxConcurrent"),
    (["--set", "images.bot=has space:1"], "images.bot"),
    (["--set", "images.allowed={nginx:1.27}"], "images.allowed.0"),
    (["--set", "allowedModes={paper}"], "allowedModes.0"),
    (["--set", "promotion.floors.live.minTrades=-1"], "promotion.floors.live.minTrades"),
    (["--set", "watchNamespaces={kube-system}"], "watchNamespaces.0"),
    (
        ["--set", "extraEnv[0].name=TRADEBOT_ALLOWED_MODES", "--set", "extraEnv[0].value=live"],
        "extraEnv.0.name",
    ),
    (
        ["--set", "admission.restrictPromotion.allowedGroups={it's}"],
        "admission.restrictPromotion.allowedGroups.0",
    ),
]


@pytest.mark.parametrize(("args", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_bad_values_are_rejected_at_install_naming_the_field(
    tools_bin: Path, cluster: Any, namespace: str, tmp_path: Path, args: list[str], field: str
):
    helm = Helm(tools_bin / "helm", cluster.kubeconfig, tmp_path)
    result = helm("install", "bad", str(CHART), "--namespace", namespace, *args, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr, result.stderr
    assert helm("list", "-n", namespace, "-q").stdout.strip() == ""


def test_alert_rules_parse_and_use_exported_metrics(helm: Helm):
    docs = helm.template(
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.heartbeatStaleSeconds=600",
    )
    rules = [r for g in _one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {
        "TradebotBreakerTripped",
        "TradebotBotHeartbeatStale",
        "TradebotRecordsOutboxGrowing",
        "TradebotReconcileErrors",
        "TradebotOperatorAbsent",
        "TradebotBacktestQueueStuck",
        "TradebotRecordFailures",
        "TradebotRecordsSetAside",
    }
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        # `up` is Prometheus's own series per scrape target: the operator's absence.
        assert used <= exported_series() | {"up"}, (rule["alert"], used)
    absent = next(r for r in rules if r["alert"] == "TradebotOperatorAbsent")
    assert absent["expr"] == (
        'absent(up{job="t-tradebot-operator-metrics", namespace="tradebot-system"} == 1)'
    )
    stale = next(r for r in rules if r["alert"] == "TradebotBotHeartbeatStale")
    assert stale["expr"].endswith("> 600")
    assert "{{ $labels.bot }}" in stale["annotations"]["summary"]  # left for Prometheus


def test_dashboard_configmap_carries_the_dashboard(helm: Helm):
    docs = helm.template("--set", "metrics.dashboard.enabled=true")
    cm = _one(docs, "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["tradebot.json"]) == json.loads(
        (CHART / "dashboards" / "tradebot.json").read_text()
    )
