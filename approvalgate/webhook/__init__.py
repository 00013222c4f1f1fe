"""The admission webhook: a thin aiohttp HTTPS shell around :func:`approvals.decide.decide`.

- :mod:`webhook.review`: AdmissionReview in (strict, v1 and v1beta1) and out.
- :mod:`webhook.strictjson`: the strict JSON reader the review parser uses.
- :mod:`webhook.app`: ``POST /validate``, ``/healthz``, ``/readyz``.
- :mod:`webhook.state` and :mod:`webhook.tls`: bundle and certificate, reloaded from files.
- :mod:`webhook.metrics`, :mod:`webhook.logs`: Prometheus metrics, JSON log lines.
- :mod:`webhook.server`: one worker, or a supervisor of N workers on one port; drain on SIGTERM.
- :mod:`webhook.devcert`: the throwaway CA behind ``--dev`` (and the tests).

Nothing is imported here so that each module stays cheap to import on its own. This package
never imports :mod:`compiler` (import-linter contract).
"""
