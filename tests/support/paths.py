"""Where the repository and its vendored third-party files are.

Everything a test needs is inside the repository: third_party/ holds the files from other
projects (see third_party/README.md). Tests name those folders through these constants only.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = ROOT / "third_party"
UPSTREAM_AGENTS = THIRD_PARTY / "upstream-agents"
"""The agents platform's chart files: crds/, examples/, values.yaml, values.schema.json."""
THIRD_PARTY_CRDS = THIRD_PARTY / "crds"
"""Other projects' CRDs: argocd/, cert-manager/, policy-report/, prometheus-operator/."""
PROVENANCE = "PROVENANCE.yaml"


def crd_files(folder: Path) -> list[Path]:
    """The YAML files of a vendored CRD folder, without its PROVENANCE.yaml (which `kubectl
    apply -f <folder>` would read as a manifest)."""
    return sorted(path for path in folder.glob("*.yaml") if path.name != PROVENANCE)
