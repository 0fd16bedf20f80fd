"""The models and the CRDs generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tests.support.manifests import example, examples

from tradebot.api.crdgen import openapi_schema, render_all
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.registry import BY_KIND, KINDS
from tradebot.cli import main

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_are_the_generated_ones():
    generated = render_all()
    committed = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert committed == generated, "crds/ is stale: run `tradebot crds -o crds`"
    assert main(["crds", "--check", str(CRDS)]) == 0


def test_crds_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["crds", "-o", str(tmp_path)]) == 0
    target = tmp_path / "tradebot.dev_backtests.yaml"
    target.write_text(target.read_text().replace("default: 3", "default: 4"))
    assert main(["crds", "--check", str(tmp_path)]) == 1
    assert "-                default: 4" in capsys.readouterr().out


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.get("properties", {}).items():
            found += _walk(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += _walk(node[key], f"{path}[{key}]")
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schemas_are_structural(kind: Any):
    for model in (kind.spec, kind.status):
        for path, node in _walk(openapi_schema(model)):
            assert "$ref" not in node, path
            assert "title" not in node, path
            assert (
                "type" in node
                or node.get("x-kubernetes-int-or-string")
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string"), path


def test_every_spec_field_is_described():
    for kind in KINDS:
        for path, node in _walk(openapi_schema(kind.spec)):
            if path and not path.endswith("]"):  # list items and map values: their parent
                assert node.get("description"), f"{kind.kind}{path} has no description"


def test_crds_carry_names_categories_and_status():
    for text in render_all().values():
        crd = yaml.safe_load(text)
        names = crd["spec"]["names"]
        assert names["categories"] == ["tradebot"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert any(c["name"] == "Age" for c in version["additionalPrinterColumns"])
    assert {k.short_names[0] for k in KINDS} == {"strat", "bt", "bot", "cb", "md", "ho", "dca"}


@pytest.mark.parametrize("doc", examples(), ids=lambda d: d["metadata"]["name"])
def test_examples_validate_in_python(doc: dict[str, Any]):
    BY_KIND[doc["kind"]].spec.model_validate(doc["spec"])


def test_livebot_defaults_to_dry_run_and_refuses_inline_keys():
    spec = dict(example("LiveBot")["spec"])
    spec.pop("mode")
    assert LiveBotSpec.model_validate(spec).mode == "dryRun"
    spec["exchange"] = {"name": "binance", "secret": "TOPSECRET"}
    with pytest.raises(ValidationError) as exc:
        LiveBotSpec.model_validate(spec)
    assert "credentialsSecretRef" in str(exc.value)
    assert "TOPSECRET" not in str(exc.value).split("input_value")[0]


def test_live_needs_approval_credentials_and_promotion():
    spec = dict(example("LiveBot")["spec"], mode="live")
    with pytest.raises(ValidationError, match="approval"):
        LiveBotSpec.model_validate(spec)
    spec["promotion"] = dict(
        spec["promotion"],
        approval={
            "approvedBy": "alice",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "PR 12",
        },
    )
    with pytest.raises(ValidationError, match="credentialsSecretRef"):
        LiveBotSpec.model_validate(spec)
    spec["exchange"] = {"name": "binance", "credentialsSecretRef": {"name": "keys"}}
    with pytest.raises(ValidationError, match="codeHash"):
        LiveBotSpec.model_validate(spec)
    spec["promotion"]["approval"]["codeHash"] = "c" * 64
    without_limits = {k: v for k, v in spec.items() if k != "limits"}
    with pytest.raises(ValidationError, match="limits"):
        LiveBotSpec.model_validate(without_limits)
    bot = LiveBotSpec.model_validate(spec)
    assert bot.exchange.credentials_secret_ref is not None
    assert bot.exchange.credentials_secret_ref.api_key_key == "key"


def test_api_reference_is_current():
    docs = Path(__file__).resolve().parents[2] / "docs" / "api.md"
    assert main(["api-docs", "--check", str(docs)]) == 0, "run `tradebot api-docs -o docs/api.md`"
    text = docs.read_text()
    for kind in KINDS:
        for name in kind.spec.model_fields:
            field = kind.spec.model_fields[name]
            assert f"`{field.alias}`" in text, f"{kind.kind}.{field.alias} undocumented"


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("data", True),
        ("a..b/.hidden/..x", True),
        ("..", False),
        ("../other", False),
        ("data/../../etc", False),
        ("data/..", False),
    ],
)
def test_pvc_path_stays_inside_the_volume(path: str, ok: bool):
    from pydantic import ValidationError

    from tradebot.api.backtest import PvcData

    if ok:
        assert PvcData(claim_name="candles", path=path).path == path
    else:
        with pytest.raises(ValidationError, match=r"no `\.\.` segment"):
            PvcData(claim_name="candles", path=path)
