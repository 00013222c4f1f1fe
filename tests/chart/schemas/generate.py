"""Compact strict JSON Schemas of the core kinds the chart renders, from a real kube-apiserver.

    python -m tests.chart.schemas.generate     # starts the e2e control plane, rewrites the files

Each `<kind>-<group>-<version>.json` (draft-07) is derived from the API server's own OpenAPI v3
document (`/openapi/v3/<group-version>`, components.schemas) of the pinned Kubernetes in
tools/k8s: the kind's definition and everything it references, made strict the way
kubeconform -strict and yannh/kubernetes-json-schema's *-standalone-strict schemas are
(`additionalProperties: false` on every object that declares properties), without
descriptions, defaults and x-kubernetes-* annotations. apiVersion and kind are pinned, and
`status` is left out: a chart never renders it. tests/e2e/test_chart_dry_run.py regenerates
them from the running server and fails on any difference.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REF_PREFIX = "#/components/schemas/"

#: (group-version, kind) of every core kind the chart renders.
KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
    ("batch/v1", "CronJob"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
)

_KEPT = ("type", "properties", "items", "additionalProperties", "required", "enum", "oneOf")


def file_name(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    parts = [kind.lower(), group.split(".")[0] if group else "", version]
    return "-".join(part for part in parts if part) + ".json"


def openapi_path(api_version: str) -> str:
    return f"/openapi/v3/{'api/v1' if api_version == 'v1' else 'apis/' + api_version}"


def _definition_name(components: dict[str, Any], api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    for name, schema in components.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if (gvk.get("group", ""), gvk["version"], gvk["kind"]) == (group, version, kind):
                return name
    raise LookupError(f"{api_version} {kind}: not in the OpenAPI document")


def _compact(node: Any, refs: set[str]) -> Any:
    """One schema node without prose and extensions; every object made strict."""
    if not isinstance(node, dict):
        return node
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        node = {**all_of[0], **{k: v for k, v in node.items() if k != "allOf"}}
    if "$ref" in node:
        name = node["$ref"].removeprefix(REF_PREFIX)
        refs.add(name)
        return {"$ref": f"#/definitions/{name}"}
    out: dict[str, Any] = {}
    for key in _KEPT:
        if key not in node:
            continue
        value = node[key]
        if key == "properties":
            value = {name: _compact(sub, refs) for name, sub in sorted(value.items())}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _compact(value, refs)
        elif key == "oneOf":
            value = [_compact(sub, refs) for sub in value]
        elif key == "required":
            value = sorted(value)
        out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def strict_schema(components: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """A standalone strict schema of one kind, from OpenAPI v3 components.schemas."""
    root = _definition_name(components, api_version, kind)
    definitions: dict[str, Any] = {}
    pending, refs = [root], set[str]()
    while pending:
        name = pending.pop()
        if name in definitions:
            continue
        definitions[name] = _compact(components[name], refs)
        pending.extend(sorted(refs - definitions.keys()))
    top = definitions[root]
    top["properties"].pop("status", None)
    top["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
    top["properties"]["kind"] = {"type": "string", "enum": [kind]}
    top["required"] = sorted({*top.get("required", []), "apiVersion", "kind", "metadata"})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"{api_version} {kind} (strict, from the kube-apiserver's OpenAPI v3)",
        "$ref": f"#/definitions/{root}",
        "definitions": dict(sorted(definitions.items())),
    }


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def render_all(fetch: Callable[[str], dict[str, Any]]) -> dict[str, str]:
    """File name -> text of every schema; `fetch` maps an OpenAPI v3 path to its document."""
    documents: dict[str, dict[str, Any]] = {}
    files = {}
    for api_version, kind in KINDS:
        path = openapi_path(api_version)
        if path not in documents:
            documents[path] = fetch(path)["components"]["schemas"]
        files[file_name(api_version, kind)] = dump(
            strict_schema(documents[path], api_version, kind)
        )
    return files


def committed() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(HERE.glob("*.json"))}


def write(files: Iterable[tuple[str, str]]) -> None:
    for stale in HERE.glob("*.json"):
        stale.unlink()
    for name, text in files:
        (HERE / name).write_text(text, encoding="utf-8")


def main() -> int:
    sys.path.insert(0, str(HERE.parents[2]))
    from tests.e2e.controlplane import ControlPlane, locate_binaries

    with ControlPlane(locate_binaries()) as plane:

        def fetch(path: str) -> dict[str, Any]:
            result: dict[str, Any] = json.loads(plane.kubectl("admin", "get", "--raw", path).stdout)
            return result

        files = render_all(fetch)
    write(sorted(files.items()))
    for name, text in sorted(files.items()):
        print(f"{name}: {len(text)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
