"""The ``approvalgate`` command: argument parsing and the one top-level error handler.

Each command lives in its own module under :mod:`approvalgate.commands` and is imported
only when it runs, so ``approvalgate check`` never pays for aiohttp or kubernetes.

Exit codes: 0 ok, 1 findings or denied, 2 usage, 3 crash (traceback kept), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from approvalgate import __version__

if TYPE_CHECKING:
    from types import ModuleType

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# command name -> (module under approvalgate.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "keygen": (
        "keygen",
        "create an approver's key (or --import one: a token, a KMS, a file) and its Approver "
        "document",
    ),
    "approve": (
        "approve",
        "sign an approval: into a manifest's AgentRuns, or as a decision on a request",
    ),
    "request": ("request", "ask for approval: create an ApprovalRequest for each run of a file"),
    "pending": ("pending", "list (or --watch) the approval requests waiting for approvers"),
    "reject": ("reject", "reject an approval request (a signed decision, with a reason)"),
    "withdraw": ("withdraw", "take back your approval of an approval request"),
    "status": ("status", "where an approval request stands: phase, approvals, decisions, run"),
    "cancel": ("cancel", "cancel your approval request (no run will be created)"),
    "console": (
        "console",
        "open the approval console in the browser: the queue, each request's story, decide",
    ),
    "verify": ("verify", "decide a manifest exactly as the webhook would (exit 1 if denied)"),
    "explain": ("explain", "show which policies match a run, what they require, who may approve"),
    "webhook": ("webhook", "run the validating admission webhook (webhook serve)"),
    "controller": ("controller", "run the approval queue's controller (requests -> runs)"),
    "validate": ("validate", "validate a policy repo (approvalgate.yaml and its specs)"),
    "compile": ("compile", "render a policy repo into <output>/<env>/ for Argo CD"),
    "check": ("check", "fail if the committed output is stale (read-only, for CI)"),
    "audit": ("audit", "audit a live cluster: runs that slipped past admission, webhook drift"),
}


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: an option is read only by its whole name, so a guard
    # refusing options by name (the chart's for controller.extraArgs) is not passed by a
    # prefix (`--allow` for --allow-unsigned-bundle)
    parser = argparse.ArgumentParser(
        prog="approvalgate",
        allow_abbrev=False,
        description="GitOps policy compiler and admission webhook: AgentRuns need recorded, "
        "signed approvals bound to their exact spec.",
        epilog="Exit codes: 0 ok, 1 findings or denied, 2 usage error, 3 internal error. "
        "Run `approvalgate COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"approvalgate {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the full traceback of an internal error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = _command_module(module)
        sub_parser = sub.add_parser(
            name,
            allow_abbrev=False,
            help=help_text,
            description=command.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub_parser)
    return parser


def _command_module(module: str) -> ModuleType:
    """A command's module: ``add_arguments(parser)`` and ``run(args) -> int``."""
    return importlib.import_module(f"approvalgate.commands.{module}")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        command = _command_module(COMMANDS[args.command][0])
        code: int = command.run(args)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        from approvalgate.approvals.errors import ApprovalgateError

        if isinstance(exc, ApprovalgateError):
            print(f"error: {exc.render()}", file=sys.stderr)
            return exc.exit_code
        return _crash(exc, debug)


def _crash(exc: BaseException, debug: bool) -> int:
    text = "".join(traceback.format_exception(exc))
    if debug:
        print(text, file=sys.stderr, end="")
    else:
        log = _crash_log()
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(text, encoding="utf-8")
            where = f"the traceback is in {log}"
        except OSError:
            where = "run again with --debug for the traceback"
        print(
            f"internal error: {type(exc).__name__}: {exc}\n  this is a bug in approvalgate; "
            f"{where}",
            file=sys.stderr,
        )
    return EXIT_CRASH


def _crash_log() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    if not os.access(Path(base).parent if not Path(base).exists() else base, os.W_OK):
        base = tempfile.gettempdir()
    return Path(base) / "approvalgate" / "crash.log"


if __name__ == "__main__":
    raise SystemExit(main())
