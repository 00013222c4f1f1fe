"""``approvalgate controller``: the approval queue's reconciler (issue 15).

- :mod:`controller.reconcile` and :mod:`controller.ledger`: pure plans (what to write for an
  ApprovalRequest; the ApprovalUse and the finalizer of an AgentRun, and the ApprovalUse of
  a run a Schedule or an OrchestrationRun created; what may be collected);
- :mod:`controller.announce`: the Event, SignalDelivery and chat message of a transition;
- :mod:`controller.caches`: the watch caches (the parents of derived runs too) and the
  cluster view over them;
- :mod:`controller.workqueue`: keys, deduplicated, delayed, retried with backoff;
- :mod:`controller.manager`: the loop that reads, plans and writes (leader only);
- :mod:`controller.notify`: outgoing notifications off the reconcile path;
- :mod:`controller.service`: the process (bundle file, health and metrics ports, drain).

It sits beside webhook, audit and compiler: it imports kube, runtime and approvals, never
those (import-linter). The controller is a courier, not an authority: the runs it creates
pass the webhook on their records like any other.
"""
