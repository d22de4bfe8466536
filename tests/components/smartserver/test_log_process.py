"""The log writer process on its own: its side of the pipe, and a process that will not stop."""

from __future__ import annotations

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


def blob(lines: list[tuple[float, str, str, str, bool]]) -> bytes:
    data = marshal.dumps(lines)
    return HEADER.pack(len(data)) + data


def test_child_writes_each_batch_and_answers_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch from stdin is written and answered with one JSON line; stdin's end stops it."""
    settings = {"root": str(tmp_path), "max_bytes": 0, "backups": 0, "tz": "UTC", "servers": ["srv"]}
    now = time.time()
    batches = [
        [(now, "info", "node1", "first", True), (now, "error", "new", "held back", False)],
        [(now, "warning", "srv", "agent line", True)],
    ]
    stdin = io.TextIOWrapper(io.BytesIO(b"".join(map(blob, batches))))
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "argv", ["-c", json.dumps(settings)])
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    log_process.child()
    ready, *answers = stdout.getvalue().splitlines()
    assert ready == "ready"
    assert [json.loads(answer) for answer in answers] == [
        {"names": {"node1": "node1"}, "errors": [], "dropped": 0, "pending": 0},
        {"names": {}, "errors": [], "dropped": 0, "pending": 0},
    ]
    general = (tmp_path / "smartserver.log").read_text().splitlines()
    assert [line.rsplit("] ", 1)[1] for line in general] == ["first", "held back", "agent line"]
    assert (tmp_path / "clients/node1/node1.log").read_text().endswith("] first\n")
    assert (tmp_path / "servers/srv/srv.log").read_text().endswith("] agent line\n")
    assert not (tmp_path / "clients/new").exists()


async def test_a_process_that_does_not_stop_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unload waits STOP_TIMEOUT_S for the process, then kills it: no process is left."""
    monkeypatch.setattr(log_process, "STOP_TIMEOUT_S", 0.2)
    # a child that ignores the end of its stdin
    monkeypatch.setattr(log_process, "_CHILD", "import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    process = LogProcess(tmp_path, 0, 0, "UTC", frozenset())
    await process._start()
    pid = process.pid
    assert pid is not None
    started = time.monotonic()
    await process.close()
    assert time.monotonic() - started < 5
    assert process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
