"""The compiler on the example repo and on hostile repos: validate, compile, check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from approvalgate.approvals.structural import check_against_crd
from approvalgate.cli import main
from approvalgate.compiler import repo as repo_module
from approvalgate.compiler.output import read_tree
from tests.support.paths import UPSTREAM_AGENTS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitops-repo"
SIGNING_KEY = ROOT / "examples" / "keys" / "release-bundle-signing.key"  # example only


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLE, target)
    return target


def test_check_passes_on_committed_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "check", str(EXAMPLE)) == (0, "up to date: dev, prod, staging\n", "")


def test_changing_a_spec_makes_check_fail_with_a_diff(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    policy = repo / "policies" / "codex-two-person.yaml"
    policy.write_text(policy.read_text().replace("requiredApprovals: 2", "requiredApprovals: 1"))
    code, out, err = run(capsys, "check", str(repo))
    assert code == 1
    assert "stale: rendered/prod/bundle.json\n" in err
    assert "stale: rendered/prod/approvalpolicies/agents.codex-two-person.yaml\n" in err
    assert '-      "requiredApprovals": 2,\n+      "requiredApprovals": 1,\n' in out
    assert "--- a/rendered/prod/bundle.json\n+++ b/rendered/prod/bundle.json\n" in out
    assert err.endswith(f"run `approvalgate compile {repo}` and commit the result\n")
    code, _, err = run(capsys, "compile", str(repo))
    assert code == 0
    assert "signature(s) removed" in err  # the old signatures are over the old bundle
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1
    assert f"run `approvalgate compile {repo} --sign REF`" in err
    assert run(capsys, "compile", str(repo), "--sign", str(SIGNING_KEY))[0] == 0
    assert run(capsys, "check", str(repo))[0] == 0


def test_deleting_a_spec_orphans_its_output(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    (repo / "egress" / "runners.yaml").unlink()
    code, out, err = run(capsys, "check", str(repo))
    assert code == 1
    for env in ("dev", "prod", "staging"):
        assert f"orphan: rendered/{env}/networkpolicies/agents.runners.yaml\n" in err
    assert "-kind: NetworkPolicy\n" in out
    run(capsys, "compile", str(repo))
    assert not (repo / "rendered" / "prod" / "networkpolicies").exists()


def test_removed_environment_is_orphaned_then_removed(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    config = repo / "approvalgate.yaml"
    text = config.read_text()
    start = text.index("  staging:")
    config.write_text(text[:start] + text[text.index("  prod:") :])
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1 and "orphan: rendered/staging/bundle.json\n" in err
    code, out, _ = run(capsys, "compile", str(repo))
    assert "rendered/staging/ (removed: no such environment)" in out
    assert run(capsys, "check", str(repo))[0] == 0


def test_a_stray_file_in_the_output_is_an_orphan(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    (repo / "rendered" / "dev" / "networkpolicies" / "hand-made.yaml").write_text("kind: X\n")
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1 and err.startswith("orphan: rendered/dev/networkpolicies/hand-made.yaml\n")


def test_compile_is_idempotent_and_leaves_unchanged_output_alone(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    before = {p: p.stat().st_mtime_ns for p in (repo / "rendered").rglob("*")}
    assert run(capsys, "compile", str(repo)) == (0, "up to date: dev, prod, staging\n", "")
    assert {p: p.stat().st_mtime_ns for p in (repo / "rendered").rglob("*")} == before


@pytest.mark.parametrize(
    ("seed", "zone", "locale"),
    [
        ("0", "UTC", "C.UTF-8"),
        ("1", "Asia/Tokyo", "C"),
        ("4242", "America/St_Johns", "POSIX"),
    ],
)
def test_output_is_byte_identical_across_hash_seeds_zones_and_locales(
    tmp_path: Path, seed: str, zone: str, locale: str
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": zone, "LC_ALL": locale}
    subprocess.run(
        [sys.executable, "-m", "approvalgate", "compile", str(EXAMPLE), "--out", str(out)],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    assert read_tree(out) == read_tree(EXAMPLE / "rendered")


def test_target_values_file_keeps_comments_and_other_keys() -> None:
    text = (EXAMPLE / "apps" / "agents" / "values-prod.yaml").read_text()
    assert text.startswith('# Values of the agents chart in prod (Argo CD app "agents-prod").\n')
    assert "  tag: v1.8.0  # pinned by the release process\n" in text
    values = yaml.safe_load(text)
    rendered = yaml.safe_load((EXAMPLE / "rendered" / "prod" / "agents-values.yaml").read_text())
    assert values["networkPolicy"] == rendered["networkPolicy"]
    assert values["replicaCount"] == 2


def test_rendered_output_is_valid_for_its_consumers() -> None:
    values_schema = json.loads((UPSTREAM_AGENTS / "values.schema.json").read_text())
    crd = yaml.safe_load(
        (UPSTREAM_AGENTS / "crds" / "approvals.proompteng.ai_approvalpolicies.yaml").read_text()
    )
    for env in ("dev", "prod", "staging"):
        folder = EXAMPLE / "rendered" / env
        values = yaml.safe_load((folder / "agents-values.yaml").read_text())
        assert list(Draft7Validator(values_schema).iter_errors(values)) == []
        for path in (folder / "approvalpolicies").glob("*.yaml"):
            obj = yaml.safe_load(path.read_text())
            assert check_against_crd(obj, crd["spec"]["versions"][0]["schema"]) == []
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        listed = set(kustomization["resources"])
        on_disk = {p.relative_to(folder).as_posix() for p in folder.glob("*/*.yaml")}
        assert listed == on_disk


def test_disabled_egress_renders_no_policy(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    for name in ("runners.yaml", "control-plane.yaml"):
        path = repo / "egress" / name
        path.write_text(path.read_text().replace("spec:\n", "spec:\n  enabled: false\n"))
    assert run(capsys, "compile", str(repo))[0] == 0
    prod = repo / "rendered" / "prod"
    assert not (prod / "networkpolicies").exists()
    values = yaml.safe_load((prod / "agents-values.yaml").read_text())["networkPolicy"]
    assert values["enabled"] is False and values["egress"] == []


def test_errors_from_several_files_are_reported_at_once(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    (repo / "policies" / "extra.yaml").write_text(
        "apiVersion: approvals.proompteng.ai/v1alpha1\nkind: ApprovalPolicy\n"
        "metadata:\n  name: extra\nspec:\n  approvers: [nobody]\n  requiredApprovals: 1\n"
    )
    runners = repo / "egress" / "runners.yaml"
    runners.write_text(runners.read_text().replace("140.82.112.0/20", "140.82.112.1/20"))
    code, out, err = run(capsys, "validate", str(repo))
    assert code == 1 and out == ""
    assert "policies/extra.yaml:6:15: $.spec.approvers[0]: 'nobody' is neither an Approver" in err
    assert "egress/runners.yaml:14:11: $.spec.destinations[0].cidrs[0].cidr:" in err
    assert "did you mean 140.82.112.0/20" in err


def test_a_trusted_service_account_in_the_runs_namespace_is_located(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    """Class 17: the example as it was (the submitter beside the runs) no longer compiles."""
    path = repo / "policies" / "codex-two-person.yaml"
    path.write_text(
        path.read_text().replace("agents-system:submission-api", "agents:submission-api")
    )
    code, out, err = run(capsys, "validate", str(repo))
    assert code == 1 and out == ""
    assert (
        "policies/codex-two-person.yaml:28:9: $.spec.trustedSubmitters.users[0]: trusted "
        "submitter 'system:serviceaccount:agents:submission-api' is a ServiceAccount in "
        "namespace 'agents', where this policy enforces approvals"
    ) in err
    assert "trust system:serviceaccount:agents-system:submission-api" in err


def test_upstream_sample_policy_compiles_with_a_warning(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    sample = (UPSTREAM_AGENTS / "examples" / "approvalpolicy-sample.yaml").read_text()
    with_approvers = "  defaultDecision: deny\n  approvers: [agents-admin]\n"
    (repo / "policies" / "sample.yaml").write_text(
        sample.replace("  defaultDecision: deny\n", with_approvers)
    )
    code, _, err = run(capsys, "validate", str(repo))
    assert code == 0, err
    assert (
        "warning: policies/sample.yaml:10:7: $.spec.subjects[0].kind: subject kind "
        "'Orchestration' is not visible on an AgentRun"
    ) in err


# --- hostile repos: clear errors, nothing written ----------------------------------------


def _compile_fails(capsys: pytest.CaptureFixture[str], repo: Path) -> str:
    shutil.rmtree(repo / "rendered")
    code, _, err = run(capsys, "compile", str(repo))
    assert code == 1, err
    assert not (repo / "rendered").exists()
    return err


def test_alias_bomb(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (repo / "policies" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    err = _compile_fails(capsys, repo)
    assert "policies/bomb.yaml" in err and "alias" in err


def test_name_with_dot_dot(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    path = repo / "egress" / "runners.yaml"
    path.write_text(path.read_text().replace("name: runners", "name: ../../../etc/passwd"))
    err = _compile_fails(capsys, repo)
    assert "egress/runners.yaml:6:3: $.metadata.name: name '../../../etc/passwd'" in err


def test_symlink_leaving_the_repo(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text((repo / "egress" / "runners.yaml").read_text())
    (repo / "egress" / "linked.yaml").symlink_to(outside)
    err = _compile_fails(capsys, repo)
    assert "linked.yaml: is a symlink leading outside" in err


def test_ten_megabyte_file(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    (repo / "policies" / "huge.yaml").write_text("# " + "x" * (10 * 1024 * 1024) + "\n")
    err = _compile_fails(capsys, repo)
    assert "policies/huge.yaml: file is 10485763 bytes, over the 4194304-byte limit" in err


def test_invalid_utf8(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    (repo / "policies" / "latin1.yaml").write_bytes(b"kind: ApprovalPolicy\n# caf\xe9\n")
    err = _compile_fails(capsys, repo)
    assert "policies/latin1.yaml:2:1: file is not valid UTF-8" in err


def test_an_invalid_rendered_bundle_is_a_located_error_not_a_crash(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rendered file is checked against its schema before anything is written. No
    valid repo makes the compiler emit a bundle its schema refuses (that would be a bug), so
    the bug is made here: the real compile_bundle's output is broken before rendering.
    That check once passed schema findings where strings were joined: a crash (exit 3)."""
    real = repo_module.compile_bundle

    def broken(*args: Any) -> tuple[dict[str, Any] | None, list[Any]]:
        bundle, problems = real(*args)
        assert bundle is not None
        if bundle["environment"] == "prod":
            bundle["clockSkewSeconds"] = 601
            bundle["policies"][1]["timeoutSeconds"] = 0
        return bundle, problems

    monkeypatch.setattr(repo_module, "compile_bundle", broken)
    err = _compile_fails(capsys, repo)
    assert err == (
        "error: rendered prod/bundle.json is invalid: "
        "$.clockSkewSeconds: 601 is greater than the maximum of 600; "
        "$.policies[1].timeoutSeconds: 0 is less than the minimum of 1\n"
        "  hint: this is a bug in approvalgate or in a custom template\n"
    )


def test_output_outside_repo_is_refused_for_targets(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    config = repo / "approvalgate.yaml"
    config.write_text(
        config.read_text().replace("file: apps/agents/values-prod.yaml", "file: ../values.yaml")
    )
    code, _, err = run(capsys, "compile", str(repo))
    assert code == 1
    assert "approvalgate.yaml:" in err and "$.environments.prod.targets[0].file" in err


def test_check_imports_neither_aiohttp_nor_kubernetes() -> None:
    code = (
        "import sys; from approvalgate.cli import main; rc = main(['check', sys.argv[1]]); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'kubernetes')"
        " or m.startswith('approvalgate.webhook')); print(rc, heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout.splitlines()[-1] == "0 []"


# --- namespaces and approver identities (class 22) ------------------------------------------


def test_an_approver_without_usernames_is_located_and_says_how_to_find_them(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    bob = repo / "approvers" / "bob.yaml"
    bob.write_text(bob.read_text().replace('  usernames:\n    - "oidc:bob@example.com"\n', ""))
    dana = repo / "approvers" / "dana.yaml"
    dana.write_text(dana.read_text().replace('    - "oidc:dana@example.com"\n', "    []\n"))
    dana.write_text(dana.read_text().replace("  usernames:\n    []\n", "  usernames: []\n"))
    code, out, err = run(capsys, "validate", str(repo))
    assert code == 1 and out == ""
    assert "approvers/bob.yaml:5:1: $.spec: approver 'bob' lists no usernames" in err
    assert "approvers/dana.yaml:7:3: $.spec.usernames: approver 'dana' lists no usernames" in err
    assert err.count("runs `kubectl auth whoami`") == 2
    assert "is required" not in err and "less than 1 item" not in err  # one message, the hint


def test_enforced_namespaces_is_an_error_naming_exclude_namespaces(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    config = repo / "approvalgate.yaml"
    text = config.read_text()
    config.write_text(text.replace("  prod:\n", "  prod:\n    enforcedNamespaces: [agents]\n"))
    code, out, err = run(capsys, "validate", str(repo))
    line = text.splitlines().index("  prod:") + 2
    assert code == 1 and out == ""
    assert (
        f"approvalgate.yaml:{line}:5: $.environments.prod.enforcedNamespaces: "
        "enforcedNamespaces was removed: every namespace is now enforced, including namespaces "
        "created later, unless excluded by name"
    ) in err
    assert "list the namespaces that must not be enforced (if any) under excludeNamespaces" in err


def test_excluded_namespaces_and_label_mode_reach_the_bundle(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    config = repo / "approvalgate.yaml"
    config.write_text(
        config.read_text().replace(
            "  excludeNamespaces: []\n",
            "  excludeNamespaces: [kube-system, infra]\n  namespaceSelection: optInLabel\n",
        )
    )
    assert run(capsys, "compile", str(repo))[0] == 0
    bundle = json.loads((repo / "rendered" / "prod" / "bundle.json").read_text())
    assert bundle["excludeNamespaces"] == ["infra", "kube-system"]
    assert bundle["namespaceSelection"] == "optInLabel"
    config.write_text(config.read_text().replace("[kube-system, infra]", "[kube-*]"))
    code, _, err = run(capsys, "validate", str(repo))
    assert code == 1 and "$.defaults.excludeNamespaces[0]" in err  # names only, no patterns


def test_by_default_nothing_is_excluded(repo: Path) -> None:
    bundle = json.loads((EXAMPLE / "rendered" / "prod" / "bundle.json").read_text())
    assert (bundle["excludeNamespaces"], bundle["namespaceSelection"]) == ([], "all")


# --- the GitOps side: what the reviewer reads, what the compiler and Argo CD read --------


@pytest.mark.parametrize("entry", ["prod-extra/kustomization.yaml", ".prod/kustomization.yaml"])
def test_a_folder_argo_cd_would_deploy_beside_the_environments_fails_check(
    capsys: pytest.CaptureFixture[str], repo: Path, entry: str
) -> None:
    # The ApplicationSet's git directory generator makes an Application of every folder of
    # rendered/: a hand-made one (no SHA256SUMS) with an allow-all NetworkPolicy or an
    # ApprovalPolicy in warn was deployed while check said "up to date".
    path = repo / "rendered" / entry
    path.parent.mkdir(exist_ok=True)
    path.write_text("resources: [allow-all.yaml]\n")
    (repo / "rendered" / "README.md").write_text("a file: no Application, no finding\n")
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1
    assert f"foreign: rendered/{entry}\n" in err
    assert "not an environment of approvalgate.yaml" in err
    code, out, err = run(capsys, "compile", str(repo))
    assert code == 1 and out == ""
    folder = entry.split("/", maxsplit=1)[0]
    assert f"rendered/{folder}: not an environment of approvalgate.yaml" in err
    assert path.exists()  # never deleted: compile does not know whose it is


def test_a_symlink_beside_the_environments_fails_check(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    (repo / "rendered" / "prod-copy").symlink_to("prod")
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1 and "foreign: rendered/prod-copy\n" in err
    assert run(capsys, "compile", str(repo))[0] == 1
    assert (repo / "rendered" / "prod").is_dir()  # not removed through the link


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# Each source reads one way in a pull request's diff (a reviewer, YAML 1.2 tools) and another
# way to the compiler (go-yaml v2's YAML 1.1, as kubectl and Helm): compile used to render
# the second. Each is now an error naming file:line:col, what a reviewer would misread and
# what to write instead.
STRICT_CASES = [
    pytest.param(
        # prod reads "enforcement: enforce"; the merge below it gave prod dev's warn
        "approvalgate.yaml",
        "  dev:\n    # dev admits",
        "  dev: &lax\n    # dev admits",
        "  prod:\n",
        "  prod:\n    enforcement: enforce\n    <<: *lax\n",
        "approvalgate.yaml:45:5: $.environments.prod.enforcement: this << merge overrides "
        "'enforcement' written at line 44",
        id="merge-overrides-a-written-key",
    ),
    pytest.param(
        # a comment line that, to YAML, ends at a lone CR: the rest is a line of its own
        "approvalgate.yaml",
        "  prod:\n",
        "  prod:\n",
        "  prod:\n",
        "  prod:\n    # reviewed by security, see #1234\r    enforcement: warn\n",
        "approvalgate.yaml:44:38: line break U+000D",
        id="comment-hiding-a-line-behind-a-cr",
    ),
    pytest.param(
        # a reviewer reads port 443; YAML 1.1 reads octal 0443, port 291
        "egress/runners.yaml",
        "        - port: 8080",
        "        - port: 8080",
        "        - port: 443",
        "        - port: 0443",
        "egress/runners.yaml:17:17: $.spec.destinations[0].ports[0].port: '0443' is read as 291",
        id="octal-port",
    ),
    pytest.param(
        "policies/codex-two-person.yaml",
        "  rejection: veto",
        "  rejection: veto",
        "  enforcement: enforce",
        "  enforcement: enforce\n  on: warn",
        "policies/codex-two-person.yaml:23:3: $.spec: 'on' is read as true",
        id="yaml11-boolean-key",
    ),
    pytest.param(
        "approvers/alice.yaml",
        "    - platform-leads",
        "    - platform-leads",
        '    - "oidc:alice@example.com"',
        '    - "oidc:alice@example.com\u200b"',
        "approvers/alice.yaml:8:30: invisible character U+200B ZERO WIDTH SPACE",
        id="zero-width-in-a-username",
    ),
    pytest.param(
        "policies/codex-two-person.yaml",
        "  rejection: veto",
        "  rejection: veto",
        "# Runs of the autonomous",
        "# Runs of the \u202eautonomous",
        "policies/codex-two-person.yaml:1:15: invisible character U+202E RIGHT-TO-LEFT OVERRIDE",
        id="bidi-override-in-a-comment",
    ),
    pytest.param(
        # the second approver is past the right edge of the diff view
        "policies/codex-two-person.yaml",
        "  rejection: veto",
        "  rejection: veto",
        "  approvers:\n    - group:platform-leads",
        "  approvers: [group:platform-leads," + " " * 80 + "dana]",
        "policies/codex-two-person.yaml:17:116: 80 blanks inside a line",
        id="pushed-off-screen",
    ),
]


@pytest.mark.parametrize(("file", "old1", "new1", "old2", "new2", "expected"), STRICT_CASES)
def test_a_source_a_reviewer_reads_otherwise_than_the_compiler_is_an_error(
    capsys: pytest.CaptureFixture[str],
    repo: Path,
    file: str,
    old1: str,
    new1: str,
    old2: str,
    new2: str,
    expected: str,
) -> None:
    _edit(repo / file, old1, new1)
    _edit(repo / file, old2, new2)
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert expected in err, err
        assert "hint: " in err
    assert run(capsys, "check", str(EXAMPLE))[0] == 0


def test_a_values_target_helm_reads_otherwise_than_check_is_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # The compiled networkPolicy key is left as it is; a merge written after it overrides it
    # for Helm (go-yaml v2: a merge wins over keys written before it) but not for the
    # round-trip reader check compared with (the YAML spec: written keys win). Helm rendered
    # networkPolicy.enabled: false while check said "up to date".
    values = repo / "apps" / "agents" / "values-prod.yaml"
    _edit(
        values,
        "replicaCount: 2\n",
        "replicaCount: 2\nlocal: &off {networkPolicy: {enabled: false}}\n",
    )
    values.write_text(values.read_text() + "<<: *off\n")
    for command in ("check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert "apps/agents/values-prod.yaml:" in err
        assert "this << merge overrides 'networkPolicy' written at line" in err


@pytest.mark.parametrize("line", ["maxObjectBytes: 18446744073709551615\n", "ratio: .inf\n"])
def test_a_values_target_may_hold_what_helm_reads_and_json_cannot(
    capsys: pytest.CaptureFixture[str], repo: Path, line: str
) -> None:
    # Helm (go-yaml v2) reads a 64-bit integer or .inf in a values file; they
    # are no API object's, so the limits of a manifest (JSON doubles, RFC 8785) do not
    # apply. Reading the target as Helm does refused them, with a message about the API
    # server and signing, and check failed on keys approvalgate does not own.
    values = repo / "apps" / "agents" / "values-prod.yaml"
    values.write_text(values.read_text() + line)
    before = values.read_text()
    for command in ("check", "compile"):
        code, _, err = run(capsys, command, str(repo))
        assert code == 0, (command, err)
    assert values.read_text() == before


@pytest.mark.parametrize(
    ("make", "shown", "why"),
    [
        # renamed so that it reads as the same policy in the diff; the compiler dropped it,
        # and the committed bundle without it passed check
        ("policies/codex-two-person.YAML", "policies/codex-two-person.YAML", "named like"),
        ("policies/codex-two-person.yaml ", "'policies/codex-two-person.yaml '", "named like"),
        ("policies/codex-two-person.json", "policies/codex-two-person.json", "named like"),
        ("policies/codex\u200b-two-person.yml\u200b", "policies/codex<U+200B>", "named like"),
        ("policies/.archive/codex-two-person.yaml", "policies/.archive", "a hidden folder"),
        ("policies/lead -> ../elsewhere", "policies/lead", "a symlinked folder"),
    ],
)
def test_a_file_a_reviewer_takes_for_a_source_that_the_compiler_skips_is_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path, make: str, shown: str, why: str
) -> None:
    original = repo / "policies" / "codex-two-person.yaml"
    if " -> " in make:
        link, target = make.split(" -> ")
        (repo / "elsewhere").mkdir()
        original.rename(repo / "elsewhere" / original.name)
        (repo / link).symlink_to(target, target_is_directory=True)
    else:
        (repo / make).parent.mkdir(exist_ok=True)
        original.rename(repo / make)
    (repo / "policies" / "README.md").write_text("notes, not a source\n")  # still fine
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert f"error: {shown}" in err, err
        assert why in err and "the compiler skips it" in err


def test_cidrs_that_together_are_every_address_on_every_port_are_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # No block reads as 0.0.0.0/0, but the two halves allow every address on every port.
    _edit(
        repo / "egress" / "runners.yaml",
        "    - name: artifact-cache\n",
        "    - name: mirrors\n      cidrs: [{cidr: 0.0.0.0/1}, {cidr: 128.0.0.0/1}]\n"
        "      allPorts: true\n    - name: artifact-cache\n",
    )
    code, out, err = run(capsys, "validate", str(repo))
    assert (code, out) == (1, "")
    assert (
        "egress/runners.yaml:19:35: $.spec.destinations[1].cidrs[1].cidr: `128.0.0.0/1` with "
        "the other `allPorts: true` blocks (0.0.0.0/1) covers every IPv4 address"
    ) in err


def test_output_left_behind_by_changing_the_output_folder_fails_check(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # A one-line change of `output` moved what check compares; the old rendered/ (which the
    # ApplicationSet syncs) could then be edited by hand while check said "up to date".
    _edit(repo / "approvalgate.yaml", "output: rendered", "output: build")
    shutil.copytree(repo / "rendered", repo / "build")
    policy = repo / "rendered" / "prod" / "approvalpolicies" / "agents.codex-two-person.yaml"
    _edit(policy, "enforcement: enforce", "enforcement: warn")
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1
    for env in ("dev", "prod", "staging"):
        assert f"left-behind: rendered/{env}\n" in err
    assert "compiled output outside the output folder of approvalgate.yaml" in err
    code, out, err = run(capsys, "compile", str(repo))
    assert (code, out) == (1, "")
    assert "error: rendered/dev: compiled output outside the output folder" in err
    shutil.rmtree(repo / "rendered")
    assert run(capsys, "check", str(repo))[0] == 0


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (  # a look-alike (Cyrillic e, written as an escape so that strict reading passes it)
            "approvalgate.yaml",
            "  excludeNamespaces: []",
            '  excludeNamespaces: ["kube-syst\\u0435m"]',
            "approvalgate.yaml:18:23: $.defaults.excludeNamespaces[0]",
        ),
        (
            "policies/codex-two-person.yaml",
            "      name: codex-agent",
            '      name: "codex-\\u0430gent"',
            "policies/codex-two-person.yaml:16:7: $.spec.subjects[0].name: subject name",
        ),
        (
            "egress/runners.yaml",
            "      namespace: agents-infra",
            '      namespace: "agents-infr\\u0430"',
            "egress/runners.yaml:19:7: $.spec.destinations[1].namespace: must be a DNS label",
        ),
        (  # reads as one address, opens every address
            "egress/runners.yaml",
            "        - cidr: 192.30.252.0/22",
            "        - cidr: 192.30.252.1/0",
            "egress/runners.yaml:15:11: $.spec.destinations[0].cidrs[1].cidr: "
            "`192.30.252.1/0` is not a canonical CIDR",
        ),
        (  # a port as a string is a port name to Kubernetes
            "egress/runners.yaml",
            "        - port: 443",
            '        - port: "443"',
            'egress/runners.yaml:17:11: $.spec.destinations[0].ports[0].port: port "443" is '
            "a string",
        ),
    ],
)
def test_look_alike_names_and_addresses_in_sources_are_already_refused(
    capsys: pytest.CaptureFixture[str], repo: Path, file: str, old: str, new: str, expected: str
) -> None:
    _edit(repo / file, old, new)
    code, out, err = run(capsys, "validate", str(repo))
    assert (code, out) == (1, ""), err
    assert expected in err, err


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (  # bob's username respelt with a Cyrillic o: the diff reads as no change
            "approvers/bob.yaml",
            '    - "oidc:bob@example.com"',
            '    - "oidc:b\\u043eb@example.com"',
            "approvers/bob.yaml:8:7: $.spec.usernames[0]: username 'oidc:bоb@example.com' is "
            "written in more than one script",
        ),
        (  # a trusted submitter that reads as the submission API's ServiceAccount
            "policies/codex-two-person.yaml",
            "      - system:serviceaccount:agents-system:submission-api",
            '      - "system:serviceaccount:agents-system:submissi\\u043en-api"',
            "$.spec.trustedSubmitters.users[0]: trusted user "
            "'system:serviceaccount:agents-system:submissiоn-api' is written in more than "
            "one script, which a reviewer cannot see: 'submissiоn-api' mixes scripts (Latin, "
            'Cyrillic): "submissi\\u043en-api" (CYRILLIC SMALL LETTER O)',
        ),
        (  # alice's login written whole in Cyrillic: trusts another account
            "policies/codex-two-person.yaml",
            "      - system:serviceaccount:agents-system:submission-api",
            '      - "oidc:\\u0430\\u0406\\u0456\\u0441\\u0435@example.com"',
            "trusted user 'oidc:\u0430\u0406\u0456\u0441\u0435@example.com' looks like "
            "'oidc:alice@example.com' (document ",
        ),
        (  # an approver's group respelt whole in Cyrillic: another group to the IdP
            "approvers/bob.yaml",
            "    - platform-leads",
            '    - "platform-leads"\n    - "\\u0440l\\u0430tform-l\\u0435\\u0430ds"',
            "$.spec.groups[1]: group 'рlаtform-lеаds' is written in more than one script",
        ),
        (  # the same visible name, decomposed
            "policies/codex-two-person.yaml",
            "      - system:serviceaccount:agents-system:submission-api",
            '      - "jose\\u0301@example.com"',
            "trusted user 'jos\u0065\u0301@example.com' is not in NFC",
        ),
        (  # a trailing space: another user to Kubernetes, the same to a reviewer
            "policies/codex-two-person.yaml",
            "      - system:serviceaccount:agents-system:submission-api",
            '      - "ci-bot@example.com "',
            "trusted user 'ci-bot@example.com ' begins or ends with whitespace",
        ),
        (  # a user named like a ServiceAccount no ServiceAccount can be
            "policies/codex-two-person.yaml",
            "      - system:serviceaccount:agents-system:submission-api",
            "      - system:serviceaccount:agents-system:Submission_API",
            "is shaped like a ServiceAccount's username but no ServiceAccount can have it",
        ),
    ],
)
def test_identities_a_reviewer_reads_as_others_are_located_errors(
    capsys: pytest.CaptureFixture[str], repo: Path, file: str, old: str, new: str, expected: str
) -> None:
    _edit(repo / file, old, new)
    for command in ("validate", "compile"):
        code, _, err = run(capsys, command, str(repo))
        assert code == 1, err
        assert expected in err, err
        assert any(a in err for a in ("kubectl auth whoami", "write it ", "kubectl get sa")), err


def test_real_names_in_one_script_per_part_compile(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    """A Cyrillic name at a Latin domain, a Japanese name, an accented Latin one (composed),
    an IDN domain: each part in one script, so nothing is refused."""
    _edit(
        repo / "approvers/bob.yaml",
        '    - "oidc:bob@example.com"',
        '    - "oidc:bob@example.com"\n    - "oidc:\\u0438\\u0432\\u0430\\u043d@example.com"'
        '\n    - "\\u5c71\\u7530\\u305f\\u308d\\u3046@example.jp"\n    - "jos\\u00e9@example.com"'
        '\n    - "ivan@\\u043f\\u0440\\u0438\\u043c\\u0435\\u0440.\\u0440\\u0444"',
    )
    code, _, err = run(capsys, "validate", str(repo))
    assert code == 0, err


@pytest.mark.parametrize("folder", ["egress/runners.yaml", "runs/codex-release-notes.yaml"])
def test_a_second_spec_of_one_name_is_a_located_error_for_validate_too(
    capsys: pytest.CaptureFixture[str], repo: Path, folder: str
) -> None:
    # validate said "valid" while compile failed (EgressPolicy) or rendered both under one
    # file name (AgentRun); the ApprovalPolicy and Approver kinds were refused already.
    original = repo / folder
    copy = original.with_name("zz-" + original.name)
    copy.write_text(original.read_text().replace("port: 443", "port: 22"))
    code, out, err = run(capsys, "validate", str(repo))
    assert (code, out) == (1, ""), err
    assert f"error: {Path(folder).parent}/zz-" in err and "is defined twice (first at " in err
    assert f"(first at {folder}:" in err


def test_the_pre_commit_hooks_run_whatever_files_a_commit_touches() -> None:
    # A `files:` filter of the default folder names skipped a commit touching only a values
    # target elsewhere, or output under another `output:` of approvalgate.yaml.
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"approvalgate-compile", "approvalgate-check"}
    for hook in hooks:
        assert hook.get("always_run") is True and "files" not in hook, hook["id"]


def test_a_hand_edited_signatures_file_fails_check(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # bundle.sig.json is verified, not compared byte for byte; an added field or a copied
    # signature (still verifying) is nonetheless stale: compile re-renders the document.
    path = repo / "rendered" / "prod" / "bundle.sig.json"
    document = json.loads(path.read_text())
    document["note"] = "reviewed"
    document["signatures"].append(dict(document["signatures"][0]))
    path.write_text(json.dumps(document, indent=2) + "\n")
    code, _, err = run(capsys, "check", str(repo))
    assert code == 1 and "stale: rendered/prod/bundle.sig.json\n" in err


def test_other_keys_of_a_values_target_keep_the_reading_helm_gives_them(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # The values file is the chart owner's: its other keys are not read strictly.
    values = repo / "apps" / "agents" / "values-prod.yaml"
    _edit(values, "replicaCount: 2\n", "replicaCount: 2\ndebug: yes\nmode: 0644\n")
    assert run(capsys, "check", str(repo))[0] == 0


LENIENT = """\
apiVersion: approvals.proompteng.ai/v1alpha1
kind: ApprovalPolicy
metadata:
  name: lenient
  namespace: agents
spec:
  mode: manual
  defaultDecision: allow
  subjects:
    - kind: Agent
      name: codex-agent
  approvers: [bob]
  requiredApprovals: 1
  timeoutSeconds: 60
  enforcement: "off"
"""

UNAPPROVED_RUN = """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: sneaky
  namespace: agents
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: codex-impl-sample
  runtime:
    type: workflow
  parameters:
    task: x
"""


def test_a_lenient_policy_added_beside_a_strict_one_does_not_weaken_it(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # Outcomes combine most restrictive first: a policy switched off (or needing one
    # approval) that matches the same runs leaves the two-person rule in force.
    (repo / "policies" / "lenient.yaml").write_text(LENIENT)
    run_file = repo / "sneaky.yaml"
    run_file.write_text(UNAPPROVED_RUN)
    policies = [str(repo / "policies"), str(repo / "approvers")]
    code, out, _ = run(
        capsys, "verify", str(run_file), "--policies", *policies, "--env", "prod", "--user", "m"
    )
    assert code == 1 and "DENIED agents/sneaky in prod" in out
    assert "codex-two-person" in out


def test_an_address_go_reads_otherwise_than_python_is_a_located_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # Fifth red-team pass: `::ffff:0:0/96` reads as a small IPv6 range (and passed the
    # wildcard check); the API server and Go CNIs read it as 0.0.0.0/0, every port here.
    # A Cilium-derived key in a pod selector reaches kube-system's pods in flavor cilium.
    _edit(
        repo / "egress" / "runners.yaml",
        "    - name: artifact-cache\n",
        '    - name: mirrors\n      cidrs: [{cidr: "::ffff:0:0/96"}]\n'
        "      allPorts: true\n"
        "    - name: peers\n"
        "      podSelector: {matchLabels: {io.kubernetes.pod.namespace: kube-system}}\n"
        "      ports: [{port: 443}]\n"
        "    - name: artifact-cache\n",
    )
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert (
            "egress/runners.yaml:19:16: $.spec.destinations[1].cidrs[0].cidr: `::ffff:0:0/96` "
            "is an IPv4-mapped IPv6 address, which Kubernetes and Go read as the IPv4 CIDR "
            "`0.0.0.0/0`"
        ) in err, (command, err)
        assert "hint: write 0.0.0.0/0 if you mean those IPv4 addresses" in err
        assert (
            "egress/runners.yaml:22:35: $.spec.destinations[2].podSelector.matchLabels"
            ".io.kubernetes.pod.namespace: `io.kubernetes.pod.namespace` is a label Cilium "
            "derives"
        ) in err, (command, err)
    assert "Traceback" not in err


def test_a_repo_template_rendering_more_than_the_policies_is_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # Fifth red-team pass: a repo template reviewed once added an allow-all rule to every
    # policy (and `validate` never rendered it); now every command names the template.
    reference = (
        ROOT / "tests" / "corpus" / "egress-templates" / "networkpolicy.yaml.j2"
    ).read_text()
    (repo / "my-templates").mkdir()
    (repo / "my-templates" / "networkpolicy.yaml.j2").write_text(
        reference.replace("{%- endfor %}\n{%- else %}", "{%- endfor %}\n    - {}\n{%- else %}", 1)
    )
    config = repo / "approvalgate.yaml"
    config.write_text("templates: my-templates\n" + config.read_text())
    template = repo / "my-templates" / "networkpolicy.yaml.j2"
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert err.startswith(
            f"error: {template}: $.spec.egress[4]: the repo template renders EgressPolicy "
            "agents/runners otherwise than it declares: the template renders {}\n"
        ), (command, err)
    # laid out as the flavor builds it (the reference template): the same output
    (repo / "my-templates" / "networkpolicy.yaml.j2").write_text(reference)
    code, out, err = run(capsys, "check", str(repo))
    assert code == 0, err


def test_runner_pods_no_policy_selects_get_a_default_deny(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # Fifth red-team pass: a policy for one agent's pods left the runs of every other agent
    # (the requester picks the agent) with no egress restriction; compile now renders a
    # default-deny for every runner pod of that namespace, which allows nothing.
    _edit(
        repo / "egress" / "runners.yaml",
        "  target: runners\n",
        "  target: runners\n  podSelector: {matchLabels: {agents.proompteng.ai/agent: codex}}\n",
    )
    code, _, err = run(capsys, "compile", str(repo))
    assert code == 0, err
    folder = repo / "rendered" / "prod" / "networkpolicies"
    deny = yaml.safe_load((folder / "agents.approvalgate-runners-default-deny.yaml").read_text())
    assert deny["spec"] == {
        "podSelector": {
            "matchExpressions": [{"key": "agents.proompteng.ai/agent-run", "operator": "Exists"}]
        },
        "policyTypes": ["Egress"],
        "egress": [],
    }
    kustomization = (repo / "rendered" / "prod" / "kustomization.yaml").read_text()
    assert "networkpolicies/agents.approvalgate-runners-default-deny.yaml" in kustomization
    assert run(capsys, "check", str(repo))[0] == 0


def test_a_port_range_as_wide_as_all_ports_is_a_located_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # Fifth red-team pass: `port: 1, endPort: 65535` to 0.0.0.0/0 opened every TCP port to
    # every address and read narrower than the `allPorts: true` the wildcard rule refused.
    _edit(
        repo / "egress" / "runners.yaml",
        "    - name: artifact-cache\n",
        "    - name: anything\n      cidrs: [{cidr: 0.0.0.0/0}]\n"
        "      ports: [{port: 1, endPort: 65535}]\n    - name: artifact-cache\n",
    )
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert (
            "egress/runners.yaml:19:16: $.spec.destinations[1].cidrs[0].cidr: `0.0.0.0/0` with "
            "ports 1-65535/TCP opens egress to every address on every TCP port"
        ) in err, (command, err)


def test_a_repo_template_cannot_run_code_where_check_runs(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    # Fifth red-team pass: `check` (CI, the pre-commit hook) rendered repo templates in a
    # plain Jinja2 environment, so a template ran any command there.
    marker = tmp_path / "ran"
    (repo / "my-templates").mkdir()
    (repo / "my-templates" / "networkpolicy.yaml.j2").write_text(
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}\n"
    )
    config = repo / "approvalgate.yaml"
    config.write_text("templates: my-templates\n" + config.read_text())
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert err.startswith(
            f"error: {repo / 'my-templates' / 'networkpolicy.yaml.j2'}: the repo template "
            "cannot be rendered: SecurityError: "
        ), (command, err)
        assert not marker.exists(), command


@pytest.mark.parametrize("setting", ["linked", "linked/inner"])
def test_a_templates_folder_outside_the_repo_is_a_located_error(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path, setting: str
) -> None:
    # Fifth red-team pass: the templates that render the output `check` compares came from
    # wherever a symlink in the repo pointed (`..` and absolute paths: refused by the schema).
    outside = tmp_path / "elsewhere"
    (outside / "inner").mkdir(parents=True)
    (repo / "linked").symlink_to(outside)
    config = repo / "approvalgate.yaml"
    config.write_text(f"templates: {setting}\n" + config.read_text())
    code, out, err = run(capsys, "validate", str(repo))
    assert (code, out) == (1, ""), err
    assert err.startswith(
        f"error: approvalgate.yaml:1:1: $.templates: templates `{setting}` goes through a symlink"
    ), err
    assert "hint: give a folder of the repo" in err


def test_cidrs_split_across_two_policies_for_the_same_pods_are_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    # Fifth red-team pass: the wildcard rules held within one EgressPolicy only; two files,
    # each with one half of the address space on every port, passed for the same pods.
    _edit(
        repo / "egress" / "runners.yaml",
        "    - name: artifact-cache\n",
        "    - name: low\n      cidrs: [{cidr: 0.0.0.0/1}]\n      allPorts: true\n"
        "    - name: artifact-cache\n",
    )
    (repo / "egress" / "more.yaml").write_text(
        "apiVersion: gates.proompteng.ai/v1alpha1\nkind: EgressPolicy\n"
        "metadata: {name: more, namespace: agents}\nspec:\n  target: runners\n"
        "  destinations:\n    - name: high\n      cidrs: [{cidr: 128.0.0.0/1}]\n"
        "      allPorts: true\n"
    )
    for command in ("validate", "check", "compile"):
        code, out, err = run(capsys, command, str(repo))
        assert (code, out) == (1, ""), (command, err)
        assert (
            "egress/runners.yaml:19:16: $.spec.destinations[1].cidrs[0].cidr: `0.0.0.0/1` with "
            "the other `allPorts: true` blocks (128.0.0.0/1) covers every IPv4 address"
        ) in err, (command, err)
        assert "with the EgressPolicies of the runners of namespace agents (more, runners)" in err
