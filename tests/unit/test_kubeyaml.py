"""approvals.kubeyaml reads manifests exactly as kubectl does (the oracle test at the end
checks that against a real kubectl)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.approvals import kubeyaml
from approvalgate.approvals.errors import DigestError, InputError
from approvalgate.approvals.kubeyaml import Document, load_manifests, split_documents
from tests.support.paths import UPSTREAM_AGENTS
from tests.support.tools import pinned_binary

EXAMPLES = UPSTREAM_AGENTS / "examples"


def canonical(value: Any) -> str:
    """Compare JSON trees strictly: 2 != 2.0 and True != 1 here."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def load_one(text: str) -> Document:
    (document,) = load_manifests(text, "m.yaml")
    return document


def value_of(scalar: str) -> Any:
    return load_one(f"v: {scalar}\n").obj["v"]


# --- scalar typing ------------------------------------------------------------------------

TYPING = [
    # YAML 1.1 booleans, every spelling go-yaml v2 knows
    *[(word, True) for word in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON")],
    *[(word, True) for word in ("true", "True", "TRUE")],
    *[(word, False) for word in ("n", "N", "no", "No", "NO", "off", "Off", "OFF")],
    *[(word, False) for word in ("false", "False", "FALSE")],
    ("yEs", "yEs"),
    ("oN", "oN"),
    ("Yes!", "Yes!"),
    # nulls
    *[(word, None) for word in ("~", "null", "Null", "NULL", "")],
    ("nULL", "nULL"),
    # integers: Go ParseInt base 0, underscores dropped first
    ("0600", 384),
    ("0o600", 384),
    ("0O600", 384),
    ("0x1F", 31),
    ("0X1f", 31),
    ("-0x1F", -31),
    ("+12", 12),
    ("0b101", 5),
    ("-0b101", -5),
    ("0b-101", -5),
    ("1_000", 1000),
    ("0", 0),
    ("-0", 0),
    ("00", 0),
    ("9007199254740991", 9007199254740991),
    ("-9007199254740991", -9007199254740991),
    # floats: integral ones are sent as JSON integers
    ("1e3", 1000),
    ("1E3", 1000),
    ("+1.5e+3", 1500),
    ("2.0", 2),
    ("1.", 1),
    ("09", 9),
    ("08.5", 8.5),
    ("-0.0", 0),
    ("1e-400", 0),
    ("1.5", 1.5),
    (".5", 0.5),
    ("+.5", 0.5),
    ("-.5", -0.5),
    (".1_5", 0.15),
    ("1_0.5", 10.5),
    ("1e-3", 0.001),
    ("0.1", 0.1),
    # strings: timestamps, base 60, out-of-range and malformed numbers
    ("2024-01-01", "2024-01-01"),
    ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
    ("2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"),
    ("2001-13-45", "2001-13-45"),
    ("1:30", "1:30"),
    ("190:20:30", "190:20:30"),
    ("1e999", "1e999"),
    (".5e999", ".5e999"),
    ("0x1FFFFFFFFFFFFFFFFF", "0x1FFFFFFFFFFFFFFFFF"),
    ("._5", "._5"),
    ("0o", "0o"),
    ("0x", "0x"),
    ("0o8", "0o8"),
    ("12e", "12e"),
    ("+", "+"),
    ("-.nan", "-.nan"),
    ("=", "="),
    ("<<", "<<"),
    ("1.2.3", "1.2.3"),
    ("250m", "250m"),
    ("512Mi", "512Mi"),
    # quoted and block scalars are always strings
    ('"yes"', "yes"),
    ("'0600'", "0600"),
    ('"~"', "~"),
    ("'1e3'", "1e3"),
    ('""', ""),
    ("|\n  on\n", "on\n"),
    (">-\n  0x1F\n", "0x1F"),
    # explicit tags
    ("!!str 12", "12"),
    ("!!str yes", "yes"),
    ("!!str", ""),
    ('!!int "12"', 12),
    ("!!int 0x10", 16),
    ("!!float 3", 3),
    ('!!float "1.5"', 1.5),
    ('!!bool "yes"', True),
    ('!!null ""', None),
    ("!!null ~", None),
    ("! 12", "12"),
    # unicode and escapes
    ('"caf\\u00e9 \\x41\\t"', "café A\t"),
    ("héllo wörld ✓ 日本", "héllo wörld ✓ 日本"),
]


@pytest.mark.parametrize(("scalar", "expected"), TYPING)
def test_scalar_typing_matches_kubectl(scalar: str, expected: Any) -> None:
    assert canonical(value_of(scalar)) == canonical(expected)


def test_brief_examples_in_one_manifest() -> None:
    document = load_one(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
        "data:\n"
        "  a: yes\n  b: on\n  c: 0600\n  d: 0o600\n  e: 0x1F\n  f: 1e3\n  g: 2.0\n"
        "  h: 1.5\n  i: 2024-01-01\n  j: 2001-12-14t21:59:43.10-05:00\n  k: 1:30\n  l: ~\n"
        "  m: y\n  n: N\n"  # the key n is a boolean too: "false"
    )
    assert document.obj["data"] == {
        "a": True,
        "b": True,
        "c": 384,
        "d": 384,
        "e": 31,
        "f": 1000,
        "g": 2,
        "h": 1.5,
        "i": "2024-01-01",
        "j": "2001-12-14t21:59:43.10-05:00",
        "k": "1:30",
        "l": None,
        "m": True,
        "false": False,
    }
    assert type(document.obj["data"]["f"]) is int
    assert type(document.obj["data"]["g"]) is int


@pytest.mark.parametrize(
    "scalar", [".inf", ".Inf", ".INF", "+.inf", "-.inf", "-.INF", ".nan", ".NaN", ".NAN"]
)
def test_infinity_and_nan_are_rejected(scalar: str) -> None:
    with pytest.raises(InputError) as caught:
        load_manifests(f"spec:\n  a: [1, {scalar}]\n", "run.yaml")
    assert str(caught.value.location) == "run.yaml:2:10: $.spec.a[1]"
    assert "not a JSON number" in caught.value.message
    assert "quote" in caught.value.advice


def test_tagged_infinity_is_rejected() -> None:
    with pytest.raises(InputError, match="not a JSON number"):
        value_of("!!float .inf")


@pytest.mark.parametrize(
    ("scalar", "shown"),
    [
        ("12345678901234567890", "12345678901234567890"),
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("18446744073709551615", "18446744073709551615"),
        ("0x7FFFFFFFFFFFFFFF", "9223372036854775807"),
        ("1e20", "1e+20"),
        ("-1.5e300", "-1.5e+300"),
    ],
)
def test_numbers_beyond_2_pow_53_raise_digest_error(scalar: str, shown: str) -> None:
    with pytest.raises(DigestError) as caught:
        load_manifests(f"spec:\n  parameters:\n    big: {scalar}\n", "run.yaml")
    error = caught.value
    assert str(error.location) == "run.yaml:3:10: $.spec.parameters.big"
    assert shown in error.message
    assert "2^53" in error.message
    assert error.advice == f'quote it: "{scalar}"'


@pytest.mark.parametrize(
    ("scalar", "message"),
    [
        ("!!binary aGVsbG8=", "unsupported tag !!binary"),
        ("!!timestamp 2001-01-01", "unsupported tag !!timestamp"),
        ("!foo bar", "unsupported tag !foo"),
        ("!!set {a}", "unsupported tag !!set"),
        ("!!str [a]", "unsupported tag !!str"),
        ("!!int yes", "cannot read 'yes' as !!int"),
        ("!!int 1.5", "cannot read '1.5' as !!int"),
        ("!!bool 1", "cannot read '1' as !!bool"),
        ("!!null 0", "cannot read '0' as !!null"),
        ("!!float abc", "cannot read 'abc' as !!float"),
    ],
)
def test_tags_kubectl_would_misread_are_rejected(scalar: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_manifests(f"a:\n  v: {scalar}\n", "m.yaml")
    assert message in caught.value.message
    assert str(caught.value.location) == "m.yaml:2:6: $.a.v"


# --- keys -------------------------------------------------------------------------------

KEYS = [
    ("1", "1"),
    ("-1", "-1"),
    ("0x10", "16"),
    ("0600", "384"),
    ("true", "true"),
    ("yes", "true"),
    ("n", "false"),
    ("1.25", "1.25"),
    ("1e7", "1e+07"),
    ("1e21", "1e+21"),
    ("0.00001", "1e-05"),
    ("123456.7", "123456.7"),
    ("3.14159265358979", "3.1415927"),
    ("-0.0", "-0"),
    (".inf", ".inf"),
    ("-.inf", "-.inf"),
    (".nan", ".nan"),
    ("2001-01-01", "2001-01-01"),
    ('"quoted"', "quoted"),
    ("'1'", "1"),
]


@pytest.mark.parametrize(("key", "expected"), KEYS)
def test_keys_become_strings_like_sigs_k8s_io_yaml(key: str, expected: str) -> None:
    assert load_one(f"{key}: v\n").obj == {expected: "v"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("~: 1\n", "kubectl cannot use '~' as a key"),
        ("? \n: 1\n", "kubectl cannot use '' as a key"),
        ("18446744073709551615: 1\n", "kubectl cannot use '18446744073709551615' as a key"),
        ("? [a]\n: 1\n", "a mapping key must be a scalar"),
        ("? {a: 1}\n: 1\n", "a mapping key must be a scalar"),
    ],
)
def test_keys_kubectl_cannot_convert_are_rejected(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_manifests(text)


def test_duplicate_keys_are_rejected_with_both_lines() -> None:
    text = "spec:\n  parameters:\n    a: x\n    b: y\n    a: z\n"
    with pytest.raises(InputError) as caught:
        load_manifests(text, "run.yaml")
    error = caught.value
    assert str(error.location) == "run.yaml:5:5: $.spec.parameters.a"
    assert error.message == "duplicate key 'a' (first at line 3)"
    assert "kubectl would silently keep the last one" in error.advice


def test_keys_that_convert_to_the_same_string_are_duplicates() -> None:
    with pytest.raises(InputError, match="duplicate key '1'"):
        load_manifests('1: a\n"1": b\n')
    with pytest.raises(InputError, match="duplicate key 'true'"):
        load_manifests("yes: a\ntrue: b\n")


# --- anchors, aliases, merges -----------------------------------------------------------


def test_aliases_are_expanded_into_independent_copies() -> None:
    document = load_one("a: &x {k: [1, 2]}\nb: *x\nc: [*x, *x]\n")
    assert document.obj == {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}, "c": [{"k": [1, 2]}] * 2}
    document.obj["b"]["k"].append(3)
    assert document.obj["a"] == {"k": [1, 2]}


def test_merge_keys_follow_go_yaml_v2() -> None:
    # observed with kubectl: a merge overrides keys written before it, keys after it win,
    # and in a merged list the earlier mappings win.
    document = load_one(
        "base: &x {p: 1, q: 2}\n"
        "data:\n  r: 0\n  <<: [*x, {p: 5, r: 7}]\n  q: 9\n"
        "after:\n  <<: *x\n  p: 3\n"
        "before:\n  p: 3\n  <<: *x\n"
        'quoted:\n  "<<": literal\n'
    )
    assert document.obj["data"] == {"p": 1, "q": 9, "r": 7}
    assert document.obj["after"] == {"p": 3, "q": 2}
    assert document.obj["before"] == {"p": 1, "q": 2}
    assert document.obj["quoted"] == {"<<": "literal"}


@pytest.mark.parametrize("value", ["1", "[1]", "[{a: 1}, b]", "~"])
def test_merge_of_a_non_mapping_is_rejected(value: str) -> None:
    with pytest.raises(InputError, match="<< merge needs a mapping"):
        load_manifests(f"a:\n  <<: {value}\n")


def test_alias_bomb_is_stopped_early() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 12):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    with pytest.raises(InputError, match="alias bomb") as caught:
        load_manifests("\n".join(lines) + "\n", "bomb.yaml")
    # stopped early: at a4, which expands to 111110 nodes, not at a11 (10**12): the position,
    # not the time taken, shows it
    assert caught.value.location is not None
    assert caught.value.location.line == 5


def test_alias_expanding_to_many_characters_is_stopped() -> None:
    text = "a: &a '" + "x" * 1_000_000 + "'\nb: [" + ", ".join(["*a"] * 11) + "]\n"
    with pytest.raises(InputError, match="alias bomb"):
        load_manifests(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: *nope\n", "alias \\*nope is unknown"), ("a: &x [1, *x]\n", "used inside its own")],
)
def test_bad_aliases(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_manifests(text)


# --- bad input ---------------------------------------------------------------------------


def test_invalid_utf8_is_located() -> None:
    with pytest.raises(InputError) as caught:
        load_manifests("a: 1\nb: caf\xe9\n".encode("latin-1"), "f.yaml")
    assert str(caught.value.location) == "f.yaml:2:7"
    assert caught.value.message == "not valid UTF-8 (byte 0xe9)"


def test_utf8_bytes_and_bom_are_fine() -> None:
    assert load_manifests("\ufeffa: café\n".encode())[0].obj == {"a": "café"}


@pytest.mark.parametrize(
    ("text", "where", "code"),
    [("a: b\x07\n", "1:5", "U+0007"), ("a: 1\nb: \udce9\n", "2:4", "U+DCE9"), ("\x7f", "1:1", "")],
)
def test_characters_yaml_forbids(text: str, where: str, code: str) -> None:
    with pytest.raises(InputError, match=re.escape(f"character {code}")) as caught:
        load_manifests(text, "f.yaml")
    assert str(caught.value.location) == f"f.yaml:{where}"


def test_tab_indentation_points_at_the_tab() -> None:
    with pytest.raises(InputError) as caught:
        load_manifests("---\napiVersion: v1\nspec:\n\tname: x\n", "f.yaml")
    assert str(caught.value.location) == "f.yaml:4:1"
    assert caught.value.message.startswith("invalid YAML: found character")
    assert "spaces" in caught.value.advice


def test_syntax_error_in_a_later_document_has_the_file_line() -> None:
    with pytest.raises(InputError) as caught:
        load_manifests("a: 1\n---\nb: [1, 2\n---\nc: 3\n", "f.yaml")
    assert caught.value.location is not None
    assert caught.value.location.line == 4
    assert "expected ',' or ']'" in caught.value.message


@pytest.mark.parametrize("line", ["--- !!map", "---a", "----", "--- {a: 1}", "--- |"])
def test_separator_lines_kubectl_rejects(line: str) -> None:
    with pytest.raises(InputError, match="invalid document separator") as caught:
        load_manifests(f"a: 1\n{line}\nb: 2\n", "f.yaml")
    assert str(caught.value.location) == "f.yaml:2:1"


def test_text_after_document_end_marker_is_refused() -> None:
    # kubectl silently reads only the first document of `a: 1 ... b: 2`
    with pytest.raises(InputError) as caught:
        load_manifests("a: 1\n...\nb: 2\n", "f.yaml")
    assert "kubectl ignores text after '...'" in caught.value.advice


@pytest.mark.parametrize(("text", "what"), [("- a\n", "a list"), ("just text\n", "a scalar")])
def test_documents_must_be_mappings(text: str, what: str) -> None:
    with pytest.raises(InputError, match=f"must be a mapping, not {what}"):
        load_manifests(text)


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(InputError, match="nesting deeper than"):
        load_manifests("a: " + "[" * 300 + "]" * 300 + "\n")


# --- documents, positions, splitting -----------------------------------------------------

MULTI = """\
# leading comment
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: one   # trailing comment
data:
  list:
    - first
    - {k: v}
--- # the second one
# nothing but comments

---
...
---
apiVersion: v1
kind: ConfigMap
metadata: {name: two}
data:
  original: &anchor
    deep: 1
  copy: *anchor
...
"""


def test_documents_have_index_text_and_start_line() -> None:
    chunks = split_documents(MULTI)
    documents = load_manifests(MULTI, "multi.yaml")
    assert [d.obj["metadata"]["name"] for d in documents] == ["one", "two"]
    assert [d.index for d in documents] == [1, 4]
    assert [d.start_line for d in documents] == [2, 16]
    for document in documents:
        assert document.text == chunks[document.index]
        assert document.filename == "multi.yaml"


def test_positions_of_nested_keys_and_items() -> None:
    one, two = load_manifests(MULTI, "multi.yaml")
    assert one.position(()) == (3, 1)
    assert one.position(("metadata", "name")) == (6, 3)
    assert one.position(("data", "list", 0)) == (9, 7)
    assert one.position(("data", "list", 1)) == (10, 7)
    assert one.position(("data", "list", 1, "k")) == (10, 8)
    assert two.position(("metadata", "name")) == (19, 12)
    assert two.position(("data", "copy")) == (23, 3)
    assert two.position(("data", "copy", "deep")) == (22, 5)  # where the anchor wrote it
    assert two.position(("data", "nothing", "here")) == (20, 1)  # nearest ancestor
    location = one.location(("data", "list", 1, "k"))
    assert str(location) == "multi.yaml:10:8: $.data.list[1].k"


SPLIT_CASES = [
    "",
    "\n",
    "a: 1",
    "a: 1\n",
    "---",
    "---\n",
    "---\n---\n---",
    "a: 1\n---\nb: 2",
    "# only\n# comments\n",
    "---\na: 1\n...\n---\nb: 2\n...\n",
    "--- # c\na: 1\n---   \nb: 2\n---\t# t\n",
    "a: 1\r\n---\r\nb: 2\r\n",
    "a: |\n  text\n  --- not a separator\nb: 2\n",
    "---a\n----\n--- x\n",
    MULTI,
]


@pytest.mark.parametrize("text", SPLIT_CASES)
def test_split_documents_rebuilds_the_file_exactly(text: str) -> None:
    chunks = split_documents(text)
    assert "".join(chunks) == text
    assert all(chunks)
    for chunk in chunks[1:]:
        first_line = chunk.split("\n", 1)[0]
        rest = first_line[3:].strip()
        assert first_line.startswith("---")
        assert not rest or rest.startswith("#")


def test_split_documents_cuts_where_kubectl_does() -> None:
    assert split_documents("a: 1\n---\nb: 2\n--- # x\nc: 3") == [
        "a: 1\n",
        "---\nb: 2\n",
        "--- # x\nc: 3",
    ]
    assert split_documents("---\na: 1\n") == ["---\na: 1\n"]
    assert split_documents("x: |\n ---\n") == ["x: |\n ---\n"]


@given(st.text(alphabet=st.sampled_from(["-", "-", "-", "\n", "\r", "#", " ", "\t", "a", "."])))
@settings(max_examples=300)
def test_split_documents_is_total_and_lossless(text: str) -> None:
    assert "".join(split_documents(text)) == text


def test_empty_and_null_documents_are_skipped() -> None:
    text = "---\n---\n# c\n---\n~\n---\nnull\n---\na: 1\n"
    documents = load_manifests(text)
    assert [(d.index, d.obj) for d in documents] == [(4, {"a": 1})]
    assert load_manifests("") == []


def test_no_trailing_newline_and_crlf() -> None:
    assert load_one("a: 1\r\nb: |\r\n  x\r\n  y").obj == {"a": 1, "b": "x\ny"}


# Astral characters are left out: JSON writes them as surrogate-pair escapes, which YAML
# (and kubectl for a YAML file) refuses; see test_json_surrogate_escapes_are_refused.
BMP_TEXT = st.text(st.characters(max_codepoint=0xFFFF, codec="utf-8"), max_size=8)
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | BMP_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(BMP_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def normalized(value: Any) -> Any:
    """What the API server makes of a JSON value: integral floats are integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    return value


@given(st.dictionaries(BMP_TEXT, JSONISH, min_size=1, max_size=5))
@settings(max_examples=200)
def test_json_is_read_as_json(obj: dict[str, Any]) -> None:
    assert canonical(load_one(json.dumps(obj)).obj) == canonical(normalized(obj))


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="the pure-Python parser decodes them")
def test_json_surrogate_escapes_are_refused() -> None:
    # kubectl reads a JSON file with Go's JSON decoder, which accepts "\ud83d\ude00";
    # YAML does not. Refusing is the safe side: write the character itself instead.
    with pytest.raises(InputError, match="invalid Unicode character escape"):
        load_manifests(json.dumps({"a": "😀"}))
    assert load_one(json.dumps({"a": "😀"}, ensure_ascii=False)).obj == {"a": "😀"}


@pytest.mark.parametrize("name", ["agentrun-sample.yaml", "agentrun-workflow-smoke.yaml"])
def test_upstream_examples_load(name: str) -> None:
    (document,) = load_manifests((EXAMPLES / name).read_bytes(), name)
    assert document.obj["kind"] == "AgentRun"
    spec = document.obj["spec"]
    assert spec["runtime"]["config"]["ttlSecondsAfterFinished"] == 600
    assert spec["parameters"]["priority"] == "medium"
    assert spec["workload"]["resources"]["requests"]["cpu"] in ("250m", "50m")


def _python_calls(text: str) -> int:
    """Python and C function calls made by load_manifests(text): the work it does, counted
    (the same on any machine, unlike a time)."""
    calls = 0

    def count(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        load_manifests(text)
    finally:
        sys.setprofile(None)
    return calls


def test_a_200_line_manifest_loads_with_a_few_calls_a_line() -> None:
    run = (
        "apiVersion: agents.proompteng.ai/v1alpha1\nkind: AgentRun\nmetadata:\n  name: r\n"
        "spec:\n  parameters:\n"
        + "".join(f"    key{i}: 'value {i}'  # comment\n" for i in range(45))
    )
    text = "---\n".join([run] * 4)
    lines = text.count("\n")
    assert 190 < lines < 220
    load_manifests(text)  # imports and caches warmed
    calls = _python_calls(text)
    # libyaml parses; Python only builds the objects: about 3.6 calls a line today, where
    # the pure-Python parser makes hundreds (a few ms for 200 lines, not tens)
    assert calls < 10 * lines, calls
    # and the work grows linearly: ten times the text, ten times the calls (within 5 %)
    assert _python_calls("---\n".join([run] * 40)) <= 10.5 * calls


# --- the oracle: a real kubectl ------------------------------------------------------------

ORACLE_MANIFEST = """\
# Every line here is something kubectl types in a way a YAML 1.2 library would not.
apiVersion: v1
kind: ConfigMap
metadata:
  name: oracle-scalars
  annotations:
    note: "quoted: yes"
data:
  bools: [yes, Yes, YES, y, Y, on, On, ON, true, True, no, N, off, OFF, false, n]
  octal: 0600
  octal-o: 0o600
  hex: 0x1F
  hex-negative: -0x1F
  binary: 0b101
  binary-odd: 0b-101
  underscores: 1_000
  exp: 1e3
  two: 2.0
  one-dot: 1.
  nine: 09
  half: 1.5
  dot-half: .5
  tiny: 1e-7
  date: 2024-01-01
  timestamp: 2001-12-14t21:59:43.10-05:00
  spaced: 2001-12-14 21:59:43.10 -5
  sexagesimal: 1:30
  tilde: ~
  empty:
  huge-float-text: 1e999
  huge-hex-text: 0x1FFFFFFFFFFFFFFFFF
  safe-max: 9007199254740991
  safe-min: -9007199254740991
  not-numbers: [0o, 0x, ._5, 12e, +, -.nan, "<<"]
  unicode: héllo wörld ✓ 日本 😀
  escaped: "caf\\u00e9\\ttab \\x41"
  single: 'it''s'
  literal: |
    line one
      indented
    line three

  folded: >
    folded
    text

    paragraph
  keep: |+
    kept

  strip: |-
    stripped
  plain-multi: this is
    one plain
    scalar
  tagged: [!!str 12, !!int "12", !!float 3, !!bool "yes", !!null "", ! 12]
  keys: {1: a, 1.5: b, 1e7: c, 0x10: d, true: e, no: f, 2001-01-01: g}
---   # a second document, with anchors and merges
apiVersion: v1
kind: ConfigMap
metadata: {name: oracle-anchors}
base: &base {p: 1, q: 2, list: [1, 2]}
data:
  r: 0
  <<: [*base, {p: 5, r: 7}]
  q: 9
copy: *base
more:
  - *base
  - {<<: *base, p: 3}
...
---
# an empty document (kubectl skips it)
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: oracle-run
spec:
  agentRef: {name: codex-agent}
  runtime:
    type: workflow
    config: {ttlSecondsAfterFinished: 600, retry: on, mode: 0755, ratio: 2.50}
  parameters:
    task: 'Quoted task'
    priority: "medium"
  workload:
    resources:
      requests: {cpu: 250m, memory: 512Mi}"""

ORACLE_FAILURES = {
    "nan": "a: .nan\n",
    "inf": "a: -.Inf\n",
    "null key": "~: 1\n",
    "bad tag value": "a: !!int yes\n",
    "bad separator": "a: 1\n--- {b: 2}\n",
    "tab": "a:\n\tb: 1\n",
    "unknown alias": "a: *x\n",
    "collection key": "? [a]\n: 1\n",
    "list document": "- a\n",
}


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return pinned_binary("k8s", "kubectl")


def kubectl_objects(kubectl: Path, path: Path) -> list[Any]:
    """What `kubectl apply` would send: `label --local` converts without a server."""
    result = subprocess.run(
        [str(kubectl), "label", "--local", "-f", str(path), "oracle=1", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    decoder, objects, position, out = json.JSONDecoder(), [], 0, result.stdout
    while out[position:].strip():
        while out[position].isspace():
            position += 1
        obj, position = decoder.raw_decode(out, position)
        labels = obj["metadata"].pop("labels")
        assert labels.pop("oracle") == "1"
        if labels:
            obj["metadata"]["labels"] = labels
        objects.append(obj)
    return objects


def test_oracle_kubectl_converts_exactly_like_load_manifests(kubectl: Path, tmp_path: Path) -> None:
    path = tmp_path / "oracle.yaml"
    path.write_text(ORACLE_MANIFEST, encoding="utf-8")
    theirs = kubectl_objects(kubectl, path)
    ours = [document.obj for document in load_manifests(ORACLE_MANIFEST, str(path))]
    assert len(theirs) == len(ours) == 3
    for their, our in zip(theirs, ours, strict=True):
        assert canonical(our) == canonical(their)


def test_oracle_every_typing_case_matches_kubectl(kubectl: Path, tmp_path: Path) -> None:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: table}", "data:"]
    expected = {}
    for number, (scalar, value) in enumerate(TYPING):
        if "\n" in scalar:
            continue
        lines.append(f"  k{number}: {scalar}")
        expected[f"k{number}"] = value
    path = tmp_path / "table.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (theirs,) = kubectl_objects(kubectl, path)
    assert canonical(theirs["data"]) == canonical(expected)


@pytest.mark.parametrize("name", sorted(ORACLE_FAILURES))
def test_oracle_kubectl_fails_where_we_fail_as_kubectl(
    kubectl: Path, tmp_path: Path, name: str
) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n" + ORACLE_FAILURES[name]
    if name == "list document":
        text = ORACLE_FAILURES[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(subprocess.CalledProcessError):
        kubectl_objects(kubectl, path)
    with pytest.raises(InputError):
        load_manifests(text)


def test_oracle_big_integers_are_approximated_by_kubectl(kubectl: Path, tmp_path: Path) -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {big: 12345678901234567890}\n"
    )
    path = tmp_path / "big.yaml"
    path.write_text(text, encoding="utf-8")
    (theirs,) = kubectl_objects(kubectl, path)
    assert theirs["data"]["big"] != 12345678901234567890  # what the API server would see
    assert theirs["data"]["big"] == 12345678901234567000
    with pytest.raises(DigestError):
        load_manifests(text)


# --- strict mode: the policy compiler's sources, read by reviewers before compiling -------


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("port: 0443\n", "1:7", "'0443' is read as 291"),
        ("port: 010\n", "1:7", "'010' is read as 8"),
        ("v: 1_000\n", "1:4", "'1_000' is read as 1000"),
        ("v: 0b11\n", "1:4", "'0b11' is read as 3"),
        ("a: yes\n", "1:4", "'yes' is read as true"),
        ("a: [Off]\n", "1:5", "'Off' is read as false"),
        ("a: y\n", "1:4", "'y' is read as true"),
        ("on: x\n", "1:1", "'on' is read as true"),
        ("1.0: x\n", "1:1", "the key '1.0' is read as '1'"),
        ("a: !!int '0443'\n", "1:4", "tag !!int"),
        ("a: !!bool 'no'\n", "1:4", "tag !!bool"),
        ("a: &x {p: 1}\nb:\n  p: 2\n  <<: *x\n", "4:3", "this << merge overrides 'p' written"),
        ("a: &x {p: 1}\nb:\n  p: 2\n  <<: [{q: 1}, *x]\n", "4:3", "overrides 'p'"),
        ("a: &x {p: 1}\nb:\n  <<: *x\n  <<: {q: 1}\n", "4:3", "a second << merge"),
        ("a: &x warn\nb: &x enforce\nc: *x\n", "2:4", "anchor &x is defined again (first at"),
        ("a: 1 # note\rb: 2\n", "1:12", "line break U+000D"),
        ("a: [leads," + " " * 60 + "mallory]\n", "1:71", "60 blanks inside a line"),
        ("a: 1\x85b: 2\n", "1:5", "line break U+0085"),
        ("a: 1\u2028b: 2\n", "1:5", "line break U+2028"),
        ("a: 1\u2029b: 2\n", "1:5", "line break U+2029"),
        ("a: ali\u200bce\n", "1:7", "invisible character U+200B"),
        ("a: alice\U000e0041\n", "1:9", "invisible character U+E0041"),
        ("a: x\ufeff\n", "1:5", "invisible character U+FEFF"),
        ("# a \u202e comment\na: 1\n", "1:5", "invisible character U+202E"),
        ("a: b\u2066c\n", "1:5", "invisible character U+2066"),
        ("a: \u3164\n", "1:4", "invisible character U+3164"),
    ],
)
def test_strict_refuses_what_a_reviewer_reads_otherwise(
    text: str, where: str, message: str
) -> None:
    load_manifests(text.replace("\r", "\n").replace("\x85", "\n"), "f.yaml")  # YAML, not strict
    with pytest.raises(InputError) as caught:
        load_manifests(text, "f.yaml", strict=True)
    assert caught.value.render().startswith(f"f.yaml:{where}: "), caught.value.render()
    assert message in caught.value.message
    assert caught.value.advice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 443\nb: 08443\nc: 1e3\nd: 0x1BB\ne: 0o600\nf: -1.5\ng: +3\n", None),
        ("a: true\nb: False\nc: NULL\nd: ~\ne:\nf: '0443'\ng: \"yes\"\nh: !!str 0443\n", None),
        ("base: &x {p: 1, q: 2}\nafter:\n  <<: *x\n  p: 3\n", None),
        ("base: &x {p: 1}\nlist:\n  <<: [*x, {p: 2, r: 3}]\n", None),
        ("\ufeffa: caf\u00e9 \u65e5\u672c \U0001f600\r\nb: 1:30\r\n", None),
        ("a: \U0001f468\u200d\U0001f469\n", "ZWJ"),
    ],
)
def test_strict_reads_what_both_read_alike(text: str, expected: str | None) -> None:
    if expected == "ZWJ":  # an emoji sequence's joiner is invisible too: refused
        with pytest.raises(InputError, match="U\\+200D"):
            load_manifests(text, "f.yaml", strict=True)
        return
    assert [d.obj for d in load_manifests(text, "f.yaml", strict=True)] == [
        d.obj for d in load_manifests(text, "f.yaml")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a: 0443\n",
        "a: [1, yes]\n",
        "a: {b: on}\n",
        "a: 443\nb: true\nc: '0443'\n",
        "a: 1_0\n",
        "a: 08443\n",
        "a: x\n---\nb: 0b1\n",
    ],
)
def test_strict_answers_alike_on_the_fast_path_and_the_full_one(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer() -> object:
        try:
            return [d.obj for d in load_manifests(text, "f.yaml", strict=True)]
        except InputError as exc:
            return exc.render()

    fast = answer()
    monkeypatch.setattr(kubeyaml, "_load_plain_document", lambda chunk, strict=False: None)
    assert answer() == fast
