"""Golden renders: any change to what the chart renders shows up as a diff here.

A deliberate change is accepted by regenerating, never automatically:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/chart/test_golden.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.chart.support import CHART, ROOT, example_values, template

pytestmark = pytest.mark.helm

GOLDEN = Path(__file__).resolve().parent / "golden"

#: golden file -> values files, in order (release approvalgate, namespace approvalgate-system)
CASES: dict[str, tuple[Path, ...]] = {
    "default.yaml": (CHART / "ci" / "default-values.yaml",),
    "existing-secret.yaml": (CHART / "ci" / "existing-secret-values.yaml",),
    "ha.yaml": (CHART / "ci" / "ha-values.yaml",),
    "prod-example.yaml": (example_values("prod"),),
    "ha-prod-example.yaml": (CHART / "ci" / "ha-values.yaml", example_values("prod")),
    "audit.yaml": (CHART / "ci" / "audit-values.yaml",),
    "audit-prod-example.yaml": (CHART / "ci" / "audit-values.yaml", example_values("prod")),
}


def redact(rendered: str, values: tuple[Path, ...]) -> str:
    """The example's compiled bundle changes whenever its policy repo is recompiled; the
    chart's output does not. So the bundle text and its generation are replaced by where
    they come from (test_render checks the ConfigMap against bundle.json byte for byte)."""
    for path in values:
        bundle = yaml.safe_load(path.read_text(encoding="utf-8")).get("policyBundle", {})
        source = path.relative_to(ROOT).as_posix()
        if bundle.get("content"):
            rendered = rendered.replace(
                json.dumps(bundle["content"]), f"<policyBundle.content of {source}>"
            )
        if bundle.get("signatures"):
            rendered = rendered.replace(
                json.dumps(bundle["signatures"]), f"<policyBundle.signatures of {source}>"
            )
        if bundle.get("revision"):  # the default of --bundle-min-revision
            rendered = rendered.replace(
                f'- --bundle-min-revision\n            - "{bundle["revision"]}"',
                f"- --bundle-min-revision\n            - <policyBundle.revision of {source}>",
            )
        if bundle.get("generation"):
            rendered = rendered.replace(
                json.dumps(bundle["generation"]), f"<policyBundle.generation of {source}>"
            )
    return rendered


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_golden(helm: Path, name: str) -> None:
    rendered = redact(template(helm, *CASES[name]), CASES[name])
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    if rendered != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                f"golden/{name}",
                "helm template",
            )
        )
        pytest.fail(
            f"the render differs from golden/{name}; if the change is intended, run\n"
            f"  UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/chart/test_golden.py\n{diff}",
            pytrace=False,
        )


def test_every_golden_file_is_a_case() -> None:
    assert sorted(path.name for path in GOLDEN.glob("*.yaml")) == sorted(CASES)
