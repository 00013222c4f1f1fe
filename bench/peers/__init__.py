"""`make bench-peers` (issue 18): approvalgate measured against the admission gates a user
would pick instead (Kyverno, Gatekeeper), on the project's own e2e control plane."""
