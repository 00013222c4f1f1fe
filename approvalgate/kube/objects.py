"""Single objects: a get by name, and server-side apply."""

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
