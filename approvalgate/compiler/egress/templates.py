"""A policy repo's own templates (``templates:`` in approvalgate.yaml).

A file named like a flavor's ``template`` in that folder replaces the flavor's builder: it
is rendered with Jinja2 (``policy`` is the :class:`~.flavor.Manifest`) and the YAML is
parsed back. approvalgate ships no templates: the flavor modules are the only source of
the built-in output (docs/egress.md shows a template laying out the same objects).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import yaml

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.compiler.egress.flavor import Manifest
from approvalgate.compiler.egress.model import Json

if TYPE_CHECKING:
    import jinja2


def repo_template(templates_dir: str | None, name: str) -> Callable[[Manifest], Json] | None:
    """A builder from the repo's template ``name``, or None when the repo has none."""
    if templates_dir is None or not os.path.isfile(os.path.join(templates_dir, *name.split("/"))):
        return None
    template = _jinja(templates_dir).get_template(name)

    def build(m: Manifest) -> Json:
        return _load_rendered(template.render(policy=m))

    return build


@lru_cache(maxsize=1)
def _jinja(templates_dir: str) -> jinja2.Environment:
    import jinja2

    # autoescape stays on as a safety net: a template should pass every value through
    # `tojson` (JSON is YAML), and anything that is not shows up HTML-escaped, not injected.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _load_rendered(text: str) -> Json:
    obj = yaml.safe_load(text)
    if not isinstance(obj, dict):
        raise ApprovalgateError(
            "an egress template rendered no object",
            advice="the repo's template must render one YAML mapping per policy",
        )
    return obj
