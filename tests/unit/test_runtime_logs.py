"""runtime.logs: one JSON object per line, the fixed fields first, then the event's own."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from approvalgate.runtime import logs

NAMES = ("approvalgate.test.logs", "approvalgate.test.other")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure(NAMES, "info", out)
    yield out
    for name in NAMES:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_the_fixed_fields_then_the_object_reference(stream: io.StringIO) -> None:
    log = logging.getLogger("approvalgate.test.logs.part")
    log.info("admission", extra=logs.fields(namespace="team-a", name="run-1", decision="deny"))
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert list(record) == ["ts", "level", "msg", "logger", "pid", "namespace", "name", "decision"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(record["ts"]))
    assert record["level"] == "info"
    assert record["msg"] == "admission"
    assert record["logger"] == "approvalgate.test.logs.part"
    assert record["pid"] == os.getpid()
    assert (record["namespace"], record["name"], record["decision"]) == ("team-a", "run-1", "deny")


def test_a_traceback_goes_in_exc_and_odd_values_are_strings(stream: io.StringIO) -> None:
    log = logging.getLogger("approvalgate.test.other")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra=logs.fields(path=Path("/etc/x"), who="Zoë"))
    (record,) = records(stream)
    assert record["level"] == "error"
    assert record["path"] == "/etc/x"
    assert record["who"] == "Zoë"  # not escaped
    assert "Zoë" in stream.getvalue()
    assert "RuntimeError: boom" in str(record["exc"])


def test_level_filter_and_nothing_reaches_the_root_logger(stream: io.StringIO) -> None:
    root = logging.getLogger()
    elsewhere = io.StringIO()
    handler = logging.StreamHandler(elsewhere)
    root.addHandler(handler)
    try:
        log = logging.getLogger("approvalgate.test.logs")
        log.debug("hidden")
        log.warning("shown")
    finally:
        root.removeHandler(handler)
    assert [record["msg"] for record in records(stream)] == ["shown"]
    assert elsewhere.getvalue() == ""


def test_configuring_again_replaces_the_handler(stream: io.StringIO) -> None:
    again = io.StringIO()
    logs.configure(NAMES, "debug", again)
    logging.getLogger("approvalgate.test.logs").debug("once")
    assert stream.getvalue() == ""
    assert [record["msg"] for record in records(again)] == ["once"]
