"""A policy repo's own templates (``templates:`` in approvalgate.yaml).

A file named like a flavor's ``template`` in that folder replaces the flavor's builder: it
is rendered with Jinja2 (``policy`` is the :class:`~.flavor.Manifest`) and the YAML is
parsed back. It lays out what the policy declares and may choose the object's labels and
annotations; everything else must be what the flavor builds (:func:`layout_problems`): a
reviewer reads the policy, not what a template adds to it. approvalgate ships no
templates: the flavor modules are the only source of the built-in output (docs/egress.md
shows a template laying out the same objects).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

import yaml

from approvalgate.approvals.errors import ApprovalgateError, JsonPath, Location, format_json_path
from approvalgate.compiler.egress.checks import tool_owned_problem
from approvalgate.compiler.egress.flavor import Manifest
from approvalgate.compiler.egress.model import Json

if TYPE_CHECKING:
    import jinja2


def repo_template(templates_dir: str | None, name: str) -> Callable[[Manifest], Json] | None:
    """A builder from the repo's template ``name``, or None when the repo has none.

    Raises :class:`ApprovalgateError`, located at the template, when it cannot be read or
    rendered: it runs in Jinja2's immutable sandbox (no attribute that starts with `_`, no
    method that changes a value), and reads templates only from regular files inside its
    folder (no symlink, no `..`), so a template is data: it cannot run code or read files
    wherever `compile` and `check` run (CI, hooks, a job holding a signing key).
    """
    path = os.path.join(templates_dir or "", *name.split("/"))
    if templates_dir is None or not os.path.isfile(path):
        return None
    import jinja2

    try:
        template = _jinja(templates_dir).get_template(name)
    except jinja2.TemplateError as error:
        raise _template_error(path, "cannot be read", error) from None

    def build(m: Manifest) -> Json:
        try:
            text = template.render(policy=m)
        except jinja2.TemplateError as error:
            raise _template_error(path, "cannot be rendered", error) from None
        return _load_rendered(text, path)

    return build


def _template_error(path: str, what: str, error: Exception) -> ApprovalgateError:
    line = getattr(error, "lineno", None) if what == "cannot be read" else None
    return ApprovalgateError(
        f"the repo template {what}: {type(error).__name__}: {error}",
        location=Location(file=path, line=line or 0),
        advice='a template sees `policy` (docs/egress.md, "Repo templates"), in Jinja2\'s '
        "sandbox: no attribute starting with `_`, and includes only of files in its folder",
    )


@lru_cache(maxsize=1)
def _jinja(templates_dir: str) -> jinja2.Environment:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # autoescape stays on as a safety net: a template should pass every value through
    # `tojson` (JSON is YAML), and anything that is not shows up HTML-escaped, not injected.
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FunctionLoader(lambda name: _read_template(templates_dir, name)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _read_template(templates_dir: str, name: str) -> tuple[str, str, Callable[[], bool]]:
    """A template's text: a regular file inside the folder, reached through no symlink."""
    import jinja2
    from jinja2.loaders import split_template_path

    parts = split_template_path(name)  # refuses `..`
    path = templates_dir
    for part in parts:
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise jinja2.TemplateNotFound(
                f"{name} (a symlink: templates are read from the folder only)"
            )
    if not os.path.isfile(path):
        raise jinja2.TemplateNotFound(name)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    mtime = os.path.getmtime(path)
    return text, path, lambda: os.path.getmtime(path) == mtime


def _load_rendered(text: str, path: str) -> Json:
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ApprovalgateError(
            f"the repo template rendered text that is not YAML: {error}",
            location=Location(file=path),
            advice="pass every value through `tojson` (JSON is YAML)",
        ) from None
    if not isinstance(obj, dict):
        raise ApprovalgateError(
            "an egress template rendered no object",
            location=Location(file=path),
            advice="the repo's template must render one YAML mapping per policy",
        )
    return obj


#: What a repo template may choose: the rendered object's own labels and annotations.
TEMPLATE_OWNED = ("labels", "annotations")


def layout_problems(rendered: Json, built: Json) -> list[tuple[str, str]]:
    """(JSON path, what differs) where a repo template's object is not the flavor's
    ``built`` one, other than its labels and annotations; empty when it only lays out."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(rendered) | set(built), key=str):
        if key != "metadata":
            problems += _differences(rendered.get(key, _MISSING), built.get(key, _MISSING), (key,))
            continue
        meta, own = rendered.get(key), built[key]
        if not isinstance(meta, dict):
            problems += _differences(meta, own, (key,))
            continue
        for field in sorted(set(meta) | set(own), key=str):
            if field in TEMPLATE_OWNED:
                problems += _tool_owned(meta.get(field), (key, field))
                continue
            got, want = meta.get(field, _MISSING), own.get(field, _MISSING)
            problems += _differences(got, want, (key, field))
    return problems[:1]  # the first: the rest usually follow from it


def _tool_owned(chosen: object, path: JsonPath) -> list[tuple[str, str]]:
    """What a template chose among the labels or annotations that tools act on."""
    if not isinstance(chosen, dict):
        return []
    found = []
    for key in sorted(chosen, key=str):
        problem = tool_owned_problem(str(key))
        if problem:
            found.append((format_json_path((*path, str(key))), problem[0]))
    return found


class _Missing:
    def __repr__(self) -> str:
        return "(nothing)"


_MISSING = _Missing()


def _differences(got: object, want: object, path: JsonPath) -> Iterator[tuple[str, str]]:
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want), key=str):
            yield from _differences(got.get(key, _MISSING), want.get(key, _MISSING), (*path, key))
    elif isinstance(got, list) and isinstance(want, list):
        for i, (a, b) in enumerate(zip(got, want, strict=False)):
            yield from _differences(a, b, (*path, i))
        n = min(len(got), len(want))  # one list goes on: name its first extra item
        if len(got) != len(want):
            extra = got[n] if len(got) > n else want[n]
            which = "the template renders" if len(got) > n else "the template leaves out"
            yield format_json_path((*path, n)), f"{which} {_brief(extra)}"
    elif type(got) is not type(want) or got != want:  # True == 1, 443 == 443.0: not alike
        yield (
            format_json_path(path),
            f"the template renders {_brief(got)}, the policy declares {_brief(want)}",
        )


def _brief(value: object) -> str:
    if isinstance(value, _Missing):
        return "nothing"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
