"""compiler.canonical.dump lays out YAML itself for speed: it must write PyYAML's bytes.

The fast path (bench findings: PyYAML's pure-Python emitter was a quarter of a compile)
is only allowed because it is byte-identical to the reference `_pyyaml_dump`; here both
are compared on generated documents full of awkward scalars, and on every committed
output of the example repo (which must take the fast path, not the fallback).
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.compiler import canonical
from tests.support.paths import ROOT

AWKWARD = [
    "",
    " ",
    "yes",
    "No",
    "on",
    "~",
    "null",
    "0600",
    "0x1F",
    "1e3",
    "1.5",
    ".inf",
    "2024-01-01",
    "1:30",
    "-",
    "- a",
    "a: b",
    "a:",
    "#x",
    "x #y",
    "*a",
    "&a",
    "!t",
    "%x",
    "@x",
    "`x",
    "'q'",
    '"q"',
    "{a}",
    "[a]",
    "a,b",
    "?",
    "? a",
    "|",
    ">",
    "<<",
    "=",
    "---",
    "...",
    "é",
    "日本",
    "\u00a0",
    "a\nb",
    "a\nb\n",
    "a\n\nb\n\n",
    "\nlead",
    "  indented\nx",
    "trail \nx",
    "tab\tx",
    "tab\t\nx",
    "cr\r\nx",
    "\n",
    "\n\n",
    "k8s:io.kubernetes.pod.namespace",
    "10.0.0.0/8",
    "169.254.20.10/32",
    "app.kubernetes.io/name",
    "x" * 130,
]

scalars = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(max_size=12),
    st.text(alphabet="ab:,-# \n\t'\"yesno01./", max_size=10),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
keys = st.one_of(st.sampled_from(AWKWARD), st.text(max_size=10))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=25,
)


def same(obj: Any) -> None:
    try:
        reference = canonical._pyyaml_dump(obj)
    except yaml.YAMLError:
        return  # PyYAML cannot write it: dump() falls back and raises the same
    assert canonical.dump(obj) == reference


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(keys, trees, min_size=1, max_size=5))
def test_dump_writes_pyyaml_bytes(obj: dict[str, Any]) -> None:
    same(obj)


def test_values_equal_in_python_but_not_in_yaml() -> None:
    same({"a": [0.0, -0.0, 1, 1.0, True, False, 0, None, "1", "true"]})
    same({"b": -0.0, "c": 0.0})


def test_shared_objects_are_anchored_like_pyyaml() -> None:
    shared = {"port": 53}
    same({"a": [shared, shared], "b": shared})
    assert canonical._fast_dump({"a": shared, "b": shared}) is None  # PyYAML's anchors


def test_committed_output_takes_the_fast_path() -> None:
    rendered = ROOT / "examples" / "gitops-repo" / "rendered"
    paths = sorted(rendered.rglob("*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text(encoding="utf-8")
        _header, _, body = text.partition("\n")
        obj = yaml.safe_load(body)
        assert canonical._fast_dump(obj) == body, path
        assert canonical.dump(obj) == body


def test_long_one_line_strings_keep_pyyaml_bytes_at_any_depth() -> None:
    words = " ".join(["approval"] * 2_500)  # 22,499 characters with spaces PyYAML could fold at
    deep: dict[str, Any] = {"v": words}
    for _ in range(40):
        deep = {"level": deep}
    for obj in ({"a": words}, {"a": [words, {"b": words}]}, deep, {"a": '"' + words + '"'}):
        same(obj)
        assert canonical._fast_dump(obj) is not None  # the fast path, not the fallback
    huge = {"a": "x " * 20_000}  # written longer than 1 << 15: PyYAML's own emitter
    same(huge)
    assert canonical._fast_dump(huge) is None
