"""What the API server says about itself: served API versions, and who we are to it."""

from __future__ import annotations

from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError


def served_versions(client: Client, group: str) -> list[str] | None:
    """Versions of ``group`` the API server serves (discovery), the preferred one first;
    None if it serves no such group."""
    groups = client.request("reading API discovery (/apis)", "GET", "/apis")
    for entry in groups.get("groups") or []:
        if entry.get("name") == group:
            preferred = str((entry.get("preferredVersion") or {}).get("version") or "")
            versions = [str(v["version"]) for v in entry.get("versions") or []]
            return sorted(versions, key=lambda v: v != preferred)
    return None


def identity(client: Client) -> str:
    """``username (groups ...)`` as the API server sees us (a SelfSubjectReview), or "" if it
    cannot say."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        answer = client.request(
            "reviewing our own identity",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body=review,
        )
        user = answer.get("status", {}).get("userInfo", {})
    except (KubeError, AttributeError):
        return ""
    groups = [g for g in user.get("groups") or [] if g != "system:authenticated"]
    return str(user.get("username", "")) + (f" (groups {', '.join(groups)})" if groups else "")
