"""AdmissionReview in and out: strict parsing of the request, and the response we send.

Two error families, never mixed (as in kopf): a request we cannot read is a
:class:`MalformedReview` (HTTP 400, never an allow); a request we can read always gets a
review back, whose ``allowed`` comes from :func:`approvals.decide.decide`.

Both ``admission.k8s.io/v1`` and ``v1beta1`` are read; the answer has the version of the
request and echoes its ``uid``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NotRequired, TypedDict, cast, get_args

from approvalgate.approvals.admission import AdmissionRequest
from approvalgate.approvals.decide import GENERIC_ERROR, Decision
from approvalgate.webhook import strictjson

ReviewVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]
VERSIONS: Final[tuple[str, ...]] = get_args(ReviewVersion)
OPERATIONS: Final = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


class AdmissionReviewRequest(TypedDict):
    apiVersion: ReviewVersion
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class Status(TypedDict):
    code: int
    message: str
    reason: Literal["Forbidden"]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: ReviewVersion
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


class MalformedReview(ValueError):
    """The body is not an AdmissionReview we can answer: HTTP 400, never an allow.

    ``kind`` is a short label from a fixed set (a metric label); the message says what is
    wrong for the log and the 400 body.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Review:
    """A validated AdmissionReview request: what decide() and the response need."""

    api_version: ReviewVersion
    request: AdmissionRequest

    @property
    def uid(self) -> str:
        return self.request["uid"]


def parse_review(body: bytes, *, max_depth: int = strictjson.DEFAULT_MAX_DEPTH) -> Review:
    """Read a request body strictly; raise :class:`MalformedReview` on any defect."""
    try:
        obj = strictjson.loads(body, max_depth=max_depth)
    except strictjson.StrictJSONError as exc:
        raise MalformedReview(exc.kind, str(exc)) from None
    return validate_review(obj)


def validate_review(obj: object) -> Review:
    """Check the shape of a parsed AdmissionReview (fields decide() relies on)."""
    if not isinstance(obj, dict):
        raise _bad(f"body is a JSON {_json_type(obj)}, not an AdmissionReview object")
    api_version = obj.get("apiVersion")
    if api_version not in VERSIONS:
        raise _bad(f"apiVersion must be one of {', '.join(VERSIONS)}, not {_show(api_version)}")
    if obj.get("kind") != "AdmissionReview":
        raise _bad(f"kind must be AdmissionReview, not {_show(obj.get('kind'))}")
    request = obj.get("request")
    if not isinstance(request, dict):
        raise _bad("request is missing or not an object")
    _check_request(request)
    return Review(cast(ReviewVersion, api_version), cast(AdmissionRequest, request))


def _check_request(request: Mapping[str, Any]) -> None:
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise _bad("request.uid is missing or not a non-empty string")
    operation = request.get("operation")
    if not isinstance(operation, str) or operation not in OPERATIONS:
        raise _bad(
            f"request.operation must be one of {', '.join(sorted(OPERATIONS))}, "
            f"not {_show(request.get('operation'))}"
        )
    resource = request.get("resource")
    if not isinstance(resource, dict):
        raise _bad("request.resource is missing or not an object")
    for key in ("group", "version", "resource"):
        if not isinstance(resource.get(key), str):
            raise _bad(f"request.resource.{key} is missing or not a string")
    user = request.get("userInfo")
    if not isinstance(user, dict):
        raise _bad("request.userInfo is missing or not an object")
    for key in ("username", "uid"):
        if key in user and not isinstance(user[key], str):
            raise _bad(f"request.userInfo.{key} is not a string")
    groups = user.get("groups")
    if groups is not None and not (
        isinstance(groups, list) and all(isinstance(g, str) for g in groups)
    ):
        raise _bad("request.userInfo.groups is not a list of strings")
    for key in ("namespace", "name", "subResource"):
        if key in request and not isinstance(request[key], str):
            raise _bad(f"request.{key} is not a string")
    for key in ("object", "oldObject"):
        if request.get(key) is not None and not isinstance(request[key], dict):
            raise _bad(f"request.{key} is not an object")
    if "dryRun" in request and not isinstance(request["dryRun"], bool):
        raise _bad("request.dryRun is not a boolean")


def build_response(
    api_version: ReviewVersion, uid: str, decision: Decision
) -> AdmissionReviewResponse:
    """The AdmissionReview answering ``uid`` with ``decision``, in ``api_version``."""
    response: AdmissionResponse = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {"code": 403, "message": decision.message, "reason": "Forbidden"}
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    if decision.audit_annotations:
        response["auditAnnotations"] = dict(decision.audit_annotations)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def internal_error_response(api_version: ReviewVersion, uid: str) -> AdmissionReviewResponse:
    """The denial sent when answering failed inside the webhook (fail closed)."""
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": False,
            "status": {"code": 403, "message": GENERIC_ERROR, "reason": "Forbidden"},
            "auditAnnotations": {"decision": "deny", "reason": "internal-error"},
        },
    }


def _bad(message: str) -> MalformedReview:
    return MalformedReview("invalid-review", message)


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
