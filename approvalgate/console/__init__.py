"""``approvalgate console``: a local web application over the approval queue (issue 19).

One process is one user: their kubeconfig credentials and their own signer. The server
(:mod:`approvalgate.console.app`) listens on 127.0.0.1 only; the pages are rendered on the
server from a watch-fed state (:mod:`approvalgate.console.state`); a decision runs the same
code as ``approvalgate approve|reject|withdraw --request``. See docs/design.md, "The console
(issue 19)".
"""
