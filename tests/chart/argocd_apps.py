"""The manifests in argocd/, and the Applications its ApplicationSet generates here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT

ARGOCD = ROOT / "argocd"
PLACEHOLDER = "https://github.com/proompteng/approvalgate.git"
MANIFESTS: dict[str, dict[str, Any]] = {
    path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
    for path in sorted(ARGOCD.glob("*.yaml"))
}
APP = MANIFESTS["approvalgate-application.yaml"]
APPSET = MANIFESTS["approvalgate-policies-applicationset.yaml"]
PROJECT = MANIFESTS["approvalgate-policies-project.yaml"]


def repo_path(path: str) -> Path:
    """A path in the repository every repoURL names (the placeholder stands for this one)."""
    resolved = (ROOT / path).resolve()
    assert resolved.is_relative_to(ROOT), path
    return resolved


def generated_applications() -> dict[str, dict[str, Any]]:
    """What the git directory generator makes: one Application per matched folder, the go
    template filled in the way Argo CD does (a missing key is an error: missingkey=error)."""
    spec = APPSET["spec"]
    (generator,) = spec["generators"]
    git = generator["git"]
    folders = sorted(
        path
        for entry in git["directories"]
        if not entry.get("exclude")
        for path in ROOT.glob(entry["path"])
        if path.is_dir()
    )
    text = yaml.safe_dump(spec["template"])
    apps = {}
    for folder in folders:
        params = {
            "path": folder.relative_to(ROOT).as_posix(),
            "basename": folder.name,
            "basenameNormalized": re.sub(r"[^a-z0-9-]", "-", folder.name.lower()),
        }

        def substitute(match: re.Match[str], params: dict[str, str] = params) -> str:
            return params[match.group(1)]

        rendered = re.sub(r"\{\{\s*\.path\.(\w+)\s*\}\}", substitute, text)
        if "{{" in rendered:
            raise ValueError(f"unsupported template expression in {rendered}")
        apps[folder.name] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            **yaml.safe_load(rendered),
        }
    return apps
