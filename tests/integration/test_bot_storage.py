"""A bot's trade database on the records' real PostgreSQL server: a database and a login role
of its own, its URL in an operator-owned Secret on the real API server. The server checks
passwords here (SCRAM) for every role but the test's admin, so a wrong one really fails."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from kubernetes import client
from tests.support.manifests import example
from tests.support.postgres import LocalPostgres
from tests.support.wait import wait_for

from tradebot import kube
from tradebot.api.livebot import LiveBotSpec
from tradebot.controllers import bot_storage, hyperopt_storage
from tradebot.controllers.bot_control import BotRef
from tradebot.domain import bots
from tradebot.records.bot_databases import bot_database_name, drop_bot_database
from tradebot.settings import Settings

G, V = "tradebot.dev", "v1alpha1"


@pytest.fixture
def scram_postgres(private_postgres: LocalPostgres) -> LocalPostgres:
    """The private server with password checks (SCRAM) for every role but the admin, and
    every statement logged, so the test can look for a password in the server's log."""
    hba = private_postgres.data / "pg_hba.conf"
    hba.write_text(
        f"local all all trust\n"
        f"host all {private_postgres.user} 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
    return private_postgres


@pytest.fixture
def kube_client(cluster: Any, crds_installed: None) -> Iterator[None]:
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    kube.reset()
    yield
    kube.reset()


def _livebot(api: Any, namespace: str, name: str) -> bots.BotInstance:
    """A real LiveBot (the Secret's owner must exist, or garbage collection takes it)."""
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name}
    made = client.CustomObjectsApi(api).create_namespaced_custom_object(
        G, V, namespace, "livebots", doc
    )
    spec = LiveBotSpec.model_validate(doc["spec"])
    return bots.BotInstance(
        namespace, name, made["metadata"]["uid"], spec, "ema-rsi", "EmaRsi", "", {}
    )


def _db_url(api: Any, namespace: str, bot: bots.BotInstance) -> str:
    secret = client.CoreV1Api(api).read_namespaced_secret(bot.db_secret_name, namespace)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.uid) == ("LiveBot", bot.uid)
    return base64.b64decode(secret.data["db-url"]).decode()


def _libpq(url: str) -> str:
    # Freqtrade's SQLAlchemy URL names the driver; libpq takes the plain scheme.
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _count(admin: str, sql: str, name: str) -> int:
    with psycopg.connect(admin) as conn:
        row = conn.execute(sql, (name,)).fetchone()
        assert row is not None
        return int(row[0])


def test_each_bot_gets_its_own_database_and_role(
    scram_postgres: LocalPostgres,
    api_client: Any,
    namespace: str,
    kube_client: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
):
    admin = scram_postgres.dsn()
    settings = Settings(database_dsn=admin)
    bot = _livebot(api_client, namespace, "keeper")
    other = _livebot(api_client, namespace, "neighbour")

    bot_storage.ensure(bot, settings)
    url = _db_url(api_client, namespace, bot)
    bot_storage.ensure(bot, settings)  # a repeated round, or one after a crash
    bot_storage.ensure(other, settings)
    assert _db_url(api_client, namespace, bot) == url  # the password is made once

    name = bot_database_name(bot.uid)
    assert _count(admin, "SELECT count(*) FROM pg_roles WHERE rolname = %s", name) == 1
    assert _count(admin, "SELECT count(*) FROM pg_database WHERE datname = %s", name) == 1
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg"
    assert (parts.username, parts.path) == (name, f"/{name}")
    assert parts.username != scram_postgres.user
    password = parts.password
    assert password
    assert len(password) >= 32

    # The bot's URL works, and its role owns its database (Freqtrade creates its tables).
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("CREATE TABLE probe (id int)")
        row = conn.execute("SELECT current_user").fetchone()
        assert row == (name,)
    # The password is checked: a wrong one is refused (the control for the line above).
    wrong = url.replace(f":{password}@", ":not-the-password@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_libpq(wrong)).close()
    # Another bot's role cannot even connect to this bot's database.
    other_url = _db_url(api_client, namespace, other)
    into_ours = other_url.rsplit("/", 1)[0] + f"/{name}"
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(_libpq(into_ours)).close()
    # The role may do nothing beyond its database.
    with psycopg.connect(admin) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s", (name,)
        ).fetchone()
    assert row == (False, False, False)

    # Freqtrade itself takes the URL and makes its tables (a fresh interpreter: init_db
    # keeps global state). The URL travels in the environment, as in the pod.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from freqtrade.persistence import init_db; "
            "init_db(os.environ['BOT_DB_URL'])",
        ],
        env={**os.environ, "BOT_DB_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with psycopg.connect(_libpq(url)) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"trades", "orders"} <= tables

    # No password in anything logged: ours, or the server's log of every statement.
    server_log = (scram_postgres.directory / "log").read_text(errors="replace")
    # It does log statements (the role's connection limit is set with its password).
    assert f'ALTER ROLE "{name}" WITH LOGIN CONNECTION LIMIT 20 PASSWORD' in server_log
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text + server_log
    assert password not in logged
    assert password not in json.dumps(
        client.ApiClient().sanitize_for_serialization(
            client.CoreV1Api(api_client).list_namespaced_event(namespace)
        )
    )

    # The LiveBot's deletion with reclaimPolicy Delete takes its database and role; a
    # repeated one finds nothing.
    assert bot_storage.remove(BotRef(namespace, bot.name, bot.uid), settings, "Delete") is True
    assert bot_storage.remove(BotRef(namespace, bot.name, bot.uid), settings, "Delete") is False
    assert _count(admin, "SELECT count(*) FROM pg_roles WHERE rolname = %s", name) == 0
    assert _count(admin, "SELECT count(*) FROM pg_database WHERE datname = %s", name) == 0
    assert (
        _count(
            admin,
            "SELECT count(*) FROM pg_database WHERE datname = %s",
            bot_database_name(other.uid),
        )
        == 1
    )


def test_a_crash_between_secret_and_role_heals(
    scram_postgres: LocalPostgres,
    api_client: Any,
    namespace: str,
    kube_client: None,
):
    """The Secret exists but the role was never made (or has another password): the next
    ensure sets the Secret's password on the role."""
    admin = scram_postgres.dsn()
    settings = Settings(database_dsn=admin)
    bot = _livebot(api_client, namespace, "crashed")
    bot_storage.ensure(bot, settings)
    url = _db_url(api_client, namespace, bot)
    name = bot_database_name(bot.uid)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE \"{name}\" PASSWORD 'something-else'")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_libpq(url)).close()
    bot_storage.ensure(bot, settings)
    psycopg.connect(_libpq(url)).close()
    # The records DSN's options change (say, sslmode): the bot's URL follows, same password.
    bot_storage.ensure(bot, Settings(database_dsn=f"{admin}?sslmode=disable"))
    moved = _db_url(api_client, namespace, bot)
    assert moved == f"{url}?sslmode=disable"
    psycopg.connect(_libpq(moved)).close()


def test_without_postgres_a_claim_owned_by_the_livebot(
    api_client: Any,
    namespace: str,
    kube_client: None,
    tmp_path: Any,
):
    settings = Settings(database_dsn=f"sqlite://{tmp_path / 'r.db'}", bot_storage_size="2Gi")
    bot = _livebot(api_client, namespace, "on-disk")
    bot_storage.ensure(bot, settings)
    bot_storage.ensure(bot, settings)
    claims = client.CoreV1Api(api_client).list_namespaced_persistent_volume_claim(namespace).items
    assert [c.metadata.name for c in claims] == [bot.data_claim_name]
    assert claims[0].metadata.owner_references[0].uid == bot.uid
    assert claims[0].spec.resources.requests["storage"] == "2Gi"
    assert bot_storage.remove(BotRef(namespace, bot.name, bot.uid), settings, "Delete") is False


def test_deleting_a_bot_keeps_its_trades_unless_asked(
    scram_postgres: LocalPostgres,
    api_client: Any,
    namespace: str,
    kube_client: None,
    tmp_path: Any,
):
    """reclaimPolicy Retain (the default) keeps the PostgreSQL database and role, and releases
    the claim from its owner so the garbage collector leaves it; Delete drops them."""
    admin = scram_postgres.dsn()
    on_postgres = Settings(database_dsn=admin)
    kept, dropped = _livebot(api_client, namespace, "kept"), _livebot(api_client, namespace, "gone")
    for b in (kept, dropped):
        bot_storage.ensure(b, on_postgres)
    assert (
        bot_storage.remove(BotRef(namespace, kept.name, kept.uid), on_postgres, "Retain") is False
    )
    assert bot_storage.remove(BotRef(namespace, dropped.name, dropped.uid), on_postgres, "Delete")
    database = "SELECT count(*) FROM pg_database WHERE datname = %s"
    assert _count(admin, database, bot_database_name(kept.uid)) == 1
    assert (
        _count(
            admin, "SELECT count(*) FROM pg_roles WHERE rolname = %s", bot_database_name(kept.uid)
        )
        == 1
    )
    # The control: the same call with Delete dropped the other bot's.
    assert _count(admin, database, bot_database_name(dropped.uid)) == 0

    # A claim: released (no owner, so it outlives the LiveBot), annotated with its bot.
    on_disk = Settings(database_dsn=f"sqlite://{tmp_path / 'r.db'}")
    keeper, goner = (
        _livebot(api_client, namespace, "disk-kept"),
        _livebot(api_client, namespace, "disk-gone"),
    )
    for b in (keeper, goner):
        bot_storage.ensure(b, on_disk)
    core = client.CoreV1Api(api_client)
    bot_storage.remove(BotRef(namespace, keeper.name, keeper.uid), on_disk, "Retain")
    bot_storage.remove(BotRef(namespace, goner.name, goner.uid), on_disk, "Delete")
    claim = core.read_namespaced_persistent_volume_claim(keeper.data_claim_name, namespace)
    assert not claim.metadata.owner_references
    assert keeper.uid in claim.metadata.annotations[bot_storage.ANNOTATION_RETAINED_FROM]
    other = core.read_namespaced_persistent_volume_claim(goner.data_claim_name, namespace)
    assert other.metadata.owner_references[0].uid == goner.uid  # goes with its LiveBot
    # Both LiveBots deleted: the garbage collector (the real one, of the test cluster) takes
    # the owned claim and leaves the released one.
    custom = client.CustomObjectsApi(api_client)
    for b in (keeper, goner):
        custom.delete_namespaced_custom_object(G, V, namespace, "livebots", b.name)
    wait_for(
        lambda: (
            goner.data_claim_name
            not in {
                c.metadata.name
                for c in core.list_namespaced_persistent_volume_claim(namespace).items
            }
        ),
        120,
        what="the owned claim collected",
    )
    names = {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items}
    assert keeper.data_claim_name in names


def test_roles_have_a_connection_limit(
    scram_postgres: LocalPostgres,
    api_client: Any,
    namespace: str,
    kube_client: None,
):
    admin = scram_postgres.dsn()
    settings = Settings(database_dsn=admin, bot_db_connection_limit=2)
    bot = _livebot(api_client, namespace, "limited")
    bot_storage.ensure(bot, settings)
    name = bot_database_name(bot.uid)
    limit = "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s"
    assert _count(admin, limit, name) == 2
    url = _libpq(_db_url(api_client, namespace, bot))
    # Two connections are allowed, the third refused by the server itself.
    with (
        psycopg.connect(url),
        psycopg.connect(url),
        pytest.raises(psycopg.OperationalError, match="too many connections"),
    ):
        psycopg.connect(url).close()
    # A changed setting reaches an existing role on the next ensure.
    bot_storage.ensure(bot, Settings(database_dsn=admin, bot_db_connection_limit=7))
    assert _count(admin, limit, name) == 7

    # A Hyperopt's study role: per worker.
    study = hyperopt_storage.database_name("0b1e7c1e-aaaa-bbbb-cccc-ddddeeeeffff")
    hyperopt_storage.ensure(
        namespace,
        "search",
        "0b1e7c1e-aaaa-bbbb-cccc-ddddeeeeffff",
        Settings(database_dsn=admin, hyperopt_db_connections_per_worker=3),
        workers=4,
    )
    assert _count(admin, limit, study) == 12
    drop_bot_database(admin, study)
