#!/usr/bin/env bash
# The main job on the bundled example (run by `make demo`): keys, approvals, the same
# decision the admission webhook makes (admitting and denying), and the policy repo
# compiled into the output Argo CD syncs, checked up to date as CI does.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$here/gitops-repo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
expect_denied() { if "$@"; then echo "UNEXPECTED: admitted" >&2; exit 1; fi; }
expect_exit_1() { local rc=0; "$@" || rc=$?; if [ "$rc" != 1 ]; then echo "UNEXPECTED: exit $rc, not 1" >&2; exit 1; fi; }

step "Approvers create their keys (private key stays with them, the Approver document goes to git)"
approvalgate keygen alice --out "$work/keys" --groups platform-leads,agents-admin --usernames alice@example.com
approvalgate keygen bob --out "$work/keys" --groups platform-leads --usernames bob@example.com
approvalgate keygen oncall --out "$work/keys" --groups sre --usernames oncall@example.com
policies=("$repo/policies" "$work/keys")

step "A requester's AgentRun without approvals is denied in prod (what kubectl apply would get)"
cp "$here/requests/codex-onboarding.yaml" "$work/run.yaml"
expect_denied approvalgate verify "$work/run.yaml" --policies "${policies[@]}" --env prod --user requester

step "Which policies apply and who may approve"
approvalgate explain "$work/run.yaml" --policies "${policies[@]}" --env prod --user requester

step "alice and bob approve this exact spec for staging (a signed record each, in an annotation)"
approvalgate approve "$work/run.yaml" --env staging --key "$work/keys/alice.key" --approver alice --ttl 4h --in-place
approvalgate approve "$work/run.yaml" --env staging --key "$work/keys/bob.key" --approver bob --ttl 4h --in-place

step "Admitted in staging; the same file is denied in prod: an approval names its environment"
approvalgate verify "$work/run.yaml" --policies "${policies[@]}" --env staging --user requester
expect_denied approvalgate verify "$work/run.yaml" --policies "${policies[@]}" --env prod --user requester

step "alice and bob approve it for prod too; now the run is admitted in prod"
approvalgate approve "$work/run.yaml" --env prod --key "$work/keys/alice.key" --approver alice --ttl 4h --in-place
approvalgate approve "$work/run.yaml" --env prod --key "$work/keys/bob.key" --approver bob --ttl 4h --in-place
approvalgate verify "$work/run.yaml" --policies "${policies[@]}" --env prod --user requester

step "alice submitting it herself (as her Kubernetes username) is denied: nobody approves their own run"
expect_denied approvalgate verify "$work/run.yaml" --policies "${policies[@]}" --env prod --user alice@example.com

step "Changing the spec after approval is denied: approvals bind the exact spec"
sed -i 's/codex\/onboarding-flow/codex\/something-else/' "$work/run.yaml"
expect_denied approvalgate verify "$work/run.yaml" --policies "${policies[@]}" --env prod --user requester

step "The policy repo compiles into what Argo CD syncs, and CI's check finds it up to date"
approvalgate validate "$repo"
approvalgate compile "$repo" --out "$work/rendered"
find "$work/rendered/prod" -type f | sed "s|$work/||" | sort
approvalgate check "$repo"

step "The run kept in git, as rendered for prod (with the use finalizer), verifies against the compiled prod bundle, applied by Argo CD from its pod (records signed 2026-11-21)"
approvalgate verify "$repo/rendered/prod/agentruns/agents.codex-release-notes.yaml" --bundle "$repo/rendered/prod/bundle.json" \
  --user system:serviceaccount:argocd:argocd-application-controller \
  --pod argocd-application-controller-0 --now 2026-11-21T12:00:00Z

step "The bundles are signed: a copy of the repo changes a policy, compile drops the stale signatures, check fails until the bundles are signed again"
cp -r "$repo" "$work/repo"
sed -i 's/timeoutSeconds: 86400/timeoutSeconds: 43200/' "$work/repo/policies/default-approval.yaml"
approvalgate compile "$work/repo"
expect_exit_1 approvalgate check "$work/repo" --quiet
# EXAMPLE key: its private half is public (examples/keys/README.md); CI signs with a KMS or HSM key
approvalgate compile "$work/repo" --sign "$here/keys/release-bundle-signing.key"
approvalgate check "$work/repo"
grep -h '"revision"' "$repo/rendered/prod/bundle.json" "$work/repo/rendered/prod/bundle.json"

step "verify --bundle trusts a bundle only when its signatures verify with the pinned key (approvalgate.yaml's bundleSigning, or --bundle-key): an edited or unsigned bundle is refused"
mkdir -p "$work/swapped"
cp "$work/rendered/prod/bundle.json" "$work/rendered/prod/bundle.sig.json" "$work/swapped/"
sed -i 's/"requiredApprovals": 2/"requiredApprovals": 1/' "$work/swapped/bundle.json"
expect_exit_1 approvalgate verify "$repo/runs/codex-release-notes.yaml" --bundle "$work/swapped/bundle.json" \
  --bundle-key "$repo/bundle-signing/release.pub"
rm "$work/swapped/bundle.sig.json"
expect_exit_1 approvalgate verify "$repo/runs/codex-release-notes.yaml" --bundle "$work/swapped/bundle.json" \
  --bundle-key "$repo/bundle-signing/release.pub"

printf '\n\033[1mdemo finished: admitted with approvals for its environment; denied without, with approvals for staging in prod, for self-approval and after a change; the policy repo compiled, signed and checked; an edited or unsigned bundle refused\033[0m\n'
