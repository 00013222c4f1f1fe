"""tools/testbin.py: `all` stays the test tools; the peers (issue 18) are built only when named.

No build runs here: only the selection, the pinned versions and the Makefile targets are read.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_testbin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("testbin", ROOT / "tools" / "testbin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("testbin", module)
    spec.loader.exec_module(module)
    return module


testbin = _load_testbin()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["all"], ["k8s", "etcd", "helm"]),
        (["etcd", "all"], ["k8s", "etcd", "helm"]),
        (["helm", "etcd", "helm"], ["helm", "etcd"]),
        (["peers"], ["kyverno", "gatekeeper"]),
        (["gatekeeper"], ["gatekeeper"]),
        (["all", "peers"], ["k8s", "etcd", "helm", "kyverno", "gatekeeper"]),
    ],
)
def test_select_all_never_includes_the_peers(names: list[str], expected: list[str]) -> None:
    assert testbin.select(names) == expected


@pytest.mark.parametrize(
    ("tool", "version"),
    [("k8s", "v1.34.10"), ("kyverno", "v1.19.1"), ("gatekeeper", "v3.23.1")],
)
def test_wrapper_pins_name_the_cache_directory(tool: str, version: str) -> None:
    spec = testbin.ALL_TOOLS[tool]
    assert testbin.module_version(spec.wrapper / "go.mod", spec.module) == version
    assert testbin.bin_dir(spec).name == f"{tool}-{version}"


def test_make_test_and_testbin_do_not_build_the_peers() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipes = dict(re.findall(r"^([\w-]+):[^\n]*\n\t([^\n]*)", makefile, re.MULTILINE))
    assert recipes["testbin"] == "$(PYTHON) tools/testbin.py all"
    assert recipes["peers"] == "$(PYTHON) tools/testbin.py peers"
    assert not re.search(r"^(test|testbin|bench)\s*:[^\n]*\bpeers\b", makefile, re.MULTILINE)
