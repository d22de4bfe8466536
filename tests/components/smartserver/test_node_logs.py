"""Log collection with HA's mocked MQTT client and real files."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_STATE_CHANGED, EVENT_STATE_REPORTED
from homeassistant.core import Event, EventStateChangedData, EventStateReportedData, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_mqtt_message,
    async_fire_time_changed,
    async_fire_time_changed_exact,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.smartserver import coordinator, log_writer, logs, node_registry
from custom_components.smartserver.const import (
    CONF_BASE_TOPIC,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_RATE_LIMIT,
    DOMAIN,
    EVENT_LOG,
    ISSUE_NEW_NODES,
)
from custom_components.smartserver.log_process import LogProcess
from custom_components.smartserver.log_tally import LogLine, LogTally, text_of
from custom_components.smartserver.node_model import LEVEL_RANK, MAX_HA_TEXT
from custom_components.smartserver.storage import Storage

from .nodes_common import answers, node_device, root, settle, tree, wait_until, write, written

LINE = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d)\] \[([^\]]+)\] \[([^\]]+)\] (.*)")


def lines(path: Path) -> list[str]:
    """Lines of a log and its rotated files, oldest first."""
    files = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [line for file in [*files, path] if file.exists() for line in file.read_text().splitlines()]


def node_log(hass: HomeAssistant, node: str) -> Path:
    return root(hass) / "clients" / node / f"{node}.log"


def general_log(hass: HomeAssistant) -> Path:
    return root(hass) / "smartserver.log"


def log(hass: HomeAssistant, level: str, node: str, payload: str | bytes) -> None:
    async_fire_mqtt_message(hass, f"home/log/{level}/{node}", payload)


async def flush(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Let the lines be handled and written (the writer's batches are background tasks)."""
    await settle(hass)


def writer_pid(entry: MockConfigEntry) -> int:
    """The log writer process of the entry (it has written a batch)."""
    pid: int | None = entry.runtime_data.nodes.logs.writer.process.pid
    assert pid is not None
    return pid


async def written_by(hass: HomeAssistant, entry: MockConfigEntry, text: str) -> int:
    """Log a line of node1, let it be written; return the writer process."""
    log(hass, "info", "node1", text)
    await flush(hass, entry)
    return writer_pid(entry)


def open_files(pid: int | str = "self") -> set[Path]:
    """The files a process (this one by default) holds open."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(Path(os.readlink(fd)))
        except OSError:  # closed meanwhile
            continue
    return found


async def test_line_goes_to_general_and_node_log(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    log(hass, "info", "node1", "hello")
    log(hass, "WARN", "node1", "careful")
    log(hass, "Critical", "node2", "on fire")
    log(hass, "Trace", "node2", "unknown level, kept")
    await flush(hass, init_integration)
    parsed = [LINE.fullmatch(line) for line in lines(general_log(hass))]
    assert all(parsed)
    assert [m.groups()[1:] for m in parsed if m] == [
        ("INFO", "node1", "hello"),
        ("WARNING", "node1", "careful"),
        ("CRITICAL", "node2", "on fire"),
        ("Trace", "node2", "unknown level, kept"),
    ]
    assert [LINE.fullmatch(line).groups()[1:] for line in lines(node_log(hass, "node1"))] == [  # type: ignore[union-attr]
        ("INFO", "node1", "hello"),
        ("WARNING", "node1", "careful"),
    ]
    assert len(lines(node_log(hass, "node2"))) == 2
    assert node_device(hass, init_integration, "node2") is not None


async def test_invalid_utf8_replaced_and_newlines_escaped(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    log(hass, "error", "node1", b"bad \xff\xfe bytes")
    log(hass, "error", "node1", "line one\n[2099-01-01 00:00:00.000+00:00] [CRITICAL] [node9] forged\r\\n")
    await flush(hass, init_integration)
    got = lines(node_log(hass, "node1"))
    assert len(got) == 2
    assert got[0].endswith("bad \ufffd\ufffd bytes")
    assert got[1].endswith("line one\\n[2099-01-01 00:00:00.000+00:00] [CRITICAL] [node9] forged\\r\\\\n")
    await written(hass)
    state = hass.states.get("sensor.node1_last_log")
    assert state is not None
    assert state.state.startswith("line one\n")


async def test_login_and_other_topics_never_logged(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    async_fire_mqtt_message(hass, "home/login/node1/set", '"1.0"')
    async_fire_mqtt_message(hass, "home/logs/info/node1", "x")
    async_fire_mqtt_message(hass, "home/log/info/node1/extra", "x")
    async_fire_mqtt_message(hass, "other/log/info/node1", "x")
    await flush(hass, init_integration)
    assert not general_log(hass).exists()


@pytest.mark.parametrize("node", ["..", "+", "#", "a" * 300, "ö" * 33])
async def test_hostile_ids_write_nothing(
    hass: HomeAssistant, init_integration: MockConfigEntry, node: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = tree(Path(hass.config.path()))
    log(hass, "critical", node, "payload")
    async_fire_mqtt_message(hass, f"home/node/{node}/status", "ONLINE")
    await flush(hass, init_integration)
    assert tree(Path(hass.config.path())) == before
    assert not dr.async_entries_for_config_entry(dr.async_get(hass), init_integration.entry_id)
    assert "not a valid node id" in caplog.text


async def test_huge_payload_kept_whole_in_files(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    big = "x" * 2_000_000
    log(hass, "error", "node1", big)
    await flush(hass, init_integration)
    got = lines(node_log(hass, "node1"))
    assert len(got) == 1
    assert got[0].endswith(big)
    await written(hass)
    state = hass.states.get("sensor.node1_last_log")
    assert state is not None
    assert state.state == "x" * 255


async def _setup(hass: HomeAssistant, entry: MockConfigEntry, **options: object) -> MockConfigEntry:
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, options={CONF_BASE_TOPIC: "home", **options})
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def test_rotation_by_size_and_count(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> None:
    entry = await _setup(hass, mock_config_entry, **{CONF_LOG_MAX_KB: 16, CONF_LOG_BACKUPS: 2})
    for i in range(1000):
        log(hass, "info", "node1", f"message {i:04d} " + "y" * 60)
    await flush(hass, entry)
    path = node_log(hass, "node1")
    assert sorted(p.name for p in path.parent.glob("node1.log*")) == [
        "node1.log",
        "node1.log.1",
        "node1.log.2",
    ]
    assert all(p.stat().st_size <= 16 * 1024 for p in path.parent.glob("node1.log*"))
    kept = lines(path)
    # the newest lines survive, in order, without gaps
    assert kept[-1].endswith("message 0999 " + "y" * 60)
    numbers = [int(line.split("message ")[1][:4]) for line in kept]
    assert numbers == list(range(numbers[0], 1000))
    await hass.config_entries.async_unload(entry.entry_id)


async def test_zero_backups_truncates(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> None:
    entry = await _setup(hass, mock_config_entry, **{CONF_LOG_MAX_KB: 16, CONF_LOG_BACKUPS: 0})
    for i in range(1000):
        log(hass, "info", "node1", f"message {i:04d} " + "y" * 60)
    await flush(hass, entry)
    assert [p.name for p in node_log(hass, "node1").parent.glob("node1.log*")] == ["node1.log"]
    assert lines(node_log(hass, "node1"))[-1].endswith("message 0999 " + "y" * 60)
    await hass.config_entries.async_unload(entry.entry_id)


async def test_rename_closes_the_old_log_handle(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """After a rename only the new path is open: the old handle is not left behind."""
    writer = await written_by(hass, init_integration, "before")
    assert node_log(hass, "node1") in open_files(writer)
    assert node_log(hass, "node1") not in open_files()  # HA's process writes no log file
    # it yields the CPU to HA
    assert os.getpriority(os.PRIO_PROCESS, writer) == os.getpriority(os.PRIO_PROCESS, 0) + 10
    (root(hass) / "device_names.yaml").write_text("node1: kitchen\n")
    log(hass, "info", "node1", "after")
    await flush(hass, init_integration)
    kitchen = root(hass) / "clients/kitchen/kitchen.log"
    assert node_log(hass, "node1") not in open_files(writer)
    assert kitchen in open_files(writer)
    assert [line.rsplit(" ", 1)[1] for line in lines(kitchen)] == ["before", "after"]


def test_node_paths_checked_once_a_second_and_at_once_on_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches reuse a node's checked path; a names change or the interval checks again.

    On the writer itself: it runs in the writer process, where a test cannot patch it.
    """
    checks: list[str] = []
    real_node_dir = Storage.node_dir

    def node_dir(storage: Storage, node_id: str) -> Path:
        checks.append(node_id)
        return real_node_dir(storage, node_id)

    monkeypatch.setattr(Storage, "node_dir", node_dir)
    monkeypatch.setattr(logs, "RECHECK_S", 3600.0)
    files = logs.LogFiles(Storage(tmp_path), 0, 0, UTC)

    def log_line(text: str) -> None:
        assert not files.write([(time.time(), "info", "node1", text)]).errors

    for i in range(3):  # the first check makes the directory: the second batch checks again
        log_line(f"line {i}")
    assert checks == ["node1", "node1"]
    (tmp_path / "device_names.yaml").write_text("node1: kitchen\n")
    log_line("renamed")
    assert checks == ["node1"] * 3
    kitchen = tmp_path / "clients/kitchen/kitchen.log"
    assert [line.rsplit(" ", 1)[1] for line in lines(kitchen)] == ["0", "1", "2", "renamed"]

    # a directory removed by hand, or a log moved away, is made again at the next check
    monkeypatch.setattr(logs, "RECHECK_S", 0.0)
    shutil.rmtree(kitchen.parent)
    log_line("again")
    assert [line.rsplit(" ", 1)[1] for line in lines(kitchen)] == ["again"]
    moved = kitchen.with_name("moved.log")
    kitchen.rename(moved)
    log_line("new file")
    files.close()
    assert [line.rsplit(" ", 1)[1] for line in lines(kitchen)] == ["file"]
    assert [line.rsplit(" ", 1)[1] for line in lines(moved)] == ["again"]


@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed batch is retried after 50 ms, not 2 s."""
    monkeypatch.setattr(log_writer, "RETRY_DELAY_S", 0.05)


@pytest.mark.parametrize("target", ["node", "general"])
@pytest.mark.usefixtures("quick_retry")
async def test_write_error_logged_and_retried(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    """A full disk (/dev/full: every write fails with ENOSPC) loses nothing silently."""
    path = node_log(hass, "node1") if target == "node" else general_log(hass)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")
    for i in range(100):
        log(hass, "info", "node1", f"line {i}")
    await wait_until(lambda: "Could not write node logs" in caplog.text)
    assert "Could not write node logs (100 lines kept for retry)" in caplog.text
    assert "No space left on device" in caplog.text
    path.unlink()  # space again
    await flush(hass, init_integration)
    assert "Node logs are written again" in caplog.text
    for log_path in (node_log(hass, "node1"), general_log(hass)):
        assert [line.rsplit(" ", 1)[1] for line in lines(log_path)] == [str(i) for i in range(100)]


async def test_write_error_at_unload_reports_lost_lines(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    path = node_log(hass, "node1")
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/full")
    log(hass, "info", "node1", "doomed")
    await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert "Lost 1 node log lines that could not be written before unloading" in caplog.text
    assert lines(general_log(hass))[0].endswith("doomed")


@pytest.mark.usefixtures("quick_retry")
async def test_writer_process_killed_loses_no_line(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer process that dies (killed, out of memory) is started again; its batch is retried."""
    first = await written_by(hass, init_integration, "line 0")
    os.kill(first, signal.SIGKILL)
    for i in range(1, 4):
        log(hass, "info", "node1", f"line {i}")
    await flush(hass, init_integration)
    assert "Could not write node logs (3 lines kept for retry)" in caplog.text
    assert "the log writer process stopped" in caplog.text
    assert "Node logs are written again" in caplog.text
    assert writer_pid(init_integration) != first
    for path in (node_log(hass, "node1"), general_log(hass)):
        assert [line.rsplit(" ", 1)[1] for line in lines(path)] == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("executable", "reason"),
    [("/nonexistent/python", "did not start: [Errno 2]"), ("/bin/false", "did not start (see HA's output")],
)
async def test_writer_process_that_cannot_start_leaves_the_files_to_ha_s_process(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    executable: str,
    reason: str,
) -> None:
    """No interpreter, or one that stops at once (an install where the child cannot
    import the integration): HA's process writes the files, nothing waits or is dropped."""
    monkeypatch.setattr(sys, "executable", executable)
    for i in range(8):
        log(hass, "info", "node1", f"line {i}")
    await flush(hass, init_integration)
    assert f"The log writer process cannot be used (the log writer process {reason}" in caplog.text
    assert "node logs are written in Home Assistant's process instead" in caplog.text
    assert "Could not write node logs" not in caplog.text
    expected = [f"{i}" for i in range(8)]
    for path in (node_log(hass, "node1"), general_log(hass)):
        assert [line.rsplit(" ", 1)[1] for line in lines(path)] == expected
    # for good: a later batch does not try the process again
    monkeypatch.setattr(sys, "executable", "/nonexistent/again")
    log(hass, "info", "node1", "line 8")
    await flush(hass, init_integration)
    assert caplog.text.count("The log writer process cannot be used") == 1
    assert lines(node_log(hass, "node1"))[-1].endswith("line 8")
    assert init_integration.runtime_data.nodes.logs.writer.process.pid is None
    assert init_integration.runtime_data.nodes.logs.diagnostics() == {
        "lines_written": 9,
        "lines_dropped": 0,
        "lines_pending_retry": 0,
        "written_in_ha_process": True,
    }
    await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert "could not be written before unloading" not in caplog.text


@pytest.mark.usefixtures("quick_retry")
async def test_in_ha_s_process_a_full_disk_keeps_the_lines_for_retry(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written in HA's process, a failing write is kept and retried as in the child."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    path = node_log(hass, "node1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")
    for i in range(3):
        log(hass, "info", "node1", f"line {i}")
    await wait_until(lambda: "Could not write node logs (3 lines kept for retry)" in caplog.text)
    path.unlink()
    await flush(hass, init_integration)
    assert "Node logs are written again" in caplog.text
    assert [line.rsplit(" ", 1)[1] for line in lines(path)] == ["0", "1", "2"]


async def test_a_write_that_never_returns_does_not_grow_the_queue_for_ever(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung write (a stalled network disk, a stopped process): the queue stays bounded."""
    monkeypatch.setattr(log_writer, "MAX_RETRY_LINES", 10)
    release = asyncio.Event()
    written: list[list[LogLine]] = []

    async def hung(lines: list[LogLine], _held_back: frozenset[str], **_how: Any) -> logs.WriteResult:
        await release.wait()
        written.append(lines)
        return logs.WriteResult()

    monkeypatch.setattr(init_integration.runtime_data.nodes.logs.writer.process, "write", hung)
    log(hass, "info", "node1", "line 0")
    await hass.async_block_till_done()  # the first batch hangs (a background task)
    try:
        for i in range(1, 26):
            log(hass, "info", "node1", f"line {i}")
        await hass.async_block_till_done()
        assert (
            "Dropped 2 log lines: the log writer has not finished a batch while 10 more came" in caplog.text
        )
        assert init_integration.runtime_data.nodes.logs.diagnostics()["lines_dropped"] == 16
    finally:
        release.set()  # else unloading waits for the batch for ever
    await settle(hass)
    # the oldest went: the hung batch and the newest lines are written
    assert [text_of(line[3]) for batch in written for line in batch] == ["line 0"] + [
        f"line {i}" for i in range(17, 26)
    ]


def test_node_folders_change_one_process_at_a_time(tmp_path: Path) -> None:
    """HA (config requests) and its log writer process both make and rename node folders."""
    storage = Storage(tmp_path)
    other = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(other, fcntl.LOCK_EX)  # as the other process holds it: another open file
    made = threading.Event()
    thread = threading.Thread(target=lambda: made.set() if storage.node_dir("node1") else None)
    thread.start()
    try:
        assert not made.wait(0.3)
        assert not (tmp_path / "clients").exists()
    finally:
        os.close(other)
    thread.join(5)
    assert made.is_set()
    assert (tmp_path / "clients/node1").is_dir()


async def test_unload_stops_the_writer_process(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    pid = await written_by(hass, init_integration, "hello")
    await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped


# a diagnostic sensor, disabled by default
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_flood_of_20000_loses_nothing_and_is_rate_limited(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # HA's per-message debug lines would dominate the run
    # captured in the event loop, in order (a plain listener would run in the executor)
    events = async_capture_events(hass, EVENT_LOG)
    levels = ["debug", "info", "warning", "error", "critical"]
    for i in range(20_000):
        log(hass, levels[i % 5], f"node{i % 50}", f"flood {i}")
    await flush(hass, init_integration)
    await written(hass)

    general = lines(general_log(hass))
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in general) == list(range(20_000))
    for n in range(50):
        got = [int(line.rsplit(" ", 1)[1]) for line in lines(node_log(hass, f"node{n}"))]
        assert got == list(range(n, 20_000, 50))

    eligible = 20_000 * 3 // 5  # warning, error, critical
    suppressed = [hass.states.get(f"sensor.node{n}_suppressed_log_events") for n in range(50)]
    assert all(suppressed)
    counted = sum(int(state.state) for state in suppressed if state)
    assert len(events) + counted == eligible
    assert counted > 0
    # counters count every line, and the last state is written after the burst
    errors = hass.states.get("sensor.node0_errors_logged")
    assert errors is not None
    assert errors.state == str(sum(1 for i in range(0, 20_000, 50) if i % 5 == 3))
    last = hass.states.get("sensor.node0_last_log")
    assert last is not None
    assert last.state == "flood 19950"


def stalled_log(hass: HomeAssistant) -> Path:
    """node1's log as a FIFO: opening it blocks until someone reads it (a stalled disk)."""
    path = node_log(hass, "node1")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.usefixtures("quick_retry")
async def test_a_stalled_disk_holds_back_no_event(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A node's log that cannot be written for now (a stalled network disk): its critical
    line fires its event and counts at once; the line is written once the disk is back."""
    events = async_capture_events(hass, EVENT_LOG)
    path = stalled_log(hass)
    log(hass, "critical", "node1", "pump stopped")
    await wait_until(lambda: len(events) == 1)
    assert events[0].data["message"] == "pump stopped"
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=5))
    await hass.async_block_till_done()  # not the writer's task: it waits for the disk
    counted = hass.states.get("sensor.node1_critical_messages_logged")
    assert counted is not None
    assert counted.state == "1"
    # the disk is back: the blocked open returns (its write fails: a FIFO), a file from then on
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    path.unlink()
    os.close(reader)
    await flush(hass, init_integration)
    await written(hass)
    assert lines(path)[-1].endswith("] pump stopped")
    assert len(events) == 1
    counted = hass.states.get("sensor.node1_critical_messages_logged")
    assert counted is not None
    assert counted.state == "1"


@pytest.mark.usefixtures("quick_retry")
async def test_a_batch_written_again_is_not_counted_again(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer process dies after the batch's tally, before its lines are written: the
    batch is written by the next process, its events and counters are not taken twice."""
    events = async_capture_events(hass, EVENT_LOG)
    path = stalled_log(hass)
    log(hass, "critical", "node1", "pump stopped")
    await wait_until(lambda: len(events) == 1)
    first = writer_pid(init_integration)
    os.kill(first, signal.SIGKILL)
    path.unlink()
    log(hass, "error", "node1", "after")
    await flush(hass, init_integration)
    await written(hass)
    assert "the log writer process stopped" in caplog.text
    assert writer_pid(init_integration) != first
    assert [line.rsplit("] ", 1)[1] for line in lines(path)] == ["pump stopped", "after"]
    assert [e.data["message"] for e in events] == ["pump stopped", "after"]
    for key in ("critical_messages", "errors"):
        state = hass.states.get(f"sensor.node1_{key}_logged")
        assert state is not None
        assert state.state == "1"


def test_rate_limit_judges_each_line_by_when_it_came() -> None:
    """Lines that waited together for a slow disk are limited as they came, not as one burst;
    a flood of warnings cannot spend the critical lines' budget."""
    tally = LogTally(LEVEL_RANK["warning"], rate=1.0)
    start = time.time()
    slow = tally.add([(start + i, "error", "node1", f"e{i}") for i in range(5)], frozenset())
    assert [text for _node, _level, text in slow.events] == [f"e{i}" for i in range(5)]
    flood: list[LogLine] = [(start + 10 + i / 1000, "warning", "node1", f"w{i}") for i in range(50)]
    flood.append((start + 10.05, "critical", "node1", b"pump \xff stopped"))
    batch = tally.add(flood, frozenset())
    assert batch.events == [("node1", "warning", "w0"), ("node1", "critical", "pump \ufffd stopped")]
    node = batch.nodes["node1"]
    assert (node.level, node.text, node.received) == ("critical", "pump \ufffd stopped", start + 10.05)
    assert (node.errors, node.criticals, node.suppressed) == (0, 1, 49)


def test_held_back_nodes_count_for_nothing_and_texts_are_cut() -> None:
    tally = LogTally(LEVEL_RANK["warning"], rate=5.0)
    now = time.time()
    batch = tally.add(
        [(now, "critical", "new", "held back"), (now, "error", "node1", "x" * 1000)], frozenset({"new"})
    )
    assert list(batch.nodes) == ["node1"]
    assert batch.nodes["node1"].text == "x" * MAX_HA_TEXT
    assert batch.events == [("node1", "error", "x" * MAX_HA_TEXT)]


# a diagnostic sensor, disabled by default
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_rate_limit_option(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
) -> None:
    entry = await _setup(hass, mock_config_entry, **{CONF_RATE_LIMIT: 2})
    # captured in the event loop, in order (a plain listener would run in the executor)
    events = async_capture_events(hass, EVENT_LOG)
    for i in range(10):
        log(hass, "error", "node1", f"e{i}")
    await written(hass)
    state = hass.states.get("sensor.node1_suppressed_log_events")
    assert state is not None
    assert len(events) + int(state.state) == 10
    assert len(events) >= 2
    # the burst spent the budget below critical; a critical line has its own
    log(hass, "critical", "node1", "pump stopped")
    await written(hass)
    assert [e.data["message"] for e in events if e.data["level"] == "critical"] == ["pump stopped"]
    # a flood of critical lines is limited too
    for i in range(10):
        log(hass, "critical", "node1", f"c{i}")
    await written(hass)
    assert len([e for e in events if e.data["level"] == "critical"]) < 11
    await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(("rate", "interval"), [(5, 1.0), (0.5, 2.0)])
async def test_entity_states_at_most_once_a_second(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
    rate: float,
    interval: float,
) -> None:
    """However many events the limit allows, a node's states are written at most once a second."""
    entry = await _setup(hass, mock_config_entry, **{CONF_RATE_LIMIT: rate})
    log(hass, "info", "node1", "first")
    await settle(hass)
    written_at = time.monotonic()  # the node's first change is written at once
    writes: list[str] = []
    entry.async_on_unload(
        async_track_state_change_event(
            hass,
            "sensor.node1_last_log",
            callback(lambda event: writes.append(event.data["new_state"].state)),
        )
    )
    for i in range(20):
        log(hass, "info", "node1", f"line {i}")
    await settle(hass)
    assert time.monotonic() - written_at < 0.3  # the timers below decide
    # exact: the plain helper moves the time to the next half second
    async_fire_time_changed_exact(hass, dt_util.utcnow() + timedelta(seconds=interval - 0.3))
    await settle(hass)
    assert writes == []
    async_fire_time_changed_exact(hass, dt_util.utcnow() + timedelta(seconds=interval + 0.1))
    await settle(hass)
    assert writes == ["line 19"]  # one write, with the last line
    state = hass.states.get("sensor.node1_last_log")
    assert state is not None
    assert state.state == "line 19"
    await hass.config_entries.async_unload(entry.entry_id)


async def test_only_changed_entities_are_written(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A node's change writes the entities whose value changed; the others are not reported again."""
    log(hass, "info", "node1", "first")
    await written(hass)
    touched: list[str] = []

    @callback
    def of_node1(data: EventStateChangedData | EventStateReportedData) -> bool:
        return data["entity_id"].split(".")[1].startswith("node1_")

    @callback
    def record(event: Event[Any]) -> None:
        touched.append(event.data["entity_id"])

    # state_reported: written again with the same state
    for event_type in (EVENT_STATE_CHANGED, EVENT_STATE_REPORTED):
        init_integration.async_on_unload(hass.bus.async_listen(event_type, record, event_filter=of_node1))
    log(hass, "info", "node1", "second")
    await settle(hass)
    await written(hass)
    assert touched == ["sensor.node1_last_log"]
    touched.clear()
    log(hass, "error", "node1", "broken")
    await settle(hass)
    await written(hass)
    # an error is also an event (the event level is warning)
    assert sorted(touched) == ["event.node1_log", "sensor.node1_errors_logged", "sensor.node1_last_log"]
    touched.clear()
    log(hass, "error", "node1", "broken")  # the same line again: only the counter changed
    await settle(hass)
    await written(hass)
    assert sorted(touched) == ["event.node1_log", "sensor.node1_errors_logged"]
    touched.clear()
    async_fire_mqtt_message(hass, "home/node/node1/status", "OFFLINE")
    await settle(hass)
    await written(hass)
    assert touched == ["binary_sensor.node1_status"]


async def test_lines_handled_as_they_arrive(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Lines keep their order, their own times and every count; parsed topics are bounded."""
    with patch.object(coordinator, "MAX_LOG_TOPICS", 2):  # parsed topics are forgotten often
        for i in range(6):
            log(hass, ("info", "error", "critical")[i % 3], f"node{i % 2}", f"line {i}")
        log(hass, "info", "..", "refused")
        # handled in HA's MQTT callback (one message per loop turn): the node is known at once
        assert node_device(hass, init_integration, "node0") is not None
        await flush(hass, init_integration)
    got = [LINE.fullmatch(line) for line in lines(general_log(hass))]
    assert [m.groups()[1:] for m in got if m] == [
        ("INFO", "node0", "line 0"),
        ("ERROR", "node1", "line 1"),
        ("CRITICAL", "node0", "line 2"),
        ("INFO", "node1", "line 3"),
        ("ERROR", "node0", "line 4"),
        ("CRITICAL", "node1", "line 5"),
    ]
    await written(hass)
    counts = [hass.states.get(f"sensor.node0_{key}_logged") for key in ("errors", "critical_messages")]
    assert [state.state if state else None for state in counts] == ["1", "1"]
    state = hass.states.get("sensor.node1_last_log")
    assert state is not None
    assert state.state == "line 5"
    state = hass.states.get("sensor.node0_last_log")
    assert state is not None
    assert state.state == "line 4"


async def test_busy_writer_gathers_lines_into_fewer_batches(
    hass: HomeAssistant, init_integration: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch starts at once; while lines keep coming the next waits for the interval;
    once they stop coming for QUIET_S, what is queued goes without waiting it out.

    Each write takes 30 ms (a slow disk) and a line comes every 20 ms: lines come while
    the writer writes, as in a flood."""
    monkeypatch.setattr(log_writer, "BATCH_INTERVAL_S", 1.0)
    monkeypatch.setattr(log_writer, "QUIET_S", 0.2)
    real_write = LogProcess.write
    batches: list[tuple[float, int]] = []

    async def write(
        process: LogProcess, batch: list[LogLine], held_back: frozenset[str], **how: Any
    ) -> logs.WriteResult:
        batches.append((time.monotonic(), len(batch)))
        await asyncio.sleep(0.03)
        return await real_write(process, batch, held_back, **how)

    with patch.object(LogProcess, "write", write):
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < 1.2:  # a line every 20 ms
            log(hass, "info", "node1", f"line {sent}")
            last_line = time.monotonic()
            sent += 1
            await asyncio.sleep(0.02)
        await flush(hass, init_integration)
        assert len(batches) == 3
        assert batches[0][0] - start < 0.2
        assert batches[0][1] == 1
        assert batches[1][0] - batches[0][0] >= 1.0  # lines kept coming
        assert batches[2][0] - last_line >= 0.2  # they stopped: quiet for QUIET_S
        assert batches[2][0] - batches[1][0] < 0.8  # then it went, the interval not over
        assert sum(count for _at, count in batches) == sent
        idle = time.monotonic()  # the writer is idle again: the next line goes at once
        log(hass, "info", "node1", f"line {sent}")
        await flush(hass, init_integration)
        assert len(batches) == 4
        assert batches[3][0] - idle < 0.2
    written_lines = [line.rsplit(" ", 1)[1] for line in lines(node_log(hass, "node1"))]
    assert written_lines == [str(i) for i in range(sent + 1)]


async def test_lines_waiting_for_the_writer_cost_the_garbage_collector_nothing(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A flood's queued lines are never tracked: each tracked one would be scanned by every
    collection while it waits (HA's whole process pauses for a full one)."""
    real_write = LogProcess.write
    tracked: list[bool] = []

    async def write(
        process: LogProcess, batch: list[LogLine], held_back: frozenset[str], **how: Any
    ) -> logs.WriteResult:
        tracked.extend(gc.is_tracked(line) for line in batch)
        return await real_write(process, batch, held_back, **how)

    with patch.object(LogProcess, "write", write):
        log(hass, "info", "node1", "known node")
        log(hass, "error", "node2", "another")
        await flush(hass, init_integration)
    assert tracked == [False, False]


async def test_lines_queued_at_unload_are_written(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    log(hass, "info", "node1", "last words")
    await hass.config_entries.async_unload(init_integration.entry_id)
    assert lines(node_log(hass, "node1"))[-1].endswith("last words")


def test_stamps_match_datetime() -> None:
    """The per-second stamp cache formats exactly as datetime does, across DST and rounding."""
    tz = zoneinfo.ZoneInfo("America/Los_Angeles")
    stamps = logs.Stamps(tz)
    dst_end = datetime(2026, 11, 1, 8, 59, 58, tzinfo=UTC).timestamp()  # 01:59:58 PDT, then PST
    times = [dst_end + i * 0.2503 for i in range(40)]
    times += [1_800_000_000.9999996, 1_800_000_000.0004996, 1_800_000_001.5, 0.0005]
    times += [random.Random(7).uniform(0, 2_000_000_000) for _ in range(2000)]
    for received in times:
        expected = datetime.fromtimestamp(received, tz).isoformat(sep=" ", timespec="milliseconds")
        assert stamps(received) == expected, received


@pytest.mark.parametrize(
    "messages",
    [
        ["plain", "ünïcode ✓", "lone \ud800 surrogate", "\x00 nul", ""],  # nothing to escape
        ["plain", "back\\slash"],  # each one of these makes the batch escape
        ["plain", "two\nlines"],
        ["plain", "carriage\rreturn"],
        [b"payload bytes", b"invalid \xff utf-8", "text"],  # as HA's MQTT client hands them over
    ],
)
def test_batch_written_as_format_line_writes_each_line(tmp_path: Path, messages: list[str | bytes]) -> None:
    """The writer formats a batch at once, byte for byte as format_line and encoding each line would;
    the lines of held-back nodes only in the general log."""
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    files = logs.LogFiles(Storage(tmp_path), 0, 0, tz)
    levels = ["info", "warning", "critical", "odd-level", "ERROR"]
    start = datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC).timestamp()  # across a DST change
    batch: list[LogLine] = [
        (start + i * 0.1237, levels[i % len(levels)], f"node{i % 3}", message)
        for i, message in enumerate(messages * 3)
    ]
    assert not files.write(batch, frozenset({"node2"})).errors
    files.close()

    def expected(lines: list[LogLine]) -> bytes:
        return b"".join(logs.format_line(line, tz).encode("utf-8", "backslashreplace") for line in lines)

    assert (tmp_path / logs.GENERAL_LOG).read_bytes() == expected(batch)
    for node in ("node0", "node1"):
        own = [line for line in batch if line[2] == node]
        assert (tmp_path / "clients" / node / f"{node}.log").read_bytes() == expected(own)
    assert not (tmp_path / "clients" / "node2").exists()


async def test_new_nodes_beyond_the_budget_are_held_back(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Made-up ids beyond the budget get no device, directory or name; their lines are kept."""
    monkeypatch.setattr(node_registry, "NEW_NODES_BURST", 2)
    init_integration = await _setup(hass, mock_config_entry)
    for node in ("node1", "node2", "node3"):
        log(hass, "error", node, f"hello from {node}")
    await flush(hass, init_integration)
    assert node_device(hass, init_integration, "node2") is not None
    assert node_device(hass, init_integration, "node3") is None
    assert "[ERROR] [node3] hello from node3" in general_log(hass).read_text()
    assert not (root(hass) / "clients" / "node3").exists()
    names = root(hass) / "device_names.yaml"
    assert not names.exists() or "node3" not in names.read_text()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NEW_NODES)
    assert issue is not None
    assert issue.translation_placeholders == {
        "count": "1",
        "example": "node3",
        "burst": "2",
        "per_hour": "60",
    }
    # held back: no answer, no status, no events
    events = async_capture_events(hass, EVENT_LOG)
    mqtt_mock.async_publish.reset_mock()
    async_fire_mqtt_message(hass, "home/login/node3/set", '"1"')
    async_fire_mqtt_message(hass, "home/node/node3/status", "ONLINE")
    log(hass, "critical", "node3", "still here")
    await flush(hass, init_integration)
    assert mqtt_mock.async_publish.call_count == 0
    assert events == []
    assert node_device(hass, init_integration, "node3") is None

    # a minute later the budget has one more: node3 is added when it is next heard
    freezer.tick(60)
    log(hass, "info", "node3", "added now")
    await flush(hass, init_integration)
    assert node_device(hass, init_integration, "node3") is not None
    assert (root(hass) / "clients" / "node3" / "node3.log").read_text().count("\n") == 1
    # the issue clears itself an hour after the last node held back
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=node_registry.NEW_NODES_QUIET_S + 1))
    await settle(hass)
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NEW_NODES) is None
    await hass.config_entries.async_unload(init_integration.entry_id)


@pytest.fixture
def no_new_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """No budget for new nodes; a held-back id has the folder read again at once."""
    monkeypatch.setattr(node_registry, "NEW_NODES_BURST", 0)
    monkeypatch.setattr(node_registry, "RESCAN_S", 0)


async def test_nodes_on_disk_are_never_held_back(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
    no_new_nodes: None,
) -> None:
    """A restart of a fleet: nodes with a folder or a name get answers and files, budget or not."""
    write(root(hass) / "device_names.yaml", "named: null\nnode1: kitchen\n")
    write(root(hass) / "clients/configured/config/led.json", '{"pin": 2}')
    write(root(hass) / "clients/kitchen/config/led.json", '{"pin": 3}')  # node1's, renamed
    init_integration = await _setup(hass, mock_config_entry)
    async_fire_mqtt_message(hass, "home/login/configured/set", '"5.1.0"')
    log(hass, "error", "named", "hello")
    log(hass, "error", "made-up", "hello")
    log(hass, "error", "kitchen", "hello")  # a name is not an id
    await flush(hass, init_integration)
    assert answers(mqtt_mock) == [("home/login/configured", '{"led":{"pin":2},"_order":["led"]}')]
    assert "hello" in node_log(hass, "named").read_text()
    assert node_device(hass, init_integration, "configured") is not None
    assert node_device(hass, init_integration, "named") is not None
    # the budget still holds back made-up ids
    assert node_device(hass, init_integration, "made-up") is None
    assert node_device(hass, init_integration, "kitchen") is None
    assert not (root(hass) / "clients" / "made-up").exists()
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NEW_NODES) is not None

    # a held-back id's request reads the folder again: a node set up by hand is answered
    mqtt_mock.async_publish.reset_mock()
    async_fire_mqtt_message(hass, "home/login/late/set", '"5.1.0"')
    await flush(hass, init_integration)
    assert answers(mqtt_mock) == []
    write(root(hass) / "clients/late/config/led.json", '{"pin": 4}')
    async_fire_mqtt_message(hass, "home/login/late/set", '"5.1.0"')
    await flush(hass, init_integration)
    assert answers(mqtt_mock) == [("home/login/late", '{"led":{"pin":4},"_order":["led"]}')]
    log(hass, "info", "late", "now known")
    await flush(hass, init_integration)
    assert "now known" in node_log(hass, "late").read_text()
    await hass.config_entries.async_unload(init_integration.entry_id)


async def held_back_count_after(hass: HomeAssistant, seconds: float) -> str:
    """The held-back issue's count once `seconds` have passed."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await settle(hass)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NEW_NODES)
    assert issue is not None
    assert issue.translation_placeholders is not None
    return issue.translation_placeholders["count"]


async def test_held_back_issue_waits_for_the_last_node(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mqtt_client_closing: None,
    mock_config_entry: MockConfigEntry,
    no_new_nodes: None,
) -> None:
    """Each held-back node restarts the hour; unloading clears the issue (the budget restarts)."""
    init_integration = await _setup(hass, mock_config_entry)
    log(hass, "info", "made-up-1", "x")
    await flush(hass, init_integration)
    later = dt_util.utcnow() + timedelta(seconds=node_registry.NEW_NODES_QUIET_S / 2)
    with patch("time.time", return_value=later.timestamp()):
        log(hass, "info", "made-up-2", "x")
        await flush(hass, init_integration)
    assert await held_back_count_after(hass, node_registry.NEW_NODES_QUIET_S + 1) == "2"
    await hass.config_entries.async_unload(init_integration.entry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NEW_NODES) is None


@pytest.mark.usefixtures("mqtt_mock", "mqtt_client_closing", "no_new_nodes")
async def test_made_up_ids_flood_writes_the_issue_once_then_now_and_then(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Every held-back id counts, but the issue is written at the first, then every ISSUE_UPDATE_S.

    Each write is a registry save and an event to every open repairs panel.
    """
    init_integration = await _setup(hass, mock_config_entry)
    updates = async_capture_events(hass, ir.EVENT_REPAIRS_ISSUE_REGISTRY_UPDATED)

    def placeholders() -> dict[str, str] | None:
        issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NEW_NODES)
        return None if issue is None else issue.translation_placeholders

    for i in range(50):
        log(hass, "info", f"made-up-{i}", "x")
    await flush(hass, init_integration)
    assert [event.data["action"] for event in updates] == ["create"]
    assert placeholders() == {"count": "1", "example": "made-up-0", "burst": "0", "per_hour": "60"}
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=node_registry.ISSUE_UPDATE_S + 1))
    await settle(hass)
    assert [event.data["action"] for event in updates] == ["create", "update"]
    assert placeholders() == {"count": "50", "example": "made-up-0", "burst": "0", "per_hour": "60"}

    # an update still due at unload does not raise the issue again afterwards
    log(hass, "info", "made-up-50", "x")
    await flush(hass, init_integration)
    await hass.config_entries.async_unload(init_integration.entry_id)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=2 * node_registry.ISSUE_UPDATE_S + 2))
    await settle(hass)
    assert placeholders() is None


@pytest.mark.usefixtures("mqtt_mock", "mqtt_client_closing", "no_new_nodes")
async def test_issue_count_is_not_cut_to_zero_when_held_back_nodes_were_added(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Held-back nodes set up by hand are added; the issue keeps its last count till it clears."""
    init_integration = await _setup(hass, mock_config_entry)
    for node in ("made-up-0", "made-up-1"):
        log(hass, "info", node, "held back")
    await flush(hass, init_integration)
    for node in ("made-up-0", "made-up-1"):
        write(root(hass) / "clients" / node / "config" / "led.json", '{"pin": 2}')
    for node in ("made-up-0", "made-up-1"):  # the first line has the folder read again
        log(hass, "info", node, "set up by hand")
    await flush(hass, init_integration)
    for node in ("made-up-0", "made-up-1"):
        log(hass, "info", node, "added")
    await flush(hass, init_integration)
    assert node_device(hass, init_integration, "made-up-1") is not None
    assert await held_back_count_after(hass, node_registry.ISSUE_UPDATE_S + 1) == "1"
    await hass.config_entries.async_unload(init_integration.entry_id)
