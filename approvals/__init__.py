"""The approvals core: pure, no I/O, shared by the CLI, CI and the webhook.

- :func:`decide` admits or denies one AdmissionReview request under a bundle at a time.
- :func:`compile_bundle` turns ApprovalPolicy and Approver documents into a bundle;
  :func:`load_bundle` / :func:`parse_bundle_text` load one for decide().
- :mod:`approvals.records` signs and parses approval records (DSSE + in-toto);
  :func:`spec_digest` is what they bind to.
"""

from approvals.bundle import Bundle, load_bundle, parse_bundle_text
from approvals.decide import Decision, decide, matching_policies
from approvals.digest import spec_digest
from approvals.errors import ApprovalgateError
from approvals.policy import BundleSettings, compile_bundle, dump_bundle

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
