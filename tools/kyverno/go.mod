module github.com/approvalgate/approvalgate/tools/kyverno

go 1.26.6

// Copied from github.com/kyverno/kyverno v1.19.1's own go.mod: replaces apply only in the main module.
replace k8s.io/pod-security-admission => github.com/kyverno/pod-security-admission v0.0.0-20251031094455-46f20778634f

require github.com/kyverno/kyverno v1.19.1 // indirect
