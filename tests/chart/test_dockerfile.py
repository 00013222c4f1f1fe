"""The Dockerfile (not built here: no Docker engine) read as text: two stages, the README's
`pip install .` steps, a final stage without build tools running as uid 65532, and a CMD
equal to the chart's args. The build context its .dockerignore leaves is enough to build the
wheel (checked by building it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.chart.support import ROOT, one, render, webhook_part

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(DOCKERFILE):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


BUILD_STEPS = [
    "pip install --require-hashes --no-deps --only-binary :all: -r requirements/build.txt",
    "pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .",
    "cp requirements/image.txt /wheels/requirements.txt",
]
INSTALL_STEPS = [
    "pip install --require-hashes --no-deps --only-binary :all: -r /wheels/requirements.txt",
    "pip install --no-deps --no-index /wheels/approvalgate-*.whl",
    "pip check",
]


def run_steps(stage: list[tuple[str, str]]) -> list[str]:
    """The commands of a stage's RUN instructions, one per `&&`."""
    return [
        step.strip() for k, rest in stage if k == "RUN" for step in rest.split("&&") if step.strip()
    ]


def test_two_stages_on_python_3_11_slim() -> None:
    args = dict(rest.split("=", 1) for k, rest in instructions(DOCKERFILE) if k == "ARG")
    builder, final = stages()
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")


def test_every_package_in_the_image_is_hash_locked() -> None:
    """Two builds of one commit ship the same code, and a new release of a dependency (or of
    one of theirs, or of the build back-end) reaches the image only through a reviewed change
    of requirements/ (`make lock`): the builder builds the wheel with the locked back-end, not
    with whatever setuptools PyPI serves that day in an isolated build; the final stage
    installs the locked wheels with their sha256 and nothing they would pull in
    (`--no-deps`), binary wheels only (no sdist's setup.py runs), then our wheel from the
    build context alone (`--no-index`), and `pip check` fails the build if the lock misses a
    dependency."""
    builder, final = stages()
    assert run_steps(builder) == BUILD_STEPS
    assert run_steps(final)[: len(INSTALL_STEPS)] == INSTALL_STEPS
    for step in run_steps(builder) + run_steps(final):
        if step.startswith("pip install"):
            assert "--require-hashes" in step or "--no-index" in step, step
            assert "--no-deps" in step, step


def test_final_stage_installs_the_wheel_only_and_has_no_build_tools() -> None:
    final = stages()[-1]
    text = "\n".join(rest for _, rest in final)
    assert ("COPY", "--from=builder /wheels /wheels") in final
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "pip wheel", "-m build", "git "):
        assert tool not in text, tool
    copies = [rest for keyword, rest in final if keyword in ("COPY", "ADD")]
    assert copies == ["--from=builder /wheels /wheels"]  # no source tree in the image


def test_runs_as_non_root() -> None:
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users == ["65532:65532"]
    assert [k for k, _ in final].index("USER") > max(
        i for i, (k, _) in enumerate(final) if k == "RUN"
    )


@pytest.mark.helm
def test_entrypoint_and_cmd_match_the_chart(helm: Path) -> None:
    final = {k: rest for k, rest in stages()[-1] if k in ("ENTRYPOINT", "CMD", "EXPOSE")}
    assert json.loads(final["ENTRYPOINT"]) == ["approvalgate"]
    container = one(webhook_part(render(helm)), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    # the pinned bundle-signing keys are the operator's (chart values), never the image's: the
    # image alone refuses to start without them (exit 2, with advice), so the chart's args are
    # the CMD followed by the bundle-trust flags
    cmd = json.loads(final["CMD"])
    assert container["args"][: len(cmd)] == cmd
    trust = container["args"][len(cmd) :]
    assert trust[0::2] == [
        "--bundle-key",
        "--bundle-threshold",
        "--bundle-min-revision",
        "--bundle-environment",  # pinned beside the keys, never taken from the content
        "--bundle-floor",  # kept by the controller in the cluster
    ]
    assert final["EXPOSE"].split() == [str(p["containerPort"]) for p in container["ports"]]


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _context(target: Path) -> None:
    """Copy what Docker would send: a path is out when the last rule matching it or one of
    its parent folders excludes it (moby/patternmatcher)."""
    rules = [
        (line.startswith("!"), _pattern(line.lstrip("!").rstrip("/")))
        for line in map(str.strip, (ROOT / ".dockerignore").read_text().splitlines())
        if line and not line.startswith("#")
    ]
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        parts = relative.split("/")
        if not path.is_file() or parts[0] in (".venv", ".git"):
            continue
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negate, rule in rules:
            if any(rule.fullmatch(candidate) for candidate in candidates):
                excluded = not negate
        if not excluded:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def test_the_build_context_builds_the_wheel(tmp_path: Path) -> None:
    context = tmp_path / "context"
    _context(context)
    assert sorted(p.name for p in context.iterdir()) == [
        "README.md",
        "approvalgate",
        "pyproject.toml",
        "requirements",
        "schemas",
    ]
    assert not list(context.rglob("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("approvalgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("approvals/decide", "compiler/render", "webhook/server", "audit/runner"):
        assert f"approvalgate/{module}.py" in names
    assert any(n.startswith("approvalgate/schemas/") and n.endswith(".json") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "approvalgate = approvalgate.cli:main" in scripts


@pytest.mark.network
def test_the_dockerfiles_steps_install_the_lock_and_run(tmp_path: Path) -> None:
    """The Dockerfile's own pip commands, run as written (in venvs standing in for the two
    stages, `/wheels` a folder here) on the build context .dockerignore leaves: the build
    lock builds the wheel without an isolated build, the image lock installs with
    --require-hashes --no-deps --only-binary, `pip check` finds every dependency there, and
    the CLI starts. What is not run here: the base image itself (no Docker engine), groupadd
    and useradd. Needs PyPI (reachable here and in CI: a failed download fails the test)."""
    context = tmp_path / "context"
    _context(context)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    builder, final = stages()
    # the stages see no package of the test run's own (PYTHONPATH, as a worktree's tests set it)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(stage_venv: Path, steps: list[str]) -> None:
        for step in steps:
            words = step.replace("/wheels", str(wheels)).split()
            if words[0] == "pip":
                words = [str(stage_venv / "bin" / "python"), "-m", "pip", "-q", *words[1:]]
                if "approvalgate-*.whl" in step:
                    words = [w for w in words if "approvalgate-*" not in w]
                    words += [str(p) for p in wheels.glob("approvalgate-*.whl")]
            elif words[0] == "cp":
                words = ["cp", *words[1:]]
            else:
                continue
            done = subprocess.run(words, cwd=context, capture_output=True, text=True, env=env)
            assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"

    venv.create(tmp_path / "builder", with_pip=True)
    run(tmp_path / "builder", run_steps(builder))
    assert len(list(wheels.glob("approvalgate-*.whl"))) == 1
    assert (wheels / "requirements.txt").is_file()

    venv.create(tmp_path / "final", with_pip=True)
    installs = [s for s in run_steps(final) if s.startswith(("pip ", "rm "))]
    run(tmp_path / "final", installs)
    started = subprocess.run(
        [str(tmp_path / "final" / "bin" / "approvalgate"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert started.returncode == 0, started.stderr
    # the locked versions do the work, not only start: the example repo's committed output,
    # its signed bundles included, is what they compile (YAML, schemas, canonical JSON,
    # signatures)
    repo = tmp_path / "gitops-repo"
    shutil.copytree(ROOT / "examples" / "gitops-repo", repo)
    checked = subprocess.run(
        [str(tmp_path / "final" / "bin" / "approvalgate"), "check", str(repo)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = subprocess.run(
        [str(tmp_path / "final" / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    installed = {canonical(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    locked = re.findall(
        r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$",
        (wheels / "requirements.txt").read_text(encoding="utf-8"),
    )
    assert len(locked) > 20
    for name, version in locked:
        assert installed.get(canonical(name)) == version, name
