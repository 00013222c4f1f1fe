"""Editing users' YAML without disturbing it: one document at a time, ruamel round-trip.

Only the documents we change are re-serialised (comments, key order, quoting and block
scalars kept); every other document of the file is copied byte for byte.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.util import load_yaml_guess_indent


def _round_trip(text: str) -> tuple[YAML, Any]:
    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold long values such as the approvals JSON
    yaml.indent(
        mapping=indent or 2,
        sequence=(indent or 2) + (block_seq_indent or 0),
        offset=block_seq_indent or 0,
    )
    yaml.explicit_start = text.lstrip().startswith("---")
    return yaml, yaml.load(text)


def set_annotation(document_text: str, key: str, value: str) -> str:
    """Return ``document_text`` with ``metadata.annotations[key] = value``."""
    yaml, data = _round_trip(document_text)
    metadata = data.get("metadata")
    if metadata is None:
        metadata = data["metadata"] = CommentedMap()
    annotations = metadata.get("annotations")
    if annotations is None:
        annotations = metadata["annotations"] = CommentedMap()
    annotations[key] = value
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    if not document_text.endswith("\n"):
        text = text.rstrip("\n")
    return text
