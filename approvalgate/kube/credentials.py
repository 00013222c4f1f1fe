"""Where the client's address and credentials come from: a kubeconfig or the pod's account.

``kubeconfig``/``context`` arguments win; without them ``$KUBECONFIG`` or ``~/.kube/config``;
and when none of those exists but ``$KUBERNETES_SERVICE_HOST`` is set, the pod's service
account (in-cluster config). Failures are :class:`CredentialsError` with advice, never a
traceback. Impersonation (``--as``/``--as-group``) is a set of default headers: the API server
checks the caller's ``impersonate`` permission and then authorizes every request as that
identity, exactly as for the real one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kubernetes import client, config  # type: ignore[import-untyped]

from approvalgate.approvals.errors import InputError
from approvalgate.kube.errors import CredentialsError


def load_configuration(
    kubeconfig: Path | None = None, context: str | None = None
) -> client.Configuration:
    """The client configuration (server, TLS, token or client certificate)."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and context is None and in_cluster():
            config.load_incluster_config(client_configuration=configuration)
        else:
            # $KUBECONFIG read now, not when the client was imported (its default is fixed then)
            config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise CredentialsError(
            f"cannot load Kubernetes credentials: {exc}",
            advice="pass --kubeconfig FILE (and --context NAME), or run in a pod with a "
            "service account token",
        ) from exc
    return configuration


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(kubeconfig: Path | None = None, context: str | None = None) -> str:
    """The namespace a command works in when none is named, as kubectl chooses it: the
    context's ``namespace``, the pod's own namespace in a cluster, else ``default``."""
    if kubeconfig is None and context is None and in_cluster():
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
        except OSError:
            return "default"
    try:
        contexts, active = config.list_kube_config_contexts(
            config_file=str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or None
        )
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise CredentialsError(
            f"cannot load Kubernetes credentials: {exc}",
            advice="pass --kubeconfig FILE (and --context NAME)",
        ) from exc
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def in_cluster() -> bool:
    """Running in a pod with no kubeconfig of our own: use the service account."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG"):
        return False
    return not (Path.home() / ".kube" / "config").exists()


def impersonation_headers(user: str | None, groups: Sequence[str]) -> dict[str, str]:
    """Impersonate-User / Impersonate-Group headers, one header per group.

    The client sends a dict of headers, so the repeated ``Impersonate-Group`` header is spelt
    with a different letter case each time; HTTP header names are case-insensitive and the API
    server reads every value.
    """
    if groups and not user:
        raise InputError("--as-group needs --as USER")
    headers: dict[str, str] = {}
    if user:
        headers["Impersonate-User"] = user
    base = "impersonate-group"
    letters = [i for i, c in enumerate(base) if c.isalpha()]
    if len(groups) > 2 ** len(letters):
        raise InputError(f"at most {2 ** len(letters)} --as-group values")
    for number, group in enumerate(groups):
        name = list(base)
        for bit, position in enumerate(letters):
            if number >> bit & 1:
                name[position] = name[position].upper()
        headers["".join(name)] = group
    return headers
