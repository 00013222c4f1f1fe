"""What the chart tests share: the real helm (and kubectl), rendering, strict validation.

Binaries come from tools/testbin.py (built from pinned Go modules when missing). Without them
a test fails under `make test` (APPROVALGATE_REQUIRE_E2E=1), else it is skipped with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support.paths import ROOT, THIRD_PARTY_CRDS
from tests.support.tools import pinned_binary

__all__ = [
    "CHART",
    "CI_VALUES",
    "ENVIRONMENTS",
    "EXAMPLE_REPO",
    "NAMESPACE",
    "RELEASE",
    "RENDERS",
    "ROOT",
    "HelmError",
    "by_kind",
    "component",
    "documents",
    "example_values",
    "namespace_values",
    "one",
    "pinned_binary",
    "render",
    "run_helm",
    "strict_errors",
    "template",
    "webhook_part",
]

CHART = ROOT / "charts" / "approvalgate"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
EXAMPLE_REPO = ROOT / "examples" / "gitops-repo"
ENVIRONMENTS = sorted(p.name for p in (EXAMPLE_REPO / "rendered").iterdir() if p.is_dir())
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RELEASE = "approvalgate"
NAMESPACE = "approvalgate-system"


def example_values(env: str) -> Path:
    return EXAMPLE_REPO / "rendered" / env / "approvalgate-values.yaml"


def namespace_values(
    folder: Path, exclude: Sequence[str] = (), selection: str = "all", env: str = "prod"
) -> Path:
    """The example's compiled values with the bundle's namespace settings replaced: what
    ``excludeNamespaces`` and ``namespaceSelection`` in approvalgate.yaml compile to (the
    chart builds its namespaceSelector from the bundle; the generation is not checked here),
    and ``bundleSigning.namespaceSelection`` pinned to the same selection."""
    values = yaml.safe_load(example_values(env).read_text(encoding="utf-8"))
    bundle = json.loads(values["policyBundle"]["content"])
    bundle["excludeNamespaces"] = sorted(exclude)
    bundle["namespaceSelection"] = selection
    values["policyBundle"]["content"] = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    # the operator's pin beside the keys (the chart refuses a content that disagrees with it)
    values["bundleSigning"] = {"namespaceSelection": selection}
    path = folder / f"namespaces-{selection}-{'-'.join(exclude) or 'none'}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


#: id -> (values files, --set items): every template branch the tests know of
RENDERS: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
    **{path.stem: ((path,), ()) for path in CI_VALUES},
    **{f"{env}-example": ((example_values(env),), ()) for env in ENVIRONMENTS},
    "ha-prod": ((CHART / "ci" / "ha-values.yaml", example_values("prod")), ()),
    "audit-prod": ((CHART / "ci" / "audit-values.yaml", example_values("prod")), ()),
    "audit-defaults": ((), ("audit.enabled=true",)),
    "own-issuer": ((), ("tls.certManager.issuerRef.name=corp-ca",)),
    "no-metrics-no-dns": ((), ("metrics.enabled=false", "networkPolicy.dns.enabled=false")),
    "no-pdb-one-replica": (
        (),
        (
            "replicaCount=1",
            "podDisruptionBudget.enabled=false",
            "controller.replicas=1",
            "controller.podDisruptionBudget.enabled=false",
        ),
    ),
    "controller-options": (
        (example_values("prod"),),
        (
            "controller.namespaces={default,kube-public}",
            "controller.signalDeliveries.enabled=true",
            "controller.notify.secretName=approvalgate-notify",
            "controller.leaseName=approvalgate-leader",
            "controller.extraArgs={--log-level=debug}",
            "controller.extraEgress[0].ports[0].port=443",
            "controller.serviceAccount.annotations.team=platform",
            "controller.podAnnotations.a=b",
            "controller.nodeSelector.kubernetes\\.io/os=linux",
            "controller.tolerations[0].operator=Exists",
            "controller.priorityClassName=system-cluster-critical",
            "networkPolicy.apiServer[0].ipBlock.cidr=10.0.0.10/32",
            "userRoles.aggregateToView=true",
            "userRoles.aggregateToEdit=true",
        ),
    ),
    "no-queue": (
        (),
        (
            "controller.enabled=false",
            "crds.install=false",
            "userRoles.create=false",
            "webhook.clusterView=false",
        ),
    ),
    "extras": (
        (),
        (
            "podAntiAffinity=none",
            "serviceAccount.create=false",
            "networkPolicy.enabled=false",
            "image.digest=sha256:" + "a" * 64,
            "imagePullSecrets[0].name=registry",
            "podAnnotations.a=b",
            "podLabels.team=platform",
            "nodeSelector.kubernetes\\.io/os=linux",
            "tolerations[0].operator=Exists",
            "networkPolicy.extraEgress[0].ports[0].port=443",
            "audit.enabled=true",
            "audit.resources=null",
        ),
    ),
}


# --- binaries ---------------------------------------------------------------------------


# --- rendering --------------------------------------------------------------------------


class HelmError(Exception):
    def __init__(self, command: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"`{' '.join(command)}` exited {result.returncode}: {result.stderr}")
        self.stderr = result.stderr


@functools.cache
def _helm_env() -> dict[str, str]:
    """No user helm configuration, repositories or plugins leak into a test."""
    home = Path(tempfile.mkdtemp(prefix="approvalgate-helm-"))
    atexit.register(shutil.rmtree, home, True)
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


SIGNING_VALUES = Path(__file__).resolve().parent / "bundle-signing-values.yaml"
"""bundleSigning.publicKeys: one key, as an operator pins it (the chart fails without)."""


def with_signing_values(args: Sequence[str]) -> list[str]:
    """``helm template``/``lint``/``install`` arguments with :data:`SIGNING_VALUES` as the
    first values file (the values files after it override it)."""
    out = list(args)
    if not out or out[0] not in ("template", "lint", "install", "upgrade"):
        return out
    if str(SIGNING_VALUES) in out:
        return out
    where = next((i for i, arg in enumerate(out) if arg in ("-f", "--values")), len(out))
    pinned = _pinned_environment(out)
    return [*out[:where], "-f", str(SIGNING_VALUES), *out[where:], *pinned]


def _pinned_environment(args: Sequence[str]) -> list[str]:
    """``--set bundleSigning.environment=ENV`` for the environment of the last values file's
    bundle, as the operator pins it beside the keys (nothing when the arguments pin one)."""
    if any("bundleSigning.environment" in arg or "allowUnsigned=true" in arg for arg in args):
        return []
    environment = ""
    for flag, value in itertools.pairwise(args):
        if flag not in ("-f", "--values") or value == "-":
            continue
        loaded = yaml.safe_load(Path(value).read_text(encoding="utf-8")) or {}
        content = (
            (loaded.get("policyBundle") or {}).get("content") if isinstance(loaded, dict) else None
        )
        if content:
            with contextlib.suppress(ValueError, AttributeError):
                environment = str(json.loads(content).get("environment") or environment)
    return ["--set", f"bundleSigning.environment={environment or 'prod'}"]


def run_helm(helm: Path, *args: str, signing: bool = True) -> str:
    """``signing=False``: exactly these arguments (the docs' commands pin their own key)."""
    command = [str(helm), *(with_signing_values(args) if signing else args)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_helm_env(),
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise HelmError(command, result)
    return result.stdout


@functools.cache
def _template(helm: Path, args: tuple[str, ...]) -> str:
    return run_helm(helm, "template", *args)


def template(
    helm: Path,
    *values: Path | str,
    sets: Sequence[str] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
) -> str:
    """`helm template` output (cached per argument list)."""
    args = [release, str(chart), "--namespace", namespace]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return _template(helm, tuple(args))


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def render(helm: Path, *values: Path | str, **kwargs: Any) -> list[dict[str, Any]]:
    return copy.deepcopy(documents(template(helm, *values, **kwargs)))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def component(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The objects labelled ``app.kubernetes.io/component: name`` (webhook, controller, audit,
    queue: the CRDs and the ClusterRoles for people)."""
    return [
        obj
        for obj in objects
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name
    ]


def webhook_part(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The webhook's own objects (its Deployment, Service, PDB, NetworkPolicy, ...)."""
    return component(objects, "webhook")


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


# --- strict schemas ---------------------------------------------------------------------


def _strict(node: Any) -> Any:
    """A CRD's structural schema as strict JSON Schema: unknown fields are errors."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (
            {name: _strict(sub) for name, sub in value.items()}
            if key == "properties"
            else _strict(value)
        )
        for key, value in node.items()
        if key != "description"
    }
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


@functools.cache
def _object_meta() -> dict[str, Any]:
    """ObjectMeta, strict, from the kube-apiserver-derived ConfigMap schema."""
    schema = json.loads((SCHEMAS / "configmap-v1.json").read_text(encoding="utf-8"))
    definitions: dict[str, Any] = schema["definitions"]
    return definitions


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the Argo CD CRDs are megabytes


@functools.cache
def _crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """The strict schema of a kind served by one of the vendored CRDs, or None."""
    group, _, version = api_version.rpartition("/")
    for path in sorted(THIRD_PARTY_CRDS.glob("*/*.yaml")):
        text = path.read_text(encoding="utf-8")
        if f"group: {group}\n" not in text or f"kind: {kind}\n" not in text:
            continue
        for crd in yaml.load_all(text, Loader=_LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            if (spec["group"], spec["names"]["kind"]) != (group, kind):
                continue
            for served in spec["versions"]:
                if served["name"] == version and served.get("served"):
                    return _strict_crd(served["schema"]["openAPIV3Schema"], api_version, kind)
    return None


def _strict_crd(openapi: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _strict(openapi)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    props.pop("status", None)
    schema["additionalProperties"] = False
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["definitions"] = _object_meta()
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


@functools.cache
def _core(api_version: str, kind: str) -> dict[str, Any] | None:
    from tests.chart.schemas.generate import file_name

    path = SCHEMAS / file_name(api_version, kind)
    if not path.exists():
        return None
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@functools.cache
def validator(api_version: str, kind: str) -> jsonschema.Draft7Validator | None:
    schema = _core(api_version, kind)
    if schema is not None:
        jsonschema.Draft7Validator.check_schema(schema)
    else:
        schema = _crd_schema(api_version, kind)  # structural already: the API server checked it
    return None if schema is None else jsonschema.Draft7Validator(schema)


def strict_errors(obj: dict[str, Any]) -> list[str]:
    """Every reason `obj` is not a valid object of its kind; a kind with no schema is one."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    check = validator(str(obj.get("apiVersion")), str(obj.get("kind")))
    if check is None:
        return [f"{name}: no schema for {obj.get('apiVersion')} {obj.get('kind')}"]
    return sorted(
        f"{name}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in check.iter_errors(obj)
    )
