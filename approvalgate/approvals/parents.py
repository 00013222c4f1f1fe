"""Runs the platform creates: Schedules, OrchestrationRuns and Swarms approved as parents.

Most AgentRuns of the agents platform are created by the platform itself (security class
23), under its own ServiceAccounts, which live where requesters may act as them (class 17):
trusting those identities would admit anything. Instead a *parent* is approved the way a
run is (signed records, subject :func:`subject`, digest :func:`coverage`), the approval
covering what its runs will be, and a run the platform creates is admitted only when it
*derives* from an approved parent (:func:`derive`): the parent is found through the labels
the upstream code sets, in the cluster view, and the run must be exactly what the parent
makes (up to the per-run fields the policy declares, e.g. ``idempotencyKey``).

Upstream behaviour reproduced here (proompteng/lab, services/agents/src/server/, read at the
commit of third_party/upstream-agents/PROVENANCE.yaml; docs/parents.md):

- ``supporting-primitives-controller.ts`` ``buildScheduleRunTemplate``: a Schedule's run is
  its target AgentRun's spec with a fresh ``idempotencyKey`` and string-only ``parameters``,
  ``generateName: <schedule>-``, the Schedule's labels plus ``schedules.proompteng.ai/schedule``
  and ``agents.proompteng.ai/delivery-id`` (:func:`schedule_run_manifest`);
  ``supporting-schedule-runner.ts`` replaces ``__AGENTS_DELIVERY_ID__`` and creates it;
- ``orchestration-controller.ts`` ``submitAgentRunStep`` (with ``mergeParameters`` and
  ``normalizeStringMap``), ``agent-resource-labels.ts`` ``buildOrchestrationChildLabels`` and
  ``kubernetes-labels.ts`` ``normalizeKubernetesLabelValue`` (:func:`step_run_spec`,
  :func:`step_run_metadata`);
- jangar's supporting controller ``reconcileSwarm``: one Schedule per enabled stage, owned
  by the Swarm (:func:`swarm_schedule`).

Pure: objects come from the caller (the webhook's watch-fed view, a file, a list).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from approvalgate.approvals import content, records
from approvalgate.approvals.digest import (
    MAX_SPEC_BYTES,
    canonical_json,
    room_left,
    smaller_than,
)
from approvalgate.approvals.errors import DigestError

if TYPE_CHECKING:
    from approvalgate.approvals.view import ClusterView


class ParentKind(NamedTuple):
    group: str
    version: str
    resource: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


SCHEDULE: Final = ParentKind("schedules.proompteng.ai", "v1alpha1", "schedules", "Schedule")
ORCHESTRATION_RUN: Final = ParentKind(
    "orchestration.proompteng.ai", "v1alpha1", "orchestrationruns", "OrchestrationRun"
)
ORCHESTRATION: Final = ParentKind(
    "orchestration.proompteng.ai", "v1alpha1", "orchestrations", "Orchestration"
)
SWARM: Final = ParentKind("swarm.proompteng.ai", "v1alpha1", "swarms", "Swarm")
KINDS: Final = {k.kind: k for k in (SCHEDULE, ORCHESTRATION_RUN, SWARM)}
"""The parents: objects approved for the runs the platform creates from them."""
BY_RESOURCE: Final = {(k.group, k.resource): k for k in KINDS.values()}

SCHEDULE_LABEL: Final = "schedules.proompteng.ai/schedule"
DELIVERY_LABEL: Final = "agents.proompteng.ai/delivery-id"
ORCHESTRATION_RUN_LABEL: Final = "agents.proompteng.ai/orchestration-run"
ORCHESTRATION_STEP_LABEL: Final = "agents.proompteng.ai/orchestration-step"
DERIVATION_LABELS: Final = (SCHEDULE_LABEL, ORCHESTRATION_RUN_LABEL, ORCHESTRATION_STEP_LABEL)
"""The labels :func:`derive` reads to find the parent of a run the platform made."""
SWARM_NAME_LABEL: Final = "swarm.proompteng.ai/name"
SWARM_STAGE_LABEL: Final = "swarm.proompteng.ai/stage"
SWARM_MODE_LABEL: Final = "swarm.proompteng.ai/mode"
SWARM_STAGES: Final = ("discover", "plan", "implement", "verify")
DELIVERY_PLACEHOLDER: Final = "__AGENTS_DELIVERY_ID__"

TEMPLATE_ANNOTATION: Final = "gates.proompteng.ai/run-template"
"""On a Schedule: the run template its approvers saw (canonical JSON of the run spec the
platform makes from the target, per-run fields removed). Part of the coverage digest."""
TEMPLATES_ANNOTATION: Final = "gates.proompteng.ai/run-templates"
"""On a Swarm: ``{stage: template}`` for each stage whose target is an AgentRun."""

DEFAULT_PER_RUN_FIELDS: Final = ("idempotencyKey",)
DEFAULT_MAX_TTL_SECONDS: Final = 720 * 3600

_LABEL_VALUE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def subject(kind: str, namespace: str, name: str) -> str:
    """The in-toto subject naming one parent: ``schedules.proompteng.ai/Schedule/ns/name``."""
    return f"{KINDS[kind].group}/{kind}/{namespace}/{name}"


def is_parent_subject(text: str) -> bool:
    return any(text.startswith(f"{k.group}/{k.kind}/") for k in KINDS.values())


# --- upstream naming ----------------------------------------------------------------------


JS_WHITESPACE: Final = (
    "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""What JavaScript's ``String.prototype.trim`` removes (ECMAScript WhiteSpace and
LineTerminator): U+FEFF too, which Python's ``str.strip()`` keeps, and not U+001C-U+001F or
U+0085, which it removes. The platform is TypeScript: a value it reads trimmed is compared
as it reads it, or a look-alike means one thing to the gate and another to the platform."""


def js_trim(value: str) -> str:
    """``value.trim()`` as the platform's TypeScript computes it."""
    return value.strip(JS_WHITESPACE)


def as_string(value: object) -> str | None:
    """Upstream ``asString``: a string with something in it, trimmed (:func:`js_trim`);
    else None."""
    if isinstance(value, str) and js_trim(value):
        return js_trim(value)
    return None


def _as_record(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _nested(value: object, *path: str) -> object:
    cursor = value
    for part in path:
        if not isinstance(cursor, dict):
            return None
        cursor = cursor.get(part)
    return cursor


def label_value(value: str) -> str:
    """Upstream ``normalizeKubernetesLabelValue``: the value if it is a label value, else a
    sanitised stem and 12 hex digits of its sha256."""
    trimmed = js_trim(value)
    if len(trimmed) <= 63 and _LABEL_VALUE.fullmatch(trimmed):
        return trimmed
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    sanitized = _trim_edges(re.sub(r"[^A-Za-z0-9_.-]+", "-", trimmed))
    stem = _trim_edges(sanitized[: 63 - len(digest) - 1]) or "delivery"
    return f"{stem}-{digest}"


def _trim_edges(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+$", "", re.sub(r"^[^A-Za-z0-9]+", "", value))


def make_name(base: str, suffix: str, max_base: int = 50) -> str:
    """Upstream ``makeName``: the orchestration controller's keeps 50 characters of the
    sanitised base, the supporting controller's 45 (``max_base``); then ``-suffix``."""
    sanitized = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", base.lower()))
    return f"{sanitized[:max_base]}-{suffix}"


def _js_json(value: object) -> str:
    """``JSON.stringify`` of a JSON value as the platform (JavaScript) writes it, which
    Python's ``json.dumps`` does not: numbers as ECMAScript's ``Number::toString``
    (``0.00001``, ``1e-7``, ``10000000000000000``, an integer beyond 2^53 as the double
    JavaScript reads), and an object's array-index keys (``"9"``, ``"10"``) first in
    ascending order, then the others in the order received (the API server's)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_js_json(item) for item in value) + "]"
    if isinstance(value, dict):
        index = sorted((k for k in value if _is_array_index(k)), key=int)
        keys = [*index, *(k for k in value if not _is_array_index(k))]
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_js_json(value[k])}" for k in keys)
            + "}"
        )
    return json.dumps(value)


def _is_array_index(key: object) -> bool:
    """An ECMAScript array index: the canonical decimal text of an integer below 2^32 - 1
    (``"01"``, ``"-1"`` and ``"4294967295"`` are not; such keys keep their place)."""
    return (
        isinstance(key, str)
        and key.isascii()
        and key.isdigit()
        and (key == "0" or not key.startswith("0"))
        and int(key) < 2**32 - 1
    )


def js_number(value: int | float) -> str:
    """ECMAScript ``Number::toString(10)`` (what ``String(x)`` and ``JSON.stringify`` write)
    of ``value`` read as a double: the shortest digits that round-trip (Python's ``repr``
    finds the same), placed by the exponent the way JavaScript places them."""
    number = float(value)
    if not math.isfinite(number):
        return "null"  # JSON.stringify writes NaN and the infinities as null
    if number == 0:
        return "0"
    if number < 0:
        return "-" + js_number(-number)
    mantissa, _, exponent = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # the decimal point's place: value = 0.DIGITS x 10^point
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return digits + "0" * (point - k)
    if 0 < point <= 21:
        return f"{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    e = point - 1
    sign = "+" if e >= 0 else "-"
    head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{head}e{sign}{abs(e)}"


def normalize_string_map(value: object) -> dict[str, str]:
    """Upstream orchestration ``normalizeStringMap``: strings kept, null dropped, the rest
    as JSON text."""
    record = _as_record(value)
    if not record:
        return {}
    return {
        str(k): v if isinstance(v, str) else _js_json(v) for k, v in record.items() if v is not None
    }


def normalize_parameter_map(value: object) -> dict[str, str]:
    """Upstream schedule ``normalizeParameterMap``: only the string values are kept."""
    record = _as_record(value) or {}
    return {str(k): v for k, v in record.items() if isinstance(v, str)}


# --- what the platform creates --------------------------------------------------------------


def schedule_run_manifest(schedule: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The run.json the platform writes for ``schedule`` (placeholders kept), as
    ``buildScheduleRunTemplate`` does for an AgentRun or OrchestrationRun target."""
    meta = _as_record(schedule.get("metadata")) or {}
    target_meta = _as_record(target.get("metadata")) or {}
    name = as_string(meta.get("name")) or "schedule"
    namespace = as_string(target_meta.get("namespace")) or as_string(meta.get("namespace"))
    inherited = {
        k: v
        for k, v in (_as_record(meta.get("labels")) or {}).items()
        if isinstance(v, str) and k not in (SCHEDULE_LABEL, DELIVERY_LABEL)
    }
    labels = {**inherited, SCHEDULE_LABEL: name, DELIVERY_LABEL: DELIVERY_PLACEHOLDER}
    spec = copy.deepcopy(_as_record(target.get("spec")) or {})
    kind = as_string(target.get("kind")) or ""
    if kind == "AgentRun":
        api_version = "agents.proompteng.ai/v1alpha1"
        spec["idempotencyKey"] = DELIVERY_PLACEHOLDER
    elif kind == "OrchestrationRun":
        api_version = ORCHESTRATION_RUN.api_version
        spec["deliveryId"] = DELIVERY_PLACEHOLDER
    else:
        raise ValueError(f"unsupported schedule target kind: {kind or 'unknown'}")
    spec["parameters"] = normalize_parameter_map(spec.get("parameters"))
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "generateName": f"{name}-",
            "namespace": namespace or "default",
            "labels": labels,
        },
        "spec": spec,
    }


def strip(run_spec: object, per_run_fields: Sequence[str]) -> dict[str, Any]:
    """The run spec without the per-run fields the policy declares (top-level keys)."""
    spec = _as_record(run_spec) or {}
    return {k: v for k, v in spec.items() if k not in per_run_fields}


def schedule_template(
    target_spec: object, per_run_fields: Sequence[str] = DEFAULT_PER_RUN_FIELDS
) -> dict[str, Any]:
    """The run template approvers sign for a Schedule whose target has ``target_spec``: the
    spec every fire creates, per-run fields removed."""
    spec = copy.deepcopy(_as_record(target_spec) or {})
    spec["idempotencyKey"] = DELIVERY_PLACEHOLDER
    spec["parameters"] = normalize_parameter_map(spec.get("parameters"))
    return strip(spec, per_run_fields)


def _steps(orchestration_spec: object) -> list[dict[str, Any]]:
    steps = _nested(orchestration_spec, "steps")
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def agent_run_steps(orchestration_spec: object) -> list[str]:
    """Names (trimmed) of the Orchestration's AgentRun steps, in order."""
    return [
        name
        for step in _steps(orchestration_spec)
        if as_string(step.get("kind")) == "AgentRun" and (name := as_string(step.get("name")))
    ]


def step_run_spec(
    orchestration_spec: object, orun_spec: object, step_name: str
) -> dict[str, Any] | None:
    """The spec ``submitAgentRunStep`` gives the AgentRun of step ``step_name`` (None when the
    Orchestration has no such AgentRun step, or upstream would refuse to create it)."""
    step = next(
        (
            s
            for s in _steps(orchestration_spec)
            if as_string(s.get("name")) == step_name and as_string(s.get("kind")) == "AgentRun"
        ),
        None,
    )
    if step is None:
        return None
    agent = (
        as_string(_nested(step, "agentRef", "name"))
        or as_string(step.get("agentRef"))
        or as_string(_nested(step, "with", "agentRef"))
    )
    implementation_ref = (
        as_string(_nested(step, "implementationSpecRef", "name"))
        or as_string(step.get("implementationSpecRef"))
        or as_string(_nested(step, "with", "implementationSpecRef"))
    )
    implementation = _as_record(step.get("implementation"))
    if not agent or (not implementation_ref and not implementation):
        return None
    runtime = _as_record(step.get("runtime")) or _as_record(_nested(step, "with", "runtime")) or {}
    runtime_type = as_string(runtime.get("type")) or "job"
    runtime_config = _as_record(runtime.get("config")) or {}
    workload = _as_record(step.get("workload"))
    workflow = _as_record(step.get("workflow")) or _as_record(_nested(step, "with", "workflow"))
    memory = as_string(_nested(step, "memoryRef", "name")) or as_string(step.get("memoryRef"))
    raw_secrets = step.get("secrets")
    secrets = (
        [s for s in raw_secrets if isinstance(s, str)] if isinstance(raw_secrets, list) else []
    )
    parameters = {
        **normalize_string_map(_nested(orun_spec, "parameters")),
        **normalize_string_map(step.get("with")),
    }
    spec: dict[str, Any] = {"agentRef": {"name": agent}}
    if implementation_ref:
        spec["implementationSpecRef"] = {"name": implementation_ref}
    if implementation:
        spec["implementation"] = copy.deepcopy(implementation)
    spec["parameters"] = parameters
    if memory:
        spec["memoryRef"] = {"name": memory}
    if secrets:
        spec["secrets"] = secrets
    spec["runtime"] = {"type": runtime_type}
    if runtime_config:
        spec["runtime"]["config"] = copy.deepcopy(runtime_config)
    if runtime_type == "workflow":
        if workflow is not None and "steps" in workflow:
            spec["workflow"] = copy.deepcopy(workflow)
        else:
            spec["workflow"] = {**copy.deepcopy(workflow or {}), "steps": [{"name": "main"}]}
    if workload:
        spec["workload"] = copy.deepcopy(workload)
    return spec


def step_run_metadata(orun_name: str, step_name: str, namespace: str) -> dict[str, Any]:
    """The metadata ``submitAgentRunStep`` gives a step's AgentRun."""
    return {
        "generateName": f"{make_name(orun_name, step_name or 'step')}-",
        "namespace": namespace,
        "labels": {
            ORCHESTRATION_RUN_LABEL: label_value(orun_name),
            ORCHESTRATION_STEP_LABEL: label_value(step_name),
        },
    }


def swarm_schedule(swarm: Mapping[str, Any], stage: str) -> dict[str, Any] | None:
    """The Schedule the swarm controller applies for ``stage`` (None when the stage is off)."""
    meta = _as_record(swarm.get("metadata")) or {}
    spec = _as_record(swarm.get("spec")) or {}
    execution = _as_record(_nested(spec, "execution", stage))
    if not execution or execution.get("enabled") is False:
        return None
    target = _as_record(execution.get("targetRef"))
    if not target:
        return None
    name = as_string(meta.get("name")) or "swarm"
    cadence = as_string(execution.get("every")) or as_string(
        _nested(spec, "cadence", f"{stage}Every")
    )
    owner: dict[str, Any] = {
        "apiVersion": SWARM.api_version,
        "kind": "Swarm",
        "name": name,
        "uid": str(meta.get("uid") or ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    kind = as_string(target.get("kind")) or ""
    namespace = str(meta.get("namespace") or "")
    schedule_spec: dict[str, Any] = {
        "cron": _cron(cadence or ""),
        "timezone": as_string(spec.get("timezone")) or "UTC",
        "targetRef": {
            "apiVersion": _STAGE_API_VERSIONS.get(kind, ""),
            "kind": kind,
            "name": as_string(target.get("name")) or "",
            "namespace": as_string(target.get("namespace")) or namespace,
        },
    }
    return {
        "apiVersion": SCHEDULE.api_version,
        "kind": "Schedule",
        "metadata": {
            "name": make_name(f"{name}-{stage}", "sched", 45),
            "namespace": str(meta.get("namespace") or ""),
            "labels": {
                SWARM_NAME_LABEL: label_value(name),
                SWARM_STAGE_LABEL: label_value(stage),
                SWARM_MODE_LABEL: label_value(as_string(spec.get("mode")) or ""),
            },
            "ownerReferences": [owner],
        },
        "spec": schedule_spec,
    }


_STAGE_API_VERSIONS: Final = {
    "AgentRun": "agents.proompteng.ai/v1alpha1",
    "OrchestrationRun": ORCHESTRATION_RUN.api_version,
}


def _target(ref: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    """A targetRef as the platform resolves it: kind, name, namespace (default: the owner's)."""
    return (
        as_string(ref.get("kind")) or "",
        as_string(ref.get("name")) or "",
        as_string(ref.get("namespace")) or namespace,
    )


def _cron(every: str) -> str:
    """A cron line for a swarm cadence such as ``10m``, ``2h``, ``1d`` (minutes/hours/days)."""
    match = re.fullmatch(r"([0-9]+)([mhd])", js_trim(every))  # JavaScript's \d is ASCII
    if not match:
        return "0 * * * *"
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "m":
        return f"*/{amount} * * * *"
    if unit == "h":
        return f"0 */{amount} * * *"
    return f"0 0 */{amount} * *"


# --- coverage: what an approval of a parent signs ------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """What a parent's approval covers: its subject, the digest signed, its run templates
    (the runs it makes, per-run fields removed) and the content those runs execute."""

    kind: str
    namespace: str
    name: str
    subject: str
    digest: str
    templates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Keyed by what tells the runs apart: ``""`` (Schedule), the step name, the stage."""
    references: tuple[str, ...] = ()
    size: int = 0
    """Bytes of RFC 8785 canonical JSON of the templates together (at most
    :data:`MAX_TEMPLATES_BYTES`): what holding this coverage costs, for the memo's bound."""

    def matches(self, key: str, spec: object) -> bool:
        """The run spec ``spec`` is template ``key``, as JSON values (:func:`json_equal`)."""
        expected = self.templates.get(key)
        return expected is not None and json_equal(expected, spec)


def json_equal(left: object, right: object) -> bool:
    """Equal as JSON values, as RFC 8785 sees them: ``true`` is not ``1``, ``1`` is ``1.0``,
    strings exactly, objects by keys. (The same verdict as comparing canonical bytes, without
    serialising: a platform-made run is compared with its template on every admission.)"""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, str) or isinstance(right, str):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if left is None or right is None:
        return left is right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            json_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    return False


_MEMO_ENTRIES: Final = 4096
MAX_MEMO_BYTES: Final = 32 * 1024 * 1024
"""The most the coverage memo holds, in bytes of its coverages' templates (each at most
:data:`MAX_TEMPLATES_BYTES`): per worker process, whatever the parents in the cluster."""
_memo: dict[tuple[str, ...], Coverage | str] = {}
"""Coverages by what names their content: (kind, namespace, name, uid, resourceVersion) of a
stored parent (and its Orchestration's uid and resourceVersion), or ("held", kind, namespace,
name, uid, generation, sha256 of the template annotation) for :func:`summary`, which keeps a
problem too (a coverage refused is as costly to find again)."""
_memo_bytes: list[int] = [0]  # the sizes of the coverages in _memo, added up
_memo_lock = threading.Lock()


def _weight(covered: Coverage | str) -> int:
    return covered.size if isinstance(covered, Coverage) else len(covered)


def _remember(key: tuple[str, ...], covered: Coverage | str) -> None:
    with _memo_lock:  # a miss only: the count must stay the memo's
        old = _memo.pop(key, None)
        if old is not None:
            _memo_bytes[0] -= _weight(old)
        while _memo and (
            len(_memo) >= _MEMO_ENTRIES or _memo_bytes[0] + _weight(covered) > MAX_MEMO_BYTES
        ):
            _memo_bytes[0] -= _weight(_memo.pop(next(iter(_memo))))
        _memo[key] = covered
        _memo_bytes[0] += _weight(covered)


def _memo_key(obj: Mapping[str, Any], view: ClusterView | None) -> tuple[str, ...] | None:
    """Coverage depends on the object (and an OrchestrationRun's Orchestration) only; objects
    from the API server name their version, so (uid, resourceVersion) identify the content.
    Objects without one (files, tests) are not remembered. An OrchestrationRun's coverage
    reads its spec and its Orchestration's only, which the API server's ``generation`` names
    (no client sets it): keyed by both generations, a label patched on either in a loop does
    not make every step run's admission compute it again."""
    meta = _as_record(obj.get("metadata")) or {}
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    if not isinstance(uid, str) or not isinstance(version, str) or not uid or not version:
        return None
    key = (str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name")), uid, version)
    if obj.get("kind") != "OrchestrationRun":
        return key
    name = as_string(_nested(obj, "spec", "orchestrationRef", "name"))
    other = view.object("Orchestration", key[1], name) if view is not None and name else None
    o_meta = _as_record(other.get("metadata")) if other is not None else None
    if o_meta is None or not o_meta.get("uid") or not o_meta.get("resourceVersion"):
        return None
    generation, o_generation = meta.get("generation"), o_meta.get("generation")
    if isinstance(generation, int) and isinstance(o_generation, int):
        return (*key[:4], f"generation {generation}", str(o_meta["uid"]), str(o_generation))
    return (*key, str(o_meta["uid"]), str(o_meta["resourceVersion"]))


def _digest(document: object) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def _annotation(obj: Mapping[str, Any], key: str) -> str | None:
    annotations = _nested(obj, "metadata", "annotations")
    value = annotations.get(key) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def coverage(
    obj: Mapping[str, Any], view: ClusterView | None, *, stored: bool = False
) -> Coverage | str:
    """The coverage of parent ``obj``, or why it has none (said in a denial). The Schedule's
    and Swarm's templates are signed as annotated; an OrchestrationRun's are its steps'.

    ``stored``: ``obj`` is a stored version (from the view), whose (uid, resourceVersion)
    name its content: its coverage is remembered (the admission path asks once per run a
    parent makes). Never for the object of an admission request: an UPDATE's object still
    carries the resourceVersion of the version it replaces."""
    if stored:
        # a summary (:func:`summary`): a Schedule's or Swarm's coverage was computed when
        # the view received it; a parent past what the view holds says why
        held = obj.get(HELD_COVERAGE)
        if isinstance(held, Coverage | str):
            return held
        if problem := held_problem(obj):
            return problem
    key = _memo_key(obj, view) if stored else None
    if key is not None and (hit := _memo.get(key)) is not None:
        return hit
    result = _coverage(obj, view)
    if key is not None and isinstance(result, Coverage):
        _remember(key, result)
    return result


def _coverage(obj: Mapping[str, Any], view: ClusterView | None) -> Coverage | str:
    kind = str(obj.get("kind") or "")
    meta = _as_record(obj.get("metadata")) or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    where = f"{kind} {namespace}/{name}"
    try:
        if kind == "Schedule":
            text = _annotation(obj, TEMPLATE_ANNOTATION)
            if text is None:
                return (
                    f"{where} has no {TEMPLATE_ANNOTATION} annotation: the runs it will "
                    "create were never shown to approvers (`approvalgate approve "
                    "schedule.yaml --target run.yaml` adds it)"
                )
            template = _json(text)
            if not isinstance(template, dict):
                return f"{where}: annotation {TEMPLATE_ANNOTATION} is not a JSON object"
            document: dict[str, Any] = {"kind": kind, "spec": spec, "template": template}
            templates: dict[str, Mapping[str, Any]] = {"": template}
        elif kind == "Swarm":
            text = _annotation(obj, TEMPLATES_ANNOTATION)
            if text is None:
                return (
                    f"{where} has no {TEMPLATES_ANNOTATION} annotation: the runs its "
                    "stages will create were never shown to approvers (`approvalgate approve "
                    "swarm.yaml --target STAGE=run.yaml` adds it)"
                )
            stages = _json(text)
            if not isinstance(stages, dict) or not all(
                isinstance(v, dict) for v in stages.values()
            ):
                return (
                    f"{where}: annotation {TEMPLATES_ANNOTATION} is not a JSON object of templates"
                )
            document = {"kind": kind, "spec": spec, "templates": stages}
            templates = {str(k): v for k, v in stages.items()}
        elif kind == "OrchestrationRun":
            orchestration_name = as_string(_nested(spec, "orchestrationRef", "name"))
            if not orchestration_name:
                return f"{where} names no orchestration (spec.orchestrationRef.name)"
            orchestration = (
                view.object("Orchestration", namespace, orchestration_name) if view else None
            )
            if orchestration is None:
                return f"Orchestration {namespace}/{orchestration_name} (of {where}) is not known"
            if problem := held_problem(orchestration):
                return f"{problem} (the Orchestration of {where})"
            o_spec = (
                orchestration.get("spec") if isinstance(orchestration.get("spec"), dict) else {}
            )
            document = {"kind": kind, "spec": spec, "orchestration": o_spec}
            digest = _digest(document)
            # each AgentRun step's template carries the OrchestrationRun's parameters: made
            # and measured one at a time, so that the work stops at the bound
            templates = {}
            room = MAX_TEMPLATES_BYTES
            for step in agent_run_steps(o_spec):
                run_spec = step_run_spec(o_spec, spec, step)
                if run_spec is not None:
                    room = _room(run_spec, room)
                    if room < 0:
                        return _too_many_templates(where)
                    templates[step] = run_spec
        else:
            return f"{kind or 'this object'} is not a parent kind"
        if kind != "OrchestrationRun":
            digest = _digest(document)
            room = _room(templates, MAX_TEMPLATES_BYTES)
            if room < 0:
                return _too_many_templates(where)
    except DigestError as exc:
        return f"{where} cannot be approved: {exc.message}"
    return Coverage(
        kind=kind,
        namespace=namespace,
        name=name,
        subject=subject(kind, namespace, name),
        digest=digest,
        templates=templates,
        references=content.refs_of_all(templates.values()),
        size=MAX_TEMPLATES_BYTES - room,
    )


def _room(value: object, room: int) -> int:
    """``room`` less the canonical JSON of ``value`` (negative once past: the walk stops)."""
    return room_left(value, room) if room >= 0 else room


def _too_many_templates(where: str) -> str:
    return (
        f"{where}: its run templates are larger than {MAX_TEMPLATES_BYTES} bytes as RFC 8785 "
        "canonical JSON together, the most approvalgate holds of a parent's (a run it makes "
        f"is at most {MAX_SPEC_BYTES}, and an OrchestrationRun's parameters are in every "
        "step's): keep long text in the ImplementationSpec its runs reference"
    )


# --- what the cluster view keeps of a parent -------------------------------------------------

MAX_TEMPLATES_BYTES: Final = MAX_SPEC_BYTES
"""The most a parent's run templates may be together, in bytes of RFC 8785 canonical JSON
(:func:`coverage` refuses more, on admission and in the view alike): a run is at most
:data:`digest.MAX_SPEC_BYTES`, a Schedule's or Swarm's templates are annotations (which
Kubernetes bounds at 256 KiB together), and an OrchestrationRun's are its parameters
copied into each AgentRun step's, which 400 steps multiplied into 80 MiB."""
MAX_HELD_BYTES: Final = MAX_SPEC_BYTES
"""The most :func:`summary` keeps of a parent besides its approval records (an annotation,
bounded by Kubernetes and :data:`records.MAX_ANNOTATION_BYTES`) and its coverage (at most
:data:`MAX_TEMPLATES_BYTES`), as :func:`digest.smaller_than` counts it (at most its
canonical JSON): identity, author and targets (a few KiB), an OrchestrationRun's or
Orchestration's spec (what its coverage is computed from). A parent past it is held as a
stub saying so, and what depends on it is denied."""
HELD_COVERAGE: Final = "gates.proompteng.ai/coverage"
"""Where a Schedule's or Swarm's summary keeps its :class:`Coverage` (or why it has none)."""
HELD_PROBLEM: Final = "gates.proompteng.ai/not-held"
"""Where the stub of a parent past :data:`MAX_HELD_BYTES` says so."""
IDENTITY_FIELDS: Final = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
)
"""The metadata naming one version of an object: what every summary the view keeps holds
(:func:`summary`, and ``kube.view``'s of requests and content)."""
_HELD_ANNOTATIONS: Final = (records.ANNOTATION, records.AUTHOR_ANNOTATION)
_TARGET_FIELDS: Final = ("kind", "name", "namespace")


def held_problem(obj: Mapping[str, Any]) -> str:
    """Why the view holds only a stub of ``obj`` ("" when it holds what decide() reads)."""
    problem = obj.get(HELD_PROBLEM)
    return problem if isinstance(problem, str) else ""


def summary(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the cluster view keeps of a Schedule, OrchestrationRun, Orchestration or Swarm:
    what decide() reads of it, computed when the watch event arrives (off the admission
    path), never its status, labels, annotations, managed fields or the spec's other fields.

    - every kind: ``apiVersion``, ``kind``, the metadata naming this version (name,
      namespace, uid, resourceVersion, generation, creation and deletion times) and the
      approval-records and author annotations;
    - a Schedule: its swarm-stage label, its controller Swarm ownerReference and
      ``spec.targetRef`` (kind, name, namespace), and its coverage (:data:`HELD_COVERAGE`);
    - a Swarm: each stage's ``spec.execution.<stage>.targetRef`` and its coverage;
    - an OrchestrationRun or Orchestration: its spec (an OrchestrationRun's coverage depends
      on its Orchestration's, which may change apart from it).

    Past :data:`MAX_HELD_BYTES`: a stub (identity, and :data:`HELD_PROBLEM` saying why), so
    that what depends on it fails closed naming the bound. Idempotent."""
    if HELD_COVERAGE in obj or HELD_PROBLEM in obj:
        return obj
    kind = str(obj.get("kind") or "")
    meta = _as_record(obj.get("metadata")) or {}
    identity: dict[str, Any] = {k: meta[k] for k in IDENTITY_FIELDS if k in meta}
    kept_meta: dict[str, Any] = dict(identity)
    annotations = _as_record(meta.get("annotations")) or {}
    noted = {k: annotations[k] for k in _HELD_ANNOTATIONS if k in annotations}
    if noted:
        kept_meta["annotations"] = noted
    spec = obj.get("spec")
    kept_spec: object = spec
    if kind == "Schedule":
        labels = _as_record(meta.get("labels")) or {}
        if SWARM_STAGE_LABEL in labels:
            kept_meta["labels"] = {SWARM_STAGE_LABEL: labels[SWARM_STAGE_LABEL]}
        owner = _owner(obj, "Swarm")
        if owner is not None:
            kept_meta["ownerReferences"] = [
                {k: owner[k] for k in ("kind", "name", "uid", "controller") if k in owner}
            ]
        target = _nested(spec, "targetRef")
        kept_spec = {"targetRef": _target_fields(target)} if isinstance(target, dict) else {}
    elif kind == "Swarm":
        execution = _nested(spec, "execution")
        stages = {}
        if isinstance(execution, dict):
            for stage in SWARM_STAGES:
                target = _nested(execution, stage, "targetRef")
                if isinstance(target, dict):
                    stages[stage] = {"targetRef": _target_fields(target)}
        kept_spec = {"execution": stages}
    held: dict[str, Any] = {k: obj[k] for k in ("apiVersion", "kind") if k in obj}
    held["metadata"] = kept_meta
    if kept_spec is not None:
        held["spec"] = kept_spec
    # the records are bounded on their own (and read only through the bundle's bounds)
    author = {k: v for k, v in noted.items() if k != records.ANNOTATION}
    if not smaller_than({**held, "metadata": {**kept_meta, "annotations": author}}, MAX_HELD_BYTES):
        where = f"{kind} {identity.get('namespace', '')}/{identity.get('name', '')}"
        return {
            **{k: obj[k] for k in ("apiVersion", "kind") if k in obj},
            "metadata": identity,
            HELD_PROBLEM: (
                f"{where} is larger than {MAX_HELD_BYTES} bytes in what approvalgate's "
                "cluster view holds of a parent (its spec, targets, author and identity), "
                "the most it holds: its runs are denied; keep long text in the "
                "ImplementationSpec its runs reference"
            ),
        }
    if kind in ("Schedule", "Swarm"):
        held[HELD_COVERAGE] = _held_coverage(obj, kind, identity, annotations)
    return held


def _held_coverage(
    obj: Mapping[str, Any], kind: str, identity: Mapping[str, Any], annotations: Mapping[str, Any]
) -> Coverage | str:
    """A Schedule's or Swarm's coverage, computed once per content: every watch event of it
    (a label patched in a loop) would otherwise digest its spec again in every worker (up to
    1 MiB, ~150 ms). The API server's ``generation`` names the spec (it changes with it, and
    no client sets it), and the template annotation is hashed (C, ~1 GB/s)."""
    generation, uid = identity.get("generation"), identity.get("uid")
    text = annotations.get(TEMPLATE_ANNOTATION if kind == "Schedule" else TEMPLATES_ANNOTATION)
    if not isinstance(generation, int) or not isinstance(uid, str) or not uid:
        return _coverage(obj, None)
    noted = (
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if isinstance(text, str)
        else repr(type(text))
    )
    where = (str(identity.get("namespace")), str(identity.get("name")))
    key = ("held", kind, *where, uid, str(generation), noted)
    hit = _memo.get(key)
    if hit is not None:
        return hit
    result = _coverage(obj, None)
    _remember(key, result)
    return result


def _target_fields(target: Mapping[str, Any]) -> dict[str, Any]:
    return {k: target[k] for k in _TARGET_FIELDS if k in target}


# --- derivation: which approved parent a platform-made run comes from ----------------------


@dataclass(frozen=True)
class Derivation:
    """How a run the platform created derives from a parent: the chain (the run first), the
    parent whose approval counts (and its coverage), or the problem."""

    chain: tuple[str, ...]
    parent: Mapping[str, Any] | None = None
    coverage: Coverage | None = None
    problem: str = ""


def _ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}"


def _owner(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    refs = _nested(obj, "metadata", "ownerReferences")
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, dict) and ref.get("kind") == kind and ref.get("controller") is True:
            return ref
    return None


def _same(left: object, right: object) -> bool:
    try:
        return canonical_json(left) == canonical_json(right)
    except DigestError:
        return False


def _first_difference(expected: object, actual: object, path: str = "spec") -> str:
    """Where two JSON trees first differ (for the denial message)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                return f"{path}.{key} is missing"
            if key not in expected:
                return f"{path}.{key} is not in the approved template"
            if not _same(expected[key], actual[key]):
                return _first_difference(expected[key], actual[key], f"{path}.{key}")
        return path
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if not _same(e, a):
                return _first_difference(e, a, f"{path}[{index}]")
    return f"{path} differs"


def swarm_of(
    schedule: Mapping[str, Any], namespace: str, view: ClusterView
) -> tuple[Mapping[str, Any] | None, str, str]:
    """The Swarm that owns ``schedule`` (controller ownerReference with the uid the view has),
    the stage, and a problem ("" when none). (None, "", "") when no Swarm owns it."""
    owner = _owner(schedule, "Swarm")
    if owner is None:
        return None, "", ""
    swarm_name = str(owner.get("name") or "")
    swarm = view.object("Swarm", namespace, swarm_name)
    where = _ref("Swarm", namespace, swarm_name)
    if swarm is None:
        return None, "", f"its owner {where} is not known"
    if problem := held_problem(swarm):
        return None, "", problem
    if str(_nested(swarm, "metadata", "uid") or "") != str(owner.get("uid") or ""):
        return None, "", f"its owner reference names another {where} (uid differs)"
    labels = _nested(schedule, "metadata", "labels")
    stage = labels.get(SWARM_STAGE_LABEL) if isinstance(labels, dict) else None
    if not isinstance(stage, str) or stage not in SWARM_STAGES:
        return None, "", f"it names no swarm stage (label {SWARM_STAGE_LABEL})"
    expected = _nested(swarm, "spec", "execution", stage, "targetRef")
    actual = _nested(schedule, "spec", "targetRef")
    if not isinstance(expected, dict) or not isinstance(actual, dict):
        return None, "", f"{where} has no target for stage {stage}"
    if _target(expected, namespace) != _target(actual, namespace):
        return None, "", f"its targetRef is not {where}'s target for stage {stage}"
    return swarm, stage, ""


def derive(
    run: Mapping[str, Any],
    namespace: str,
    view: ClusterView,
    per_run_fields: Sequence[str] = DEFAULT_PER_RUN_FIELDS,
) -> Derivation:
    """Which approved-for parent the run ``run`` (created by the platform) comes from."""
    meta = _as_record(run.get("metadata")) or {}
    labels = _as_record(meta.get("labels")) or {}
    me = _ref("AgentRun", namespace, str(meta.get("name") or f"{meta.get('generateName', '')}*"))
    schedule_name = labels.get(SCHEDULE_LABEL)
    orun_label = labels.get(ORCHESTRATION_RUN_LABEL)
    if isinstance(schedule_name, str) and schedule_name:
        return _from_schedule(run, me, schedule_name, namespace, view, per_run_fields)
    if isinstance(orun_label, str) and orun_label:
        return _from_orchestration(run, me, orun_label, namespace, view)
    return Derivation(
        (me,),
        problem=(
            f"it names no parent: a run the platform creates carries label {SCHEDULE_LABEL} "
            f"(a Schedule's run) or {ORCHESTRATION_RUN_LABEL} (an orchestration step)"
        ),
    )


def _from_schedule(
    run: Mapping[str, Any],
    me: str,
    schedule_name: str,
    namespace: str,
    view: ClusterView,
    per_run_fields: Sequence[str],
) -> Derivation:
    where = _ref("Schedule", namespace, schedule_name)
    schedule = view.object("Schedule", namespace, schedule_name)
    if schedule is None:
        return Derivation((me, where), problem=f"{where} does not exist")
    swarm, stage, problem = swarm_of(schedule, namespace, view)
    if problem:
        return Derivation((me, where), schedule, problem=f"{where}: {problem}")
    parent = swarm if swarm is not None else schedule
    chain: tuple[str, ...] = (me, where)
    if swarm is not None:
        chain = (*chain, _ref("Swarm", namespace, str(_nested(swarm, "metadata", "name") or "")))
    covered = coverage(parent, view, stored=True)
    if isinstance(covered, str):
        return Derivation(chain, parent, problem=covered)
    template = covered.templates.get(stage if swarm is not None else "")
    if template is None:
        return Derivation(
            chain, parent, covered, f"{chain[-1]} has no run template for stage {stage}"
        )
    generate = str(_nested(run, "metadata", "generateName") or "")
    if generate != f"{schedule_name}-":
        return Derivation(
            chain,
            parent,
            covered,
            f"its generateName {generate!r} is not {schedule_name + '-'!r}, the one {where} uses",
        )
    actual = strip(run.get("spec"), per_run_fields)
    if not covered.matches(stage if swarm is not None else "", actual):
        return Derivation(
            chain,
            parent,
            covered,
            f"its spec is not the run template approved for {chain[-1]} "
            f"({_first_difference(template, actual)})",
        )
    return Derivation(chain, parent, covered)


def _from_orchestration(
    run: Mapping[str, Any], me: str, orun_label: str, namespace: str, view: ClusterView
) -> Derivation:
    where = _ref("OrchestrationRun", namespace, orun_label)
    orun = view.object("OrchestrationRun", namespace, orun_label)
    if orun is None:
        return Derivation(
            (me, where),
            problem=f"{where} does not exist (named by label {ORCHESTRATION_RUN_LABEL})",
        )
    chain = (me, where)
    covered = coverage(orun, view, stored=True)
    if isinstance(covered, str):
        return Derivation(chain, orun, problem=covered)
    labels = _nested(run, "metadata", "labels")
    step_label = labels.get(ORCHESTRATION_STEP_LABEL) if isinstance(labels, dict) else None
    steps = [s for s in covered.templates if label_value(s) == step_label]
    if len(steps) != 1:
        return Derivation(
            chain,
            orun,
            covered,
            f"label {ORCHESTRATION_STEP_LABEL}={step_label!r} names no AgentRun step of its "
            "Orchestration",
        )
    step = steps[0]
    generate = str(_nested(run, "metadata", "generateName") or "")
    expected_generate = step_run_metadata(orun_label, step, namespace)["generateName"]
    if generate != expected_generate:
        return Derivation(
            chain,
            orun,
            covered,
            f"its generateName {generate!r} is not {expected_generate!r} (step {step})",
        )
    expected = covered.templates[step]
    actual = run.get("spec")
    if not covered.matches(step, actual):
        return Derivation(
            chain,
            orun,
            covered,
            f"its spec is not what step {step} of {where} creates "
            f"({_first_difference(expected, actual)})",
        )
    return Derivation(chain, orun, covered)


def chain_text(chain: Sequence[str], tail: str = "approval") -> str:
    """``AgentRun ns/x <- Schedule ns/s <- approval``."""
    return " <- ".join([*chain, tail]) if tail else " <- ".join(chain)
