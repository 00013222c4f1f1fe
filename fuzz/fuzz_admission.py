"""Fuzz target: request bytes -> the webhook's AdmissionReview parsing -> decide() -> response.

What it asserts for every input (a violation raises :class:`Finding`, which atheris reports
as a crash and saves the input):

1. parsing raises nothing but ``MalformedReview`` (HTTP 400 in the server);
2. decide() raises nothing and never fails internally (``Decision.internal_error``: the
   server would deny, fail closed, but it is a bug) on a request whose objects' metadata is
   well-typed (what kube-apiserver guarantees: annotations and labels string maps,
   finalizers a string list...); on ill-typed metadata, which only a direct caller can
   send, an internal-error denial is tolerated and counted; the response always encodes;
3. nothing is admitted without a reason that an independent check of the request confirms.
   No input can carry a valid approval: the seeds' records are genuinely signed by the
   corpus keys, but over the digest of a spec with a random nonce chosen at start-up that
   never appears in any input, or over the input's own spec but for another environment
   (staging; the bundle enforces prod) or in record format v1 (no environment), which
   count nowhere here; so ``approved`` and ``bypass`` can never be right; the
   pass-through reasons are re-checked from the request itself (operation, resource,
   subresource, trusted user, UPDATE that keeps spec and annotation, finalizer removal).

The bundle is the decision corpus's ``_base`` (two-person policy, veto, on-call bypass,
trusted submission API, every namespace enforced, unmatched runs denied) at a fixed time.

Long runs (atheris, libFuzzer's coverage-guided engine; ``pip install atheris``)::

    .venv/bin/python fuzz/fuzz_admission.py -max_total_time=3600 \
        -artifact_prefix=fuzz/artifacts/ fuzz/corpus

(the corpus folder is created and seeded when missing; libFuzzer options after the script;
a finding stops the run and saves the input under the artifact prefix).
Without atheris, or with ``--fallback``, a pure-Python mutator (JSON-aware and byte-level)
runs instead: ``fuzz/fuzz_admission.py --fallback --seconds 600``. The test suite runs a
bounded smoke of both (tests/reliability/test_fuzz_smoke.py).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the environment
    atheris = None

if __name__ == "__main__" and atheris is not None and "--fallback" not in sys.argv:
    # coverage feedback from our own packages: they must be first imported in here
    with atheris.instrument_imports(include=["approvalgate.approvals", "approvalgate.webhook"]):
        import approvalgate.approvals.decide
        import approvalgate.approvals.policy
        import approvalgate.webhook.review  # noqa: F401

from approvalgate.approvals import records  # noqa: E402
from approvalgate.approvals.bundle import parse_bundle_text  # noqa: E402
from approvalgate.approvals.decide import decide  # noqa: E402
from approvalgate.approvals.digest import spec_digest  # noqa: E402
from approvalgate.approvals.identity import POD_NAME_EXTRA, POD_UID_EXTRA  # noqa: E402
from approvalgate.approvals.identity import SERVICE_ACCOUNT_PREFIX as SA_PREFIX  # noqa: E402
from approvalgate.webhook.review import MalformedReview, build_response, parse_review  # noqa: E402
from tests.support.corpus import BASE, DEFAULT_NOW, compile_case_bundle, make_record  # noqa: E402

BUNDLE_JSON: dict[str, Any] = json.loads(compile_case_bundle(BASE))
BUNDLE = parse_bundle_text(json.dumps(BUNDLE_JSON))
NOW = records.parse_time(DEFAULT_NOW)
ANNOTATION = records.ANNOTATION
# the spec the seeds' records really approve: never in any input (chosen at start-up)
SECRET = secrets.token_hex(16)

TRUSTED_USERS = {u for p in BUNDLE_JSON["policies"] for u in p["trustedSubmitters"]["users"]}
TRUSTED_GROUPS = {g for p in BUNDLE_JSON["policies"] for g in p["trustedSubmitters"]["groups"]}
EXCLUDED = set(BUNDLE_JSON["excludeNamespaces"])
TRUSTED_SA = "system:serviceaccount:agents-system:submission-api"


class Finding(AssertionError):
    """A property of the target does not hold for this input."""


# --- the oracle ------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _annotations(obj: Any) -> Any:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta.get("annotations") if isinstance(meta, dict) else None


def explained(request: dict[str, Any], reason: str) -> bool:
    """Whether admitting ``request`` for ``reason`` is right, checked from the request alone."""
    operation = request.get("operation")
    resource = request.get("resource") or {}
    gated_resource = (resource.get("group"), resource.get("resource")) == (
        "agents.proompteng.ai",
        "agentruns",
    )
    if reason == "operation-not-gated":
        return operation in ("DELETE", "CONNECT")
    if reason == "not-gated":
        return not gated_resource
    if reason == "status-subresource":
        return request.get("subResource") == "status"
    is_content = (
        resource.get("group") == "agents.proompteng.ai"
        and resource.get("resource") in CONTENT_RESOURCES
    )
    is_parent = (resource.get("group"), resource.get("resource")) in PARENT_RESOURCES
    if reason == "subresource":
        return (is_content or is_parent) and bool(request.get("subResource"))
    if reason in ("content-not-bound", "content-not-in-use"):
        # writes to content are judged only against recorded uses (none in the fuzz bundle)
        return is_content
    if reason == "parent-makes-no-runs":
        return is_parent
    if reason == "namespace-not-enforced":
        return request.get("namespace") in EXCLUDED
    if reason == "trusted-submitter":
        user = request.get("userInfo") or {}
        trusted = user.get("username") in TRUSTED_USERS or bool(
            TRUSTED_GROUPS & set(user.get("groups") or ())
        )
        # a ServiceAccount only with a pod-bound token (pod name and uid, one each)
        extra = user.get("extra") if isinstance(user.get("extra"), dict) else {}
        bound = all(
            isinstance(extra.get(k), list) and len(extra[k]) == 1 and extra[k][0]
            for k in (POD_NAME_EXTRA, POD_UID_EXTRA)
        )
        return trusted and (not str(user.get("username")).startswith(SA_PREFIX) or bound)
    new, old = request.get("object"), request.get("oldObject")
    if operation != "UPDATE" or not isinstance(new, dict) or not isinstance(old, dict):
        return False
    same_spec = _canonical(new.get("spec")) == _canonical(old.get("spec"))
    if reason == "unchanged-spec":
        same_ann = (_annotations(new) or {}).get(ANNOTATION) == (_annotations(old) or {}).get(
            ANNOTATION
        )
        return same_spec and same_ann
    if reason == "deleting-object":
        meta_old = old.get("metadata") or {}
        meta_new = new.get("metadata") or {}
        fin_old, fin_new = meta_old.get("finalizers") or [], meta_new.get("finalizers") or []
        return (
            bool(meta_old.get("deletionTimestamp"))
            and same_spec
            and isinstance(fin_new, list)
            and all(f in fin_old for f in fin_new)
        )
    return False  # approved, bypass, no-policy, warn/audit levels: impossible here


PASS_THROUGH = frozenset(
    {
        "operation-not-gated",
        "not-gated",
        "status-subresource",
        "namespace-not-enforced",
        "trusted-submitter",
        "unchanged-spec",
        "deleting-object",
        # issue 16: parents and referenced content (approvals/inherit.py)
        "subresource",
        "content-not-bound",
        "content-not-in-use",
        "parent-makes-no-runs",
    }
)
CONTENT_RESOURCES = frozenset({"implementationspecs", "agents"})
PARENT_RESOURCES = frozenset(
    {
        ("schedules.proompteng.ai", "schedules"),
        ("orchestration.proompteng.ai", "orchestrationruns"),
        ("swarm.proompteng.ai", "swarms"),
    }
)
_META_STRINGS = ("name", "namespace", "generateName", "deletionTimestamp")


def well_typed(request: dict[str, Any]) -> bool:
    """Whether the objects' metadata has the types kube-apiserver guarantees (ObjectMeta).

    The API server never sends anything else, so for other requests an internal-error
    denial (fail closed) or a pass-through on a meaningless field is not a finding; an
    ``approved``/``bypass`` still would be."""
    for key in ("object", "oldObject"):
        obj = request.get(key)
        if obj is None:
            continue
        meta = obj.get("metadata", {})
        if not isinstance(meta, dict):
            return False
        for name in ("annotations", "labels"):
            value = meta.get(name)
            if value is not None and not (
                isinstance(value, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            ):
                return False
        finalizers = meta.get("finalizers")
        if finalizers is not None and not (
            isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
        ):
            return False
        if any(k in meta and not isinstance(meta[k], str) for k in _META_STRINGS):
            return False
    return True


def check(data: bytes) -> str:
    """Run one input through parsing and decide(); return its outcome class or raise Finding."""
    try:
        review = parse_review(data)
    except MalformedReview as exc:
        return f"400 {exc.kind}"
    except Exception as exc:
        raise Finding(f"parse_review raised {type(exc).__name__}: {exc}") from exc
    try:
        decision = decide(review.request, BUNDLE, NOW)
    except Exception as exc:
        raise Finding(f"decide() raised {type(exc).__name__}: {exc}") from exc
    try:
        json.dumps(build_response(review.api_version, review.uid, decision))
    except Exception as exc:
        raise Finding(f"the response does not encode: {type(exc).__name__}: {exc}") from exc
    request = dict(review.request)
    typed = well_typed(request)
    if decision.internal_error:
        if typed:
            raise Finding(f"decide() failed internally: {decision.internal_error}")
        return "deny internal-error (ill-typed metadata)"
    if decision.allowed and decision.reason not in PASS_THROUGH:
        raise Finding(f"admitted without valid records: {decision.reason}")
    if decision.allowed and typed and not explained(request, decision.reason):
        raise Finding(f"admitted, but the request does not bear out {decision.reason!r}")
    if decision.allowed:
        return f"allow {decision.reason}"
    deep = " (signature checked)" if "approves another spec" in decision.message else ""
    return f"deny {decision.reason}{deep}"


def test_one_input(data: bytes) -> None:
    check(data)


# --- seeds -------------------------------------------------------------------------------------


def _run(name: str = "fuzz-run", namespace: str = "agents", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {
            "agentRef": {"name": "codex-agent"},
            "implementationSpecRef": {"name": "codex-impl-sample"},
            "runtime": {"type": "workflow", "config": {"ttlSecondsAfterFinished": 600}},
            "workload": {"image": "ghcr.io/proompteng/codex-runner:1.4.2"},
            "parameters": {"repository": "proompteng/lab", "task": "Update onboarding flow"},
        },
    }


def _signed(run: dict[str, Any], recipes: list[dict[str, Any]]) -> str:
    """Envelopes really signed for ``run``'s subject, over the secret spec's digest."""
    secret = copy.deepcopy(run)
    secret["spec"]["parameters"]["nonce"] = SECRET
    envelopes = []
    for recipe in recipes:
        envelope = make_record(recipe, secret, BASE, NOW)
        envelopes.append(envelope)
    assert spec_digest(secret["spec"]) != spec_digest(run["spec"])
    return json.dumps(envelopes)


def _signed_elsewhere(run: dict[str, Any], recipes: list[dict[str, Any]]) -> str:
    """Envelopes really signed over ``run``'s own spec, each for another environment or in
    format v1 (every recipe must say which): genuine, and still never counted here."""
    assert all(r.get("environment", "prod") != "prod" or "format" in r for r in recipes)
    return json.dumps([make_record(recipe, run, BASE, NOW) for recipe in recipes])


def _request(obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    request = {
        "uid": "00000000-0000-4000-8000-000000000000",
        "kind": {"group": "agents.proompteng.ai", "version": "v1alpha1", "kind": "AgentRun"},
        "resource": {
            "group": "agents.proompteng.ai",
            "version": "v1alpha1",
            "resource": "agentruns",
        },
        "operation": "CREATE",
        "namespace": obj["metadata"].get("namespace", "agents"),
        "name": obj["metadata"].get("name", ""),
        "userInfo": {"username": "requester", "groups": ["agents-users"]},
        "object": obj,
        "dryRun": False,
    }
    request.update(fields)
    return request


def _review(request: dict[str, Any], version: str = "admission.k8s.io/v1") -> bytes:
    return json.dumps(
        {"apiVersion": version, "kind": "AdmissionReview", "request": request}
    ).encode()


def seeds() -> list[bytes]:
    """Valid-looking reviews of every shape decide() distinguishes, none validly approved."""
    issued = records.format_time(NOW - timedelta(hours=1))
    two = [{"key": "alice", "issuedAt": issued}, {"key": "bob", "issuedAt": issued}]
    run = _run()
    run["metadata"]["annotations"] = {ANNOTATION: _signed(run, two)}
    bypass = _run("fuzz-bypass")
    bypass["metadata"]["annotations"] = {
        ANNOTATION: _signed(
            bypass,
            [
                {
                    "key": "oncall",
                    "decision": "bypass",
                    "reason": "incident",
                    "issuedAt": issued,
                    "ttl": "1h",
                }
            ],
        )
    }
    mixed = _run("fuzz-mixed", labels={"team": "a"})
    mixed["metadata"]["annotations"] = {
        ANNOTATION: _signed(
            mixed, [*two, {"key": "carol", "decision": "reject", "issuedAt": issued}]
        ),
        "approvals.proompteng.ai/requested-by": "alice",
    }
    prefix = _run("")
    del prefix["metadata"]["name"]
    prefix["metadata"]["generateName"] = "fuzz-"
    prefix["metadata"]["annotations"] = {ANNOTATION: _signed(prefix, two)}
    changed = copy.deepcopy(run)
    changed["spec"]["parameters"]["task"] = "something else"
    deleting = copy.deepcopy(run)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-21T11:00:00Z"
    deleting["metadata"]["finalizers"] = ["a", "b"]
    finalized = copy.deepcopy(deleting)
    finalized["metadata"]["finalizers"] = ["a"]
    elsewhere = _run("fuzz-elsewhere")
    elsewhere["metadata"]["annotations"] = {
        ANNOTATION: _signed_elsewhere(
            elsewhere,
            [
                {"key": "alice", "issuedAt": issued, "environment": "staging"},
                {"key": "bob", "issuedAt": issued, "format": "v1"},
                {
                    "key": "oncall",
                    "decision": "bypass",
                    "reason": "incident 42",
                    "ttl": "1h",
                    "issuedAt": issued,
                    "environment": "staging",
                },
            ],
        )
    }
    bare = _run("fuzz-bare")
    return [
        _review(_request(elsewhere)),
        _review(_request(run)),
        _review(_request(run), "admission.k8s.io/v1beta1"),
        _review(_request(bypass)),
        _review(_request(mixed, userInfo={"username": "alice", "groups": ["platform-leads"]})),
        _review(_request(prefix, name="")),
        _review(_request(bare)),
        _review(_request(bare, dryRun=True)),
        _review(_request(bare, userInfo={"username": TRUSTED_SA})),
        _review(
            _request(
                bare,
                userInfo={
                    "username": TRUSTED_SA,
                    "extra": {POD_NAME_EXTRA: ["submission-api-0"], POD_UID_EXTRA: ["uid-0"]},
                },
            )
        ),
        _review(_request(changed, operation="UPDATE", oldObject=run)),
        _review(_request(run, operation="UPDATE", oldObject=run)),
        _review(_request(finalized, operation="UPDATE", oldObject=deleting)),
        _review(_request(run, operation="UPDATE", oldObject=run, subResource="status")),
        _review(_request(run, operation="UPDATE", oldObject=changed, subResource="scale")),
        _review(_request(run, operation="DELETE", object=None, oldObject=run)),
        _review(_request(bare, resource={"group": "", "version": "v1", "resource": "pods"})),
        _review(_request(bare, namespace="sandbox")),
    ]


# --- the pure-Python mutator ---------------------------------------------------------------------

INTERESTING: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53 + 1,
    1e308,
    "",
    "agents",
    "*",
    "status",
    "scale",
    "UPDATE",
    "DELETE",
    "CREATE",
    "CONNECT",
    "requester",
    "alice",
    "system:serviceaccount:agents-system:submission-api",
    "authentication.kubernetes.io/pod-name",
    "agents.proompteng.ai",
    "agentruns",
    "approve",
    "reject",
    "bypass",
    "\u0000",
    "\ud7ff",
    "2026-11-21T12:00:00Z",
    "2099-01-01T00:00:00Z",
    [],
    {},
    [{}],
    "x" * 300,
    ANNOTATION,
]
BYTE_TOKENS = [
    b"NaN",
    b"Infinity",
    b'"a":1,"a":2',
    b"\xff",
    b"\xef\xbb\xbf",
    b"[" * 200,
    b"\\u0000",
    b"1e999",
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _mutate_annotation(text: str, rng: random.Random) -> str:
    """Edit the envelopes inside an approvals annotation (payload fields, signatures)."""
    try:
        envelopes = json.loads(text)
        envelope = rng.choice(envelopes)
    except (ValueError, IndexError, TypeError):
        return text
    if not isinstance(envelope, dict):
        return text
    choice = rng.randrange(5)
    if choice == 0 and isinstance(envelope.get("payload"), str):
        try:
            statement = json.loads(base64.b64decode(envelope["payload"]))
            target = statement if rng.random() < 0.3 else statement.get("predicate", statement)
            key = rng.choice(list(target) or ["x"])
            target[key] = rng.choice(INTERESTING)
            envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        except (ValueError, TypeError, AttributeError):
            pass
    elif choice == 1 and isinstance(envelope.get("signatures"), list) and envelope["signatures"]:
        envelope["signatures"].append(copy.deepcopy(envelope["signatures"][0]))
    elif choice == 2 and isinstance(envelope.get("signatures"), list) and envelope["signatures"]:
        envelope["signatures"][0]["keyid"] = rng.choice(
            ["", "x", envelope["signatures"][0].get("keyid", "")]
        )
    elif choice == 3:
        envelopes.append(copy.deepcopy(envelope))
    else:
        envelope[rng.choice(["payloadType", "payload", "signatures", "extra"])] = rng.choice(
            INTERESTING
        )
    return json.dumps(envelopes)


def mutate_json(data: bytes, rng: random.Random) -> bytes | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    paths = list(_paths(doc))
    path = rng.choice(paths)
    if not path:
        return None
    parent, key = _get(doc, path[:-1]), path[-1]
    action = rng.randrange(7)
    if action == 0:
        parent[key] = rng.choice(INTERESTING)
    elif action == 1 and isinstance(parent, dict):
        del parent[key]
    elif action == 2:  # copy another node here (e.g. oldObject's spec into object)
        parent[key] = copy.deepcopy(_get(doc, rng.choice(paths)))
    elif action == 3 and isinstance(parent[key], str) and parent[key].startswith("[{"):
        parent[key] = _mutate_annotation(parent[key], rng)
    elif action == 4 and isinstance(parent[key], str):
        text = parent[key]
        cut = rng.randrange(len(text) + 1)
        parent[key] = text[:cut] + rng.choice(["", "-", "x", "*", "\u00e9"]) + text[cut + 1 :]
    elif action == 5 and isinstance(parent, dict):
        parent[rng.choice(["deletionTimestamp", "finalizers", "subResource", "nonce", "extra"])] = (
            rng.choice(INTERESTING)
        )
    else:
        parent[key] = rng.choice([[parent[key]], {"v": parent[key]}, str(parent[key])])
    return json.dumps(doc).encode()


def mutate_bytes(data: bytes, rng: random.Random, max_size: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if action == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif action == 1:
            buf[pos:pos] = rng.choice(BYTE_TOKENS)
        elif action == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif action == 3 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start : start + rng.randint(1, 64)]
        else:
            buf = buf[:pos]
    return bytes(buf[:max_size])


def mutate(
    data: bytes, rng: random.Random, max_size: int = 1 << 20, byte_level: Any = None
) -> bytes:
    if rng.random() < 0.75:
        out = mutate_json(data, rng)
        if out is not None and len(out) <= max_size:
            return out
    if byte_level is not None:
        return bytes(byte_level(data, max_size))
    return mutate_bytes(data, rng, max_size)


def run_fallback(
    *,
    seconds: float,
    max_inputs: int,
    seed: int,
    keep_going: bool = False,
    on_input: Callable[[bytes], str] = check,
) -> dict[str, Any]:
    """Mutate the seeds (and inputs derived from them) for ``seconds`` or ``max_inputs``.

    A finding raises at once, with the input; with ``keep_going`` each distinct finding is
    collected (message -> the shortest input that showed it) and the run goes on."""
    rng = random.Random(seed)  # noqa: S311 - a fuzzer, not cryptography
    pool = seeds()
    outcomes: Counter[str] = Counter()
    findings: dict[str, bytes] = {}
    started = time.monotonic()
    tried = 0
    queue = list(pool)
    while tried < max_inputs and time.monotonic() - started < seconds:
        if queue:
            data = queue.pop()
        else:
            data = rng.choice(pool)
            for _ in range(rng.randint(1, 3)):
                data = mutate(data, rng)
        tried += 1
        try:
            outcome = on_input(data)
        except Finding as exc:
            if not keep_going:
                raise Finding(f"{exc}\ninput: {data[:4000]!r}") from exc
            message = str(exc)
            if message not in findings or len(data) < len(findings[message]):
                findings[message] = data
            outcomes["finding"] += 1
            continue
        outcomes[outcome] += 1
        if len(pool) < 2000 and not outcome.startswith("400") and rng.random() < 0.05:
            pool.append(data)  # keep some inputs that got through parsing
    return {
        "inputs": tried,
        "seconds": round(time.monotonic() - started, 2),
        "seed": seed,
        "findings": {m: d.decode("utf-8", "replace") for m, d in findings.items()},
        "outcomes": dict(outcomes.most_common()),
    }


# --- entry points ------------------------------------------------------------------------------


def _seed_folder(argv: list[str]) -> list[str]:
    """libFuzzer arguments; the first corpus folder given (or fuzz/corpus) is seeded if empty."""
    folders = [a for a in argv[1:] if not a.startswith("-")]
    if not folders:
        folders = [str(Path(__file__).resolve().parent / "corpus")]
        argv = [*argv, folders[0]]
    for arg in argv[1:]:  # libFuzzer does not create the artifact folder itself
        if arg.startswith("-artifact_prefix=") and arg.endswith("/"):
            Path(arg.partition("=")[2]).mkdir(parents=True, exist_ok=True)
    first = Path(folders[0])
    first.mkdir(parents=True, exist_ok=True)
    if not any(first.iterdir()):
        for number, data in enumerate(seeds()):
            (first / f"seed-{number:02d}.json").write_bytes(data)
    return argv


def main(argv: list[str]) -> int:
    if atheris is None or "--fallback" in argv:
        parser = argparse.ArgumentParser(prog="fuzz_admission.py --fallback")
        parser.add_argument("--fallback", action="store_true")
        parser.add_argument("--seconds", type=float, default=60.0)
        parser.add_argument("--max-inputs", type=int, default=10**9)
        parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
        parser.add_argument(
            "--keep-going", action="store_true", help="collect distinct findings, do not stop"
        )
        args = parser.parse_args(argv[1:])
        print(f"pure-Python fallback, seed {args.seed}", file=sys.stderr)
        result = run_fallback(
            seconds=args.seconds,
            max_inputs=args.max_inputs,
            seed=args.seed,
            keep_going=args.keep_going,
        )
        print(json.dumps(result, indent=2))
        return 1 if result["findings"] else 0
    argv = _seed_folder(argv)
    rng = random.Random()  # noqa: S311 - a fuzzer, not cryptography

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng.seed(seed)
        return mutate(data, rng, max_size, byte_level=atheris.Mutate)

    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
