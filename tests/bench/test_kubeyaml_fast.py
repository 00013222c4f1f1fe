"""kubeyaml's one-pass fast path must load exactly what the full composer loads.

`_load_plain_document` builds objects and positions straight from parser events for
plain documents (no anchors, tags, merges, typed keys) and hands everything else to the
full path. Compared here, with the fast path on and off: the objects (with their exact
types: 1 is not 1.0 is not True), the positions, and the errors, on every YAML file of
the repository and on generated documents in random styles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.approvals import kubeyaml
from approvalgate.approvals.errors import ApprovalgateError
from tests.support.paths import ROOT

FILES = sorted(
    p
    for folder in ("tests", "examples", "schemas", "charts", "bench")
    for p in (ROOT / folder).rglob("*.y*ml")
    if p.suffix in (".yaml", ".yml") and p.stat().st_size < 1_000_000
)


def typed(node: Any) -> Any:
    """A form where 1, 1.0 and True differ."""
    if isinstance(node, dict):
        return {k: typed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [typed(v) for v in node]
    return (type(node).__name__, node)


def outcome(text: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(kubeyaml, "_load_plain_document", lambda chunk, strict=False: None)
        try:
            docs = kubeyaml.load_manifests(text, "f.yaml")
        except ApprovalgateError as exc:
            return ("error", type(exc).__name__, exc.render())
    return [
        (d.index, typed(d.obj), d.start_line, d.text, sorted(d.positions.items(), key=repr))
        for d in docs
    ]


def same(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert outcome(text, True, monkeypatch) == outcome(text, False, monkeypatch)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_files(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    same(text, monkeypatch)


SCALARS = [
    "yes", "No", "on", "off", "~", "null", "", "0600", "0o17", "0x1F", "0b101", "+12", "1_000",
    "1e3", "2.0", "1.", "09", ".5", "1.5", "-0", "1e999", "12345678901234567890", ".inf",
    "-.Inf", ".nan", "2024-01-01", "1:30", "<<", "=", "a", "-a", "+a", ".a", "true", "y",
]  # fmt: skip

values = st.recursive(
    st.one_of(
        st.sampled_from(SCALARS),
        st.integers(-(2**60), 2**60),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(SCALARS), st.text(max_size=5)), children, max_size=3
        ),
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(st.text(min_size=1, max_size=6), values, min_size=1, max_size=4),
    style=st.sampled_from(["block", "flow", "json", "plain-strings"]),
)
def test_generated_documents(doc: dict[str, Any], style: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        if style == "json":
            text = json.dumps(doc)
        elif style == "plain-strings":  # unquoted scalars, typed by the loader
            text = yaml.safe_dump(doc, default_style=None).replace("'", "")
        else:
            text = yaml.safe_dump(doc, default_flow_style=style == "flow", allow_unicode=True)
        same(text, monkeypatch)
        same(f"# a comment\n---\n{text}---\n{text}", monkeypatch)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "<<: {a: 1}\nb: 2\n",
        "a: 1\na: 2\n",
        "1: x\n",
        "yes: x\n",
        "a: .inf\n",
        "a: 12345678901234567890\n",
        "- 1\n",
        "a\n",
        "a: 1\n...\nb: 2\n",
        "a: [1, {b: c}]\n",
        "? [a]\n: 1\n",
        "a: b: c\n",
        "",
        "# only a comment\n",
        "null\n",
    ],
)
def test_edge_cases(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    same(text, monkeypatch)


def test_specs_take_the_fast_path() -> None:
    """The point of it: ordinary specs never need the full composer."""
    paths = sorted((ROOT / "examples" / "gitops-repo").glob("[!r]*/*.yaml"))
    assert paths
    for path in paths:
        for chunk in kubeyaml.split_documents(path.read_text(encoding="utf-8")):
            assert kubeyaml._load_plain_document(chunk) is not None, path
