"""runtime.filewatch on real files: a change is noticed, a broken or deleted file keeps the
last good value (logged once per distinct content, counted), Kubernetes' ``..data`` swaps."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.runtime import logs
from approvalgate.runtime.filewatch import WatchedFile, digest, poll, stat_mark

LOGGER = "approvalgate.test.filewatch"


class Broken(ApprovalgateError):
    pass


def parse(content: bytes, source: str) -> dict[str, Any]:
    """A settings file: a JSON object, else an error naming the file."""
    try:
        value = json.loads(content)
    except ValueError:
        raise Broken(f"{source} is not JSON", advice="fix it") from None
    if not isinstance(value, dict):
        raise ValueError("not an object")  # not an ApprovalgateError: logged by its type
    return value


@dataclass
class Watched:
    """A WatchedFile on ``path`` and everything it said: log lines, switches, failures."""

    path: Path
    stream: io.StringIO = field(default_factory=io.StringIO)
    switches: list[tuple[Any, Any]] = field(default_factory=list)
    counted: int = 0

    def __post_init__(self) -> None:
        logs.configure((LOGGER,), "info", self.stream)
        self.file = WatchedFile(
            self.path,
            parse,
            log=logging.getLogger(LOGGER),
            what="settings",
            unloaded="nothing is served",
            context=lambda value: {"version": value["version"] if value else 0},
            on_switch=lambda previous, value: self.switches.append((previous, value)),
            on_failure=self._count,
        )

    def _count(self) -> None:
        self.counted += 1

    def lines(self) -> list[dict[str, Any]]:
        """The log lines since the last call, without their time and pid."""
        out = []
        for line in self.stream.getvalue().splitlines():
            record = json.loads(line)
            out.append({k: v for k, v in record.items() if k not in ("ts", "pid", "logger")})
        self.stream.seek(0)
        self.stream.truncate()
        return out


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Watched]:
    watched = Watched(tmp_path / "settings.json")
    yield watched
    logging.getLogger(LOGGER).handlers.clear()


_LATER = itertools.count(1)


def write(path: Path, content: str) -> None:
    """Write and move the mtime on: file times follow a coarse clock, so a same-size rewrite
    can otherwise keep the stat mark (a real mount's update always changes the inode)."""
    path.write_text(content)
    later = time.time_ns() + next(_LATER) * 10**9
    os.utime(path, ns=(later, later))


def test_a_changed_file_is_loaded_and_an_unchanged_one_is_not(settings: Watched) -> None:
    write(settings.path, '{"version": 1}')
    assert settings.file.load()
    assert settings.file.value == {"version": 1}
    assert not settings.file.load()  # nothing changed
    write(settings.path, '{"version": 1}')  # touched, same content: not a reload
    assert not settings.file.load()
    write(settings.path, '{"version": 2}')
    assert settings.file.load()
    assert settings.file.value == {"version": 2}
    assert (settings.file.loads, settings.file.failures, settings.counted) == (2, 0, 0)
    assert settings.switches == [(None, {"version": 1}), ({"version": 1}, {"version": 2})]
    assert settings.file.loaded_at is not None
    assert settings.lines() == []  # the owner says what a load means (on_switch)


def test_a_broken_file_keeps_the_last_good_value_logged_once_per_content(
    settings: Watched,
) -> None:
    write(settings.path, '{"version": 1}')
    settings.file.load()
    write(settings.path, '{"version": ')
    assert not settings.file.load()
    assert settings.file.value == {"version": 1}
    assert settings.lines() == [
        {
            "level": "error",
            "msg": "settings file cannot be loaded; keeping the last good settings",
            "path": str(settings.path),
            "error": f"{settings.path} is not JSON\n  hint: fix it",
            "version": 1,
        }
    ]
    write(settings.path, '{"version": ')  # the same broken content again: not counted again
    assert not settings.file.load()
    write(settings.path, "[1, 2]")  # another broken content: counted, logged by its type
    assert not settings.file.load()
    assert [line["error"] for line in settings.lines()] == ["ValueError"]
    assert (settings.file.failures, settings.counted) == (2, 2)
    write(settings.path, '{"version": 1}')  # back to the content in force: no reload
    assert not settings.file.load()
    assert settings.lines() == [
        {"level": "info", "msg": "settings file is good again", "path": str(settings.path)}
    ]
    assert settings.file.loads == 1
    assert len(settings.switches) == 1


def test_a_deleted_file_keeps_the_last_good_value(settings: Watched) -> None:
    write(settings.path, '{"version": 3}')
    settings.file.load()
    settings.path.unlink()
    assert not settings.file.load()
    assert not settings.file.load()  # still gone: logged and counted once
    assert settings.file.value == {"version": 3}
    assert (settings.file.failures, settings.counted) == (1, 1)
    assert settings.lines() == [
        {
            "level": "error",
            "msg": "settings file is gone or unreadable; keeping the last good settings",
            "path": str(settings.path),
            "version": 3,
        }
    ]
    write(settings.path, '{"version": 4}')
    assert settings.file.load()
    assert settings.file.value == {"version": 4}


def test_without_a_good_value_the_owner_says_what_that_means(settings: Watched) -> None:
    assert not settings.file.load()  # no file at all: said once, not a reload failure
    assert not settings.file.load()
    assert settings.file.failures == 0
    write(settings.path, "{")
    assert not settings.file.load()
    assert settings.file.value is None
    assert [(line["msg"], line.get("version")) for line in settings.lines()] == [
        ("no settings loaded: nothing is served until the file can be read", None),
        ("settings file cannot be loaded; nothing is served", 0),
    ]
    assert settings.file.failures == 1


def test_kubernetes_volume_symlink_swaps_are_noticed(tmp_path: Path) -> None:
    """A ConfigMap volume: settings.json -> ..data/settings.json, ..data swapped atomically."""
    root = tmp_path / "volume"
    root.mkdir()

    def publish(version: int) -> None:
        folder = root / f"..2026_11_21_12_00_00.{version:04d}"
        folder.mkdir()
        (folder / "settings.json").write_text(json.dumps({"version": version}))
        (root / "..data_tmp").symlink_to(folder.name)
        os.replace(root / "..data_tmp", root / "..data")

    publish(1)
    (root / "settings.json").symlink_to("..data/settings.json")
    watched = Watched(root / "settings.json")
    try:
        assert watched.file.load()
        mark = stat_mark(root / "settings.json")
        publish(2)  # the file's own path and its symlink are untouched
        assert stat_mark(root / "settings.json") != mark
        assert watched.file.load()
        assert watched.file.value == {"version": 2}
    finally:
        logging.getLogger(LOGGER).handlers.clear()


def test_watch_reloads_in_the_background_until_cancelled(settings: Watched) -> None:
    write(settings.path, '{"version": 1}')
    settings.file.load()

    async def scenario() -> None:
        task = asyncio.create_task(settings.file.watch(0.01))
        write(settings.path, '{"version": 2}')
        async with asyncio.timeout(30):
            while settings.file.value != {"version": 2}:
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert settings.file.loads == 2


def test_an_error_in_one_poll_never_stops_the_next(settings: Watched) -> None:
    steps: list[int] = []

    def step() -> None:
        steps.append(len(steps))
        if len(steps) == 1:
            raise RuntimeError("first poll fails")

    async def scenario() -> None:
        log = logging.getLogger(LOGGER)
        task = asyncio.create_task(
            poll(0.01, step, log=log, message="settings poll failed", context={"path": "p"})
        )
        async with asyncio.timeout(30):
            while len(steps) < 3:
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    (line,) = settings.lines()
    assert (line["msg"], line["path"]) == ("settings poll failed", "p")
    assert "RuntimeError: first poll fails" in line["exc"]


def test_digest_separates_the_files_it_covers() -> None:
    assert digest(b"ab", b"c") != digest(b"a", b"bc")
    assert digest(b"x") == digest(b"x")


def test_stat_mark_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert stat_mark(tmp_path / "missing") is None


def test_companions_are_watched_with_the_file_and_may_be_absent(tmp_path: Path) -> None:
    """A value made of two files (a bundle and its signatures): a change of either reloads,
    an absent companion reaches parse as None (not "gone"), the failure fields name it."""
    main, companion = tmp_path / "main.json", tmp_path / "main.sig"
    seen: list[tuple[bytes, tuple[bytes | None, ...]]] = []
    errors: list[Exception] = []

    def parse_both(content: bytes, source: str, *, companions: tuple[bytes | None, ...]) -> Any:
        seen.append((content, companions))
        if companions[0] == b"bad":
            raise ValueError("refused")
        return (content, companions)

    watched: WatchedFile[Any] = WatchedFile(
        main,
        parse_both,
        log=logging.getLogger(LOGGER),
        what="pair",
        unloaded="nothing",
        companions=(companion,),
        failure_fields=lambda exc: {"reason": str(exc)},
        on_error=errors.append,
    )
    write(main, "1")
    assert watched.load() and watched.value == (b"1", (None,))
    write(companion, "sig")
    assert watched.load() and watched.value == (b"1", (b"sig",))
    write(companion, "bad")
    assert not watched.load() and watched.value == (b"1", (b"sig",))
    assert isinstance(watched.last_error, ValueError) and len(errors) == 1
    companion.unlink()  # absent again: a new content, loaded
    assert watched.load() and watched.value == (b"1", (None,))
    assert watched.last_error is None
    assert not watched.load()  # nothing changed
    assert len(seen) == 4
