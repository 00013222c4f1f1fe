"""An in-memory copy of one resource's objects, keyed ``namespace/name``.

One writer (the informer's thread) and any number of readers (other threads, an event loop).
Writes are copy-on-write: each builds a new dict and swaps the reference, an atomic
assignment, so readers never lock and never see a half-applied change: :meth:`Store.snapshot`
is one consistent state, however long the reader keeps it. A write costs a copy of the dict
(O(objects)); that is cheap for the few thousand objects a gate caches, and reads, which
happen on every admission, cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from approvalgate.kube.resources import object_key, resource_version

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class Change:
    """One object that changed in the store; ``old`` is the object before (None if ADDED)."""

    type: ChangeType
    key: str
    object: dict[str, Any]
    old: dict[str, Any] | None = None


class Store:
    """Objects by key. Readers: :meth:`get`, :meth:`snapshot`. Writer: :meth:`apply`,
    :meth:`replace` (one thread only). Treat the objects as read-only: they are shared."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._items.get(key)

    def snapshot(self) -> Mapping[str, dict[str, Any]]:
        """Every object by key, as of one moment (later writes do not show in it)."""
        return MappingProxyType(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def apply(self, kind: str, obj: dict[str, Any]) -> Change | None:
        """One watch event (ADDED, MODIFIED, DELETED); None when it changes nothing (an
        object already stored at that resourceVersion, or the deletion of an unknown key)."""
        key = object_key(obj)
        old = self._items.get(key)
        if kind == "DELETED":
            if old is None:
                return None
            items = dict(self._items)
            del items[key]
            self._items = items
            return Change("DELETED", key, obj, old)
        if old is not None and resource_version(old) == resource_version(obj):
            return None
        items = dict(self._items)
        items[key] = obj
        self._items = items
        return Change("MODIFIED" if old is not None else "ADDED", key, obj, old)

    def replace(self, objects: Iterable[dict[str, Any]]) -> list[Change]:
        """Take a fresh list as the whole state; the changes from the previous state, in key
        order (added, modified by resourceVersion, deleted)."""
        items = {object_key(obj): obj for obj in objects}
        old_items = self._items
        self._items = items
        changes: list[Change] = []
        for key in sorted(items.keys() | old_items.keys()):
            new, old = items.get(key), old_items.get(key)
            if new is None and old is not None:
                changes.append(Change("DELETED", key, old, old))
            elif new is not None and old is None:
                changes.append(Change("ADDED", key, new))
            elif (
                new is not None
                and old is not None
                and resource_version(new) != resource_version(old)
            ):
                changes.append(Change("MODIFIED", key, new, old))
        return changes
