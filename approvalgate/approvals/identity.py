"""Who sent a request, as far as the API server's ``userInfo`` tells: ServiceAccounts.

A ServiceAccount is not a person: whoever can impersonate it, mint a token for it or run a
pod as it acts as it. The API server authenticates a ServiceAccount token bound to a pod
(the projected token a pod's containers receive, or ``kubectl create token SA
--bound-object-kind Pod``) with the extras below; an impersonated ServiceAccount
(``kubectl --as=system:serviceaccount:NS:NAME``) and a token minted without a pod binding
carry neither. Setting these extras through impersonation needs the separate ``impersonate``
permission on ``userextras/authentication.kubernetes.io/pod-name``, which the built-in
``edit`` and ``admin`` roles do not grant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

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
