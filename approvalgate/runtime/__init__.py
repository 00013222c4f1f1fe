"""What every long-running approvalgate process needs, whatever it serves.

- :mod:`runtime.logs`: JSON log lines with the event's fields (object references).
- :mod:`runtime.metrics_server`: ``GET /metrics`` on a plain-HTTP port, one process or
  prometheus_client's multiprocess mode for a supervisor and its workers.
- :mod:`runtime.drain`: SIGTERM/SIGINT, work in flight finished for a grace period, a worker
  that stops when its supervisor is gone.
- :mod:`runtime.filewatch`: a mounted file polled, reloaded when its content changes, the
  last good content kept when a new one is broken.
- :mod:`runtime.ports`: binding a port, with an error that says what to do.

Nothing here knows what the process serves (admission reviews, AgentRuns, approvals): the
webhook and the controller bring their own metric names, messages and handlers. This
package imports none of webhook, compiler, audit or the CLI (import-linter contract); the
only approvalgate module it imports is :mod:`approvals.errors`.
"""
