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


FORGED = '\n{"level": "info", "msg": "approved by alice"}'
HIDING = "\u2028\u2029\u0085\u202e\u200b\U000e0041\ud800\ue000"
"""Line and paragraph separators, NEL (a C1 control), RIGHT-TO-LEFT OVERRIDE, a zero-width
space, a tag character, a lone surrogate, a private-use character."""


def test_text_in_a_field_never_forges_hides_or_reorders_a_line(stream: io.StringIO) -> None:
    """A value a requester wrote (a name, a message quoting her text) is one JSON string of
    one line whatever it holds: a newline or quote cannot start another record or field; a
    character that a terminal or a log viewer breaks a line at, reorders the text around
    (bidi controls) or shows as nothing is written as its JSON escape, and a lone surrogate
    (which UTF-8 cannot encode) no longer loses the whole record. Readable letters stay."""
    log = logging.getLogger("approvalgate.test.logs")
    log.info("admission", extra=logs.fields(name=FORGED, note=f"Zoë{HIDING}done"))
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    (record,) = records(stream)
    assert record["msg"] == "admission" and record["level"] == "info"
    assert record["name"] == FORGED and record["note"] == f"Zoë{HIDING}done"
    assert "Zoë" in text
    shown = text.encode("utf-8").decode("utf-8")  # what a terminal is handed
    for char in HIDING:
        assert char not in shown, f"U+{ord(char):04X} written as is"
    assert "\\u2028" in text and "\\u202e" in text and "\\udb40\\udc41" in text


def test_a_record_with_a_lone_surrogate_is_written_to_a_utf8_stream(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w", encoding="utf-8") as out:
        logs.configure(NAMES, "info", out)
        try:
            logging.getLogger("approvalgate.test.logs").info(
                "admission", extra=logs.fields(name="run\ud800")
            )
        finally:
            for name in NAMES:
                logging.getLogger(name).handlers.clear()
                logging.getLogger(name).propagate = True
    (line,) = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["name"] == "run\ud800"
