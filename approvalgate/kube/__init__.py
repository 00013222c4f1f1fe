"""The only package that talks to the Kubernetes API (the official ``kubernetes`` client).

- :mod:`kube.credentials`: a kubeconfig (path, context, ``$KUBECONFIG``) or the pod's service
  account; impersonation headers;
- :mod:`kube.client`: :class:`~kube.client.Client`, one connection; every request and its
  errors (:mod:`kube.errors`, all :class:`ApprovalgateError`);
- :mod:`kube.resources`: which objects (group, version, plural) and their paths;
- :mod:`kube.lists`: paginated lists (``limit``/``continue``) with the list's resourceVersion;
- :mod:`kube.objects`: get by name, server-side apply; :mod:`kube.discovery`: served versions,
  our own identity;
- :mod:`kube.watches`: a watch that resumes from the last resourceVersion (bookmarks on),
  retries with :mod:`kube.backoff`, and stops on 410 Gone so the caller lists again;
- :mod:`kube.informer` and :mod:`kube.store`: a watch-fed, thread-safe read cache of one
  resource, with a synced flag, the time of the last contact and change handlers.

Nothing is imported here: ``import approvalgate.kube.errors`` does not load ``kubernetes``.
"""
