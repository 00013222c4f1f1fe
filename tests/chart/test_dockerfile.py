"""The Dockerfile (not built here: no Docker engine) read as text: two stages, the README's
`pip install .` steps, a final stage without build tools running as uid 65532, and a CMD
equal to the chart's args. The build context its .dockerignore leaves is enough to build the
wheel (checked by building it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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


def test_two_stages_on_python_3_11_slim() -> None:
    args = dict(rest.split("=", 1) for k, rest in instructions(DOCKERFILE) if k == "ARG")
    builder, final = stages()
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    assert ("RUN", "pip wheel --no-deps --wheel-dir /wheels .") in builder


def test_final_stage_installs_the_wheel_only_and_has_no_build_tools() -> None:
    final = stages()[-1]
    text = "\n".join(rest for _, rest in final)
    assert ("COPY", "--from=builder /wheels /wheels") in final
    assert "pip install /wheels/*.whl" in text
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
