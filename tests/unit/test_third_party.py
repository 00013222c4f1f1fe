"""The repository is self-sufficient: files from other projects are vendored in third_party/
with their provenance, and nothing refers to the `shared` folder beside our checkouts.

tests/support/outside_reads.py guards the same rule at run time (a read is refused).
"""

from __future__ import annotations

import datetime
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import outside_reads
from tests.support.paths import (
    PROVENANCE,
    ROOT,
    THIRD_PARTY,
    THIRD_PARTY_CRDS,
    UPSTREAM_AGENTS,
    crd_files,
)

ORIGINS = sorted(path.parent for path in THIRD_PARTY.rglob("PROVENANCE.yaml"))
NOT_LISTED = {PROVENANCE, "LICENSE"}  # the provenance itself, the origin's license text
LICENSES = {
    "Apache-2.0": THIRD_PARTY / "LICENSES" / "Apache-2.0.txt",
    "MIT": None,
    "Unicode-DFS-2016": None,
}

# The sibling folder of our own machines, named once: this guard is the one file that spells
# out the paths it looks for, and it builds them from this name.
FOLDER = "shared"
OUTSIDE = re.compile(
    rf"\.\./{FOLDER}\b"  # the sibling folder by relative path
    rf"|/{FOLDER}/"  # an absolute path through it
    rf"|\bAPPROVALGATE_{FOLDER.upper()}\b"  # the variable that pointed at it
    rf"|\b{FOLDER}/(?:upstream-agents|crds|design|hooks)\b"  # its folders, however reached
)
PY_OUTSIDE = re.compile(rf"""["']{FOLDER}["']""")  # Path(...) / "<folder>"
EXEMPT = {
    # they name the paths they look for
    "tests/unit/test_third_party.py",
    "tests/support/outside_reads.py",
}
SKIPPED_DIRS = {".git", ".venv", "third_party", "__pycache__", "build", "dist"}


def _provenance(origin: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((origin / "PROVENANCE.yaml").read_text("utf-8"))
    return data


def test_every_vendored_folder_has_a_provenance() -> None:
    names = {origin.relative_to(THIRD_PARTY).as_posix() for origin in ORIGINS}
    assert names == {
        "upstream-agents",
        "crds/argocd",
        "crds/cert-manager",
        "crds/policy-report",
        "crds/prometheus-operator",
        "unicode",
    }
    assert UPSTREAM_AGENTS in ORIGINS
    assert all(origin.parent in (THIRD_PARTY, THIRD_PARTY_CRDS) for origin in ORIGINS)
    readme = (THIRD_PARTY / "README.md").read_text("utf-8")
    assert [name for name in sorted(names) if f"`{name}/`" not in readme] == []


@pytest.mark.parametrize("origin", ORIGINS, ids=lambda p: p.relative_to(THIRD_PARTY).as_posix())
def test_provenance_names_origin_version_license_date_and_refresh(origin: Path) -> None:
    data = _provenance(origin)
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", data["repository"])
    # a tag, a commit, or (Unicode's data) the Unicode version its files name
    assert re.fullmatch(r"v?\d+\.\d+\.\d+|[0-9a-f]{7,40}", data["version"])
    assert data["license"] in LICENSES
    license_text = LICENSES[data["license"]] or origin / "LICENSE"
    assert license_text.is_file(), license_text
    datetime.date.fromisoformat(data["vendored"])
    assert data["modified"] is False
    assert data["used_by"]
    assert "curl" in data["refresh"]
    assert data["version"] in (THIRD_PARTY / "README.md").read_text("utf-8")


@pytest.mark.parametrize("origin", ORIGINS, ids=lambda p: p.relative_to(THIRD_PARTY).as_posix())
def test_every_vendored_file_is_listed_with_its_sha256(origin: Path) -> None:
    listed = _provenance(origin)["files"]
    present = {
        path.relative_to(origin).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in origin.rglob("*")
        if path.is_file() and path.name not in NOT_LISTED
    }
    assert sorted(present) == sorted(listed), "add or drop the file in PROVENANCE.yaml"
    changed = [name for name, digest in present.items() if listed[name]["sha256"] != digest]
    assert changed == [], "vendored files are upstream's bytes: refresh them, do not edit"
    for name, entry in listed.items():
        assert entry["upstream"].endswith(Path(name).name), name


@pytest.mark.parametrize(
    "folder",
    [UPSTREAM_AGENTS / "crds", *sorted(THIRD_PARTY_CRDS.iterdir())],
    ids=lambda p: p.relative_to(THIRD_PARTY).as_posix(),
)
def test_the_manifests_of_a_crd_folder_are_exactly_its_crds(folder: Path) -> None:
    files = crd_files(folder)
    assert files
    for path in files:
        kinds = {d["kind"] for d in yaml.safe_load_all(path.read_text("utf-8")) if d}
        assert kinds == {"CustomResourceDefinition"}, path


def repository_files() -> list[Path]:
    """Every file of the repository (tracked or not ignored by git), third_party/ aside."""
    if shutil.which("git") and (ROOT / ".git").exists():
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [name for name in listing.split("\0") if name]
    else:  # a source tree without git
        names = [
            path.relative_to(ROOT).as_posix()
            for path in ROOT.rglob("*")
            if not SKIPPED_DIRS & set(path.relative_to(ROOT).parts)
        ]
    return [
        ROOT / name
        for name in sorted(names)
        if not name.startswith("third_party/") and (ROOT / name).is_file()
    ]


def test_nothing_refers_to_the_shared_folder_beside_the_checkout() -> None:
    files = repository_files()
    assert len(files) > 100
    found = []
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        data = path.read_bytes()
        if name in EXEMPT or b"\0" in data:
            continue
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line) or (name.endswith(".py") and PY_OUTSIDE.search(line)):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "use the vendored copy under third_party/ (tests/support/paths.py)"


def test_the_pattern_finds_the_ways_the_folder_was_reached() -> None:
    for line in (
        f'X = Path(os.environ.get("APPROVALGATE_{FOLDER.upper()}") or ROOT.parent / "{FOLDER}")',
        f"recipe: `../{FOLDER}/design/kube-apiserver-recipe.md`",
        f"cp /work/{FOLDER}/crds/argocd/x.yaml .",
        f"as vendored in {FOLDER}/upstream-agents/values.schema.json",
    ):
        assert OUTSIDE.search(line) or PY_OUTSIDE.search(line), line
    assert not OUTSIDE.search(f"{FOLDER} = {{f.name: f.default for f in fields(ServeConfig)}}")


def test_a_read_under_the_shared_folder_is_refused_at_run_time(tmp_path: Path) -> None:
    beside = ROOT.parent / FOLDER / "upstream-agents" / "values.yaml"
    with pytest.raises(outside_reads.OutsideReadError, match="vendor it under third_party/"):
        beside.read_text()
    assert outside_reads.seen()[-1] == str(beside)
    outside_reads.forget(str(beside))  # this one was on purpose: it must not fail the run
    (tmp_path / FOLDER).mkdir()
    assert (tmp_path / FOLDER / "x").write_text("fine") == 4  # not beside the checkout
    assert outside_reads.forbidden_folders(ROOT)[0].endswith(FOLDER)
    assert all(not ROOT.is_relative_to(f) for f in outside_reads.forbidden_folders(ROOT))
