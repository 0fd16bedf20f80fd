"""The Pod, ConfigMap, Secret and NetworkPolicy of one LiveBot."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain.bots import (
    ApiCredentials,
    BotInstance,
    api_secret,
    config_map,
    db_secret,
    network_policy,
    pod,
    pvc,
)
from tradebot.settings import Settings

UID = "5e1f0000-aaaa-bbbb-cccc-ddddeeeeffff"
CREDS = ApiCredentials("u-Zq8sYv", "pw-Kx81mPq0rT", "jwt-Lf93kTqW0z", "ws-Pq7aB3nV")
SECRET_VALUES = ("pw-Kx81mPq0rT", "jwt-Lf93kTqW0z", "ws-Pq7aB3nV", "u-Zq8sYv")
APPROVAL = {
    "approvedBy": "alice",
    "approvedAt": "2025-02-28T10:00:00Z",
    "reference": "pr/1",
    "codeHash": "c" * 64,
}


def bot(
    mode: str = "dryRun",
    name: str = "ema-rsi-dry",
    creds: dict[str, Any] | None = None,
    **extra: Any,
) -> BotInstance:
    exchange: dict[str, Any] = {"name": "binance"}
    if creds is not None:
        exchange["credentialsSecretRef"] = creds
    raw: dict[str, Any] = {
        "strategyRef": {"name": "ema-rsi"},
        "pairs": ["BTC/USDT"],
        "mode": mode,
        "exchange": exchange,
        **extra,
    }
    if mode != "dryRun":
        raw["promotion"] = {
            "backtestRef": {"name": "bt"},
            **({"approval": APPROVAL} if mode == "live" else {}),
        }
        raw.setdefault("limits", {"maxOpenTrades": 3})
    if mode == "live":
        # What live needs at apply: a stake per trade and both limits.
        raw["limits"].setdefault("maxStakePerTrade", "100")
        raw.setdefault("stakeAmount", "50")
    config = {
        "strategy": "EmaRsi",
        "exchange": {"name": "binance", "key": "", "secret": ""},
        "api_server": {"enabled": True, "username": "", "password": ""},
    }
    return BotInstance(
        "team-a",
        name,
        UID,
        LiveBotSpec.model_validate(raw),
        "ema-rsi",
        "EmaRsi",
        "class EmaRsi: ...",
        config,
    )


def env(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in p["spec"]["containers"][0]["env"]}


def all_objects(b: BotInstance) -> list[dict[str, Any]]:
    return [pod(b, Settings()), config_map(b), network_policy(b, operator_namespace="tb")]


@pytest.mark.parametrize(
    "b",
    [
        bot(),
        bot(creds={"name": "keys"}),
        bot("testnet", creds={"name": "keys", "passwordKey": "pass"}),
        bot("live", creds={"name": "keys"}),
    ],
)
def test_no_secret_value_outside_the_secret(b: BotInstance):
    for obj in all_objects(b):
        text = json.dumps(obj)
        for value in SECRET_VALUES:
            assert value not in text
    assert api_secret(b, CREDS)["stringData"]["password"] == "pw-Kx81mPq0rT"


def test_dry_run_has_no_exchange_keys():
    for b in (bot(), bot(creds={"name": "keys"})):
        variables = env(pod(b, Settings()))
        assert not [n for n in variables if n.startswith("FREQTRADE__EXCHANGE__")]
        assert variables["FREQTRADE__DRY_RUN"]["value"] == "true"


def test_live_keys_come_only_from_the_users_secret():
    b = bot(
        "live", creds={"name": "keys", "apiKeyKey": "k", "apiSecretKey": "s", "passwordKey": "p"}
    )
    variables = env(pod(b, Settings()))
    assert variables["FREQTRADE__DRY_RUN"]["value"] == "false"
    for var, item in (("KEY", "k"), ("SECRET", "s"), ("PASSWORD", "p")):
        ref = variables[f"FREQTRADE__EXCHANGE__{var}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "keys", "key": item, "optional": False}
        assert "value" not in variables[f"FREQTRADE__EXCHANGE__{var}"]
    for var in ("USERNAME", "PASSWORD", "JWT_SECRET_KEY", "WS_TOKEN"):
        ref = variables[f"FREQTRADE__API_SERVER__{var}"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == b.api_secret_name
    for e in variables.values():
        assert e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional") is not True


def test_testnet_without_password_key():
    variables = env(pod(bot("testnet", creds={"name": "keys"}), Settings()))
    assert "FREQTRADE__EXCHANGE__KEY" in variables
    assert "FREQTRADE__EXCHANGE__PASSWORD" not in variables


def test_pod_shape():
    b = bot()
    p = pod(b, Settings())
    assert p["kind"] == "Pod"
    assert p["metadata"]["ownerReferences"][0]["uid"] == UID
    assert p["metadata"]["ownerReferences"][0]["kind"] == "LiveBot"
    spec = p["spec"]
    assert spec["restartPolicy"] == "Always"
    c = spec["containers"][0]
    assert c["command"] == ["freqtrade"]
    assert c["args"][:5] == [
        "trade",
        "--config",
        "/etc/freqtrade/config.json",
        "--strategy-path",
        "/etc/freqtrade/strategy",
    ]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/api/v1/ping", "port": "http"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"]
    assert sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The trade database must outlive the pod: on the bot's own claim, never an emptyDir.
    assert volumes["user-data"] == {
        "name": "user-data",
        "persistentVolumeClaim": {"claimName": b.data_claim_name},
    }
    assert c["args"][-2:] == ["--db-url", "sqlite:////freqtrade/user_data/tradesv3.sqlite"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["user-data"] == "/freqtrade/user_data"
    assert volumes["config"]["configMap"]["name"] == b.config_map_name
    paths = {i["path"] for i in volumes["config"]["configMap"]["items"]}
    assert paths == {"config.json", "strategy/EmaRsi.py", "tradebot-deadman.py"}
    assert "affinity" in spec  # kept off GPU nodes
    assert p["metadata"]["annotations"]["tradebot.dev/config-hash"] == b.config_hash


def test_gpu_bot_goes_to_gpu_nodes():
    p = pod(bot(gpu={"count": 1, "vendor": "nvidia"}), Settings())
    assert p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert p["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    amd = pod(bot(gpu={"count": 2}), Settings())
    assert amd["spec"]["containers"][0]["image"] == Settings().runner_image_rocm


def test_resources_and_image_override():
    p = pod(bot(resources={"limits": {"memory": "3Gi"}}, image="my/freqtrade:1"), Settings())
    c = p["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"memory": "3Gi"}}
    assert c["image"] == "my/freqtrade:1"


def test_config_map_holds_config_and_strategy():
    cm = config_map(bot())
    assert json.loads(cm["data"]["config.json"])["strategy"] == "EmaRsi"
    assert cm["data"]["EmaRsi.py"] == "class EmaRsi: ..."


@pytest.mark.parametrize(
    ("section", "key"),
    [("exchange", "secret"), ("api_server", "password"), ("api_server", "jwt_secret_key")],
)
def test_config_map_refuses_secrets_in_config(section: str, key: str):
    b = bot()
    config = {**b.config, section: {**b.config.get(section, {}), key: "leak-Zz9"}}
    leaky = BotInstance(
        b.namespace,
        b.name,
        b.uid,
        b.spec,
        b.strategy_name,
        b.strategy_class,
        b.strategy_code,
        config,
    )
    with pytest.raises(ValueError, match=f"{section}.{key}") as err:
        config_map(leaky)
    assert "leak-Zz9" not in str(err.value)


def test_api_secret():
    s = api_secret(bot(), CREDS)
    assert s["kind"] == "Secret"
    assert set(s["stringData"]) == {"username", "password", "jwt-secret-key", "ws-token"}
    assert s["metadata"]["ownerReferences"][0]["uid"] == UID


def test_network_policy():
    b = bot()
    np = network_policy(b, operator_namespace="tradebot-system")
    spec = np["spec"]
    assert spec["podSelector"]["matchLabels"] == b.selector_labels
    pod_labels = pod(b, Settings())["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    (peer,) = rule["from"]
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "tradebot-operator"}}
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "tradebot-system"}
    }
    custom = network_policy(b, operator_namespace="x", operator_labels={"app": "op"})
    assert custom["spec"]["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": {"app": "op"}}
    with pytest.raises(ValueError, match="must not be empty"):
        network_policy(b, operator_namespace="x", operator_labels={})


_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?", fullmatch=True)


def test_names_are_fixed_values():
    """Compared with values fixed here (8 hex of sha256 of the uid; of the name for a long
    label): a name that varied per process (a hash() seed) or per call fails, which comparing
    two builds in one process cannot see."""
    b = bot(name="b" * 200)
    assert (b.pod_name, b.config_map_name, b.api_secret_name) == (
        "bot-" + "b" * 50 + "-f45fe39f",
        "bot-cfg-" + "b" * 46 + "-f45fe39f",
        "bot-api-" + "b" * 46 + "-f45fe39f",
    )
    assert b.labels["tradebot.dev/livebot"] == "b" * 54 + "-aaebc35c"
    assert bot(name="ema-rsi-dry").pod_name == "bot-ema-rsi-dry-f45fe39f"


@given(name=_names)
def test_names_are_deterministic_and_bounded(name: str):
    b, again = bot(name=name), bot(name=name)
    names = (b.pod_name, b.config_map_name, b.api_secret_name, b.network_policy_name)
    assert names == (
        again.pod_name,
        again.config_map_name,
        again.api_secret_name,
        again.network_policy_name,
    )
    assert len(set(names[:3])) == 3
    for n in names:
        assert len(n) <= 63
    for value in b.labels.values():
        assert len(value) <= 63


PG = "postgresql://operator:op-Secret-9x@db.example:5432/records?sslmode=require"


def test_claim_belongs_to_the_livebot_not_the_pod():
    b = bot()
    claim = pvc(b, Settings(bot_storage_size="2Gi", bot_storage_class="fast"))
    assert claim["metadata"]["name"] == b.data_claim_name
    owner = claim["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("LiveBot", UID)
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    # Unset (or empty from the environment): the cluster's default class.
    assert "storageClassName" not in pvc(b, Settings())["spec"]
    assert "storageClassName" not in pvc(b, Settings(bot_storage_class=""))["spec"]


def test_on_postgres_the_db_url_comes_from_the_bots_own_secret():
    b = bot()
    p = pod(b, Settings(database_dsn=PG))
    c = p["spec"]["containers"][0]
    # Freqtrade's --db-url would override the environment: it must be gone.
    assert "--db-url" not in c["args"]
    ref = env(p)["FREQTRADE__DB_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": b.db_secret_name, "key": "db-url", "optional": False}
    volumes = {v["name"]: v for v in p["spec"]["volumes"]}
    assert volumes["user-data"] == {"name": "user-data", "emptyDir": {}}
    # Neither the operator's DSN nor its password reaches the pod.
    assert "op-Secret-9x" not in json.dumps(p)
    assert "operator:" not in json.dumps(p)


def test_db_secret_is_owned_by_the_livebot():
    b = bot()
    secret = db_secret(b, "postgresql+psycopg://x:y@h/x")
    assert secret["metadata"]["name"] == b.db_secret_name
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    assert secret["stringData"] == {"db-url": "postgresql+psycopg://x:y@h/x"}


@given(name=_names)
def test_storage_names_are_deterministic_and_distinct(name: str):
    b = bot(name=name)
    names = {b.data_claim_name, b.db_secret_name, b.pod_name, b.api_secret_name, b.config_map_name}
    assert len(names) == 5
    assert all(len(n) <= 63 for n in names)
    assert bot(name=name).data_claim_name == b.data_claim_name


def test_the_resolved_image_is_the_pods_and_part_of_its_hash():
    """An image edit replaces the pod: the image is in the hash the controller compares."""
    plain = bot()
    pinned = replace(plain, image="freqtradeorg/freqtrade@sha256:" + "ab" * 32)
    other = replace(plain, image="freqtradeorg/freqtrade@sha256:" + "cd" * 32)
    assert len({plain.config_hash, pinned.config_hash, other.config_hash}) == 3
    built = pod(pinned, Settings())
    assert built["spec"]["containers"][0]["image"] == pinned.image
    assert built["metadata"]["annotations"]["tradebot.dev/config-hash"] == pinned.config_hash
    # Without a resolved image the pod takes the operator's default, as before.
    assert pod(plain, Settings())["spec"]["containers"][0]["image"] == Settings().bot_image
