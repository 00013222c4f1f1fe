"""The pinned bundle-signing keys: rendered into the webhook's and the controller's pod spec
(never into the bundle's ConfigMap), the signatures beside the bundle byte for byte, and
arguments the real command line accepts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals.bundle_trust import SIGNATURES_FILE
from approvalgate.cli import build_parser
from approvalgate.commands._runtime_trust import trust_args
from tests.chart.support import (
    SIGNING_VALUES,
    HelmError,
    by_kind,
    component,
    example_values,
    one,
    render,
    webhook_part,
)
from tests.support import bundle_signing

pytestmark = pytest.mark.helm

PINNED = yaml.safe_load(SIGNING_VALUES.read_text())["bundleSigning"]["publicKeys"]


def args_of(objects: list[dict[str, Any]], part: str) -> list[str]:
    found = component(objects, part) if part != "webhook" else webhook_part(objects)
    deployment = one(found, "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def parsed(args: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(args)


def bundle_config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [c for c in by_kind(objects, "ConfigMap") if "bundle.json" in c.get("data", {})]
    return found


def trust_flags(args: list[str]) -> list[str]:
    start = next(i for i, arg in enumerate(args) if arg.startswith(("--bundle-", "--allow-")))
    return args[start:]


@pytest.mark.parametrize("part", ["webhook", "controller"])
def test_the_pinned_keys_are_arguments_of_both_pods(helm: Path, part: str) -> None:
    args = args_of(render(helm, example_values("prod")), part)
    assert trust_flags(args) == [
        "--bundle-key",
        PINNED[0],
        "--bundle-threshold",
        "1",
        "--bundle-min-revision",
        str(yaml.safe_load(example_values("prod").read_text())["policyBundle"].get("revision", 0)),
        "--bundle-environment",
        "prod",  # pinned beside the keys (tests/chart/support.py pins the bundle's)
        "--bundle-floor",  # kept by the controller (tests/chart/test_render_bundle_floor.py)
        "approvalgate-system/approvalgate-bundle-floor",
    ]
    namespace = parsed(args)
    trust = trust_args(namespace)  # what the process does at start: the key text is read
    assert trust.keys == (("--bundle-key", PINNED[0]),) and not trust.allow_unsigned
    assert trust.environment == "prod"
    with pytest.raises(HelmError, match="bundle of environment prod but bundleSigning"):
        render(helm, example_values("prod"), sets=["bundleSigning.environment=production"])


def test_another_environments_signed_bundle_in_the_compiled_values_is_refused(
    helm: Path, tmp_path: Path
) -> None:
    """Whoever edits prod's compiled values puts dev's bundle there, with its signatures and
    revision (one key signs every environment). The environment pin came from the content,
    so the pods pinned dev and enforced dev's bundle (enforcement warn: every run admitted).
    With keys the pin is the operator's: an empty one or one that differs fails the render,
    and the pods refuse dev's bundle anyway (other-environment)."""
    values = yaml.safe_load(example_values("prod").read_text())
    values["policyBundle"] = yaml.safe_load(example_values("dev").read_text())["policyBundle"]
    edited = tmp_path / "prod-with-dev.yaml"
    edited.write_text(yaml.safe_dump(values))
    with pytest.raises(HelmError, match=r"bundleSigning\.environment is empty"):
        render(helm, edited, sets=["bundleSigning.environment="])
    with pytest.raises(HelmError, match=r"bundle of environment dev but bundleSigning"):
        render(helm, edited, sets=["bundleSigning.environment=prod"])


def test_two_keys_a_threshold_and_the_minimum_revision(helm: Path, tmp_path: Path) -> None:
    second = tmp_path / "second.pem"
    second.write_text(bundle_signing.public_pem(bundle_signing.other_signer()))
    values = tmp_path / "keys.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "bundleSigning": {"publicKeys": [PINNED[0], second.read_text()], "threshold": 2},
                "policyBundle": {"revision": 7},
            }
        )
    )
    objects = render(helm, values)
    for part in ("webhook", "controller"):
        flags = trust_flags(args_of(objects, part))
        assert flags[flags.index("--bundle-threshold") + 1] == "2"
        assert flags[flags.index("--bundle-min-revision") + 1] == "7"  # policyBundle.revision
        assert [flags[i + 1] for i, f in enumerate(flags) if f == "--bundle-key"] == [
            PINNED[0],
            second.read_text(),
        ]
        assert trust_args(parsed(args_of(objects, part))).threshold == 2
    pinned = render(helm, values, sets=["bundleSigning.minRevision=9"])
    flags = trust_flags(args_of(pinned, "controller"))
    assert flags[flags.index("--bundle-min-revision") + 1] == "9"


def test_unsigned_only_when_asked_and_loudly(helm: Path) -> None:
    objects = render(
        helm, sets=["bundleSigning.publicKeys=null", "bundleSigning.allowUnsigned=true"]
    )
    for part in ("webhook", "controller"):
        flags = trust_flags(args_of(objects, part))
        assert flags == ["--allow-unsigned-bundle", "--bundle-min-revision", "0"]
        assert trust_args(parsed(args_of(objects, part))).allow_unsigned


def test_the_signatures_sit_beside_the_bundle_byte_for_byte(helm: Path, tmp_path: Path) -> None:
    content = '{"apiVersion": "x"}\n'
    signatures = bundle_signing.signatures_text(content.encode())
    values = tmp_path / "signed.yaml"
    values.write_text(
        yaml.safe_dump({"policyBundle": {"content": content, "signatures": signatures}})
    )
    config_map = bundle_config_map(render(helm, values))
    assert config_map["data"]["bundle.json"] == content
    assert config_map["data"][SIGNATURES_FILE] == signatures
    # the keys are not in it: editing the ConfigMap cannot change who signs
    assert PINNED[0] not in yaml.safe_dump(config_map)
    unsigned = bundle_config_map(render(helm))
    assert SIGNATURES_FILE not in unsigned["data"]
