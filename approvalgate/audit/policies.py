"""Live ApprovalPolicy CRs against the compiled ones: missing, extra, changed.

The submission API reads the live ApprovalPolicy CRs; the webhook reads its bundle. When the
two disagree, runs submitted through the API are judged by rules git does not hold. Two ways
to know what git says:

- the compiled CRs (``rendered/<env>/approvalpolicies/*.yaml``, or ``--repo``/``--env``): the
  live ``spec`` must equal the compiled one exactly;
- the bundle alone (in-cluster): each live CR is compiled again with the bundle's approvers
  and environment settings, by the same :func:`approvals.policy.compile_bundle`, and must
  give the bundle's policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from approvalgate.approvals.policy import GATES_API, BundleSettings, compile_bundle
from approvalgate.audit.findings import Finding

_ABSENT: Final = object()
Key = tuple[str, str]


class _Text(str):
    """A description shown as is, not as a JSON value."""


def compare_with_compiled(
    live: Sequence[Mapping[str, Any]],
    compiled: Sequence[Mapping[str, Any]],
    in_scope: Callable[[str], bool],
    source: str,
) -> list[Finding]:
    """Exact comparison of ``spec`` with the compiled CRs found in ``source``."""
    expected = {_key(obj): obj.get("spec") for obj in compiled}
    return _compare(
        live,
        expected,
        in_scope,
        source,
        lambda obj, spec: _diff(spec, obj.get("spec"), "spec"),
    )


def compare_with_bundle(
    live: Sequence[Mapping[str, Any]],
    bundle: Mapping[str, Any],
    in_scope: Callable[[str], bool],
    source: str,
) -> list[Finding]:
    """Semantic comparison: each live CR compiled with the bundle's approvers and settings."""
    expected: dict[Key, Any] = {}
    for policy in bundle.get("policies") or []:
        expected[(str(policy.get("namespace") or ""), str(policy["name"]))] = policy
    approvers = [_approver_document(a) for a in bundle.get("approvers") or []]
    settings = BundleSettings(
        environment=str(bundle.get("environment", "default")),
        exclude_namespaces=tuple(bundle.get("excludeNamespaces") or ()),
        namespace_selection=str(bundle.get("namespaceSelection", "all")),
        enforcement=str(bundle.get("enforcement", "enforce")),
        no_match=str(bundle.get("noMatch", "deny")),
        clock_skew_seconds=int(bundle.get("clockSkewSeconds", 60)),
        cluster_view=str(bundle.get("clusterView", "required")),
        use_settle_seconds=int(bundle.get("useSettleSeconds", 30)),
        referenced_content=str(bundle.get("referencedContent", "bind")),
    )

    def changes(obj: Mapping[str, Any], want: Any) -> list[tuple[str, Any, Any]]:
        compiled, problems = compile_bundle([*approvers, _policy_document(obj)], settings)
        errors = [p.finding for p in problems if p.finding.severity == "error"]
        if errors or compiled is None:
            detail = "; ".join(f"{_path(f.path)}: {f.message}" for f in errors[:3])
            return [("(whole policy)", _Text("a valid policy"), _Text(f"invalid: {detail}"))]
        (have,) = compiled["policies"]
        return _diff(want, have, "compiled")

    return _compare(live, expected, in_scope, source, changes)


def _compare(
    live: Sequence[Mapping[str, Any]],
    expected: Mapping[Key, Any],
    in_scope: Callable[[str], bool],
    source: str,
    changes: Callable[[Mapping[str, Any], Any], list[tuple[str, Any, Any]]],
) -> list[Finding]:
    out: list[Finding] = []
    live_by_key = {_key(obj): obj for obj in live}
    matched: set[Key] = set()
    for key, want in sorted(expected.items()):
        obj = _find(live_by_key, key)
        ref = _ref(key)
        if obj is not None:
            matched.add(_key(obj))
        if obj is None:
            out.append(
                Finding(
                    "policies",
                    "finding",
                    f"ApprovalPolicy/{ref}",
                    f"ApprovalPolicy {ref} is in git ({source}) but not in the cluster: the "
                    "submission API does not apply it (the webhook still enforces it from its "
                    "bundle)",
                    "sync the environment's rendered folder (its Argo CD application), or "
                    "`kubectl apply -f rendered/ENV/approvalpolicies/`",
                )
            )
            continue
        diffs = changes(obj, want)
        if diffs:
            shown = "; ".join(f"{p}: {_show(a)} in git, {_show(b)} live" for p, a, b in diffs[:8])
            more = f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else ""
            out.append(
                Finding(
                    "policies",
                    "finding",
                    f"ApprovalPolicy/{ref}",
                    f"ApprovalPolicy {ref} differs from git ({source}): {shown}{more}"
                    + _last_change(obj),
                    "sync it from git (its Argo CD application); if the change is wanted, make "
                    "it in the policy repo and compile. The submission API follows the live "
                    "object until then",
                    "spec",
                )
            )
    for key, obj in sorted(live_by_key.items()):
        if key in matched or not in_scope(key[0]):
            continue
        ref = _ref(key)
        out.append(
            Finding(
                "policies",
                "finding",
                f"ApprovalPolicy/{ref}",
                f"ApprovalPolicy {ref} is in the cluster but not in git ({source}): the "
                "submission API follows it, the webhook does not know it" + _last_change(obj),
                "delete it, or add it to the policy repo and compile",
            )
        )
    return out


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _find(live: Mapping[Key, Mapping[str, Any]], key: Key) -> Mapping[str, Any] | None:
    if key in live:
        return live[key]
    if not key[0]:  # a policy compiled without a namespace: any namespace, by name
        matches = [obj for (ns, name), obj in live.items() if name == key[1]]
        return matches[0] if len(matches) == 1 else None
    return None


def _ref(key: Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def _approver_document(approver: Mapping[str, Any]) -> dict[str, Any]:
    keys = [
        {k: key[k] for k in ("publicKey", "notBefore", "notAfter", "userVerification") if k in key}
        for key in approver.get("keys") or []
    ]
    return {
        "apiVersion": GATES_API,
        "kind": "Approver",
        "metadata": {"name": approver["name"]},
        "spec": {
            "usernames": list(approver.get("usernames") or [approver["name"]]),
            "groups": list(approver.get("groups") or []),
            "keys": keys,
        },
    }


def _policy_document(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The live CR as the compiler reads a policy: server-set metadata and status dropped."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind", "ApprovalPolicy"),
        "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
        "spec": obj.get("spec") if obj.get("spec") is not None else {},
    }


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (so 1 is not true and 1 is not "1")."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _diff(want: Any, have: Any, path: str) -> list[tuple[str, Any, Any]]:
    """(path, git, live) for every leaf that differs; lists compare whole."""
    if isinstance(want, Mapping) and isinstance(have, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(want) | set(have)):
            out += _diff(want.get(key, _ABSENT), have.get(key, _ABSENT), f"{path}.{key}")
        return out
    if want is _ABSENT or have is _ABSENT:
        return [(path, want, have)]
    return [] if _same(want, have) else [(path, want, have)]


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, _Text):
        return str(value)
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _path(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path) or "(document)"


def _last_change(obj: Mapping[str, Any]) -> str:
    """Who last wrote the spec, from managedFields (a field manager name, not a user)."""
    entries = [
        e
        for e in (obj.get("metadata") or {}).get("managedFields") or []
        if isinstance(e, Mapping) and "f:spec" in (e.get("fieldsV1") or {})
    ]
    if not entries:
        return ""
    last = max(entries, key=lambda e: str(e.get("time") or ""))
    return (
        f" (spec last written by field manager {last.get('manager', '?')!r}, "
        f"{last.get('operation', '?')} at {last.get('time', '?')})"
    )
