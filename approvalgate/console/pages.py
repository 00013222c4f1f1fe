"""The console's pages, rendered on the server with Jinja2 (autoescape on).

Two pages, each also as the fragment ``console.js`` swaps in when the state changes:

- :func:`render_queue` (``GET /``, ``GET /fragment/queue``): the pending requests
  (:func:`commands._queue.summary` + :func:`is_pending`, as ``approvalgate pending``), filtered
  by view (needs-me, mine, all), namespace, policy and minimum age; counts and time waiting;
  the problems banner (namespaces the user may not read, the API server unreachable);
- :func:`render_request` (``GET /requests/NS/NAME``, ``GET /fragment/request/NS/NAME``): the
  run as it will be created, the task text of its ImplementationSpec and its Agent (read now,
  with the user's credentials: a 403 or 404 is said in place), the matching policies and
  what each requires (with ``--bundle``), the decisions so far, who may still approve, the
  phase timeline (Events), a diff against the last approved spec of a resubmitted run, and
  the decide form with the reasons an action is refused shown before any click.

The data comes from :class:`QueueView` (the console's watch-fed state) and :class:`Viewer`
(who the console acts as): two small protocols, so the pages need no cluster to render.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import yaml

from approvalgate.commands import _queue

if TYPE_CHECKING:
    import jinja2

    from approvalgate.approvals.bundle import Bundle, Policy
    from approvalgate.console.identity import Me
    from approvalgate.kube.client import Client

VIEWS: Final = ("needs-me", "mine", "all")
RESUBMIT_PHASES: Final = frozenset({"Approved", "Submitted"})
EVENT_LIMIT: Final = 100
_GENERATED: Final = re.compile(r"^(?P<prefix>.+-)[a-z0-9]{5}$")
"""A name ``approvalgate request`` fixed from a ``generateName`` (prefix + 5 characters)."""


class QueueView(Protocol):
    """What the pages read of the console's state (``console/state.py``)."""

    def requests(self) -> list[dict[str, Any]]:
        """Every ApprovalRequest object the console sees (any phase)."""
        ...

    def decisions(self) -> list[dict[str, Any]]:
        """Every ApprovalDecision object the console sees."""
        ...

    def problems(self) -> list[str]:
        """One sentence per problem, e.g. a namespace the user may not list."""
        ...

    def unreachable_since(self) -> str | None:
        """``HH:MM:SS`` (UTC) since when the API server cannot be reached; None when it can."""
        ...


class Viewer(Protocol):
    """Who the console acts as (``console/identity.py`` ``Me``)."""

    @property
    def user(self) -> str: ...

    @property
    def approver(self) -> str | None: ...

    @property
    def bundle(self) -> Bundle | None: ...


# --- the queue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The queue's query parameters, checked; ``notes`` says what was not understood."""

    view: str
    namespace: str
    policy: str
    age: str
    min_age_seconds: int
    notes: tuple[str, ...]

    def query(self, **changed: str) -> str:
        """The query string of these filters with ``changed`` (empty values left out)."""
        from urllib.parse import urlencode

        values = {
            "view": self.view,
            "namespace": self.namespace,
            "policy": self.policy,
            "age": self.age,
        }
        values.update(changed)
        return urlencode({k: v for k, v in values.items() if v})


def parse_filters(filters: Mapping[str, str], me: Viewer) -> Filters:
    """``view`` (default needs-me for an approver, else all), ``namespace``, ``policy`` and
    ``age`` (a minimum, e.g. ``30m``); a value that is not understood is ignored and said."""
    from approvalgate.approvals.durations import parse_duration

    notes: list[str] = []
    default = "needs-me" if me.approver else "all"
    view = (filters.get("view") or default).strip()
    if view not in VIEWS:
        notes.append(f"view {view!r} is not one of {', '.join(VIEWS)}: showing {default}")
        view = default
    if view == "needs-me" and not me.approver:
        notes.append(
            "needs-me needs an approver name: start the console with --approver NAME; showing all"
        )
        view = "all"
    age = (filters.get("age") or "").strip()
    seconds = 0
    if age:
        try:
            seconds = parse_duration(age)
        except ValueError as exc:
            notes.append(f"age: {exc}; showing every age")
            age = ""
    policy = (filters.get("policy") or "").strip()
    if policy and me.bundle is None:
        notes.append(
            "policy: the requests do not name their policies; start the console with "
            "--bundle FILE to filter by policy (showing every policy)"
        )
    return Filters(
        view=view,
        namespace=(filters.get("namespace") or "").strip(),
        policy=policy,
        age=age,
        min_age_seconds=seconds,
        notes=tuple(notes),
    )


def queue_context(
    state: QueueView, filters: Mapping[str, str], me: Viewer, now: datetime | None = None
) -> dict[str, Any]:
    """What the queue templates show (JSON-ready but for ``filters``)."""
    from approvalgate.approvals.records import now_utc, parse_time

    moment = now or now_utc()
    chosen = parse_filters(filters, me)
    pending = sorted(
        (i for i in map(_queue.summary, state.requests()) if _queue.is_pending(i)),
        key=lambda i: (i["created"], i["namespace"], i["name"]),
    )
    approver = me.approver or ""
    needs_me = [i for i in pending if approver and approver in i["eligible"]]
    mine = [i for i in pending if me.user and i["requester"] == me.user]
    shown = {"needs-me": needs_me, "mine": mine, "all": pending}[chosen.view]
    if chosen.namespace:
        shown = [i for i in shown if i["namespace"] == chosen.namespace]
    policies_of = _policy_finder(state, me.bundle)
    if chosen.policy and me.bundle is not None:
        shown = [i for i in shown if chosen.policy in policies_of(i)]
    if chosen.min_age_seconds:

        def old_enough(item: Mapping[str, Any]) -> bool:
            try:
                created = parse_time(item["created"])
            except ValueError:
                return False
            return (moment - created).total_seconds() >= chosen.min_age_seconds

        shown = [i for i in shown if old_enough(i)]
    rows = [
        {
            "ref": f"{i['namespace']}/{i['name']}",
            "requester": _queue.shown_identity(i["requester"]) if i["requester"] else "-",
            "environment": i["environment"] or "-",
            "eligible": ", ".join(i["eligible"]) or "-",
            "href": request_href(i["namespace"], i["name"]),
            "waiting": _queue.age(i["created"], moment),
            "expires": _queue.age(i["expiresAt"], moment) if i["expiresAt"] else "-",
            "approvals": _queue.approvals_text(i),
            "phase": _queue.phase_text(i),
            "policies": policies_of(i) if me.bundle is not None else [],
            "needs_me": bool(approver) and approver in i["eligible"],
            "mine": bool(me.user) and i["requester"] == me.user,
        }
        for i in shown
    ]
    return {
        "me": me,
        "filters": chosen,
        "rows": rows,
        "counts": {"pending": len(pending), "needs_me": len(needs_me), "mine": len(mine)},
        "namespaces": sorted({i["namespace"] for i in pending}),
        "policy_refs": sorted(p.ref for p in me.bundle.policies) if me.bundle else [],
        "with_policies": me.bundle is not None,
        "banner": banner(state),
        "now": _queue_time(moment),
    }


def render_queue(
    state: QueueView,
    filters: Mapping[str, str],
    me: Viewer,
    csrf: str,
    fragment: bool,
    now: datetime | None = None,
) -> str:
    """The queue page (or only its live part, ``fragment``)."""
    context = queue_context(state, filters, me, now)
    name = "_queue.html" if fragment else "queue.html"
    # the whole URL the page's script fetches, the filters included: it adds nothing
    chosen = context["filters"].query()
    fragment_url = "/fragment/queue" + (f"?{chosen}" if chosen else "")
    return _environment().get_template(name).render(context, csrf=csrf, fragment_url=fragment_url)


def banner(state: QueueView) -> list[str]:
    """The problems the page says first: the API server unreachable, then each namespace."""
    lines: list[str] = []
    since = state.unreachable_since()
    if since:
        lines.append(f"the API server cannot be reached since {since}; retrying")
    lines.extend(state.problems())
    return lines


def _policy_finder(
    state: QueueView, bundle: Bundle | None
) -> Callable[[Mapping[str, Any]], list[str]]:
    """The refs of the policies that select an item's run (the bundle's, as the controller
    and ``explain`` match them); no bundle: none."""
    if bundle is None:
        return lambda item: []
    policies: Bundle = bundle
    if _MATCHED.get("bundle") is not policies or len(_MATCHED) > MATCH_CACHE_SIZE:
        _MATCHED.clear()
        _MATCHED["bundle"] = policies
    by_key = {_key_of(r): r for r in state.requests()}

    def find(item: Mapping[str, Any]) -> list[str]:
        # a request's spec is immutable (but for cancelled): its uid and digest name it
        key = (item["namespace"], item["name"], item["uid"], item["specDigest"])
        found = _MATCHED.get(key)
        if found is None:
            obj = by_key.get(f"{item['namespace']}/{item['name']}")
            found = [p.ref for p in matching(obj, policies)] if obj is not None else []
            _MATCHED[key] = found
        return list(found)

    return find


MATCH_CACHE_SIZE: Final = 20_000
_MATCHED: dict[object, Any] = {}
"""The refs of the policies matching each request (by namespace, name, uid and spec
digest) under the bundle held at ``"bundle"``: one console has one bundle; the queue page
asks for every row on every change."""


def matching(request: Mapping[str, Any], bundle: Bundle) -> list[Policy]:
    """The policies of ``bundle`` that select the run of ApprovalRequest ``request``, as
    the controller asks them (the run as the requester creates it)."""
    from approvalgate.approvals.admission import request_for_manifest
    from approvalgate.approvals.decide import matching_policies

    meta = request.get("metadata") or {}
    spec = request.get("spec") or {}
    run = _run_of(request)
    namespace = str(meta.get("namespace") or "")
    admission = request_for_manifest(
        run, username=str(spec.get("requester") or ""), namespace=namespace
    )
    return matching_policies(admission, bundle)


def _as_created(request: Mapping[str, Any]) -> dict[str, Any]:
    """The AgentRun the controller will create for ``request`` (``approvals.queue``'s
    ``run_manifest``: namespace, the request's annotations), before the approvals' records
    and the finalizer are added."""
    from approvalgate.approvals.queue import run_manifest

    return run_manifest(request, [], needs_view=False)


def _run_of(request: Mapping[str, Any]) -> dict[str, Any]:
    """The AgentRun a request embeds (``spec.run``; empty when it has none)."""
    run = (request.get("spec") or {}).get("run")
    return dict(run) if isinstance(run, Mapping) else {}


def _key_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def request_href(namespace: str, name: str) -> str:
    from urllib.parse import quote

    return f"/requests/{quote(namespace, safe='')}/{quote(name, safe='')}"


def _queue_time(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S UTC")


# --- one request ----------------------------------------------------------------------------


def request_context(
    state: QueueView,
    client: Client,
    namespace: str,
    name: str,
    me: Viewer,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What the request templates show; ``found`` is False when the state has no such
    request (the page says so)."""
    from approvalgate.approvals.records import now_utc

    moment = now or now_utc()
    base: dict[str, Any] = {
        "me": me,
        "namespace": namespace,
        "name": name,
        "ref": f"{namespace}/{name}",
        "href": request_href(namespace, name),
        "banner": banner(state),
        "now": _queue_time(moment),
        "changed": "",
    }
    obj = next(
        (r for r in state.requests() if _key_of(r) == f"{namespace}/{name}"),
        None,
    )
    if obj is None:
        return {**base, "found": False}
    item = _queue.summary(obj)
    run = _run_of(obj)
    content = read_content(client, namespace, run)
    held = [e["object"] for e in content if e.get("object") is not None]
    verdicts = _verdicts(obj, state, me.bundle, held, moment)
    decisions = decisions_for(state, item, moment, verdicts)
    refusals, notes = _may_decide({**item, "decisions": decisions}, me)
    digest, digest_problem = run_digest(item, run)
    for decision in refusals:  # approve, reject and withdraw refuse it alike
        refusals[decision] = refusals[decision] or digest_problem
    if not refusals["approve"]:
        refusals["approve"] = hidden_refusal(f"{namespace}/{name}", run, held)
    if not refusals["approve"]:
        refusals["approve"] = unread_refusal(content, me.bundle)
    return {
        **base,
        "found": True,
        "item": item,
        "requester": _queue.shown_identity(item["requester"]) if item["requester"] else "-",
        "phase": _queue.phase_text(item),
        "pending": _queue.is_pending(item),
        "approvals": _queue.approvals_text(item),
        "waiting": _queue.age(item["created"], moment),
        "expires_in": _queue.age(item["expiresAt"], moment) if item["expiresAt"] else "",
        "digest": digest,
        "digest_problem": digest_problem,
        "run_yaml": to_yaml(_as_created(obj)),
        "content": content,
        # the request and the content shown here: a click signs only for them
        "pin": _queue.pin(obj, held),
        "policies": policies_context(obj, me.bundle),
        "decisions": decisions,
        "timeline": timeline(client, obj, moment),
        "resubmitted": resubmission(state, obj),
        "refusals": refusals,
        "notes": notes,
    }


def render_request(
    state: QueueView,
    client: Client,
    namespace: str,
    name: str,
    me: Viewer,
    csrf: str,
    fragment: bool,
    flash: str = "",
    error: Any = None,
    now: datetime | None = None,
    opened: Mapping[str, str] | None = None,
) -> str:
    """The request page (or only its live part, ``fragment``). ``error`` is a refused
    decision's ``(message, advice)`` (or an :class:`ApprovalgateError`), shown above the
    form; ``flash`` what the last decision did.

    The page's forms name what it showed (uid, spec digest, pin): a click signs that or
    nothing. The live update must not change it, so the page's fragment URL carries them
    and the fragment (``opened``: that URL's query) is compared with the request as it is
    now: when it is another (made again under the name, or its content rewritten since),
    the fragment shows it as it is, says so, and its forms keep what the page opened, every
    button disabled (:data:`CHANGED`): a reload reads it again. A fragment asked for
    without them is treated so too. The page answering a refused click is given the
    clicked form's (``opened``) the same way: it never offers to sign what was not read."""
    from urllib.parse import quote, urlencode

    context = request_context(state, client, namespace, name, me, now)
    shown = _form_of(context)
    if fragment or opened is not None:
        seen = {key: str((opened or {}).get(key) or "") for key in FORM_FIELDS}
        if seen != shown or not seen["pin"]:
            context = {
                **context,
                "changed": CHANGED,
                "refusals": dict.fromkeys(("approve", "reject", "withdraw"), CHANGED_BUTTON),
                "notes": [],
            }
            shown = seen
    page = "_request.html" if fragment else "request.html"
    fragment_url = (
        f"/fragment/request/{quote(namespace, safe='')}/{quote(name, safe='')}?" + urlencode(shown)
    )
    return (
        _environment()
        .get_template(page)
        .render(
            context,
            csrf=csrf,
            flash=flash,
            error=_error_context(error),
            fragment_url=fragment_url,
            form=shown,
        )
    )


FORM_FIELDS: Final = ("uid", "digest", "pin")
CHANGED: Final = (
    "this request changed since you opened its page (made again under its name, or the "
    "content its run references rewritten): what is shown now is not what you read, and "
    "nothing you read can be signed from here; reload the page to read it as it is now, "
    "then decide"
)
CHANGED_BUTTON: Final = "changed since you opened this page: reload it to decide"


def _form_of(context: Mapping[str, Any]) -> dict[str, str]:
    """What the page's forms name: the request's uid and spec digest and the pin of the
    request with its content as shown ("" for a request the page does not show)."""
    if not context.get("found"):
        return dict.fromkeys(FORM_FIELDS, "")
    item = context["item"]
    return {
        "uid": str(item.get("uid") or ""),
        "digest": str(item.get("specDigest") or ""),
        "pin": str(context.get("pin") or ""),
    }


def run_digest(item: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[str, str]:
    """The digest of the run the request embeds, as ``status`` shows it (computed, not the
    request's ``spec.specDigest``, which is the requester's word), and why no decision can
    be filed when they differ ("" when they agree): ``file_decision``'s refusal."""
    from approvalgate.approvals.digest import spec_digest

    spec = run.get("spec")
    computed = spec_digest(spec if isinstance(spec, Mapping) else {})
    claimed = str(item.get("specDigest") or "")
    if computed == claimed:
        return computed, ""
    return computed, (
        f"spec.specDigest {claimed or '(none)'} is not the digest of the run it embeds "
        f"(sha256:{computed}): nothing can be signed for it; ask the requester to make a new "
        "request"
    )


def unread_refusal(content: Sequence[Mapping[str, Any]], bundle: Bundle | None) -> str:
    """Why the console does not approve when the bundle binds the content and some of it
    could not be read (``content``: :func:`read_content`'s entries): the approval would be
    refused on the click (``file_decision``), so it is said before it ("" otherwise)."""
    if bundle is None or not bundle.binds_content:
        return ""
    unread = [str(entry["error"]) for entry in content if entry.get("unreadable")]
    if not unread:
        return ""
    return (
        f"{unread[0]}: an approval must bind the content its run references "
        "(referencedContent: bind), so none can be signed here"
    )


def hidden_refusal(ref: str, run: Mapping[str, Any], held: Sequence[Mapping[str, Any]]) -> str:
    """Why the console does not approve request ``ref`` when its run's spec or the content
    ``held`` holds characters a screen does not show ("" when neither does): the CLI signs
    such text only with ``--accept-hidden-text``, after the approver has read it."""
    from approvalgate.approvals import hidden_text

    found = hidden_text.scan("the run's spec", run.get("spec"))
    for obj in held:
        meta = obj.get("metadata") or {}
        found += hidden_text.scan(f"{obj.get('kind')} {meta.get('name')} spec", obj.get("spec"))
    if not found:
        return ""
    return (
        "this request holds text you cannot see, which the agent reads ("
        + "; ".join(f.describe() for f in found[:3])
        + (f"; {len(found) - 3} more" if len(found) > 3 else "")
        + "): ask the requester what it is for; to sign it anyway, after reading it, run "
        f"`approvalgate approve --request {ref} --accept-hidden-text ...`"
    )


def _error_context(error: Any) -> dict[str, str] | None:
    if error is None:
        return None
    if isinstance(error, str):
        return {"message": error, "advice": ""}
    if isinstance(error, tuple):
        message, advice = (*error, "")[:2]
        return {"message": str(message), "advice": str(advice or "")}
    return {
        "message": str(getattr(error, "message", error)),
        "advice": str(getattr(error, "advice", "") or ""),
    }


def _may_decide(item: Mapping[str, Any], me: Viewer) -> tuple[dict[str, str], list[str]]:
    """console-decide's ``actions.refusals`` and ``actions.notes`` (imported when used);
    ``item`` carries the decisions filed (a withdrawal needs a standing approval)."""
    from approvalgate.console import actions

    # the pages read a Viewer (what they show); actions judge the console's whole Me, which
    # is what every caller passes (tests pass stand-ins with the same fields)
    whole = cast("Me", me)
    refusals: dict[str, str] = dict(actions.refusals(item, whole))
    notes: list[str] = list(actions.notes(item, whole))
    for decision in ("approve", "reject", "withdraw"):
        refusals.setdefault(decision, "")
    return refusals, notes


def to_yaml(obj: object) -> str:
    """``obj`` as block YAML in its own key order (what a reader expects of a manifest)."""
    if not obj:
        return ""
    # characters that show as nothing are written as <U+XXXX>, and runs of blank lines as
    # one line saying how many: the approver sees them
    return readable(
        yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)
    )


def read_content(client: Client, namespace: str, run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ImplementationSpecs and Agent the run references, and the AgentProvider the Agent
    names, read now with the user's credentials by the reader ``status`` and the approval
    use (``commands._content.read_run``: the page's pin is theirs); a refusal or absence is
    said in place of the object."""
    from approvalgate.approvals.hidden_text import escaped
    from approvalgate.commands import _content

    reading = _content.read_run(client, namespace, run.get("spec"))
    if reading.invalid is not None:
        return [{"kind": "", "name": "", "error": reading.invalid.message, "text": "", "yaml": ""}]
    found: list[dict[str, Any]] = []
    for read in reading.read:
        kind, name = read.kind, read.name
        entry: dict[str, Any] = {"kind": kind, "name": name, "error": "", "text": "", "yaml": ""}
        if read.error is not None:
            advice = read.error.advice
            entry["error"] = f"{read.error.message}; {advice}" if advice else read.error.message
            entry["unreadable"] = True
        elif read.obj is None:
            entry["error"] = (
                f"{kind} {namespace}/{name} does not exist (HTTP 404): the run cannot start "
                "without it"
            )
        else:
            body = read.obj.get("spec") or {}
            if kind == "ImplementationSpec":
                task = str(body.get("text") or "")
                entry["summary"] = escaped(str(body.get("summary") or ""))
                entry["text"] = readable(task)
                entry["lines"] = len(task.splitlines())
            entry["yaml"] = to_yaml(body)
            entry["object"] = read.obj
        found.append(entry)
    return found


def policies_context(request: Mapping[str, Any], bundle: Bundle | None) -> dict[str, Any]:
    """The matching policies with what each requires, as ``explain`` says it (needs the
    bundle: without one the page says how to see them)."""
    if bundle is None:
        return {"bundle": False, "found": []}
    from approvalgate.approvals.durations import format_duration

    items = []
    for policy in matching(request, bundle):
        items.append(
            {
                "ref": policy.ref,
                "enforcement": policy.enforcement,
                "mode": policy.mode,
                "required": policy.required_approvals,
                "approver_refs": list(policy.approver_refs),
                "approvers": sorted(policy.approvers),
                "ttl": format_duration(policy.timeout_seconds),
                "rejection": "a reject blocks (veto)"
                if policy.rejection == "veto"
                else "a reject is a vote",
                "bypass": sorted(policy.bypass.approvers) if policy.bypass else [],
            }
        )
    return {"bundle": True, "environment": bundle.environment, "found": items}


def _of_request(state: QueueView, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        d
        for d in state.decisions()
        if (d.get("metadata") or {}).get("namespace") == namespace
        and (d.get("spec") or {}).get("requestName") == name
    ]


def _verdicts(
    request: Mapping[str, Any],
    state: QueueView,
    bundle: Bundle | None,
    held: Sequence[Mapping[str, Any]],
    now: datetime,
) -> dict[str, str]:
    """With ``--bundle``: each decision's verdict as the webhook gives it when it judges the
    run the controller creates (``decide`` over the decisions and the content read now):
    decision name -> "" (valid under every matching policy) or the first policy's note why
    not. Without a bundle, or when the run cannot be judged: empty (the status tells)."""
    if bundle is None:
        return {}
    from approvalgate.approvals.admission import request_for_manifest
    from approvalgate.approvals.decide import decide
    from approvalgate.approvals.queue import run_manifest
    from approvalgate.approvals.view import StaticView, decision_envelope

    meta = request.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    mine = _of_request(state, namespace, name)
    try:
        view = StaticView.build(requests=[request], decisions=mine, objects=held)
        manifest = run_manifest(request, [], bundle.needs_view)
        requester = str((request.get("spec") or {}).get("requester") or "")
        admission = request_for_manifest(manifest, username=requester, namespace=namespace)
        decision = decide(admission, bundle, now, view)
    except Exception:  # a run decide() cannot judge: the controller's status tells
        return {}
    ordered = sorted(
        (d for d in mine if decision_envelope(d)),
        key=lambda d: (
            str((d.get("metadata") or {}).get("creationTimestamp") or ""),
            str((d.get("metadata") or {}).get("name") or ""),
        ),
    )
    names = [str((d.get("metadata") or {}).get("name") or "") for d in ordered]
    found: dict[str, str] = {}
    for result in decision.results:
        for verdict in result.records:
            if not verdict.cluster or not 0 <= verdict.index < len(names):
                continue
            key = names[verdict.index]
            if verdict.valid:
                found.setdefault(key, "")
            elif not found.get(key):
                found[key] = f"{verdict.note} (policy {result.policy})"
    return found


def decisions_for(
    state: QueueView,
    item: Mapping[str, Any],
    now: datetime,
    verdicts: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The ApprovalDecisions about the request, oldest first (as ``status`` lists them),
    each with its record's reason and whether it counts, or why not: the webhook's verdict
    where ``verdicts`` has it (:func:`_verdicts`, with ``--bundle``), else what the status
    and the record say."""
    from approvalgate.approvals import records
    from approvalgate.commands._cluster import CREATED_BY

    namespace, name = item["namespace"], item["name"]
    mine = _of_request(state, namespace, name)
    judged = verdicts or {}
    envelopes = {
        str((d.get("metadata") or {}).get("name") or ""): (d.get("spec") or {}).get("record")
        for d in mine
    }
    out = []
    for summary in _queue.decisions_of(mine, name, CREATED_BY):
        parsed, problems = records.parse_envelopes([envelopes.get(summary["name"])])
        claim = parsed[0].claim if parsed else None
        why = problems[0].message if problems else ""
        counted = {
            "approve": item["approvedBy"],
            "bypass": item["approvedBy"],
            "reject": item["rejectedBy"],
            "withdraw": item["withdrawnBy"],
        }.get(summary["decision"], [])
        if summary["name"] in judged and not why:
            why = judged[summary["name"]]
        elif claim is not None and not why:
            why = _why_not(item, summary, claim, counted, now)
        out.append(
            {
                **summary,
                "reason": claim.reason if claim is not None else "",
                "issued": records.format_time(claim.issued_at) if claim is not None else "",
                "valid": not why,
                "why": why,
            }
        )
    return out


def _why_not(
    item: Mapping[str, Any],
    summary: Mapping[str, Any],
    claim: Any,
    counted: Sequence[str],
    now: datetime,
) -> str:
    """ "" when the controller counted the decision (the status lists its approver), else
    the first fact of the record that keeps it from counting."""
    if summary["approver"] in counted:
        return ""
    if claim.digest != item["specDigest"]:
        return f"signed for another spec (sha256:{claim.digest[:12]}…), not this request's"
    if claim.environment and claim.environment != item["environment"]:
        return f"names environment {claim.environment}; the request is for {item['environment']}"
    if claim.expires_at <= now:
        return f"expired at {claim.expires_text}"
    if claim.approver != summary["approver"]:
        return f"the record is signed as {claim.approver}, filed as {summary['approver']}"
    if item["required"] is None:
        return "not counted yet (the controller has not evaluated the request)"
    return (
        f"not counted by the controller (its status does not name {summary['approver']}): "
        "the approver is not one the matching policies name, the signature does not verify, "
        "or the controller has not evaluated it yet (approvalgate status shows its message)"
    )


def timeline(client: Client, request: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The request's phase transitions: its status times and its Events (read now; a
    refusal is said in place)."""
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.kube.resources import CORE_EVENTS

    meta = request.get("metadata") or {}
    status = request.get("status") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    times = [
        (label, str(status.get(field) or meta.get("creationTimestamp") or ""))
        if field == "requestedAt"
        else (label, str(status.get(field) or ""))
        for label, field in (
            ("requested", "requestedAt"),
            ("decided", "decidedAt"),
            ("submitted", "submittedAt"),
            ("expires", "expiresAt"),
        )
    ]
    selector = [
        f"involvedObject.namespace={namespace}",
        f"involvedObject.name={name}",
        "involvedObject.kind=ApprovalRequest",
    ]
    if meta.get("uid"):
        selector.append(f"involvedObject.uid={meta['uid']}")
    error = ""
    events: list[dict[str, str]] = []
    try:
        answer = client.request(
            f"listing the events of approvalrequest {namespace}/{name}",
            "GET",
            CORE_EVENTS.path(namespace),
            query=[("fieldSelector", ",".join(selector)), ("limit", str(EVENT_LIMIT))],
        )
    except ApprovalgateError as exc:
        error = (
            f"you may not list events in namespace {namespace} (HTTP 403): {exc.message}"
            if getattr(exc, "status", None) == 403
            else exc.message
        )
    else:
        for event in (answer or {}).get("items") or []:
            when = str(
                event.get("eventTime")
                or event.get("lastTimestamp")
                or event.get("firstTimestamp")
                or (event.get("metadata") or {}).get("creationTimestamp")
                or ""
            )
            events.append(
                {
                    "time": when,
                    "ago": _queue.age(when, now) if when else "-",
                    "type": str(event.get("type") or ""),
                    "action": str(event.get("action") or ""),
                    "reason": str(event.get("reason") or ""),
                    "note": str(event.get("note") or event.get("message") or ""),
                }
            )
        events.sort(key=lambda e: e["time"])
    return {
        "times": [
            {"label": label, "time": when, "ago": _queue.age(when, now)}
            for label, when in times
            if when
        ],
        "events": events,
        "error": error,
    }


def resubmission(state: QueueView, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """For a resubmitted run: the unified diff of its spec (YAML) against the spec of the
    latest earlier request for the same run (same namespace, and the same run name, or the
    same ``generateName`` prefix when ``approvalgate request`` named both) that was
    Approved or Submitted. None when there is no such request."""
    meta = request.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    created = str(meta.get("creationTimestamp") or "")
    family = _family(name)
    earlier = []
    for other in state.requests():
        other_meta = other.get("metadata") or {}
        other_name = str(other_meta.get("name") or "")
        if other_meta.get("namespace") != namespace or other_name == name:
            continue
        if _family(other_name) != family:
            continue
        if str((other.get("status") or {}).get("phase") or "") not in RESUBMIT_PHASES:
            continue
        when = str(other_meta.get("creationTimestamp") or "")
        if created and when and when > created:
            continue
        earlier.append((when, other_name, other))
    if not earlier:
        return None
    _, before_name, before = max(earlier, key=lambda e: (e[0], e[1]))
    old = to_yaml(((before.get("spec") or {}).get("run") or {}).get("spec")).splitlines()
    new = to_yaml(((request.get("spec") or {}).get("run") or {}).get("spec")).splitlines()
    diff = list(
        difflib.unified_diff(
            old, new, f"{namespace}/{before_name} (approved)", f"{namespace}/{name}", lineterm=""
        )
    )
    return {
        "name": before_name,
        "href": request_href(namespace, before_name),
        "phase": str((before.get("status") or {}).get("phase") or ""),
        "lines": [{"text": line, "kind": _diff_kind(line)} for line in diff],
        "same": not diff,
    }


def _family(name: str) -> str:
    match = _GENERATED.match(name)
    return match.group("prefix") if match else name


def _diff_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "same"


# --- templates ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("approvalgate.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
    )


_LINE_BREAKS: Final = {0x2028: "<U+2028>", 0x2029: "<U+2029>"}
"""Line and paragraph separators: a browser may break a line at them where the rest of the
page's text (and ``status``) shows none."""


def _shown(value: Any) -> Any:
    """Every value a template shows (text and attributes alike), before it is HTML-escaped:
    a string's hidden characters (``hidden_text.is_hidden``: bidi controls, zero-width,
    tag characters, escape codes) and line separators written as ``<U+XXXX>``, as
    ``status`` writes them. What the requester wrote, in any field, shows as it is stored."""
    if not isinstance(value, str) or hasattr(value, "__html__"):
        return value
    from approvalgate.approvals.hidden_text import escaped

    return escaped(value).translate(_LINE_BREAKS)


BLANK_RUN: Final = 3
"""From this many lines that show as nothing in a row, a text is shown with one line saying
how many (``<N blank lines>``): a page's box shows 32 lines, so blank lines hid what came
after them behind a scroll bar."""
WIDE_BLANK: Final = 40
"""Past this many blank characters in a row within a line (spaces, tabs, no-break and other
Unicode spaces), one marker says how many (``<N spaces>``): the box wraps such a run into
rows of nothing. Deeper than any indentation a manifest's YAML needs."""
_BLANK_LINES: Final = re.compile(rf"(?:^[^\S\n]*\n){{{BLANK_RUN},}}", re.MULTILINE)
_WIDE_BLANKS: Final = re.compile(rf"[^\S\n]{{{WIDE_BLANK + 1},}}")


def readable(text: str) -> str:
    """``text`` as a box of the page shows it: hidden characters escaped, each run of
    :data:`BLANK_RUN` or more blank lines (of any Unicode space) one line saying how many,
    and each run of more than :data:`WIDE_BLANK` blank characters in a line one marker."""
    from approvalgate.approvals.hidden_text import escaped

    def lines(found: re.Match[str]) -> str:
        return f"<{found.group(0).count(chr(10))} blank lines>\n"

    def blanks(found: re.Match[str]) -> str:
        run = found.group(0)
        return f"<{len(run)} {'spaces' if run.strip(' ') == '' else 'blank characters'}>"

    return _WIDE_BLANKS.sub(blanks, _BLANK_LINES.sub(lines, escaped(text)))
