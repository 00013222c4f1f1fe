"""Rendered egress output on a real kube-apiserver (fifth red-team pass: agent egress).

The API server is what reads a NetworkPolicy's addresses and selectors for the CNI. These
tests show what it makes of the CIDR spellings Python's ``ipaddress`` reads otherwise (an
IPv4-mapped IPv6 CIDR it reads as the IPv4 one, ``::ffff:0:0/96`` as ``0.0.0.0/0``; zone
ids it refuses; other spellings it warns on), that the validator refuses exactly those,
and that every NetworkPolicy the corpus renders is stored as rendered, with no warning.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.cli import main
from approvalgate.compiler.egress import EgressEnv, render_egress, validate_egress
from tests.e2e.controlplane import ControlPlane
from tests.support.paths import ROOT
from tests.unit.test_egress_k8s_schema import CASES, load_case, renderable

from .conftest import own_control_plane

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "gitops-repo"


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    yield from own_control_plane(crds=False)  # NetworkPolicy is built in


@pytest.fixture(scope="module")
def namespace(plane: ControlPlane) -> str:
    return plane.create_namespace("egress")


def _apply(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> tuple[Any, str]:
    """(the object the server stored, or None when it refused it; its stderr)."""
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    result = plane.kubectl(
        "admin", "apply", "-f", "-", "-o", "json", input=json.dumps(obj), check=False
    )
    stored = json.loads(result.stdout) if result.returncode == 0 else None
    return stored, result.stderr


def _policy(name: str, cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": cidr}}]}],
        },
    }


def _source(cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "EgressPolicy",
        "metadata": {"name": "p", "namespace": "agents"},
        "spec": {
            "target": "runners",
            "destinations": [{"name": "d", "cidrs": [{"cidr": cidr}], "allPorts": True}],
        },
    }


#: (a CIDR as written, what the API server says of it, or "" when it stores it silently)
SPELLINGS = [
    ("::ffff:0:0/96", 'use "0.0.0.0/0"'),
    ("::ffff:10.0.0.0/104", 'use "10.0.0.0/8"'),
    ("10.0.0.0/08", 'use "10.0.0.0/8"'),
    ("010.0.0.0/8", 'use "10.0.0.0/8"'),  # refused before this pass (Python: not an address)
    ("2001:DB8::/32", 'canonical format ("2001:db8::/32")'),
    ("0::0/0", 'canonical format ("::/0")'),
    ("fe80::1%eth0/128", "must be a valid CIDR value"),
    ("10.0.0.1/8", "is ambiguous"),
    ("10.0.0.0/8", ""),
    ("2001:db8::/32", ""),
    ("::a00:0/104", ""),  # IPv4-compatible (deprecated), not mapped: IPv6 to Go as well
]


@pytest.mark.parametrize(("cidr", "server_says"), SPELLINGS)
def test_the_validator_refuses_what_the_api_server_reads_otherwise_or_refuses(
    plane: ControlPlane, namespace: str, cidr: str, server_says: str
) -> None:
    name = f"spelling-{SPELLINGS.index((cidr, server_says))}"
    stored, stderr = _apply(plane, namespace, _policy(name, cidr))
    if server_says:
        assert server_says in stderr, stderr
    else:
        assert stored is not None and stderr.strip() == "", stderr
    if stored is not None:  # stored as written: the CNI reads what the server warned of
        assert stored["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] == cidr
    findings = [f for f in validate_egress(_source(cidr)) if f.severity == "error"]
    assert bool(findings) == bool(server_says), findings


def test_a_mapped_wildcard_is_every_ipv4_address_to_the_server(
    plane: ControlPlane, namespace: str
) -> None:
    # Before this pass the compiler rendered it (allPorts, no wildcard finding); the API
    # server stores it and names what it means: every IPv4 address.
    stored, stderr = _apply(plane, namespace, _policy("mapped-wildcard", "::ffff:0:0/96"))
    assert stored is not None
    assert 'non-standard CIDR value "::ffff:0:0/96"' in stderr and 'use "0.0.0.0/0"' in stderr
    with pytest.raises(Exception, match="IPv4-mapped"):
        render_egress([_source("::ffff:0:0/96")], EgressEnv())


@pytest.mark.parametrize("case", [c for c in CASES if renderable(c)], ids=lambda p: p.name)
def test_every_rendered_networkpolicy_is_stored_as_rendered_without_a_warning(
    plane: ControlPlane, namespace: str, case: Any
) -> None:
    docs, env = load_case(case)
    if env.flavor != "kubernetes":
        return  # no Cilium CRD here: CiliumNetworkPolicy is checked by the unit tests
    for rendered in render_egress(docs, env):
        name = f"{case.name}-{rendered['metadata']['name']}"[:63]
        obj = {**rendered, "metadata": {**rendered["metadata"], "name": name}}
        stored, stderr = _apply(plane, namespace, obj)
        assert stored is not None, stderr
        assert stderr.strip() == "", stderr
        # the server drops an empty list: a deny-all policy is stored without `egress`,
        # and only `policyTypes: [Egress]` keeps it a default-deny for egress
        written = {k: v for k, v in obj["spec"].items() if v != []}
        assert stored["spec"] == written
        assert stored["spec"]["policyTypes"] == ["Egress"]


def test_a_deny_all_without_policy_types_is_ingress_only_to_the_server(
    plane: ControlPlane, namespace: str
) -> None:
    """Why a repo template may not drop `policyTypes` (it must render what the flavor
    builds, tests/unit/test_egress_repo_templates.py): the server defaults it from the
    rules, so a deny-all egress policy without it restricts ingress and leaves egress open."""
    obj = _policy("deny-all-no-types", "10.0.0.0/8")
    del obj["spec"]["policyTypes"]
    obj["spec"]["egress"] = []
    stored, stderr = _apply(plane, namespace, obj)
    assert stored is not None, stderr
    assert stored["spec"]["policyTypes"] == ["Ingress"]


def _kustomize(plane: ControlPlane, folder: Path) -> list[dict[str, Any]]:
    """What Argo CD applies from a rendered environment: `kustomize build` (kubectl's)."""
    result = subprocess.run(
        [str(plane.binaries.kubectl), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_what_kustomize_applies_holds_every_rendered_policy(
    plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kustomize drops an object annotated `config.kubernetes.io/local-config: "true"`:
    an EgressPolicy carrying it compiled, `check` passed, and its NetworkPolicy never
    reached the cluster. Such keys are refused now; every rendered policy is applied."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    for env in ("dev", "staging", "prod"):
        folder = repo / "rendered" / env
        rendered = {p.name for p in (folder / "networkpolicies").iterdir()}
        applied = {
            f"{o['metadata']['namespace']}.{o['metadata']['name']}.yaml"
            for o in _kustomize(plane, folder)
            if o["kind"] == "NetworkPolicy"
        }
        assert applied == rendered != set()
    # the drop itself: the rendered runners policy, so annotated, is no longer applied
    prod = repo / "rendered" / "prod"
    marked = prod / "networkpolicies" / "agents.runners.yaml"
    obj = yaml.safe_load(marked.read_text())
    obj["metadata"]["annotations"]["config.kubernetes.io/local-config"] = "true"
    marked.write_text(yaml.safe_dump(obj))
    names = {o["metadata"]["name"] for o in _kustomize(plane, prod) if o["kind"] == "NetworkPolicy"}
    assert "runners" not in names
    runners = repo / "egress" / "runners.yaml"
    runners.write_text(
        runners.read_text().replace(
            "  namespace: agents\n",
            "  namespace: agents\n  annotations:\n    config.kubernetes.io/local-config: 'true'\n",
            1,
        )
    )
    assert main(["compile", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "$.metadata.annotations.config.kubernetes.io/local-config: `config.kubernetes" in err
