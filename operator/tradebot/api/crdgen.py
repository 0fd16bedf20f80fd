"""CustomResourceDefinitions generated from the pydantic models (the one source of truth).

pydantic writes JSON Schema (2020-12); Kubernetes wants a structural OpenAPI v3 subset: no
$ref, no anyOf-with-null for optional fields, no titles, booleans for exclusive bounds.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tradebot.api.base import GROUP, VERSION
from tradebot.api.kind import CATEGORY, Kind
from tradebot.api.registry import KINDS

_DROP = {"title", "$defs", "discriminator"}
# Keys pydantic may emit that the API server would refuse or misread.
_FORMATS = {"date-time", "date", "byte", "int32", "int64", "float", "double", "uuid"}


def _resolve(node: object, defs: dict[str, Any]) -> object:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: object) -> object:
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and not node.get("x-kubernetes-int-or-string"):
        non_null = [o for o in any_of if o != {"type": "null"}]
        if len(non_null) == 1 and len(non_null) < len(any_of):
            # Optional[X]: absent means unset; the schema is X's.
            del node["anyOf"]
            node = {**non_null[0], **node}
        elif all(set(o) == {"type"} for o in non_null) and len(non_null) > 1:
            raise ValueError(f"union of plain types is not structural: {any_of}")
    if node.get("default", 0) is None:
        del node["default"]
    if node.get("additionalProperties") is False:
        # Closed objects are the CRD default (unknown fields are pruned or refused).
        del node["additionalProperties"]
    if node.get("format") not in _FORMATS:
        node.pop("format", None)
    for bound, name in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            node[name] = value
            node[bound] = True
    for key in _DROP:
        node.pop(key, None)
    if "properties" in node:
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties", "anyOf"):
        if isinstance(node.get(key), (dict, list)):
            node[key] = _structural(node[key])
    if node.get("x-kubernetes-int-or-string") and "anyOf" in node:
        node.pop("type", None)
    return node


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    """A model's structural OpenAPI v3 schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _structural(_resolve(raw, defs))
    assert isinstance(schema, dict)
    return schema


def crd(kind: Kind) -> dict[str, Any]:
    spec = openapi_schema(kind.spec)
    status = openapi_schema(kind.status)
    status.pop("required", None)
    schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    columns = []
    for c in kind.columns:
        column: dict[str, Any] = {"name": c.name, "type": c.type, "jsonPath": c.json_path}
        if c.description:
            column["description"] = c.description
        if c.priority:
            column["priority"] = c.priority
        columns.append(column)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "tradebot-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def file_name(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


HEADER = "# Generated by `tradebot crds` from operator/tradebot/api; do not edit.\n"


def render(kind: Kind) -> str:
    """One CRD as a YAML document. Each starts with '---', so `cat crds/*.yaml` equals the
    output of `tradebot crds`."""
    body = yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)
    return f"---\n{HEADER}{body}"


def render_all() -> dict[str, str]:
    """File name -> content, in file-name order."""
    files = {file_name(k): render(k) for k in KINDS}
    return dict(sorted(files.items()))
