"""Editing users' YAML without disturbing it: one document at a time, ruamel round-trip.

Only the documents we change are re-serialised (comments, key order, quoting, block
scalars and indentation kept); every other document of the file is copied byte for byte.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq


def guess_indents(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as the text writes them; (2, 0) by default.

    ``key:`` followed by a deeper ``child:`` gives the mapping indent; ``key:`` followed
    by ``- item`` gives how far the dash sits from its parent key.
    """
    mapping, offset = 0, -1
    previous: tuple[int, str] | None = None
    for raw in text.splitlines():
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#") or stripped.startswith("---"):
            continue
        column = len(raw) - len(stripped)
        if previous is not None and previous[1].rstrip().endswith(":"):
            depth = column - previous[0]
            if stripped.startswith("- ") and offset < 0 and depth >= 0:
                offset = depth
            elif not stripped.startswith("- ") and depth > 0 and not mapping:
                mapping = depth
        previous = (column, stripped)
        if mapping and offset >= 0:
            break
    return mapping or 2, max(offset, 0)


def _round_trip(text: str) -> tuple[YAML, Any]:
    mapping, offset = guess_indents(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold long values such as the approvals JSON
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    yaml.explicit_start = text.lstrip().startswith("---")
    return yaml, yaml.load(text)


def set_annotation(
    document_text: str, key: str, value: str, *, name: str = "", finalizer: str = ""
) -> str:
    """Return ``document_text`` with ``metadata.annotations[key] = value``; with ``name``,
    ``metadata.name`` set (and ``generateName`` dropped); with ``finalizer``, that entry in
    ``metadata.finalizers`` (added once)."""
    yaml, data = _round_trip(document_text)
    metadata = data.get("metadata")
    if metadata is None:
        metadata = data["metadata"] = CommentedMap()
    annotations = metadata.get("annotations")
    if annotations is None:
        annotations = metadata["annotations"] = CommentedMap()
    annotations[key] = value
    if name:
        if "generateName" in metadata:
            position = list(metadata).index("generateName")
            comment = metadata.ca.items.pop("generateName", None)
            del metadata["generateName"]
            metadata.insert(position, "name", name)
            if comment is not None:
                metadata.ca.items["name"] = comment
        else:
            metadata["name"] = name
    if finalizer:
        finalizers = metadata.get("finalizers")
        if finalizers is None:
            finalizers = metadata["finalizers"] = CommentedSeq()
        if finalizer not in finalizers:
            finalizers.append(finalizer)
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    if not document_text.endswith("\n"):
        text = text.rstrip("\n")
    return text
