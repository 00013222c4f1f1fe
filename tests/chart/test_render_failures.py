"""Impossible values fail the render with a message that says what to do (exact text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.support import HelmError, template

pytestmark = pytest.mark.helm

FAILURES: dict[str, tuple[list[str], str]] = {
    "one replica with a PDB": (
        ["replicaCount=1"],
        "ERROR: podDisruptionBudget.enabled needs replicaCount >= 2 (got 1): with one replica a "
        "PodDisruptionBudget with minAvailable 1 blocks every node drain. Raise replicaCount or "
        "set podDisruptionBudget.enabled=false.",
    ),
    "PDB keeps every pod": (
        ["replicaCount=3", "podDisruptionBudget.minAvailable=3"],
        "ERROR: podDisruptionBudget.minAvailable (3) must be below replicaCount (3), or no pod "
        "may ever be evicted.",
    ),
    "existing secret without a name": (
        ["tls.mode=existingSecret"],
        "ERROR: tls.mode=existingSecret needs tls.existingSecret.name: a kubernetes.io/tls "
        "Secret in the release namespace.",
    ),
    "existing secret without a CA": (
        ["tls.mode=existingSecret", "tls.existingSecret.name=mine"],
        "ERROR: tls.mode=existingSecret needs tls.existingSecret.caBundle: the base64-encoded "
        "PEM of the CA that signed the Secret's certificate (e.g. `base64 -w0 ca.crt`).",
    ),
    "existing secret with a CA that is no certificate": (
        [
            "tls.mode=existingSecret",
            "tls.existingSecret.name=mine",
            "tls.existingSecret.caBundle=aGVsbG8=",
        ],
        "ERROR: tls.mode=existingSecret needs tls.existingSecret.caBundle",
    ),
    "a secret name in certManager mode": (
        ["tls.existingSecret.name=mine"],
        "ERROR: tls.existingSecret.name is set but tls.mode is certManager: set "
        "tls.mode=existingSecret to use it.",
    ),
    "a ServiceMonitor without metrics": (
        ["metrics.enabled=false", "metrics.serviceMonitor.enabled=true"],
        "ERROR: metrics.serviceMonitor.enabled needs metrics.enabled=true: there is nothing to "
        "scrape.",
    ),
    "one port for both": (
        ["metrics.port=8443"],
        "ERROR: metrics.port and webhook.port must differ.",
    ),
    "one controller replica with a PDB": (
        ["controller.replicas=1"],
        "ERROR: controller.podDisruptionBudget.enabled needs controller.replicas >= 2 (got 1): "
        "with one replica a PodDisruptionBudget with minAvailable 1 blocks every node drain. "
        "Raise controller.replicas or set controller.podDisruptionBudget.enabled=false.",
    ),
    "controller PDB keeps every pod": (
        ["controller.replicas=2", "controller.podDisruptionBudget.minAvailable=2"],
        "ERROR: controller.podDisruptionBudget.minAvailable (2) must be below controller.replicas "
        "(2), or no controller pod may ever be evicted.",
    ),
    "one controller port for both": (
        ["controller.metricsPort=8081"],
        "ERROR: controller.metricsPort and controller.healthPort must differ.",
    ),
    "no bundle-signing key": (
        ["bundleSigning.publicKeys=null"],
        "ERROR: no bundle-signing key is pinned (bundleSigning.publicKeys is empty): the webhook "
        "and the controller would refuse to start. Pin the public keys that sign your bundles, "
        "e.g. --set-file 'bundleSigning.publicKeys[0]=keys/bundle-signing.pub'",
    ),
    "keys and unsigned bundles": (
        ["bundleSigning.allowUnsigned=true"],
        "ERROR: bundleSigning.publicKeys and bundleSigning.allowUnsigned=true: choose one",
    ),
    "a threshold above the keys": (
        ["bundleSigning.threshold=2"],
        "ERROR: bundleSigning.threshold (2) is more than the 1 keys of bundleSigning.publicKeys",
    ),
    "an issuerRef without a name": (
        ["tls.certManager.issuerRef.kind=ClusterIssuer"],
        "tls.certManager.issuerRef.name is required when tls.certManager.issuerRef is set",
    ),
}

SCHEMA_REJECTS: dict[str, str] = {
    "an unknown top-level key": "replicas=3",
    "an unknown nested key": "policyBundle.checksum=abc",
    "a timeout above 30 s": "webhook.timeoutSeconds=31",
    "a string where an integer goes": "replicaCount=two",
    "an unknown TLS mode": "tls.mode=selfSigned",
    "a generation that is no hash": "policyBundle.generation=latest",
    "an anti-affinity that does not exist": "podAntiAffinity=always",
    "an unknown audit key": "audit.image=other",
    "an audit output the command does not know": "audit.output=xml",
    "an audit namespace that is no DNS label": "audit.namespaces={Agents}",
    "an audit namespace twice": "audit.namespaces={agents,agents}",
    "an empty audit schedule": "audit.schedule=",
    "an audit that may never run": "audit.activeDeadlineSeconds=0",
    "a negative audit history": "audit.failedJobsHistoryLimit=-1",
    "audit.enabled as a string": "audit.enabled=yes",
    "an unknown controller key": "controller.image=other",
    "zero controller replicas": "controller.replicas=0",
    "a watched namespace that is no DNS label": "controller.namespaces={Agents}",
    "a lease name that is no DNS name": "controller.leaseName=Leader!",
    "a notify secret key with a slash": "controller.notify.secretKey=a/b",
    "a cluster view that is no boolean": "webhook.clusterView=auto",
    "an API server port out of range": "networkPolicy.apiServerPorts={70000}",
    "an unknown userRoles key": "userRoles.aggregateToAdmin=true",
    "crds.install as a string": "crds.install=yes",
    "a zero bundle-signing threshold": "bundleSigning.threshold=0",
    "a negative minimum revision": "bundleSigning.minRevision=-1",
    "an unknown bundleSigning key": "bundleSigning.keys=x",
    "a negative bundle revision": "policyBundle.revision=-1",
}


@pytest.mark.parametrize(("sets", "message"), FAILURES.values(), ids=FAILURES.keys())
def test_impossible_values_fail_with_advice(helm: Path, sets: list[str], message: str) -> None:
    with pytest.raises(HelmError) as caught:
        template(helm, sets=sets)
    assert message in caught.value.stderr


@pytest.mark.parametrize("item", SCHEMA_REJECTS.values(), ids=SCHEMA_REJECTS.keys())
def test_the_schema_rejects(helm: Path, item: str) -> None:
    with pytest.raises(HelmError) as caught:
        template(helm, sets=[item])
    assert "values don't meet the specifications of the schema" in caught.value.stderr
