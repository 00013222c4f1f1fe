"""The admission webhook: a thin aiohttp HTTPS shell around :func:`approvals.decide.decide`.

- :mod:`webhook.review`: AdmissionReview in (strict, v1 and v1beta1) and out.
- :mod:`webhook.strictjson`: the strict JSON reader the review parser uses.
- :mod:`webhook.app`: ``POST /validate``, ``/healthz``, ``/readyz``.
- :mod:`webhook.state` and :mod:`webhook.tls`: bundle and certificate, reloaded from files.
- :mod:`webhook.listener`: the TLS listener's bounded connection table.
- :mod:`webhook.metrics`, :mod:`webhook.logs`: the admission metrics, the webhook's loggers.
- :mod:`webhook.server`: one worker, or a supervisor of N workers on one port; drain on SIGTERM.
- :mod:`webhook.devcert`: the throwaway CA behind ``--dev`` (and the tests).

What every long-running process needs (JSON logs, the metrics port, signals and drain,
polling reload of mounted files) is :mod:`approvalgate.runtime`'s; this package brings what
is the webhook's: admission metric names and messages, the listener, the AdmissionReview app.
Nothing is imported here so that each module stays cheap to import on its own. This package
never imports :mod:`compiler` (import-linter contract).
"""
