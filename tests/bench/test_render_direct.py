"""The egress templates stay the source of the output format; the direct build is a cache.

compiler/egress.py builds the dicts of the packaged templates directly (parsing rendered
YAML back was most of a compile), pinned to the exact template text. These tests keep that
honest: the pins match the packaged templates, the direct build equals rendering the
template through Jinja2 and parsing it on every corpus case in both flavors, and a repo's
own template still wins.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.compiler import egress
from approvalgate.compiler.egress import EgressEnv, env_from_mapping
from tests.support.paths import ROOT

CORPUS = ROOT / "tests" / "corpus" / "egress"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())


def test_pins_match_the_packaged_templates() -> None:
    for name, pin in egress._DIRECT_PINS.items():
        text = (ROOT / "templates" / name).read_text(encoding="utf-8")
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == pin, (
            f"templates/{name} changed: the direct build in compiler/egress.py no longer "
            "applies. Make _direct_* build what the template renders, then update the pin."
        )
        assert egress._direct_builder(name, None) is not None


def load_case(case: Path) -> tuple[list[dict[str, Any]], EgressEnv]:
    docs = [d for d in yaml.safe_load_all((case / "input.yaml").read_text()) if d]
    env_file = case / "env.yaml"
    settings = yaml.safe_load(env_file.read_text()) if env_file.exists() else {}
    return docs, env_from_mapping(settings or {})


def both_ways(docs: list[dict[str, Any]], env: EgressEnv) -> tuple[list[Any], list[Any]]:
    parsed = egress._parse_all(docs, env)
    manifests = [egress._manifest(p, env) for p in parsed if p.enabled and p.target == "runners"]
    name = egress._TEMPLATES[env.flavor]
    template = egress._jinja(None).get_template(name)
    slow = [egress._load_rendered(template.render(policy=m)) for m in manifests]
    fast = [egress._DIRECT_BUILDERS[name](m) for m in manifests]
    return fast, slow


@pytest.mark.parametrize("flavor", ["kubernetes", "cilium"])
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_direct_build_equals_the_template(case: Path, flavor: str) -> None:
    docs, env = load_case(case)
    settings = {k: getattr(env, k) for k in env.__dataclass_fields__}
    settings["flavor"] = flavor
    try:
        env = EgressEnv(**settings)
        fast, slow = both_ways(docs, env)
    except egress.ValidationError:
        return  # an error case (or one this flavor refuses): nothing is rendered
    assert fast == slow
    for obj in fast:  # plain JSON types, nothing shared: the dumper would write anchors
        assert plain_and_unshared(obj, set())


def plain_and_unshared(node: Any, seen: set[int]) -> bool:
    if isinstance(node, dict | list):
        if id(node) in seen or type(node) not in (dict, list):
            return False
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        return all(plain_and_unshared(child, seen) for child in children)
    return type(node) in (str, int, bool, type(None))


def test_a_repo_template_wins(tmp_path: Path) -> None:
    docs, env = load_case(CORPUS / "and-form")
    packaged = (ROOT / "templates" / "networkpolicy.yaml.j2").read_text()
    custom = packaged.replace("  labels: {{ policy.labels | tojson }}", "  labels: {team: x}")
    assert custom != packaged
    (tmp_path / "networkpolicy.yaml.j2").write_text(custom)
    assert egress._direct_builder("networkpolicy.yaml.j2", str(tmp_path)) is None
    rendered = egress.render_egress(docs, env, str(tmp_path))
    assert rendered and all(obj["metadata"]["labels"] == {"team": "x"} for obj in rendered)
    # a templates folder without that file keeps the packaged template (and the fast path)
    other = tmp_path / "other"
    other.mkdir()
    assert egress._direct_builder("networkpolicy.yaml.j2", str(other)) is not None
