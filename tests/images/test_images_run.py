"""The images `make images` built, run here: the operator image's `tradebot version` and
`tradebot operator` against the test cluster (kubeconfig mounted), reconciling the demo
Strategy and making the example Backtest's Job and the example dry-run LiveBot's pod; then the
runner image runs that Job's container (the operator's args, its ConfigMap mounted) to a real
backtest of the bundled data whose summary the operator's reader accepts; and the bot
container of that pod, as the kubelet would start it (its command, else the image's entrypoint,
plus its args) in the image the chart's e2e install uses for bots, starts `freqtrade trade`,
whose REST API answers. The containers share the host's network; the only change to the
specs is the ports they listen on, moved off ports the host may be using."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import tradebot
from tests.support.images import OPERATOR_IMAGE, RUNNER_IMAGE, Engine, Mount
from tests.support.manifests import example
from tests.support.wait import wait_for
from tradebot.freqtrade.summary import RunSummary
from tradebot.localcluster import Ports
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
# The chart's e2e install (.github/workflows/e2e.yml, images.bot) runs bots in the runner image.
BOT_IMAGE = RUNNER_IMAGE


@pytest.fixture(scope="module")
def engine() -> Engine:
    found = Engine.detect()
    missing = [i for i in (OPERATOR_IMAGE, RUNNER_IMAGE) if not found.has(i)]
    # Not a skip: the images would go untested. `make images` builds them (cached).
    assert not missing, f"{missing} not built with {found.name}: run `make images`"
    return found


def _open(path: Path) -> Path:
    """A host directory the container's non-root user can use (bind mounts keep modes)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_the_operator_image_prints_its_version(engine: Engine, tmp_path: Path):
    code, out = engine.run(
        OPERATOR_IMAGE,
        engine.argv(OPERATOR_IMAGE, None, ["version"]),
        log=tmp_path / "version.log",
        timeout=120,
    )
    assert code == 0, out
    assert tradebot.__version__ in out


@pytest.fixture(scope="module")
def double() -> Iterator[ExchangeDouble]:
    with ExchangeDouble() as d:
        yield d


@pytest.fixture(scope="module")
def operator_in_image(
    engine: Engine,
    cluster: Any,
    tools_bin: Path,
    crds_installed: Any,
    api_client: Any,
    double: ExchangeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """`tradebot operator` in the operator image, the chart's args (other ports), watching
    a fresh namespace, with the example Strategy, Backtest and dry-run LiveBot applied."""

    def kubectl(
        *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools_bin / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=stdin,
        )

    work = tmp_path_factory.mktemp("operator-image")
    namespace = f"images-{os.getpid()}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    kube = _open(work / "kube")
    (kube / "config").write_text(kubectl("config", "view", "--flatten", "--raw").stdout)
    (kube / "config").chmod(0o644)
    state = _open(work / "state")
    ports = Ports.free()
    health, metrics = ports.kwok, ports.etcd_client
    env = {
        "KUBECONFIG": "/kube/config",
        "TRADEBOT_NAMESPACES": namespace,
        "TRADEBOT_OPERATOR_NAMESPACE": namespace,
        "TRADEBOT_EXECUTOR": "kubernetes",
        "TRADEBOT_RUNNER_IMAGE": RUNNER_IMAGE,
        "TRADEBOT_BOT_IMAGE": BOT_IMAGE,
        "TRADEBOT_LOCAL_STATE_DIR": "/state",
        "TRADEBOT_METRICS_PORT": str(metrics),
        "TRADEBOT_EXCHANGE_DOUBLE_URL": double.url,
    }
    # The chart's Deployment: `args: [operator, --liveness, http://0.0.0.0:<port>/healthz]`.
    argv = engine.argv(
        OPERATOR_IMAGE, None, ["operator", "--liveness", f"http://0.0.0.0:{health}/healthz"]
    )
    log = work / "operator.log"
    with engine.container(
        OPERATOR_IMAGE,
        argv,
        env=env,
        log=log,
        mounts=[Mount(kube, "/kube", read_only=True), Mount(state, "/state")],
    ) as process:
        try:
            wait_for(
                lambda: process.poll() is None and _answers(health, "/healthz"),
                120,
                what=f"the operator's /healthz (log: {log})",
            )
            docs = [
                example("Strategy", "ema-rsi"),
                example("Backtest", "ema-rsi-sample"),
                example("LiveBot", "ema-rsi-dry"),
            ]
            kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
            )
            yield {
                "namespace": namespace,
                "process": process,
                "log": log,
                "metrics": metrics,
                "work": work,
            }
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _answers(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return str(r.read().decode())
    except OSError:
        return None


def _custom(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
    )


def test_the_operator_image_reconciles_the_demo_strategy(
    operator_in_image: dict[str, Any], api_client: Any
):
    ns = operator_in_image["namespace"]
    wait_for(
        lambda: (
            (s := _custom(api_client, ns, "strategies", "ema-rsi").get("status") or {}).get("phase")
            == "Ready"
            and s
        ),
        120,
        what=f"Strategy Ready (log: {operator_in_image['log']})",
    )
    body = _answers(operator_in_image["metrics"], "/metrics")
    assert body is not None
    assert 'tradebot_reconciliations_total{kind="Strategy",outcome="ok"}' in body


def _config_dir(core: Any, namespace: str, volume: dict[str, Any], target: Path) -> Path:
    """A ConfigMap volume as the kubelet lays it out: every key, or only its `items` at
    their paths."""
    source = volume["configMap"]
    data = core.read_namespaced_config_map(source["name"], namespace).data
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    _open(target)
    for item in items:
        path = target / item["path"]
        _open(path.parent)
        path.write_text(data[item["key"]])
        path.chmod(0o644)
    return target


def _mounts(
    core: Any, namespace: str, pod: dict[str, Any], container: dict[str, Any], tmp_path: Path
) -> list[Mount]:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = []
    for m in container["volumeMounts"]:
        volume = volumes[m["name"]]
        if "configMap" in volume:
            host = _config_dir(core, namespace, volume, tmp_path / m["name"])
        else:  # emptyDir, or a claim: a fresh directory
            host = _open(tmp_path / m["name"])
        mounts.append(Mount(host, m["mountPath"], read_only=bool(m.get("readOnly"))))
    return mounts


def _alive(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is not None:
        raise AssertionError(
            f"exited with {process.returncode}:\n" + log.read_text(errors="replace")[-3000:]
        )


def test_the_runner_image_runs_the_operators_backtest_job(
    operator_in_image: dict[str, Any], api_client: Any, engine: Engine, tmp_path: Path
):
    ns = operator_in_image["namespace"]
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = wait_for(
        lambda: next(
            iter(
                batch.list_namespaced_job(
                    ns, label_selector="tradebot.dev/backtest=ema-rsi-sample"
                ).items
            ),
            None,
        ),
        180,
        what="the operator's Backtest Job",
    )
    pod = api_client.sanitize_for_serialization(job.spec.template.spec)
    container = pod["containers"][0]
    assert container["image"] == RUNNER_IMAGE
    mounts = _mounts(core, ns, pod, container, tmp_path)
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    argv = engine.argv(RUNNER_IMAGE, container.get("command"), container.get("args"))
    assert argv[0] == "tradebot-runner"
    user = str(container["securityContext"]["runAsUser"])
    code, out = engine.run(
        RUNNER_IMAGE,
        argv,
        env=env,
        mounts=mounts,
        user=user,
        log=tmp_path / "runner.log",
        timeout=600,
    )
    assert code == 0, out[-4000:]
    summary = json.loads((tmp_path / "artifacts" / "summary.json").read_text())
    parsed = RunSummary.model_validate(summary)  # the operator's reader accepts it
    assert summary["exitCode"] == 0
    assert summary["strategy"] == "EmaRsiStrategy"
    assert parsed.results is not None
    assert int(summary["results"]["trades"]) > 0


def test_the_bot_container_starts_freqtrade_trade_in_the_charts_bot_image(
    operator_in_image: dict[str, Any], api_client: Any, engine: Engine, tmp_path: Path
):
    ns = operator_in_image["namespace"]
    core = client.CoreV1Api(api_client)
    pod = wait_for(
        lambda: next(
            iter(core.list_namespaced_pod(ns, label_selector="tradebot.dev/kind=livebot").items),
            None,
        ),
        180,
        what="the operator's bot pod",
    )
    spec = api_client.sanitize_for_serialization(pod.spec)
    container = next(c for c in spec["containers"] if c["name"] == "freqtrade")
    assert container["image"] == BOT_IMAGE
    argv = engine.argv(BOT_IMAGE, container.get("command"), container.get("args"))
    assert argv[:2] == ["freqtrade", "trade"], argv
    # The pod's init containers first, as the kubelet runs them, on the same volumes: the
    # bot-state one writes the state file the bot reads as its second config.
    for init in spec.get("initContainers") or []:
        code, out = engine.run(
            init["image"],
            engine.argv(init["image"], init.get("command"), init.get("args")),
            env={e["name"]: e["value"] for e in init.get("env", []) if "value" in e},
            mounts=_mounts(core, ns, spec, init, tmp_path),
            log=tmp_path / f"init-{init['name']}.log",
            user=str((init.get("securityContext") or {}).get("runAsUser") or "") or None,
            timeout=180,
        )
        assert code == 0, f"init container {init['name']}: {out[-3000:]}"
    mounts = _mounts(core, ns, spec, container, tmp_path)
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif ref := (e.get("valueFrom") or {}).get("secretKeyRef"):
            secret = core.read_namespaced_secret(ref["name"], ns)
            env[e["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
    api_port = Ports.free().kwok
    # The one change: the chroot shares the host's network, so the API leaves port 8080.
    env["FREQTRADE__API_SERVER__LISTEN_PORT"] = str(api_port)
    user = str(container["securityContext"]["runAsUser"])
    log = tmp_path / "bot.log"
    with engine.container(BOT_IMAGE, argv, env=env, mounts=mounts, user=user, log=log) as process:
        wait_for(
            lambda: _alive(process, log) or _answers(api_port, "/api/v1/ping"),
            180,
            interval=1,
            what=f"freqtrade's API answering (log: {log})",
        )
        assert "pong" in (_answers(api_port, "/api/v1/ping") or "")
    text = log.read_text(errors="replace")
    assert "freqtrade" in text.lower()
    assert "dry run" in text.lower() or "dry_run" in text.lower(), text[-3000:]


def test_the_sboms_list_the_images_packages():
    cache = Path(
        os.environ.get("TRADEBOT_IMAGE_CACHE", Path.home() / ".cache" / "tradebot" / "images")
    )
    for name, must in (
        ("operator", {"tradebot-operator", "kopf", "pydantic-settings"}),
        ("runner", {"tradebot-operator", "freqtrade"}),
    ):
        sbom = json.loads((cache / "sbom" / f"{name}.cdx.json").read_text())
        assert sbom["bomFormat"] == "CycloneDX"
        names = {c["name"].lower() for c in sbom["components"]}
        assert must <= names, (name, must - names)
    assert "freqtrade" not in names_of(cache / "sbom" / "operator.cdx.json")


def names_of(path: Path) -> set[str]:
    return {c["name"].lower() for c in json.loads(path.read_text())["components"]}
