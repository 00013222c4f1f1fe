"""``approvalgate audit``: what admission cannot see, checked against a live cluster.

Admission only judges new requests. This package looks at what is already there:

- :mod:`audit.runs`: every stored AgentRun decided by :func:`approvals.decide.decide`, as a
  CREATE of its current spec (the requester is not recorded on the object);
- :mod:`audit.webhook`: the live ValidatingWebhookConfiguration against what the chart
  renders; only drift that weakens the gate is a finding;
- :mod:`audit.policies`: live ApprovalPolicy CRs against the compiled ones;
- :mod:`audit.rbac`: who can act as a trusted ServiceAccount (impersonate it, mint its tokens,
  run or enter its pods, or grant itself these), from the cluster's Roles and bindings;
- :mod:`audit.reports`: PolicyReports (``wgpolicyk8s.io/v1alpha2``) and text/JSON/JUnit output;
- :mod:`audit.cluster`: what the audit asks of the API server (paginated lists, a get by
  name, server-side apply), through :mod:`approvalgate.kube`, the only package that imports
  the ``kubernetes`` client;
- :mod:`audit.runner`: the audit from start to end.

Everything but :mod:`audit.cluster` and :mod:`audit.runner` is pure and unit tested. Nothing
imports :mod:`kubernetes` until the audit runs, so the compiler's commands never load it.
"""
