"""The compiled bundle reaches the webhook byte for byte; NOTES.txt warns when it is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.support import (
    CHART,
    ENVIRONMENTS,
    EXAMPLE_REPO,
    NAMESPACE,
    documents,
    example_values,
    namespace_values,
    one,
    render,
    run_helm,
    webhook_part,
)

pytestmark = pytest.mark.helm


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_compiled_values_plug_in_unchanged(helm: Path, env: str) -> None:
    objects = render(helm, example_values(env))
    config = one(objects, "ConfigMap")
    bundle = (EXAMPLE_REPO / "rendered" / env / "bundle.json").read_bytes()
    assert config["data"]["bundle.json"].encode() == bundle
    generation = yaml.safe_load(example_values(env).read_text())["policyBundle"]["generation"]
    assert config["metadata"]["annotations"] == {
        "approvals.proompteng.ai/bundle-generation": generation
    }
    volumes = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]["volumes"]
    bundle_volume = next(v for v in volumes if v["name"] == "bundle")
    assert bundle_volume["configMap"]["name"] == config["metadata"]["name"]
    # hot reload by default: a new bundle does not touch the pod template
    template = one(webhook_part(objects), "Deployment")["spec"]["template"]
    assert "annotations" not in template["metadata"]


TRICKY = {
    "no final newline": '{"a": 1}',
    "blank lines at the end": "{}\n\n\n",
    "leading spaces": '   {\n\t"a": 1\n}\n',
    "crlf": '{\r\n  "a": 1\r\n}\r\n',
    "unicode": '{"name": "Zoë ✓ 😀 \u2028 <>&"}\n',
    "template syntax": '{"x": "{{ .Values.image }}"}\n',
    "yaml lookalikes": "a: b\n- c\n# not a comment\n--- \n...\n",
    "quotes and backslashes": '{"q": "\\"\'\\\\n"}\n',
}


@pytest.mark.parametrize("content", TRICKY.values(), ids=TRICKY.keys())
def test_bundle_text_is_never_reserialised(helm: Path, tmp_path: Path, content: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"policyBundle": {"content": content}}), encoding="utf-8")
    assert one(render(helm, values), "ConfigMap")["data"]["bundle.json"] == content


def test_rollout_on_change_puts_the_generation_on_the_pods(helm: Path) -> None:
    objects = render(helm, example_values("prod"), sets=["policyBundle.rolloutOnChange=true"])
    template = one(webhook_part(objects), "Deployment")["spec"]["template"]
    config = one(objects, "ConfigMap")
    assert template["metadata"]["annotations"] == config["metadata"]["annotations"]


def test_without_a_bundle_it_still_renders(helm: Path) -> None:
    config = one(render(helm), "ConfigMap")
    assert config["data"] == {"bundle.json": ""}
    assert "annotations" not in config["metadata"]


# --- NOTES.txt --------------------------------------------------------------------------
# `helm template` does not print NOTES.txt and `helm install --dry-run` needs a cluster, so a
# copy of the chart renders it through `tpl` in an extra template.


@pytest.fixture(scope="module")
def notes_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("notes") / "approvalgate"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes-under-test.txt")
    (chart / "templates" / "notes-under-test.yaml").write_text(
        'notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}\n', encoding="utf-8"
    )
    return chart


def notes(helm: Path, chart: Path, *args: str) -> str:
    output = run_helm(
        helm,
        "template",
        "approvalgate",
        str(chart),
        "-n",
        NAMESPACE,
        "-s",
        "templates/notes-under-test.yaml",
        *args,
    )
    (document,) = documents(output)
    text: str = document["notes"]
    return text


def test_notes_warn_first_without_a_bundle(helm: Path, notes_chart: Path) -> None:
    text = notes(helm, notes_chart)
    assert text.lstrip().startswith("WARNING: no policy bundle")
    assert "every AgentRun CREATE/UPDATE it is asked about is\n  DENIED (fail closed)" in text
    assert text.index("WARNING") < text.index("Next steps:")


# a signed bundle: what `approvalgate compile --sign` writes (the NOTES only test that it is set)
SIGNED = ("--set-string", "policyBundle.signatures=signed")


def test_notes_with_the_compiled_values(helm: Path, notes_chart: Path) -> None:
    text = notes(helm, notes_chart, "-f", str(example_values("prod")), *SIGNED)
    assert "WARNING" not in text
    assert text.lstrip().startswith("NOTE: the webhook port accepts connections from any source")
    assert "kubectl -n approvalgate-system rollout status deployment/approvalgate" in text
    assert "kubectl -n approvalgate-system get certificate approvalgate-tls" in text
    assert (
        "in every namespace, including\nnamespaces created later and approvalgate-system.\n"
    ) in text


def test_notes_for_opt_in_and_existing_secret(
    helm: Path, notes_chart: Path, tmp_path: Path
) -> None:
    text = notes(
        helm,
        notes_chart,
        "-f",
        str(namespace_values(tmp_path, ["kube-system"], "optInLabel")),
        "-f",
        str(CHART / "ci" / "existing-secret-values.yaml"),
        *SIGNED,
    )
    assert text.lstrip().startswith("WARNING: opt-in mode")
    assert (
        "in every namespace labelled approvals.proompteng.ai/enforce=true, including\n"
        "namespaces created later and approvalgate-system; kube-system (excludeNamespaces) are sent"
        " too and the webhook passes them"
    ) in text
    assert "kubectl -n approvalgate-system get secret approvalgate-serving-tls" in text
    assert "get certificate" not in text


def test_notes_warn_about_an_unsigned_bundle_and_unsigned_mode(
    helm: Path, notes_chart: Path, tmp_path: Path
) -> None:
    values = tmp_path / "unsigned.yaml"
    values.write_text(
        yaml.safe_dump(
            {"policyBundle": {"content": "{}", "generation": "0" * 16, "signatures": ""}}
        )
    )
    text = notes(helm, notes_chart, "-f", str(values))
    assert text.lstrip().startswith(
        "WARNING: policyBundle.signatures is empty: the bundle is not signed, so the webhook and"
        " the\n  controller refuse it (not ready; every AgentRun is denied)."
    )
    loud = notes(
        helm,
        notes_chart,
        "-f",
        str(values),
        "--set",
        "bundleSigning.publicKeys=null",
        "--set",
        "bundleSigning.allowUnsigned=true",
    )
    assert loud.lstrip().startswith(
        "WARNING: bundleSigning.allowUnsigned=true: the webhook and the controller enforce"
        " UNSIGNED\n  bundles"
    )


def test_notes_mention_the_audit_only_when_enabled(helm: Path, notes_chart: Path) -> None:
    assert "audit" not in notes(helm, notes_chart).lower()
    text = notes(helm, notes_chart, "--set", "audit.enabled=true")
    (line,) = [line for line in text.splitlines() if "audit" in line.lower()]
    assert line == (
        "Audit: CronJob approvalgate-system/approvalgate-audit runs `approvalgate audit` on "
        '"17 * * * *"; a failed Job means findings: alert on it and read its log.'
    )
    reports = notes(helm, notes_chart, "-f", str(CHART / "ci" / "audit-values.yaml"))
    assert 'on "*/30 * * * *", writing PolicyReports; a failed Job means findings' in reports


def test_notes_name_the_queue_and_the_roles_to_bind(helm: Path, notes_chart: Path) -> None:
    text = notes(helm, notes_chart, "-f", str(example_values("prod")))
    assert (
        "kubectl -n approvalgate-system rollout status deployment/approvalgate-controller" in text
    )
    assert "   Bind the ClusterRoles approvalgate-requester and approvalgate-approver" in text
    assert "CREATE, UPDATE and DELETE of the approval queue's kinds" in text
    assert (
        "NOTE: the webhook's view and the controller may reach any address on ports\n"
        "  443, 6443 (the API server's endpoints are not known to the chart)"
    ) in text
    narrowed = notes(
        helm, notes_chart, "--set", "networkPolicy.apiServer[0].ipBlock.cidr=10.0.0.1/32"
    )
    assert "may reach any address" not in narrowed
    off = notes(helm, notes_chart, "--set", "controller.enabled=false")
    assert "NOTE: controller.enabled=false: ApprovalRequests are never decided" in off
    assert "NOTE: the webhook's view may reach any address" in off
