"""Updating values files we do not own: only our top-level key changes.

The file is edited with ruamel.yaml's round-trip mode, so its comments, key order and
formatting stay; Helm replaces lists, so our key gets the complete block every time.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import LiteralScalarString

from approvalgate.approvals.errors import ApprovalgateError, InputError, Location
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.compiler.sources import read_text


def updated_text(path: Path, key: str, value: Mapping[str, Any], shown: str) -> tuple[str, str]:
    """(current text, text with ``key`` set to ``value``) of the values file at ``path``."""
    current = read_text(path, shown) if path.exists() else ""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16
    yaml.indent(mapping=2, sequence=4, offset=2)
    try:
        data = yaml.load(current) if current.strip() else CommentedMap()
    except Exception as exc:  # ruamel raises many error types; all mean "not YAML"
        raise InputError(f"{shown}: cannot parse as YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ApprovalgateError(f"{shown}: a values file must be a mapping")
    # Helm reads the file with go-yaml v2, not as ruamel does (a merge written after our key
    # overrides it there): compare what Helm reads; a rewrite Helm reads otherwise is refused.
    if helm_reading(current, shown).get(key) == value:
        return current, current
    data[key] = _plain(value)
    out = io.StringIO()
    yaml.dump(data, out)
    if helm_reading(out.getvalue(), shown).get(key) != value:
        # a merge after our key, most likely: strict reading says where (only the file's
        # own quirks elsewhere, which Helm and its reviewers have lived with, stay allowed)
        helm_reading(out.getvalue(), shown, strict=True)
        raise InputError(
            f"{shown}: Helm would not read the compiled {key} from the rewritten file "
            "(a << merge or an alias gives it another value)",
            advice=f"write {key} as a plain top-level key, outside any merge or alias",
        )
    return current, out.getvalue()


def helm_reading(text: str, shown: str, strict: bool = False) -> dict[str, Any]:
    """The values file as Helm reads it (go-yaml v2; ``strict``: refusing what a reviewer
    would read otherwise, such as a merge overriding a written key, with its location).
    Numbers are Helm's too: a values file is no API object, JSON's limits do not apply."""
    documents = load_manifests(text, shown, strict=strict, json_numbers=False)
    if len(documents) > 1:
        raise InputError(
            "a values file holds one YAML document",
            location=Location(shown, documents[1].start_line),
            advice="Helm reads the first only: merge them",
        )
    return documents[0].obj if documents else {}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        result = CommentedMap()
        for k in sorted(value):
            result[k] = _plain(value[k])
        return result
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value
