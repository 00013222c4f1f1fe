"""The object names an AgentRun's spec refers to, judged as Kubernetes names.

The platform's controller resolves these fields by name (after trimming them); the gate
matches policies on some of them. A name the two could read differently (trailing space,
non-breaking space, a look-alike letter, an upper-case letter) is never a valid Kubernetes
object name, so :func:`reference_problems` lists every such field and decide() denies the
run: the gate never has to guess how the controller normalises a name.

The fields are those of the upstream AgentRun CRD (agents.proompteng.ai/v1alpha1) that hold
the name of another object: every ``*Ref.name`` (agent, implementation specs at the top and
in every workflow step, memory, VCS provider, system prompt), the Secret names of
``spec.secrets``, and the Secret and PersistentVolumeClaim names of workload volumes (at the
top and in every step).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

MAX_NAME: Final = 253
"""DNS-1123 subdomain, the rule for the names of most Kubernetes objects (Agent,
ImplementationSpec, Secret, ConfigMap, PersistentVolumeClaim)."""
_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ALLOWED: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
ADVICE: Final = (
    "Write each name exactly as the object is named: lowercase letters a-z, digits, '-' "
    f"and '.', starting and ending with a letter or digit, at most {MAX_NAME} characters."
)


class Reference(NamedTuple):
    """One reference field of a spec: where it is (``spec.agentRef.name``) and its value."""

    path: str
    value: object


def references(spec: object) -> Iterator[Reference]:
    """Every reference name of ``spec``, in a fixed order (top level first, then each step)."""
    if not isinstance(spec, Mapping):
        return
    for field in ("agentRef", "implementationSpecRef", "memoryRef", "vcsRef", "systemPromptRef"):
        yield from _ref(spec, field, "spec")
    yield from _inline_vcs(spec, "spec")
    secrets = spec.get("secrets")
    if isinstance(secrets, list):
        for index, secret in enumerate(secrets):
            yield Reference(f"spec.secrets[{index}]", secret)
    yield from _volumes(spec, "spec")
    workflow = spec.get("workflow")
    steps = workflow.get("steps") if isinstance(workflow, Mapping) else None
    if isinstance(steps, list):
        for index, step in enumerate(steps):
            if isinstance(step, Mapping):
                where = f"spec.workflow.steps[{index}]"
                yield from _ref(step, "implementationSpecRef", where)
                yield from _inline_vcs(step, where)
                yield from _volumes(step, where)


def implementation_specs(spec: object) -> tuple[str, ...]:
    """The ImplementationSpec names the run uses: the top-level one, then every step's."""
    return tuple(
        str(ref.value)
        for ref in references(spec)
        if ref.path.endswith("implementationSpecRef.name") and isinstance(ref.value, str)
    )


def reference_problems(spec: object) -> list[str]:
    """``path "value": what is wrong`` for every reference that is not a valid object name."""
    return [
        f"{ref.path} {_show(ref.value)}: {problem}"
        for ref in references(spec)
        if (problem := name_problem(ref.value))
    ]


def name_problem(value: object) -> str:
    """Why ``value`` is not a valid Kubernetes object name ("" when it is one)."""
    if not isinstance(value, str):
        return "is not a string"
    if _SUBDOMAIN.fullmatch(value) and len(value) <= MAX_NAME:
        return ""
    if not value:
        return "is empty"
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long, over {MAX_NAME}"
    for position, char in enumerate(value):
        if char not in _ALLOWED:
            return f"character {_describe(char)} at position {position + 1} is not allowed"
    return "must start and end with a letter or digit (each '.'-separated part too)"


def _ref(obj: Mapping[str, Any], field: str, where: str) -> Iterator[Reference]:
    if field not in obj:
        return
    ref = obj[field]
    if isinstance(ref, Mapping):
        yield Reference(f"{where}.{field}.name", ref.get("name"))
    else:
        yield Reference(f"{where}.{field}", ref)


def _inline_vcs(obj: Mapping[str, Any], where: str) -> Iterator[Reference]:
    implementation = obj.get("implementation")
    inline = implementation.get("inline") if isinstance(implementation, Mapping) else None
    if isinstance(inline, Mapping):
        yield from _ref(inline, "vcsRef", f"{where}.implementation.inline")


def _volumes(obj: Mapping[str, Any], where: str) -> Iterator[Reference]:
    workload = obj.get("workload")
    volumes = workload.get("volumes") if isinstance(workload, Mapping) else None
    if not isinstance(volumes, list):
        return
    for index, volume in enumerate(volumes):
        if isinstance(volume, Mapping):
            for field in ("secretName", "claimName"):
                if field in volume:
                    yield Reference(f"{where}.workload.volumes[{index}].{field}", volume[field])


def _show(value: object) -> str:
    """The value as JSON would quote it (invisible and non-ASCII characters escaped)."""
    if isinstance(value, str):
        shown = value if len(value) <= 80 else value[:80] + "..."
        return json.dumps(shown)
    return type(value).__name__ if isinstance(value, Mapping | list) else repr(value)


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    if char == " ":
        return "' ' (space)"
    if char.isprintable() and ord(char) < 128:
        return f"{char!r}"
    return f"{code} ({name})" if name else code
