"""Single objects: a get by name, a create, a JSON merge patch, and server-side apply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from approvalgate.kube.client import Client
from approvalgate.kube.resources import Resource


def get(
    client: Client, resource: Resource, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    """The object ``name``, or None when it does not exist."""
    where = f"{namespace}/{name}" if namespace and resource.namespaced else name
    found: dict[str, Any] | None = client.request(
        f"getting {resource.singular_name} {where}",
        "GET",
        resource.path(namespace, name),
        missing_ok=True,
    )
    return found


def create(
    client: Client,
    resource: Resource,
    obj: Mapping[str, Any],
    namespace: str,
    *,
    field_manager: str = "approvalgate",
    dry_run: bool = False,
) -> dict[str, Any]:
    """Create ``obj`` in ``namespace`` (``metadata.generateName`` works: the answer holds the
    name the server chose). ``dry_run`` asks the server to judge it (authorization, schema,
    admission webhooks) without storing it."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or f"{meta.get('generateName', '')}*"
    query = [("fieldManager", field_manager), ("fieldValidation", "Strict")]
    if dry_run:
        query.append(("dryRun", "All"))
    created: dict[str, Any] = client.request(
        f"creating {_what(resource)} {namespace}/{name}",
        "POST",
        resource.path(namespace),
        query=query,
        body=dict(obj),
    )
    return created


def merge_patch(
    client: Client,
    resource: Resource,
    name: str,
    namespace: str,
    patch: Mapping[str, Any],
    *,
    field_manager: str = "approvalgate",
) -> dict[str, Any]:
    """Apply a JSON merge patch (RFC 7386) to object ``namespace/name``; the stored result."""
    patched: dict[str, Any] = client.request(
        f"patching {_what(resource)} {namespace}/{name}",
        "PATCH",
        resource.path(namespace, name),
        query=[("fieldManager", field_manager)],
        body=dict(patch),
        content_type="application/merge-patch+json",
    )
    return patched


def _what(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def apply(
    client: Client, resource: Resource, obj: Mapping[str, Any], field_manager: str
) -> dict[str, Any]:
    """Server-side apply of ``obj`` under ``field_manager`` (forcing conflicts).

    The generated client sends PATCH bodies as merge patches only, so the apply patch goes
    through the generic request with the ``application/apply-patch+yaml`` type (JSON is YAML).
    Field validation is strict: a field the schema does not know is an error, never silently
    dropped.
    """
    meta = obj["metadata"]
    namespace = meta.get("namespace")
    where = f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
    what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    applied: dict[str, Any] = client.request(
        f"applying {what} {where}",
        "PATCH",
        resource.path(namespace, meta["name"]),
        query=[("fieldManager", field_manager), ("fieldValidation", "Strict"), ("force", "true")],
        body=dict(obj),
        content_type="application/apply-patch+yaml",
    )
    return applied
