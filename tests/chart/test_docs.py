"""The install docs match the chart: every `helm install`/`helm upgrade` line of docs/deploy.md
and the chart README renders with `helm template` and the same flags, and the names the docs
tell people to type are the names the chart renders."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.chart.support import CHART, ROOT, one, render, run_helm, webhook_part

DOCS = [ROOT / "docs" / "deploy.md", CHART / "README.md", ROOT / "README.md"]
EXAMPLE_CA = yaml.safe_load((CHART / "ci" / "existing-secret-values.yaml").read_text())["tls"][
    "existingSecret"
]["caBundle"]
#: shell the docs use, and what it stands for in a test
SHELL = {"$(base64 -w0 ca.crt)": EXAMPLE_CA}


def shell_lines(path: Path) -> list[str]:
    """Commands in ```sh blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(
        r"^\s*```sh\n(.*?)^\s*```", path.read_text(encoding="utf-8"), re.M | re.S
    ):
        joined = re.sub(r"\\\n\s*", " ", block)
        for raw in joined.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def helm_commands(path: Path) -> list[list[str]]:
    commands = []
    for raw in shell_lines(path):
        line = raw
        for text, value in SHELL.items():
            line = line.replace(text, value)
        words = shlex.split(line)
        if words[:2] in (["helm", "install"], ["helm", "upgrade"]):
            assert "$" not in line, f"{path.name}: unexpanded shell in {line}"
            commands.append(words)
    return commands


def local_chart_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        for words in helm_commands(path):
            positional = [w for w in words[2:] if not w.startswith("-")]
            if "charts/approvalgate" in positional:
                found.append((path.name, words))
    return found


def test_the_docs_install_the_chart_with_the_compiled_values() -> None:
    commands = local_chart_commands()
    assert {name for name, _ in commands} == {"deploy.md", "README.md"}
    first = next(words for name, words in commands if name == "deploy.md")
    assert first[:4] == ["helm", "install", "approvalgate", "charts/approvalgate"]
    assert "-f" in first and first[first.index("-f") + 1].endswith(
        "rendered/prod/approvalgate-values.yaml"
    )


@pytest.mark.helm
@pytest.mark.parametrize(
    "words", [w for _, w in local_chart_commands()], ids=lambda w: " ".join(w[:3]) + "..."
)
def test_each_helm_line_renders(helm: Path, words: list[str]) -> None:
    _, verb, release, chart, *flags = words
    assert verb in ("install", "upgrade") and chart == "charts/approvalgate"
    # same flags, run from ROOT, nothing added: the docs pin the bundle-signing key themselves
    rendered = run_helm(helm, "template", release, chart, *flags, signing=False)
    assert "kind: ValidatingWebhookConfiguration" in rendered


def test_cert_manager_is_the_named_prerequisite() -> None:
    for path in DOCS:
        lines = shell_lines(path)
        repo = lines.index("helm repo add jetstack https://charts.jetstack.io")
        install = next(
            i for i, line in enumerate(lines) if line.startswith("helm install cert-manager")
        )
        assert repo < install
        words = shlex.split(lines[install])
        assert "jetstack/cert-manager" in words
        assert words[words.index("--set") + 1] == "crds.enabled=true"
        chart = next(i for i, line in enumerate(lines) if "charts/approvalgate" in line)
        assert install < chart, f"{path.name}: cert-manager comes first"


@pytest.mark.helm
def test_names_in_the_docs_are_the_rendered_names(helm: Path) -> None:
    objects = render(helm)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    mentioned = {
        ("Deployment", "approvalgate"): "deployment/approvalgate",
        ("Certificate", "approvalgate-tls"): "get certificate approvalgate-tls",
        ("ValidatingWebhookConfiguration", "approvalgate"): "webhookconfiguration approvalgate",
        ("ConfigMap", "approvalgate-bundle"): "approvalgate-system/approvalgate-bundle",
    }
    for key, phrase in mentioned.items():
        assert key in names and phrase in text, (key, phrase)
    webhook = next(o for o in objects if o["kind"] == "ValidatingWebhookConfiguration")
    assert f'admission webhook "{webhook["webhooks"][0]["name"]}" denied' in text
    service = one(webhook_part(objects), "Service")["metadata"]["name"]
    assert f"valid for `{service}.approvalgate-system.svc`" in text


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_files_and_links_the_docs_name_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in link]
    assert links
    for link in links:
        assert (path.parent / link).exists(), link
    for line in shell_lines(path):
        for word in shlex.split(line):
            if word.startswith(("examples/", "charts/", "argocd/")):
                assert (ROOT / word).exists(), word
