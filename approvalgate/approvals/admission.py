"""The AdmissionReview request as decide() reads it, and how the CLI builds one.

``approvalgate verify`` and the webhook hand decide() the same shape: the CLI builds the
request the API server would send for ``kubectl apply`` of a manifest.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

AGENTS_GROUP = "agents.proompteng.ai"
AGENTRUNS = "agentruns"

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict):
    uid: str
    operation: Operation
    resource: GroupVersionResource
    namespace: NotRequired[str]
    name: NotRequired[str]
    subResource: NotRequired[str]
    userInfo: UserInfo
    object: NotRequired[dict[str, Any] | None]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]


def request_for_manifest(
    obj: Mapping[str, Any],
    *,
    operation: Operation = "CREATE",
    username: str = "",
    groups: Sequence[str] = (),
    old: Mapping[str, Any] | None = None,
    namespace: str = "default",
    dry_run: bool = False,
) -> AdmissionRequest:
    """The request kube-apiserver would send for this manifest (namespace filled in)."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    ns = metadata.get("namespace") or namespace
    stamped = {**obj, "metadata": {**metadata, "namespace": ns}}
    version = str(obj.get("apiVersion", "")).rpartition("/")[2] or "v1alpha1"
    request: AdmissionRequest = {
        "uid": str(uuid.uuid4()),
        "operation": operation,
        "resource": {"group": AGENTS_GROUP, "version": version, "resource": AGENTRUNS},
        "namespace": ns,
        "name": str(metadata.get("name", "")),
        "userInfo": {"username": username, "groups": list(groups)},
        "object": stamped,
        "dryRun": dry_run,
    }
    if old is not None:
        old_meta = old.get("metadata") if isinstance(old.get("metadata"), dict) else {}
        assert isinstance(old_meta, dict)
        request["oldObject"] = {**old, "metadata": {**old_meta, "namespace": ns}}
    return request
