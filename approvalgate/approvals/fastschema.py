"""A fast yes/no JSON Schema check for the hot paths, with jsonschema for the messages.

``jsonschema`` walks a schema generically for every instance (about 2 ms for an
EgressPolicy, 1 ms for a rendered NetworkPolicy): with 10,000 specs that dominates a
compile. :func:`compile_check` turns a schema into nested closures that answer only
"is it valid?", with the semantics of ``Draft202012Validator(schema).is_valid`` (without a
format checker). Callers run it first and ask jsonschema for the errors only when it says
no, so messages are unchanged and valid documents never pay for jsonschema.

Only the keywords our schemas use are implemented; :func:`compile_check` returns ``None``
for a schema with any other keyword (or a ``$ref`` outside the document), and the caller
then uses jsonschema alone. A check may also answer "no" where it cannot be sure (a
``format`` asserted by a format checker, ``uniqueItems`` over anything but strings): that
only sends the document to jsonschema. Its "yes" must be exact: tests/bench/
test_fastschema.py compares both on mutated documents.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


class _Unsupported(Exception):
    pass


_OBJECT_KEYWORDS = frozenset({"type", "properties", "additionalProperties", "required"})
_ARRAY_KEYWORDS = frozenset({"type", "items", "minItems", "maxItems"})
_STRING_KEYWORDS = frozenset({"type", "pattern", "minLength", "maxLength"})

# Keywords that evaluate properties conditionally (or all of them): with any of these
# beside it, unevaluatedProperties is left to jsonschema.
_EVALUATING = (
    "additionalProperties",
    "patternProperties",
    "unevaluatedProperties",
    "dependentSchemas",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$dynamicRef",
)


def compile_check(schema: Mapping[str, Any] | bool, formats: bool = False) -> Check | None:
    """A function telling whether an instance is valid, or None if this schema is beyond it.

    ``formats``: the validator it stands for has a format checker (``format`` asserts);
    that is not implemented, so a schema using ``format`` then gets None.
    """
    compiler = _Compiler(schema, formats)
    try:
        return compiler.compile(schema, root=True)
    except _Unsupported:
        return None


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Number)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality: True is not 1, containers compared item by item."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return one.keys() == two.keys() and all(_equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return isinstance(one, bool) and isinstance(two, bool) and one == two
    return bool(one == two)


class _Compiler:
    def __init__(self, root: Mapping[str, Any] | bool, formats: bool) -> None:
        self.root = root
        self.formats = formats
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any, root: bool = False) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, Mapping):
            raise _Unsupported
        checks, handled = self._typed(schema)
        for keyword, value in schema.items():
            if keyword in handled or keyword in _ANNOTATIONS or keyword.startswith("x-"):
                continue
            if keyword == "$id" and root:
                continue
            method = getattr(self, "k_" + keyword.lstrip("$"), None)
            if method is None:
                raise _Unsupported(keyword)
            checks.append(method(value, schema))
        return _all(checks)

    def _typed(self, schema: Mapping[str, Any]) -> tuple[list[Check], frozenset[str]]:
        """One function for the common shapes (an object with properties, an array of
        items, a string with a pattern): one call per value instead of one per keyword."""
        kind = schema.get("type")
        if kind == "object" and "patternProperties" not in schema:
            return [self._object(schema)], _OBJECT_KEYWORDS
        items = schema.get("items", True)
        if kind == "array" and "prefixItems" not in schema and not isinstance(items, list):
            return [self._array(schema)], _ARRAY_KEYWORDS
        if kind == "string":
            return [self._string(schema)], _STRING_KEYWORDS
        return [], frozenset()

    def _object(self, schema: Mapping[str, Any]) -> Check:
        props = {name: self.compile(sub) for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        other: Check | None = (
            None if extra is True else _never if extra is False else self.compile(extra)
        )
        required = tuple(schema.get("required", ()))

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return False
            for name in required:
                if name not in v:
                    return False
            for key, item in v.items():
                sub = props.get(key, other)
                if sub is not None and not sub(item):
                    return False
            return True

        return check

    def _array(self, schema: Mapping[str, Any]) -> Check:
        sub = self.compile(schema.get("items", True))
        low, high = schema.get("minItems", 0), schema.get("maxItems")

        def check(v: Any) -> bool:
            if not isinstance(v, list) or len(v) < low or (high is not None and len(v) > high):
                return False
            if sub is not _always:
                for item in v:
                    if not sub(item):
                        return False
            return True

        return check

    def _string(self, schema: Mapping[str, Any]) -> Check:
        pattern = schema.get("pattern")
        search = re.compile(pattern).search if pattern is not None else None
        low, high = schema.get("minLength", 0), schema.get("maxLength")

        def check(v: Any) -> bool:
            if not isinstance(v, str) or len(v) < low or (high is not None and len(v) > high):
                return False
            return search is None or search(v) is not None

        return check

    # -- applicators

    def k_ref(self, ref: Any, schema: Mapping[str, Any]) -> Check:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")) or "%" in ref:
            raise _Unsupported("$ref")
        if ref in self.refs:
            return self.refs[ref]
        slot: list[Check] = []

        def indirect(value: Any) -> bool:  # a recursive reference: resolved below
            return slot[0](value)

        self.refs[ref] = indirect
        slot.append(self.compile(self._resolve(ref), root=ref == "#"))
        self.refs[ref] = slot[0]
        return slot[0]

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        for raw in ref[2:].split("/") if ref != "#" else ():
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise _Unsupported(ref)
        return node

    def k_properties(self, props: Any, schema: Mapping[str, Any]) -> Check:
        compiled = {name: self.compile(sub) for name, sub in props.items()}
        extra = schema.get("additionalProperties", True)
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        if extra is True:
            other: Check | None = None
        elif extra is False:
            other = _never
        else:
            other = self.compile(extra)

        # One pass over the instance's keys checks properties and additionalProperties.
        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, item in v.items():
                sub = compiled.get(key, other)
                if sub is not None and not sub(item):
                    return False
            return True

        return check

    def k_additionalProperties(self, extra: Any, schema: Mapping[str, Any]) -> Check:
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        if "properties" in schema:
            return _always  # checked with the properties, in k_properties
        if extra is False:
            return lambda v: not isinstance(v, dict) or not v
        if extra is True:
            return _always
        sub = self.compile(extra)

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            return all(sub(item) for item in v.values())

        return check

    def k_items(self, items: Any, schema: Mapping[str, Any]) -> Check:
        if "prefixItems" in schema or isinstance(items, list):
            raise _Unsupported("prefixItems")
        sub = self.compile(items)

        def check(v: Any) -> bool:
            if not isinstance(v, list):
                return True
            for item in v:  # noqa: SIM110 (a loop: no generator per call on the hot path)
                if not sub(item):
                    return False
            return True

        return check

    def k_allOf(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        return _all([self.compile(s) for s in subs])

    def k_anyOf(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [self.compile(s) for s in subs]

        def check(v: Any) -> bool:
            for c in compiled:  # noqa: SIM110 (a loop: no generator per call)
                if c(v):
                    return True
            return False

        return check

    def k_oneOf(self, subs: Any, schema: Mapping[str, Any]) -> Check:
        compiled = [self.compile(s) for s in subs]

        def check(v: Any) -> bool:
            found = False
            for c in compiled:
                if c(v):
                    if found:
                        return False  # a second match
                    found = True
            return found

        return check

    # -- assertions

    def k_format(self, name: Any, schema: Mapping[str, Any]) -> Check:
        if self.formats:
            return _never  # not implemented: "maybe invalid", jsonschema decides
        return _always  # an annotation only, without a format checker

    def k_uniqueItems(self, unique: Any, schema: Mapping[str, Any]) -> Check:
        if not unique:
            return _always

        def check(v: Any) -> bool:
            if not isinstance(v, list):
                return True
            if all(type(item) is str for item in v):
                return len(set(v)) == len(v)
            return False  # numbers, booleans, containers: jsonschema's rules decide

        return check

    def k_propertyNames(self, names: Any, schema: Mapping[str, Any]) -> Check:
        sub = self.compile(names)
        return lambda v: not isinstance(v, dict) or all(sub(key) for key in v)

    def k_unevaluatedProperties(self, extra: Any, schema: Mapping[str, Any]) -> Check:
        """Only ``false`` where the properties evaluated are plain ``properties`` of this
        schema and of what it pulls in with ``$ref``/``allOf`` (which must all be valid for
        the instance to be valid, so all their annotations count)."""
        if extra is not False:
            raise _Unsupported("unevaluatedProperties")
        known: set[str] = set()
        self._evaluated(schema, known, set(), top=True)
        names = frozenset(known)
        return lambda v: not isinstance(v, dict) or names.issuperset(v)

    def _evaluated(self, schema: Any, known: set[str], seen: set[int], top: bool) -> None:
        if schema is True or id(schema) in seen:
            return
        if not isinstance(schema, Mapping):
            raise _Unsupported("unevaluatedProperties")
        seen.add(id(schema))
        for keyword in _EVALUATING:
            if keyword in schema and not (top and keyword == "unevaluatedProperties"):
                raise _Unsupported(f"unevaluatedProperties beside {keyword}")
        known.update(schema.get("properties", {}))
        for sub in schema.get("allOf", []):
            self._evaluated(sub, known, seen, top=False)
        if "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/") or "%" in ref:
                raise _Unsupported("$ref")
            self._evaluated(self._resolve(ref), known, seen, top=False)

    def k_type(self, types: Any, schema: Mapping[str, Any]) -> Check:
        names = [types] if isinstance(types, str) else list(types)
        if any(name not in _TYPES for name in names):
            raise _Unsupported("type")
        checks = [_TYPES[name] for name in names]
        if len(checks) == 1:
            return checks[0]
        return lambda v: any(c(v) for c in checks)

    def k_enum(self, values: Any, schema: Mapping[str, Any]) -> Check:
        if all(isinstance(x, str) for x in values):
            allowed = frozenset(values)
            return lambda v: isinstance(v, str) and v in allowed
        options = list(values)
        return lambda v: any(_equal(x, v) for x in options)

    def k_const(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: _equal(v, value)

    def k_required(self, names: Any, schema: Mapping[str, Any]) -> Check:
        needed = tuple(names)
        return lambda v: not isinstance(v, dict) or all(n in v for n in needed)

    def k_minProperties(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) >= n

    def k_maxProperties(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) <= n

    def k_minItems(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) >= n

    def k_maxItems(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) <= n

    def k_pattern(self, pattern: Any, schema: Mapping[str, Any]) -> Check:
        search = re.compile(pattern).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    def k_minLength(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= n

    def k_maxLength(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) <= n

    def k_minimum(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v >= n

    def k_maximum(self, n: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v <= n


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _all(checks: list[Check]) -> Check:
    checks = [c for c in checks if c is not _always]
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)

    def check(v: Any) -> bool:
        for c in checks:  # noqa: SIM110 (a loop: no generator per call on the hot path)
            if not c(v):
                return False
        return True

    return check
