"""Who sent a request, as far as the API server's ``userInfo`` tells: ServiceAccounts.

A ServiceAccount is not a person: whoever can impersonate it, mint a token for it or run a
pod as it acts as it. The API server authenticates a ServiceAccount token bound to a pod
(the projected token a pod's containers receive, or ``kubectl create token SA
--bound-object-kind Pod``) with the extras below; an impersonated ServiceAccount
(``kubectl --as=system:serviceaccount:NS:NAME``) and a token minted without a pod binding
carry neither. Setting these extras through impersonation needs the separate ``impersonate``
permission on ``userextras/authentication.kubernetes.io/pod-name``, which the built-in
``edit`` and ``admin`` roles do not grant.

Whether a username is a given person (:func:`person_keys`) is asked only to refuse an
approval (nobody approves their own run) or to count two approvers as one person, never to
admit: there the comparison is loose (case, Unicode compatibility forms, invisible
characters and whitespace, every UTS #39 look-alike (its skeleton), an authenticator's
``prefix:``), because one account can reach the API server spelt several ways (an IdP that
matches logins case-insensitively and passes on what was typed; ``--oidc-username-prefix``).
Where a username admits (trusted submitters, GitOps appliers, an ApprovalDecision's
creator, an ApprovalRequest's requester) it is compared exactly.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from typing import Final

from approvalgate.approvals import confusables
from approvalgate.approvals.reasons import is_visible

SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA: Final = "authentication.kubernetes.io/pod-uid"


def is_service_account(username: str) -> bool:
    return username.startswith(SERVICE_ACCOUNT_PREFIX)


def service_account_namespace(username: str) -> str | None:
    """``NS`` of ``system:serviceaccount:NS:NAME``; None for any other username."""
    if not is_service_account(username):
        return None
    namespace, sep, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    return namespace if sep and namespace and name else None


def bound_pod(user_info: Mapping[str, object]) -> str:
    """``pod-name`` when the request's token is bound to a pod (name and uid set), else ""."""
    extra = user_info.get("extra")
    if not isinstance(extra, Mapping):
        return ""
    names, uids = extra.get(POD_NAME_EXTRA), extra.get(POD_UID_EXTRA)
    if not (isinstance(names, list) and isinstance(uids, list) and len(names) == len(uids) == 1):
        return ""
    name, uid = names[0], uids[0]
    return name if isinstance(name, str) and name and isinstance(uid, str) and uid else ""


_LOOK_ALIKES: Final = str.maketrans(
    {
        # Cyrillic letters that render like Latin ones (after casefold)
        "\u0430": "a",
        "\u0435": "e",
        "\u0451": "e",
        "\u043e": "o",
        "\u0440": "p",
        "\u0441": "c",
        "\u0443": "y",
        "\u0445": "x",
        "\u0456": "i",
        "\u0457": "i",
        "\u0458": "j",
        "\u0455": "s",
        "\u0501": "d",
        "\u04bb": "h",
        "\u04cf": "l",
        "\u051b": "q",
        "\u051d": "w",
        # Greek
        "\u03bf": "o",
        "\u03bd": "v",
        "\u03b9": "i",
        "\u03c1": "p",
        "\u03b1": "a",
        "\u03c5": "u",
        "\u03c7": "x",
        # Latin letters that render like others
        "\u0131": "i",
        "\u0261": "g",
        "\u0251": "a",
    }
)


SMALL_CAPITALS: Final = {
    0x0262: "g", 0x026A: "i", 0x0274: "n", 0x0280: "r", 0x028F: "y", 0x0299: "b", 0x029C: "h",
    0x029F: "l", 0x1D00: "a", 0x1D04: "c", 0x1D05: "d", 0x1D07: "e", 0x1D0A: "j", 0x1D0B: "k",
    0x1D0D: "m", 0x1D0F: "o", 0x1D18: "p", 0x1D1B: "t", 0x1D1C: "u", 0x1D20: "v", 0x1D21: "w",
    0x1D22: "z", 0xA730: "f", 0xA731: "s", 0xA7AF: "q",
}  # fmt: skip
"""Every ``LATIN LETTER SMALL CAPITAL X`` (``ᴀ``, which NFKC keeps and UTS #39 does not
map) as the letter it reads as once case is folded (tests/unit/test_confusables.py derives
it from the characters' names)."""


CACHED_CHARS: Final = 1024
"""Usernames up to this long share a cache of 4096 (the API server's are short); a longer
one is an author annotation the requester wrote (up to 256 KiB), kept in a cache of 4 only
(one admission asks for it several times): 4096 of them would hold gigabytes in the
webhook."""


def person_key(username: str) -> str:
    """:func:`_person_key`, cached (:data:`CACHED_CHARS`)."""
    return _cached_key(username) if len(username) <= CACHED_CHARS else _long_key(username)


def person_keys(username: str) -> frozenset[str]:
    """:func:`_person_keys`, cached (:data:`CACHED_CHARS`)."""
    return _cached_keys(username) if len(username) <= CACHED_CHARS else _long_keys(username)


def _person_key(username: str) -> str:
    """``username`` as compared when the question is whether it is a person: NFKC, casefold,
    without invisible characters, whitespace or combining marks, look-alikes folded (common
    ones by hand, then every one by its UTS #39 skeleton, :func:`confusables.skeleton`)."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", username).casefold())
    kept = "".join(c for c in folded if is_visible(c) and not c.isspace())
    near = unicodedata.normalize("NFKC", kept).translate(SMALL_CAPITALS).translate(_LOOK_ALIKES)
    # every UTS #39 confusable, not only the table above: Armenian, Cherokee, small
    # capitals... (the skeleton maps to prototypes some of which are capitals: fold again)
    return unicodedata.normalize("NFKC", confusables.skeleton(near).casefold())


def _person_keys(username: str) -> frozenset[str]:
    """The keys (:func:`person_key`) under which ``username`` is a person: its own, and for
    a username that is not a ServiceAccount's, also that of what follows an authenticator's
    prefix (``oidc:alice@example.com``, ``https://issuer#alice``: the part after the last
    ``:`` or ``#``). Empty for an empty username (nobody)."""
    key = person_key(username)
    if not key:
        return frozenset()
    keys = {key}
    if not is_service_account(username):
        bare = person_key(username[max(username.rfind(":"), username.rfind("#")) + 1 :])
        if bare:
            keys.add(bare)
    return frozenset(keys)


_cached_key = functools.lru_cache(maxsize=4096)(_person_key)
_cached_keys = functools.lru_cache(maxsize=4096)(_person_keys)
_long_key = functools.lru_cache(maxsize=4)(_person_key)
_long_keys = functools.lru_cache(maxsize=4)(_person_keys)
