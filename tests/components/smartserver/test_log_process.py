"""The log writer process on its own: its side of the pipe, and a process that will not stop."""

from __future__ import annotations

import asyncio
import io
import json
import marshal
import os
import sys
import time
from pathlib import Path

import pytest

from custom_components.smartserver import log_process
from custom_components.smartserver.log_process import HEADER, LogProcess
from custom_components.smartserver.log_tally import BatchTally, LogLine
from custom_components.smartserver.log_writer import LogWriter


def blob(batch: tuple[list[LogLine], tuple[str, ...], int]) -> bytes:
    data = marshal.dumps(batch)
    return HEADER.pack(len(data)) + data


def test_child_writes_each_batch_and_answers_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch from stdin is tallied and written, each answered in two JSON lines (the tally
    first); stdin's end stops it."""
    settings = {
        "root": str(tmp_path),
        "max_bytes": 0,
        "backups": 0,
        "tz": "UTC",
        "servers": ["srv"],
        "event_rank": 30,
        "rate": 5,
    }
    now = time.time()
    batches: list[tuple[list[LogLine], tuple[str, ...], int]] = [
        ([(now, "info", "node1", b"first"), (now, "error", "new", "held back")], ("new",), 0),
        # written again after a try that tallied its first line: that one is not counted again
        (
            [
                (now, "error", "node1", "tallied"),
                (now, "warning", "srv", "agent line"),
                (now + 1, "error", "node1", b"bad \xff"),
            ],
            (),
            1,
        ),
    ]
    stdin = io.TextIOWrapper(io.BytesIO(b"".join(map(blob, batches))))
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "argv", ["-c", json.dumps(settings)])
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    log_process.child()
    ready, *answers = stdout.getvalue().splitlines()
    assert ready == "ready"
    written = {"names": {"node1": "node1"}, "errors": [], "dropped": 0, "pending": 0}
    assert [json.loads(answer) for answer in answers] == [
        {"nodes": {"node1": ["info", "first", now, 0, 0, 0]}, "events": []},
        written,
        {
            "nodes": {
                "srv": ["warning", "agent line", now, 0, 0, 0],
                "node1": ["error", "bad \ufffd", now + 1, 1, 0, 0],
            },
            "events": [["srv", "warning", "agent line"], ["node1", "error", "bad \ufffd"]],
        },
        written,
    ]
    general = (tmp_path / "smartserver.log").read_text().splitlines()
    assert [line.rsplit("] ", 1)[1] for line in general] == [
        "first",
        "held back",
        "tallied",
        "agent line",
        "bad \ufffd",
    ]
    assert (tmp_path / "clients/node1/node1.log").read_text().splitlines()[0].endswith("] first")
    assert (tmp_path / "servers/srv/srv.log").read_text().endswith("] agent line\n")
    assert not (tmp_path / "clients/new").exists()


async def test_an_answer_longer_than_asyncio_s_default_line_limit(tmp_path: Path) -> None:
    """A batch of 3,000 nodes answers with their names in one line of about 80 KB."""
    ids = [f"node-{n:04d}" for n in range(3000)]
    (tmp_path / "device_names.yaml").write_text("".join(f"{node}: null\n" for node in ids))
    process = LogProcess(tmp_path, 0, 0, "UTC", frozenset(), event_rank=30, rate=5)
    try:
        result = await process.write([(time.time(), "info", node, "hello") for node in ids])
    finally:
        await process.close()
    assert len(json.dumps(result.names)) > 64 * 1024
    assert result.names == {node: node for node in ids}


async def test_a_write_cancelled_on_the_way_does_not_answer_the_next(tmp_path: Path) -> None:
    """The process of a cancelled write is killed: its late answer cannot pass for the next one's."""
    (tmp_path / "device_names.yaml").write_text("a: null\nb: null\n")
    (tmp_path / "clients/a").mkdir(parents=True)
    os.mkfifo(tmp_path / "clients/a/a.log")  # opening it blocks while nobody reads it
    process = LogProcess(tmp_path, 0, 0, "UTC", frozenset(), event_rank=30, rate=5)
    try:
        stuck = asyncio.create_task(process.write([(time.time(), "info", "a", "stuck")]))
        await asyncio.sleep(0.5)
        first = process.pid
        assert first is not None
        assert not stuck.done()
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        result = await process.write([(time.time(), "info", "b", "next")])
        assert result.names == {"b": "b"}
        assert process.pid != first
    finally:
        await process.close()
    assert (tmp_path / "clients/b/b.log").read_text().endswith("] next\n")


async def test_in_ha_s_process_a_cancelled_write_finishes_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a process the files are written in an executor job, one at a time: a
    cancelled write's job goes on (a thread cannot be stopped) and the next one waits."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    (tmp_path / "device_names.yaml").write_text("a: null\nb: null\n")
    (tmp_path / "clients/a").mkdir(parents=True)
    fifo = tmp_path / "clients/a/a.log"
    os.mkfifo(fifo)  # opening it blocks while nobody reads it
    process = LogProcess(tmp_path, 0, 0, "UTC", frozenset(), event_rank=30, rate=5)
    reader = None
    try:
        stuck = asyncio.create_task(process.write([(time.time(), "info", "a", "stuck")]))
        await asyncio.sleep(0.5)
        assert process.in_process
        assert process.pid is None
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        tallies: list[BatchTally] = []
        after = asyncio.create_task(
            process.write([(time.time(), "info", "b", "next")], tallied=tallies.append)
        )
        await asyncio.sleep(0.3)
        assert not after.done()  # the LogFiles are busy in the stuck job's thread
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        assert [tally.nodes["b"].text for tally in tallies] == ["next"]  # tallied before the write
        assert (await after).names["b"] == "b"
    finally:
        await process.close()
        if reader is not None:
            os.close(reader)
    assert (tmp_path / "clients/b/b.log").read_text().endswith("] next\n")


async def test_a_process_that_never_says_ready_is_replaced_by_ha_s_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A child that hangs at its start (an import that never returns) is killed in time."""
    monkeypatch.setattr(log_process, "START_TIMEOUT_S", 0.5)
    monkeypatch.setattr(log_process, "_CHILD", "import time\ntime.sleep(60)\n")
    process = LogProcess(tmp_path, 0, 0, "UTC", frozenset(), event_rank=30, rate=5)
    try:
        async with asyncio.timeout(10):
            result = await process.write([(time.time(), "info", "a", "here")])
    finally:
        await process.close()
    assert result.names == {"a": "a"}
    assert process.in_process
    assert "did not start within 0.5 s, exit status -9" in caplog.text
    assert (tmp_path / "clients/a/a.log").read_text().endswith("] here\n")


async def test_lines_of_a_cancelled_write_are_counted_at_unload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """HA cancels the writer's task at its final stop: the batch is not dropped silently."""
    (tmp_path / "device_names.yaml").write_text("a: null\n")
    (tmp_path / "clients/a").mkdir(parents=True)
    os.mkfifo(tmp_path / "clients/a/a.log")  # opening it blocks while nobody reads it
    writer = LogWriter(LogProcess(tmp_path, 0, 0, "UTC", frozenset(), event_rank=30, rate=5))
    writer.add((time.time(), "info", "a", "stuck"))

    async def drain() -> None:
        async for _result in writer.async_drain(lambda _batch: frozenset(), lambda _tally: None):
            pass

    task = asyncio.create_task(drain())
    await asyncio.sleep(0.5)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writer.queued
    await writer.async_close()
    assert "Lost 1 node log lines that could not be written before unloading" in caplog.text


async def test_a_process_that_does_not_stop_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unload waits STOP_TIMEOUT_S for the process, then kills it: no process is left."""
    monkeypatch.setattr(log_process, "STOP_TIMEOUT_S", 0.2)
    # a child that ignores the end of its stdin
    monkeypatch.setattr(log_process, "_CHILD", "import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    process = LogProcess(tmp_path, 0, 0, "UTC", frozenset(), event_rank=30, rate=5)
    await process._start()
    pid = process.pid
    assert pid is not None
    started = time.monotonic()
    await process.close()
    assert time.monotonic() - started < 5
    assert process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
