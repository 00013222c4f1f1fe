#!/usr/bin/env python3
"""Build the pinned Kubernetes test binaries from Go modules and cache them by version.

    python tools/testbin.py [--print-dir] [k8s|etcd|helm|all|kyverno|gatekeeper|peers]

Each tool has a wrapper module under tools/<tool>/ (go.mod + go.sum, committed). Binaries go
to ${APPROVALGATE_TESTBIN:-~/.cache/approvalgate/testbin}/<tool>-<version>/, the version read
from the wrapper's go.mod, so bumping a pin builds a new directory and a cached one costs
nothing. A build writes to a temporary directory renamed into place at the end: an interrupted
build never leaves a partial directory behind. Standard library only.

`all` is the test tools k8s, etcd and helm. The peers approvalgate is measured
against (issue 18: kyverno, gatekeeper; `peers` = both; about 15 minutes cold on 2 cores) are
built only when named, never by `all`, so never by make test or CI.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent


class TestbinError(Exception):
    """A binary cannot be located or built; the message says why and what to do."""


@dataclass(frozen=True)
class Tool:
    name: str
    module: str  # the pinned module whose version names the cache directory
    binaries: dict[str, str]  # binary name -> main package
    ldflags: Callable[[Path, str], list[str]]  # (wrapper dir, version) -> -X flags

    @property
    def wrapper(self) -> Path:
        return TOOLS_DIR / self.name


def module_version(go_mod: Path, module: str) -> str:
    """The version of `module` required by `go_mod` (a replace of it is not supported)."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)")
    for line in go_mod.read_text(encoding="utf-8").splitlines():
        if match := pattern.match(line):
            return match.group(1)
    raise TestbinError(f"{go_mod}: no `require {module} vX.Y.Z` line")


def _k8s_ldflags(wrapper: Path, version: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return flags


def _helm_ldflags(wrapper: Path, version: str) -> list[str]:
    # helm reports Capabilities.KubeVersion from these (default v1.20): derive them from the
    # client-go it is built with, as helm's Makefile does (client-go v0.34.x -> 1.34).
    client_go = module_version(wrapper / "go.mod", "k8s.io/client-go").lstrip("v").split(".")
    k8s_major, k8s_minor = str(int(client_go[0]) + 1), client_go[1]
    flags = [
        f"-X helm.sh/helm/v3/internal/version.version={version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor={k8s_major}", f"-X {pkg}.k8sVersionMinor={k8s_minor}"]
    return flags


def _no_ldflags(wrapper: Path, version: str) -> list[str]:
    return []  # etcd's version is a constant in go.etcd.io/etcd/api/v3/version


def _kyverno_ldflags(wrapper: Path, version: str) -> list[str]:
    return [f"-X github.com/kyverno/kyverno/pkg/version.BuildVersion={version}"]  # as its Makefile


def _gatekeeper_ldflags(wrapper: Path, version: str) -> list[str]:
    return [f"-X github.com/open-policy-agent/gatekeeper/v3/pkg/version.Version={version}"]


TOOLS: dict[str, Tool] = {
    "k8s": Tool(
        name="k8s",
        module="k8s.io/kubernetes",
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_k8s_ldflags,
    ),
    "etcd": Tool(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
        ldflags=_no_ldflags,
    ),
    "helm": Tool(
        name="helm",
        module="helm.sh/helm/v3",
        binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
        ldflags=_helm_ldflags,
    ),
}

# The peers a user would pick instead of approvalgate (issue 18), for make peers / bench-peers
# only: built when named, never by `all` (so never by make test or CI).
PEERS: dict[str, Tool] = {
    "kyverno": Tool(
        name="kyverno",
        module="github.com/kyverno/kyverno",
        binaries={
            "kyverno": "github.com/kyverno/kyverno/cmd/kyverno",
            "kubectl-kyverno": "github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno",
        },
        ldflags=_kyverno_ldflags,
    ),
    "gatekeeper": Tool(
        name="gatekeeper",
        module="github.com/open-policy-agent/gatekeeper/v3",
        binaries={
            "manager": "github.com/open-policy-agent/gatekeeper/v3",
            "gator": "github.com/open-policy-agent/gatekeeper/v3/cmd/gator",
        },
        ldflags=_gatekeeper_ldflags,
    ),
}
ALL_TOOLS: dict[str, Tool] = {**TOOLS, **PEERS}


def cache_root() -> Path:
    configured = os.environ.get("APPROVALGATE_TESTBIN")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "approvalgate" / "testbin"


def bin_dir(tool: Tool) -> Path:
    """Where the tool's binaries live (they may not be built yet)."""
    version = module_version(tool.wrapper / "go.mod", tool.module)
    return cache_root() / f"{tool.name}-{version}"


def is_built(tool: Tool) -> bool:
    directory = bin_dir(tool)
    return all(os.access(directory / name, os.X_OK) for name in tool.binaries)


def _go_env() -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0")
    env["GOFLAGS"] = " ".join(filter(None, [env.get("GOFLAGS", ""), "-mod=mod"]))
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build(tool: Tool) -> Path:
    """Build the tool's binaries into its cache directory unless they are already there."""
    final = bin_dir(tool)
    if is_built(tool):
        return final
    go = shutil.which("go")
    if go is None:
        raise TestbinError(
            f"cannot build {tool.name}: `go` is not on PATH (Go >= 1.24 is needed, "
            f"or put prebuilt {', '.join(tool.binaries)} in {final})"
        )
    version = final.name.removeprefix(f"{tool.name}-")
    ldflags = " ".join(["-s", "-w", *tool.ldflags(tool.wrapper, version)])
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a killed build
        if not _alive(int(stale.name.rsplit("-", 1)[1])):
            shutil.rmtree(stale)
    staging = final.parent / f".{final.name}.tmp-{os.getpid()}"
    staging.mkdir()
    try:
        for name, package in tool.binaries.items():
            started = time.monotonic()
            print(
                f"testbin: building {name} {version} (first build may take many minutes)",
                file=sys.stderr,
            )
            command = [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(staging / name),
                package,
            ]
            result = subprocess.run(command, cwd=tool.wrapper, env=_go_env(), check=False)
            if result.returncode != 0:
                raise TestbinError(
                    f"building {name} failed (exit {result.returncode}): {shlex.join(command)}"
                )
            print(f"testbin: built {name} in {time.monotonic() - started:.0f}s", file=sys.stderr)
        if final.exists():  # an incomplete directory from an older layout, or a concurrent build
            if is_built(tool):
                return final
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def select(names: Sequence[str]) -> list[str]:
    """The tool names that `names` means: `all` is the test tools (TOOLS) only; `peers` is PEERS."""
    selected = list(TOOLS) if "all" in names else [name for name in names if name in TOOLS]
    for name in names:
        selected += PEERS if name == "peers" else [name] if name in PEERS else []
    return list(dict.fromkeys(selected))


def ensure(names: Sequence[str]) -> list[Path]:
    """Build (when missing) and return the bin directories of the named tools."""
    return [build(ALL_TOOLS[name]) for name in select(names)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--print-dir", action="store_true", help="print only the bin directories, one per line"
    )
    names = [*ALL_TOOLS, "all", "peers"]
    # checked here, not with argparse's choices: Python 3.11 checks an empty `*` positional
    # against them and refuses running with no tool named
    parser.add_argument(
        "tools",
        nargs="*",
        metavar="{" + ",".join(names) + "}",
        help="all (the default) = k8s etcd helm; peers = kyverno gatekeeper, built only when named",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.tools if name not in names]
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r} (choose from {', '.join(names)})")
    try:
        directories = ensure(args.tools or ["all"])
    except TestbinError as error:
        print(f"testbin: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    for directory in directories:
        print(directory if args.print_dir else f"{directory.name}: {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
