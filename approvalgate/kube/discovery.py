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


def self_review(client: Client) -> tuple[str, tuple[str, ...]]:
    """Our username and groups (less ``system:authenticated``) as the API server
    authenticates us (a SelfSubjectReview, which every authenticated user may create);
    raises :class:`KubeError` when it cannot say."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    answer = client.request(
        "reviewing our own identity (selfsubjectreviews.authentication.k8s.io)",
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body=review,
    )
    status = answer.get("status") if isinstance(answer, dict) else None
    user = status.get("userInfo") if isinstance(status, dict) else None
    name = user.get("username") if isinstance(user, dict) else None
    if not isinstance(name, str) or not name:
        raise KubeError("the API server's SelfSubjectReview named no username")
    assert isinstance(user, dict)
    groups = user.get("groups")
    listed = groups if isinstance(groups, list) else []
    return name, tuple(str(g) for g in listed if g != "system:authenticated")


def username(client: Client) -> str:
    """Our own username as the API server authenticates us (:func:`self_review`)."""
    return self_review(client)[0]


def identity(client: Client) -> str:
    """``username (groups ...)`` as the API server sees us (a SelfSubjectReview), or "" if it
    cannot say."""
    try:
        name, groups = self_review(client)
    except KubeError:
        return ""
    return name + (f" (groups {', '.join(groups)})" if groups else "")
