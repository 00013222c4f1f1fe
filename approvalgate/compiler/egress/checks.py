"""What the semantic checks share: their context, and the label and selector checks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from approvalgate.approvals.errors import Finding, JsonPath
from approvalgate.compiler.egress.env import EgressEnv
from approvalgate.compiler.egress.syntax import LABEL_KEY, LABEL_VALUE, shown, tool_owned


@dataclass(frozen=True)
class Ctx:
    """One document's facts the checks need; ``check_env``: the policy is enabled."""

    env: EgressEnv
    target: str
    dns: bool
    node_local_dns: bool
    check_env: bool


#: Label names Cilium derives for an endpoint (its namespace, its namespace's labels, its
#: service account, its cluster), matched by a selector key without a source prefix as
#: `any:<key>`: a selector naming one reads as a pod label, but Cilium then leaves out the
#: namespace it adds to selectors that name none, so it reaches other namespaces.
CILIUM_DERIVED = ("io.kubernetes.", "io.cilium.")


def check_selector(selector: Mapping[str, Any], path: JsonPath) -> Iterator[Finding]:
    labels = selector.get("matchLabels", {})
    yield from check_labels(labels, (*path, "matchLabels"))
    for key in labels:
        yield from _check_derived(key, (*path, "matchLabels", key))
    for i, expr in enumerate(selector.get("matchExpressions", [])):
        where: JsonPath = (*path, "matchExpressions", i)
        if not LABEL_KEY.match(expr["key"]):
            yield Finding((*where, "key"), f"`{shown(expr['key'])}` is not a valid label key")
        yield from _check_derived(expr["key"], (*where, "key"))
        for k, value in enumerate(expr.get("values", [])):
            if not LABEL_VALUE.match(value):
                yield Finding((*where, "values", k), f"`{shown(value)}` is not a valid label value")
        has_values = bool(expr.get("values"))
        if expr["operator"] in ("In", "NotIn") and not has_values:
            yield Finding(where, f"operator {expr['operator']} needs a non-empty `values` list")
        if expr["operator"] in ("Exists", "DoesNotExist") and "values" in expr:
            yield Finding((*where, "values"), f"operator {expr['operator']} takes no `values`")


def _check_derived(key: str, path: JsonPath) -> Iterator[Finding]:
    if key.lower().startswith(CILIUM_DERIVED):
        yield Finding(
            path,
            f"`{shown(key)}` is a label Cilium derives (namespace, namespace labels, service "
            "account), not a pod label: Cilium reads this selector as reaching pods outside "
            "the policy's namespace",
            "name the namespace with `namespace:` (or `anyOf`), and select pods by their "
            "own labels",
        )


def check_labels(labels: Mapping[str, str], path: JsonPath) -> Iterator[Finding]:
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or len(key.split("/")[0]) > 253:
            yield Finding((*path, key), f"`{shown(key)}` is not a valid label key")
        if not LABEL_VALUE.match(value):
            yield Finding(
                (*path, key),
                f"`{shown(value)}` is not a valid label value",
                "at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit",
            )


def tool_owned_problem(key: str) -> tuple[str, str] | None:
    """(message, advice) when a label or annotation key of the rendered object is one a
    tool between the output and the cluster acts on (``syntax.TOOL_DOMAINS``)."""
    domain = tool_owned(key)
    if domain is None:
        return None
    return (
        f"`{shown(key)}` is a key of {domain}, which kustomize, Argo CD, Helm or kubectl act "
        "on: it can keep the rendered policy out of the cluster (kustomize drops an object "
        "marked `config.kubernetes.io/local-config`; Argo CD deletes a hook after it runs)",
        "remove it: the policy's own labels and annotations are metadata only",
    )
