"""The revision floor kept in the cluster: a signed bundle never goes back, even at start.

The pinned ``--bundle-min-revision`` is the chart's ``bundleSigning.minRevision``, which
defaults to ``policyBundle.revision``: whoever edits the compiled values sets both, so
putting back an older signed bundle with its old revision would roll the pods onto a floor
the old bundle meets. TUF clients answer rollback with state that only moves forward; so
does approvalgate: the controller records, per environment, the highest signed revision it
has put in force in one ConfigMap of the release namespace that only its ServiceAccount may
write (``--bundle-floor NAMESPACE/NAME``; RBAC limited to that name), and only ever raises
it. The webhook and the controller read it each time they open a new content of the bundle
(a file event, never an admission) and refuse a signed bundle below it
(:data:`BELOW_FLOOR`), so a pod started on an older bundle is never ready; a floor that
cannot be read refuses too (:data:`FLOOR_UNKNOWN`, retried), fail closed.

The ConfigMap's ``data`` maps :func:`floor_key` of an environment to the revision, a decimal
string. Pure: this module parses and computes; :mod:`kube.floor` reads and writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final, Protocol

from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.bundle_trust import BELOW_FLOOR, FLOOR_UNKNOWN, BundleRefused

FLOOR_REASONS: Final = (BELOW_FLOOR, FLOOR_UNKNOWN)
"""Refusals that a later read of the floor may lift: the floor lowered by an operator, the
API server back (see :func:`read_again`)."""


def read_again(reason: str, in_force: bool) -> bool:
    """Whether a content refused for ``reason`` is opened again later: a floor that could not
    be read, always (a new bundle must not be missed for an API server's blip); a bundle below
    the floor, only while none is in force (a pod not ready until an operator lowers it;
    with one in force, nothing is waiting, and the refusal is not logged every 10 s)."""
    return reason == FLOOR_UNKNOWN or (reason == BELOW_FLOOR and not in_force)


ANY_ENVIRONMENT: Final = "any-environment"
"""The key of a process that enforces any environment (``--bundle-environment`` unset)."""
_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_REVISION: Final = re.compile(r"^(0|[1-9][0-9]{0,17})$")


class FloorReader(Protocol):
    """Reads the floor now (:mod:`kube.floor`); raises :class:`BundleRefused`
    (:data:`FLOOR_UNKNOWN`) when it cannot."""

    where: str
    """What holds the floor, for messages (``ConfigMap/NAMESPACE/NAME``)."""

    def read(self, environment: str) -> int: ...


def floor_key(environment: str) -> str:
    """The ConfigMap data key of ``environment`` (a valid key: a ConfigMap refuses others)."""
    key = environment or ANY_ENVIRONMENT
    if not _KEY.fullmatch(key):
        raise ValueError(f"environment {environment!r} cannot name a ConfigMap key")
    return key


def parse_reference(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of --bundle-floor; ValueError otherwise."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"{text!r} is not NAMESPACE/NAME")
    return namespace, name


def lower_command(where: str, environment: str, revision: int) -> str:
    """The documented command of an operator who deliberately lowers the floor in
    ``where`` (``ConfigMap/NAMESPACE/NAME``) to ``revision``."""
    _, namespace, name = where.split("/", 2)
    patch = json.dumps({"data": {floor_key(environment): str(revision)}}, separators=(",", ":"))
    return f"kubectl -n {namespace} patch configmap {name} --type merge -p '{patch}'"


def read_floor(data: Mapping[str, str] | None, environment: str, source: str) -> int:
    """The floor of ``environment`` in a ConfigMap's ``data`` (None: no ConfigMap yet); 0
    when none is recorded (first install); a :class:`BundleRefused` when it is malformed."""
    if not data:
        return 0
    text = data.get(floor_key(environment))
    if text is None:
        return 0
    if not isinstance(text, str) or not _REVISION.fullmatch(text):
        raise BundleRefused(
            FLOOR_UNKNOWN,
            f"{source} key {floor_key(environment)!r} is {text!r}, not a revision",
            advice="only the controller writes it; set it to the revision in force "
            "(docs/deploy.md, bundle signing: the revision floor)",
        )
    return int(text)


def raised(data: Mapping[str, str] | None, environment: str, revision: int) -> dict[str, str]:
    """The ``data`` with ``environment``'s floor raised to ``revision`` (never lowered: a
    higher or malformed entry is kept as it is; the caller writes only when it changed)."""
    new = dict(data or {})
    key = floor_key(environment)
    current = new.get(key)
    if current is not None and not (isinstance(current, str) and _REVISION.fullmatch(current)):
        return new  # malformed: refused by read_floor, never overwritten by a raise
    if current is None or int(current) < revision:
        new[key] = str(revision)
    return new


def check_floor(bundle: Bundle, floor: int, source: str, where: str) -> None:
    """Refuse ``bundle`` below ``floor`` (recorded in ``where``) with what to do."""
    if bundle.revision >= floor:
        return
    raise BundleRefused(
        BELOW_FLOOR,
        f"{source} has revision {bundle.revision}, below revision {floor} that this "
        f"environment ({bundle.environment!r}) has already enforced (recorded in {where}): "
        "an older bundle put back (rollback)",
        advice=f"deploy a bundle of revision {floor} or higher (to undo a policy change, "
        "revert it in the policy repo, compile and sign again: the revision rises); only to "
        "go back deliberately, an operator lowers the floor: "
        f"`{lower_command(where, bundle.environment, bundle.revision)}` "
        "(docs/deploy.md, the revision floor)",
    )
