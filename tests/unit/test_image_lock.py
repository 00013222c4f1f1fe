"""requirements/: the image's hash-locked dependencies (`make lock`), read without a network.

The Dockerfile installs requirements/image.txt with `--require-hashes --no-deps` and builds
the wheel with the back-end of requirements/build.txt, so what the image runs is what these
files name, byte for byte: a new release of a dependency (or of one of theirs) reaches the
image only through a reviewed change of the lock. The lock must pin every runtime dependency
of pyproject.toml within its range, every package it pins must be wanted by pyproject.toml or
by another pinned package (a dependency dropped from pyproject.toml leaves no stale pin), and
every pin carries its files' sha256. The network half (the Dockerfile's own commands install
the lock and build the wheel) is tests/chart/test_dockerfile.py.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
IMAGE_LOCK = ROOT / "requirements" / "image.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*\\?$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}\s*\\?$")
VIA_ONE = re.compile(r"^# via (?P<what>.+)$")
VIA_MANY = re.compile(r"^#\s{3,}(?P<what>.+)$")


@dataclass
class Pin:
    name: str
    version: str
    line: int
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str, source: str) -> tuple[dict[str, Pin], list[str]]:
    """The pins of a pip-compile file, and errors (source:line: what) for anything else:
    an option line (an index, find-links, a trusted host), an unpinned or URL requirement,
    a pin without a sha256 or given twice."""
    pins: dict[str, Pin] = {}
    errors: list[str] = []
    current: Pin | None = None
    in_via = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line:
            current, in_via = None, False
            continue
        if raw.startswith((" ", "\t")) and current is not None:
            if HASH.match(line):
                current.hashes.append(line.split(":", 1)[1].rstrip(" \\"))
                continue
            via = VIA_ONE.match(line)
            if via:
                current.via.append(via["what"].strip())
                in_via = False
                continue
            if line == "# via":
                in_via = True
                continue
            many = VIA_MANY.match(line)
            if in_via and many:
                current.via.append(many["what"].strip())
                continue
            errors.append(f"{where}: unexpected line under {current.name}: {line!r}")
            continue
        if line.startswith("#"):
            current, in_via = None, False
            continue
        pin = PIN.match(line)
        if not pin:
            errors.append(
                f"{where}: not a pinned requirement (NAME==VERSION with --hash lines): {line!r}"
            )
            current = None
            continue
        name = canonicalize_name(pin["name"])
        if name in pins:
            errors.append(f"{where}: {name} pinned twice (also line {pins[name].line})")
        current = pins[name] = Pin(name, pin["version"], number)
        in_via = False
    for pin in pins.values():
        if not pin.hashes:
            errors.append(f"{source}:{pin.line}: {pin.name} has no --hash=sha256: line")
    return pins, errors


def lock_errors(text: str, source: str, wanted: list[str], wanted_by: str) -> list[str]:
    """Every requirement of ``wanted`` (pyproject.toml's) pinned within its range, and every
    pin reached from them: what `make lock` must make true again when it is not."""
    pins, errors = parse_lock(text, source)
    roots = set()
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        roots.add(name)
        pin = pins.get(name)
        if pin is None:
            errors.append(f"{source}: {requirement} ({wanted_by}) is not pinned: run `make lock`")
        elif not requirement.specifier.contains(Version(pin.version), prereleases=True):
            errors.append(
                f"{source}:{pin.line}: {name}=={pin.version} is outside {requirement} "
                f"({wanted_by}): run `make lock`"
            )
    for pin in pins.values():
        if pin.name in roots:
            continue
        parents = [canonicalize_name(v) for v in pin.via if not v.startswith("approvalgate ")]
        if not any(parent in pins for parent in parents):
            errors.append(
                f"{source}:{pin.line}: {pin.name} is wanted by nothing pinned here "
                f"(via {', '.join(pin.via) or 'nothing'}): run `make lock`"
            )
        stale = [v for v in pin.via if v.startswith("approvalgate ")]
        if stale:
            errors.append(
                f"{source}:{pin.line}: {pin.name} is pinned for {stale[0]} but {wanted_by} "
                "does not list it: run `make lock`"
            )
    return errors


def image_errors(text: str) -> list[str]:
    return lock_errors(
        text, "requirements/image.txt", PYPROJECT["project"]["dependencies"], "pyproject.toml"
    )


def build_errors(text: str) -> list[str]:
    return lock_errors(
        text,
        "requirements/build.txt",
        PYPROJECT["build-system"]["requires"],
        "pyproject.toml [build-system] requires",
    )


def test_the_image_lock_pins_every_runtime_dependency_with_hashes() -> None:
    assert image_errors(IMAGE_LOCK.read_text(encoding="utf-8")) == []


def test_the_build_lock_pins_the_build_back_end_with_hashes() -> None:
    assert build_errors(BUILD_LOCK.read_text(encoding="utf-8")) == []


def test_the_locks_name_no_index_and_no_extra() -> None:
    """Neither lock may point pip elsewhere (an index, a find-links, a trusted host: a line
    of options, which parse_lock refuses) or pin an extra (its packages would be outside the
    closure the tests above check)."""
    for path in (IMAGE_LOCK, BUILD_LOCK):
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not raw.startswith("-"), f"{path.name}:{number}: {raw}"
            assert "[" not in raw.split("#", 1)[0], f"{path.name}:{number}: {raw}"


def test_the_locks_are_resolved_for_the_images_python() -> None:
    """Markers resolve per Python version: a lock made with another Python than the image's
    (python:3.11-slim, the Dockerfile's PYTHON_IMAGE) may miss or add a dependency."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    image = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim$", dockerfile, re.M)
    assert image is not None
    for path in (IMAGE_LOCK, BUILD_LOCK):
        header = path.read_text(encoding="utf-8").splitlines()[1]
        assert header == f"# This file is autogenerated by pip-compile with Python {image[1]}"


def test_the_ssh_and_hsm_extras_stay_out_of_the_image() -> None:
    pins, _ = parse_lock(IMAGE_LOCK.read_text(encoding="utf-8"), "image.txt")
    for name in ("paramiko", "bcrypt", "python-pkcs11", "asn1crypto", "invoke"):
        assert name not in pins


def _real_lock() -> str:
    return IMAGE_LOCK.read_text(encoding="utf-8")


def _without(text: str, name: str) -> str:
    """The lock without the block of ``name``'s pin."""
    out, skipping = [], False
    for raw in text.splitlines():
        if PIN.match(raw.strip()) and not raw.startswith(" "):
            skipping = canonicalize_name(raw.split("==")[0]) == name
        elif not raw.startswith(" "):
            skipping = False
        if not skipping:
            out.append(raw)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # a runtime dependency missing from the lock: pip would refuse --require-hashes,
        # --no-deps would ship without it
        (lambda t: _without(t, "aiohttp"), "aiohttp<4,>=3.9 (pyproject.toml) is not pinned"),
        # a pin outside pyproject.toml's range (an old lock after a range was raised)
        (
            lambda t: re.sub(r"(?m)^cryptography==\S+", "cryptography==41.0.7", t),
            "cryptography==41.0.7 is outside",
        ),
        # a pin without its hashes
        (
            lambda t: re.sub(
                r"(?m)^(pyyaml==\S+) \\\n(    --hash=\S+ \\\n)*    --hash=\S+\n", r"\1\n", t
            ),
            "pyyaml has no --hash",
        ),
        # a range instead of a pin
        (lambda t: t.replace("\nsix==", "\nsix>="), "not a pinned requirement"),
        # a pin nobody wants (a dependency dropped from pyproject.toml, its pins left behind)
        (
            lambda t: (
                t
                + "evil==1.0 \\\n    --hash=sha256:"
                + "0" * 64
                + "\n    # via approvalgate (pyproject.toml)\n"
            ),
            "evil is pinned for approvalgate (pyproject.toml) but pyproject.toml does not list it",
        ),
        # a package pulled in by nothing pinned
        (
            lambda t: t + "evil==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via left-pad\n",
            "evil is wanted by nothing pinned here",
        ),
        # an index of someone else's
        (lambda t: "--extra-index-url https://example.invalid/simple\n" + t, "not a pinned"),
    ],
)
def test_a_lock_that_does_not_fit_pyproject_is_refused(mutate: object, expected: str) -> None:
    assert callable(mutate)
    errors = image_errors(mutate(_real_lock()))
    assert any(expected in e for e in errors), errors
