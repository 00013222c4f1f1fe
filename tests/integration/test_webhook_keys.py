"""Keys over HTTPS (fifth red-team pass, keys and signers): the production webhook serving a
signed bundle in which an approver lists one key twice, its PEM retired (a notAfter) and
its OpenSSH line without a window, as a bundle compiled before compile refused that. The
thief's approval through the line is not counted: the key's window is the one its entries
share (tests/unit/test_key_material.py builds the case)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import ServerThread, TestPKI
from tests.support import bundle_signing
from tests.unit.test_ed25519_points import NOW
from tests.unit.test_key_material import RETIRED_DENIAL, retired_in_one_form


def test_a_key_retired_in_one_form_signs_in_no_form_over_https(
    pki: TestPKI, tmp_path: Path
) -> None:
    case = retired_in_one_form()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(case.bundle_text)
    bundle_signing.sign_file(bundle)
    options = bundle_signing.serve_options()
    server = ServerThread(pki, bundle, clock=lambda: NOW, **options)
    with server, server.client() as client:
        response = client.review(case.request).response
    assert response["allowed"] is False, response
    assert RETIRED_DENIAL in response["status"]["message"], response
