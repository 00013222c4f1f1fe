"""The flavors' builders and a policy repo's own templates (``templates:``).

The flavor modules are the only source of the built-in output. A repo may still replace a
flavor's builder with a Jinja2 template of the flavor's ``template`` name; the templates in
tests/corpus/egress-templates/ lay out what the builders build, so rendering every corpus
case through them (Jinja2, then the YAML parser) must give the same objects in every
flavor: that checks what a template sees (``policy``, ``rule``) and the repo-template path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals.errors import ApprovalgateError, ValidationError
from approvalgate.compiler.egress import FLAVORS, EgressEnv, env_from_mapping, render_egress
from tests.support.paths import ROOT

CORPUS = ROOT / "tests" / "corpus" / "egress"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())
REPO_TEMPLATES = ROOT / "tests" / "corpus" / "egress-templates"


def load_case(case: Path, flavor: str | None = None) -> tuple[list[dict[str, Any]], EgressEnv]:
    docs = [d for d in yaml.safe_load_all((case / "input.yaml").read_text()) if d]
    env_file = case / "env.yaml"
    settings = yaml.safe_load(env_file.read_text()) if env_file.exists() else {}
    env = env_from_mapping(settings or {})
    if flavor is not None:
        fields = {k: getattr(env, k) for k in env.__dataclass_fields__}
        env = EgressEnv(**{**fields, "flavor": flavor})
    return docs, env


def test_the_registry_names_each_flavor_by_its_setting() -> None:
    assert list(FLAVORS) == ["kubernetes", "cilium"]  # the order of the messages
    assert all(name == flavor.name for name, flavor in FLAVORS.items())
    templates = [flavor.template for flavor in FLAVORS.values()]
    assert len(set(templates)) == len(templates)
    assert sorted(p.name for p in REPO_TEMPLATES.iterdir()) == sorted(templates)


@pytest.mark.parametrize("flavor", list(FLAVORS))
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_a_template_laying_out_the_rules_renders_what_the_flavor_builds(
    case: Path, flavor: str
) -> None:
    docs, env = load_case(case, flavor)
    try:
        built = render_egress(docs, env)
    except ValidationError:
        return  # an error case (or one this flavor refuses): nothing is rendered
    assert render_egress(docs, env, str(REPO_TEMPLATES)) == built
    for obj in built:  # plain JSON types, nothing shared: the dumper would write anchors
        assert plain_and_unshared(obj, set())


def plain_and_unshared(node: Any, seen: set[int]) -> bool:
    if isinstance(node, dict | list):
        if id(node) in seen or type(node) not in (dict, list):
            return False
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        return all(plain_and_unshared(child, seen) for child in children)
    return type(node) in (str, int, bool, type(None))


def test_a_repo_template_replaces_the_builder(tmp_path: Path) -> None:
    docs, env = load_case(CORPUS / "and-form")
    reference = (REPO_TEMPLATES / "networkpolicy.yaml.j2").read_text()
    custom = reference.replace("  labels: {{ policy.labels | tojson }}", "  labels: {team: x}")
    assert custom != reference
    (tmp_path / "networkpolicy.yaml.j2").write_text(custom)
    rendered = render_egress(docs, env, str(tmp_path))
    assert rendered and all(obj["metadata"]["labels"] == {"team": "x"} for obj in rendered)
    # a templates folder without that file keeps the flavor's builder
    other = tmp_path / "other"
    other.mkdir()
    assert render_egress(docs, env, str(other)) == render_egress(docs, env)
    assert rendered != render_egress(docs, env)


#: (flavor, what the reference template writes, what a repo template writes instead, the
#: JSON path the error names): each renders more than the policy declares, or escapes it
WIDER = [
    # an allow-all rule after the policy's rules
    (
        "kubernetes",
        "{%- endfor %}\n{%- else %}",
        "{%- endfor %}\n    - {}\n{%- else %}",
        "$.spec.egress",
    ),
    # no policyTypes: an egress-only policy becomes ingress-only, egress unrestricted
    ("kubernetes", "  policyTypes:\n    - Egress\n", "", "$.spec.policyTypes"),
    # a selector no runner pod carries: the runners are selected by no policy
    (
        "kubernetes",
        "  podSelector: {{ policy.pod_selector | tojson }}",
        "  podSelector: {matchLabels: {nobody: x}}",
        "$.spec.podSelector.matchExpressions",
    ),
    # another kind, or another namespace, than the one the policy renders
    ("kubernetes", "kind: NetworkPolicy", "kind: ConfigMap", "$.kind"),
    (
        "kubernetes",
        "  namespace: {{ policy.namespace | tojson }}",
        "  namespace: elsewhere",
        "$.metadata.namespace",
    ),
    # a port as YAML 1.1 reads `0443` (the template's output is parsed back)
    (
        "kubernetes",
        "ports: {{ rule.ports | list | tojson }}",
        "ports: [{port: 0443}]",
        "$.spec.egress[0].ports",
    ),
    # a key YAML reads as a number (or null) beside the written ones: an error, not a crash
    ("kubernetes", "kind: NetworkPolicy", "kind: NetworkPolicy\n1: x\nnull: y", "$[1]"),
    (
        "kubernetes",
        "  name: {{ policy.name | tojson }}",
        "  name: {{ policy.name | tojson }}\n  1: x",
        "$.metadata[1]",
    ),
    # Cilium: the world entity beside the rules; ingress rules; a field the CRD may add
    ("cilium", "  egress:\n", "  egress:\n    - toEntities: [world]\n", "$.spec.egress"),
    (
        "cilium",
        "  egress:\n",
        "  enableDefaultDeny: {egress: false}\n  egress:\n",
        "$.spec.enableDefaultDeny",
    ),
    (
        "cilium",
        "  endpointSelector: {{ policy.pod_selector | tojson }}",
        "  endpointSelector: {}\n  description: x",
        "$.spec.description",
    ),
]


@pytest.mark.parametrize(("flavor", "old", "new", "where"), WIDER, ids=lambda v: str(v)[:40])
def test_a_repo_template_may_not_render_more_than_the_policy_declares(
    tmp_path: Path, flavor: str, old: str, new: str, where: str
) -> None:
    # Fifth red-team pass: the output was only schema-checked (and a kind other than
    # NetworkPolicy not at all), so a template reviewed once widened every policy.
    docs, env = load_case(CORPUS / "and-form", flavor)
    name = FLAVORS[flavor].template
    reference = (REPO_TEMPLATES / name).read_text()
    assert old in reference
    (tmp_path / name).write_text(reference.replace(old, new, 1))
    with pytest.raises(ValidationError) as caught:
        render_egress(docs, env, str(tmp_path))
    lines = caught.value.render().splitlines()
    assert lines[0].startswith(f"{tmp_path / name}: {where}"), lines
    assert ": the repo template renders EgressPolicy agents/" in lines[0]
    assert "otherwise than it declares: the template " in lines[0]
    assert "may choose labels and annotations" in lines[1]


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_a_repo_template_may_choose_labels_and_annotations(tmp_path: Path, flavor: str) -> None:
    docs, env = load_case(CORPUS / "and-form", flavor)
    name = FLAVORS[flavor].template
    reference = (REPO_TEMPLATES / name).read_text()
    custom = reference.replace(
        "  labels: {{ policy.labels | tojson }}",
        '  labels: {team: x}\n  annotations: {"owner": "net"}',
    )
    own = "  annotations: {{ policy.annotations | tojson }}"
    custom = custom.replace(f"{{%- if policy.annotations %}}\n{own}\n{{%- endif %}}", "")
    (tmp_path / name).write_text(custom)
    rendered = render_egress(docs, env, str(tmp_path))
    built = render_egress(docs, env)
    assert [o["spec"] for o in rendered] == [o["spec"] for o in built]
    assert all(o["metadata"]["annotations"] == {"owner": "net"} for o in rendered)


def _template_fails(tmp_path: Path, text: str, flavor: str = "kubernetes") -> list[str]:
    docs, env = load_case(CORPUS / "and-form", flavor)
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / FLAVORS[flavor].template).write_text(text)
    with pytest.raises(ApprovalgateError) as caught:
        render_egress(docs, env, str(folder))
    return caught.value.render().splitlines()


def test_a_repo_template_cannot_run_code(tmp_path: Path) -> None:
    # Fifth red-team pass: templates ran in a plain Jinja2 environment, so one reaching
    # Python's globals ran commands wherever `compile` or `check` ran (CI, the pre-commit
    # hook, a release job holding the bundle-signing key).
    marker = tmp_path / "ran"
    payload = f"cycler.__init__.__globals__.os.popen('touch {marker}').read()"
    lines = _template_fails(tmp_path, "{{ " + payload + " }}\n")
    assert not marker.exists()
    template = tmp_path / "templates" / "networkpolicy.yaml.j2"
    assert lines[0].startswith(f"{template}: the repo template cannot be rendered: "), lines
    assert "unsafe" in lines[0] or "__init__" in lines[0], lines


def test_a_broken_repo_template_is_a_located_error_not_a_crash(tmp_path: Path) -> None:
    template = tmp_path / "templates" / "networkpolicy.yaml.j2"
    lines = _template_fails(tmp_path, "apiVersion: v1\n{% if %}\n")
    assert lines[0].startswith(f"{template}:2:1: the repo template cannot be read: "), lines
    lines = _template_fails(tmp_path, "{{ policy.nothing }}\n")
    assert lines[0].startswith(f"{template}: the repo template cannot be rendered: "), lines
    lines = _template_fails(tmp_path, "a: [\n")
    assert lines[0].startswith(f"{template}: the repo template rendered text that is not YAML")


def test_a_repo_template_reads_no_file_outside_its_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_text("PRIVATE")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "key.txt").symlink_to(secret)
    for name in ("key.txt", "../secret.key"):
        lines = _template_fails(tmp_path, "x: 1\n{% include '" + name + "' %}\n")
        assert "the repo template cannot be" in lines[0], lines
        assert "PRIVATE" not in "\n".join(lines)


def test_a_repo_template_may_not_choose_keys_the_tools_act_on(tmp_path: Path) -> None:
    # kustomize drops an object so annotated: the policy would never reach the cluster
    reference = (REPO_TEMPLATES / "networkpolicy.yaml.j2").read_text()
    custom = reference.replace(
        "  labels: {{ policy.labels | tojson }}",
        "  labels: {{ policy.labels | tojson }}\n"
        '  annotations: {"config.kubernetes.io/local-config": "true"}',
    )
    custom = custom.replace("  annotations: {{ policy.annotations | tojson }}\n", "")
    lines = _template_fails(tmp_path, custom)
    assert (
        ": $.metadata.annotations.config.kubernetes.io/local-config: the repo template " in lines[0]
    )
