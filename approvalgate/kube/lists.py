"""Paginated lists: every object of a resource, ``limit`` objects per request.

The first page fixes a consistent snapshot; each next page is asked for with the previous
page's ``continue`` token, and the list's ``resourceVersion`` (the snapshot's) is what a watch
resumes from. A token that expired between pages is a :class:`GoneError`: list again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from approvalgate.kube.client import Client
from approvalgate.kube.resources import Resource, resource_version

DEFAULT_PAGE_SIZE: Final = 500


@dataclass
class Listing:
    """The objects of one list (every page), and the list's ``resourceVersion``."""

    items: list[dict[str, Any]] = field(default_factory=list)
    resource_version: str = ""
    pages: int = 0


def list_all(
    client: Client,
    resource: Resource,
    namespace: str | None = None,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    label_selector: str = "",
) -> Listing:
    """Every object of ``resource`` (in ``namespace``, or in all namespaces), page by page."""
    what = f"listing {resource.describe(namespace)}"
    path = resource.path(namespace)
    listing = Listing()
    token = ""
    while True:
        query = [("limit", str(page_size))]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if token:
            query.append(("continue", token))
        page = client.request(what, "GET", path, query=query)
        listing.pages += 1
        listing.items += page.get("items") or []
        listing.resource_version = resource_version(page) or listing.resource_version
        token = str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return listing
