"""`helm lint` (and `--strict`) is clean with every values file the chart is used with."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.support import (
    CHART,
    CI_VALUES,
    ENVIRONMENTS,
    SIGNING_VALUES,
    example_values,
    run_helm,
)

pytestmark = pytest.mark.helm

VALUE_FILES = [*CI_VALUES, *(example_values(env) for env in ENVIRONMENTS)]


def test_the_ci_values_files_exist() -> None:
    assert sorted(path.name for path in CI_VALUES) == [
        "audit-values.yaml",
        "default-values.yaml",
        "existing-secret-values.yaml",
        "ha-values.yaml",
    ]


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("values", VALUE_FILES, ids=lambda p: str(p.relative_to(CHART.parents[1])))
def test_helm_lint_is_clean(helm: Path, values: Path, strict: bool) -> None:
    output = run_helm(
        helm,
        "lint",
        str(CHART),
        *("-f", str(SIGNING_VALUES)),
        *("-f", str(values)),
        *(["--strict"] if strict else []),
    )
    findings = [line for line in output.splitlines() if line.startswith("[")]
    assert findings == [], output  # not even [INFO]
    assert "1 chart(s) linted, 0 chart(s) failed" in output
