"""argocd/: valid against the Argo CD v3.5 CRDs (strict), and everything it names exists here."""

from __future__ import annotations

import copy
import fnmatch
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.argocd_apps import (
    APP,
    APPSET,
    ARGOCD,
    MANIFESTS,
    PLACEHOLDER,
    PROJECT,
    generated_applications,
    repo_path,
)
from tests.chart.support import (
    CHART,
    ENVIRONMENTS,
    EXAMPLE_REPO,
    ROOT,
    by_kind,
    documents,
    one,
    render,
    strict_errors,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def sync_wave(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_validate_strictly_against_the_argo_cd_crds(name: str) -> None:
    assert strict_errors(MANIFESTS[name]) == []


def test_the_argo_cd_validation_is_strict() -> None:
    typo = copy.deepcopy(APP)
    typo["spec"]["sources"][0]["helm"]["valueFile"] = []
    misplaced = copy.deepcopy(APPSET)
    misplaced["spec"]["template"]["spec"]["syncPolicy"]["syncOption"] = []
    options = copy.deepcopy(APPSET)
    options["spec"]["goTemplateOptions"] = "missingkey=error"
    assert all(strict_errors(obj) for obj in (typo, misplaced, options))


def test_every_repo_url_is_the_documented_placeholder() -> None:
    urls = re.findall(r"repoURL:\s*(\S+)", "".join(p.read_text() for p in ARGOCD.glob("*.yaml")))
    assert urls and set(urls) == {PLACEHOLDER}
    assert PLACEHOLDER in (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


# --- the chart Application ----------------------------------------------------------------


def test_chart_application_is_multi_source_with_values_ref() -> None:
    chart_source, values_source = APP["spec"]["sources"]
    assert values_source == {"repoURL": PLACEHOLDER, "targetRevision": "main", "ref": "values"}
    assert "chart" not in chart_source and "ref" not in chart_source
    chart_dir = repo_path(chart_source["path"])
    assert (chart_dir / "Chart.yaml").is_file()
    assert yaml.safe_load((chart_dir / "Chart.yaml").read_text())["name"] == "approvalgate"
    (value_file,) = chart_source["helm"]["valueFiles"]
    assert value_file == "$values/examples/gitops-repo/rendered/prod/approvalgate-values.yaml"
    assert repo_path(value_file.removeprefix("$values/")).is_file()


@pytest.mark.helm
def test_chart_application_pins_the_bundle_signing_keys_outside_the_compiled_values(
    helm: Path, tmp_path: Path
) -> None:
    """The keys are in the Application's valuesObject (Argo CD gives it precedence over the
    value files), never in the compiled values; the rendered pods pin exactly them, and they
    verify the bundle the Application deploys."""
    from approvalgate.approvals.bundle_trust import open_bundle, trust_from_texts
    from approvalgate.cli import build_parser
    from approvalgate.commands._runtime_trust import trust_args

    chart_source = APP["spec"]["sources"][0]
    pinned = chart_source["helm"]["valuesObject"]["bundleSigning"]
    values = repo_path(chart_source["helm"]["valueFiles"][0].removeprefix("$values/"))
    compiled = yaml.safe_load(values.read_text())
    assert "bundleSigning" not in compiled
    assert pinned["publicKeys"] == [
        (ROOT / "examples" / "gitops-repo" / "bundle-signing" / "release.pub").read_text()
    ]
    overrides = tmp_path / "valuesObject.yaml"
    overrides.write_text(yaml.safe_dump({"bundleSigning": pinned}))
    objects = render(helm, values, overrides)
    for deployment in by_kind(objects, "Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        trust = trust_args(build_parser().parse_args(args))
        assert [text for _, text in trust.keys] == pinned["publicKeys"]
        bundle = compiled["policyBundle"]
        opened = open_bundle(
            bundle["content"].encode(),
            bundle["signatures"],
            trust_from_texts(trust.keys, min_revision=trust.min_revision),
        )
        assert opened.revision == bundle["revision"] == trust.min_revision


@pytest.mark.helm
def test_chart_application_renders_and_ignores_the_injected_ca_bundle(helm: Path) -> None:
    chart_source = APP["spec"]["sources"][0]
    values = repo_path(chart_source["helm"]["valueFiles"][0].removeprefix("$values/"))
    objects = render(
        helm,
        values,
        release=chart_source["helm"]["releaseName"],
        namespace=APP["spec"]["destination"]["namespace"],
        chart=repo_path(chart_source["path"]),
    )
    vwc = one(objects, "ValidatingWebhookConfiguration")
    (ignored,) = APP["spec"]["ignoreDifferences"]
    assert (ignored["group"], ignored["kind"]) == (
        vwc["apiVersion"].split("/")[0],
        vwc["kind"],
    )
    assert ignored.get("name", vwc["metadata"]["name"]) == vwc["metadata"]["name"]
    assert ignored["jqPathExpressions"] == [".webhooks[]?.clientConfig.caBundle"]
    options = APP["spec"]["syncPolicy"]["syncOptions"]
    assert {"ServerSideApply=true", "RespectIgnoreDifferences=true"} <= set(options)


@pytest.mark.helm
@pytest.mark.parametrize("sets", [[], ["audit.enabled=true"]], ids=["default", "audit"])
def test_sync_waves_put_the_webhook_configuration_last(helm: Path, sets: list[str]) -> None:
    objects = render(helm, sets=sets)
    waves = {(o["kind"], o["metadata"]["name"]): sync_wave(o) for o in objects}
    webhook = waves.pop(("ValidatingWebhookConfiguration", "approvalgate"))
    certificates = [w for (kind, _), w in waves.items() if kind in ("Certificate", "Issuer")]
    assert certificates and max(certificates) < waves[("Deployment", "approvalgate")] < webhook
    assert max(waves.values()) < webhook


@pytest.mark.helm
def test_custom_resources_tolerate_crds_arriving_in_the_same_sync(helm: Path) -> None:
    objects = render(helm, CHART / "ci" / "ha-values.yaml")
    custom = [o for o in objects if o["kind"] in ("Certificate", "Issuer", "ServiceMonitor")]
    assert (
        len(custom) == 6
    )  # 2 Issuers, 2 Certificates, the webhook's and the controller's monitors
    for obj in custom:
        options = obj["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
        assert options == "SkipDryRunOnMissingResource=true", obj["metadata"]["name"]
    core = [o for o in objects if o not in custom and o["kind"] != "CustomResourceDefinition"]
    assert all(
        "argocd.argoproj.io/sync-options" not in o["metadata"].get("annotations", {}) for o in core
    )


@pytest.mark.helm
def test_the_queue_crds_come_first_and_are_never_pruned_or_deleted(helm: Path) -> None:
    """Deleting the CRDs deletes every request, decision and use: neither Helm (keep) nor
    Argo CD (Prune=false, Delete=false) ever does; wave -2 puts them before their readers."""
    objects = render(helm)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == 3
    for crd in crds:
        annotations = crd["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep"
        options = annotations["argocd.argoproj.io/sync-options"].split(",")
        assert sorted(options) == ["Delete=false", "Prune=false"]
        assert sync_wave(crd) < min(sync_wave(o) for o in objects if o not in crds)


def test_the_applications_are_ordered_for_an_app_of_apps() -> None:
    assert sync_wave(APP) < sync_wave(APPSET["spec"]["template"])


# --- the ApplicationSet over rendered/<env> -------------------------------------------------


def test_the_application_set_uses_go_templates_strictly() -> None:
    spec = APPSET["spec"]
    assert spec["goTemplate"] is True
    assert spec["goTemplateOptions"] == ["missingkey=error"]
    (generator,) = spec["generators"]
    assert generator["git"]["repoURL"] == PLACEHOLDER
    assert generator["git"]["revision"] == APP["spec"]["sources"][0]["targetRevision"]


def test_the_generator_finds_every_environment() -> None:
    assert sorted(generated_applications()) == ENVIRONMENTS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_generated_application_is_valid(env: str) -> None:
    app = generated_applications()[env]
    assert strict_errors(app) == []
    assert DNS_LABEL.match(app["metadata"]["name"]) and len(app["metadata"]["name"]) <= 63
    source = app["spec"]["source"]
    assert source["repoURL"] == PLACEHOLDER
    folder = repo_path(source["path"])
    assert folder == EXAMPLE_REPO / "rendered" / env
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert listed and all((folder / item).is_file() for item in listed)
    assert not {"approvalgate-values.yaml", "agents-values.yaml", "bundle.json"} & set(listed)
    assert app["spec"]["destination"]["name"] == env
    options = set(app["spec"]["syncPolicy"]["syncOptions"])
    assert {
        "ServerSideApply=true",
        "RespectIgnoreDifferences=true",
        "SkipDryRunOnMissingResource=true",
    } <= options


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kustomize_patch_orders_agentruns_after_their_policies(
    kubectl: Path, tmp_path: Path, env: str
) -> None:
    """What Argo CD builds: the env's kustomization plus the ApplicationSet's patches."""
    source = generated_applications()[env]["spec"]["source"]
    folder = tmp_path / env
    shutil.copytree(repo_path(source["path"]), folder)
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization["patches"] = copy.deepcopy(source["kustomize"]["patches"])
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    built = subprocess.run(
        [str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    originals = {
        (d["kind"], d["metadata"]["name"]): d
        for item in yaml.safe_load((repo_path(source["path"]) / "kustomization.yaml").read_text())[
            "resources"
        ]
        for d in documents((repo_path(source["path"]) / item).read_text())
    }
    objects = documents(built)
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == set(originals)
    for obj in objects:
        original = originals[(obj["kind"], obj["metadata"]["name"])]
        annotations = dict(obj["metadata"].get("annotations", {}))
        wave = annotations.pop("argocd.argoproj.io/sync-wave", None)
        assert wave == ("1" if obj["kind"] == "AgentRun" else None)
        # only the wave changed: the spec and the approvals stay exactly as signed
        assert annotations == original["metadata"].get("annotations", {})
        assert obj.get("spec") == original.get("spec")


# --- the approval queue's runtime objects -----------------------------------------------

QUEUE_CRDS = sorted((CHART / "files" / "crds").glob("*.yaml"))


def queue_kinds() -> list[dict[str, str]]:
    crds = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in QUEUE_CRDS]
    return sorted(
        ({"group": c["spec"]["group"], "kind": c["spec"]["names"]["kind"]} for c in crds),
        key=lambda item: item["kind"],
    )


def test_the_policies_project_never_touches_the_queue() -> None:
    """Requests, decisions and uses are never in git: Argo CD neither syncs nor prunes them."""
    spec = PROJECT["spec"]
    blacklisted = sorted(spec["namespaceResourceBlacklist"], key=lambda item: item["kind"])
    assert blacklisted == queue_kinds() and len(blacklisted) == 3
    assert spec["sourceRepos"] == [PLACEHOLDER]
    assert spec["clusterResourceWhitelist"] == []  # the compiled output is namespaced only
    # the whitelist (the compiler's kinds, tests/chart/test_argocd_projects.py) never names
    # them either, so widening it keeps them out
    whitelisted = {(k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"]}
    assert whitelisted.isdisjoint((k["group"], k["kind"]) for k in queue_kinds())
    for env, app in generated_applications().items():
        assert app["spec"]["project"] == PROJECT["metadata"]["name"], env
    assert sync_wave(PROJECT) < sync_wave(APPSET["spec"]["template"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_everything_the_policies_sync_is_permitted(env: str) -> None:
    folder = EXAMPLE_REPO / "rendered" / env
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    kinds = {
        (doc["apiVersion"].rpartition("/")[0], doc["kind"])
        for item in listed
        for doc in documents((folder / item).read_text())
    }
    assert kinds
    forbidden = {(k["group"], k["kind"]) for k in PROJECT["spec"]["namespaceResourceBlacklist"]}
    assert kinds.isdisjoint(forbidden)
    assert all(kind != "Namespace" for _, kind in kinds)  # nothing cluster-scoped


def test_the_documented_resource_exclusion_names_the_queue() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    (block,) = [
        b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "resource.exclusions" in b
    ]
    (exclusion,) = yaml.safe_load(yaml.safe_load(textwrap.dedent(block))["resource.exclusions"])
    assert exclusion["apiGroups"] == ["gates.proompteng.ai"]
    assert sorted(exclusion["kinds"]) == [k["kind"] for k in queue_kinds()]
    assert exclusion["clusters"] == ["*"]


def test_no_stray_files_in_argocd() -> None:
    assert sorted(p.name for p in ARGOCD.iterdir()) == sorted(MANIFESTS)
    assert all(fnmatch.fnmatch(name, "approvalgate*.yaml") for name in MANIFESTS)
