"""The approvals core: pure, no I/O, shared by the CLI, CI and the webhook.

- :func:`decide` admits or denies one AdmissionReview request under a bundle at a time.
- :func:`compile_bundle` turns ApprovalPolicy and Approver documents into a bundle;
  :func:`load_bundle` / :func:`parse_bundle_text` load one for decide().
- :mod:`approvals.records` signs and parses approval records (DSSE + in-toto);
  :func:`spec_digest` is what they bind to.
- :mod:`approvals.keys` is the one room for key types, signers (by reference scheme),
  key generation, public keys, and the one signature check the bundle's verifier uses.

Names are imported on first use (PEP 562), so importing one submodule, e.g. for
``approvalgate check``, does not load the signature stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from approvalgate.approvals.bundle import Bundle, load_bundle, parse_bundle_text
    from approvalgate.approvals.decide import Decision, decide, matching_policies
    from approvalgate.approvals.digest import spec_digest
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle

_WHERE = {
    "Bundle": "bundle",
    "load_bundle": "bundle",
    "parse_bundle_text": "bundle",
    "Decision": "decide",
    "decide": "decide",
    "matching_policies": "decide",
    "spec_digest": "digest",
    "ApprovalgateError": "errors",
    "BundleSettings": "policy",
    "compile_bundle": "policy",
    "dump_bundle": "policy",
}

__all__ = [
    "ApprovalgateError",
    "Bundle",
    "BundleSettings",
    "Decision",
    "compile_bundle",
    "decide",
    "dump_bundle",
    "load_bundle",
    "matching_policies",
    "parse_bundle_text",
    "spec_digest",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'approvals' has no attribute {name!r}")
    return getattr(import_module(f"approvalgate.approvals.{_WHERE[name]}"), name)
