"""The replay record's rules: missing is empty, unreadable is a floor, unwritable raises."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from script.harness.agent import TEST_KEY
from script.harness.protocol import load_protocol
from smartserver_agent import logind, replay, session
from smartserver_agent.commands import CommandError, Verifier
from smartserver_agent.config import load
from smartserver_agent.session import Agent

p = load_protocol()
NOW = 1_763_780_000.0
SKEW = 30.0


def command(ts: float) -> bytes:
    return str(p.sign_command(TEST_KEY, "srv1", "SHUTDOWN", int(ts))).encode()


def verifier(state: replay.ReplayState) -> Verifier:
    return Verifier(TEST_KEY, "srv1", SKEW, state.seen, state.floor)


def test_saved_nonces_are_loaded_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "data" / replay.REPLAY_FILE
    payload = command(NOW)
    first = Verifier(TEST_KEY, "srv1", SKEW)
    first.verify(payload, NOW)
    replay.save(path, replay.ReplayState(first.seen), SKEW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [f.name for f in path.parent.iterdir()] == [replay.REPLAY_FILE]  # no temp file left

    again = verifier(replay.load(path, NOW + 5, SKEW))
    with pytest.raises(CommandError, match="replayed"):
        again.verify(payload, NOW + 5)
    assert again.verify(command(NOW + 5), NOW + 5).cmd == "SHUTDOWN"
    # beyond the window the nonces are dropped: such a command is stale anyway
    assert replay.load(path, NOW + 2 * SKEW + 1, SKEW).seen == {}


def test_missing_record_is_empty(tmp_path: Path) -> None:
    state = replay.load(tmp_path / replay.REPLAY_FILE, NOW, SKEW)
    assert state == replay.ReplayState({}, 0.0)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({"version": 1, "max_skew": 30, "floor": 0, "nonces": {"ab": "soon"}}).encode(),
        json.dumps({"version": 1, "max_skew": 30, "floor": float("nan"), "nonces": {}}).encode(),
        json.dumps({"version": 2, "max_skew": 30, "floor": 0, "nonces": {}}).encode(),
        b"",
    ],
)
def test_unreadable_record_refuses_what_it_could_have_held(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Every command accepted before the last write was signed at most skew after it."""
    path = tmp_path / replay.REPLAY_FILE
    path.write_bytes(content)
    written = NOW - 10
    os.utime(path, (written, written))
    state = replay.load(path, NOW, SKEW)
    assert state.floor == written + SKEW
    assert "the replay record" in caplog.text
    assert "is unreadable" in caplog.text
    guard = verifier(state)
    with pytest.raises(CommandError, match="unverifiable"):
        guard.verify(command(written + SKEW), NOW)  # could have been accepted just before
    assert guard.verify(command(written + SKEW + 1), NOW + 1).cmd == "SHUTDOWN"

    # the floor is kept in the record written next, until it no longer matters
    replay.save(path, replay.ReplayState(guard.seen, guard.floor), SKEW)
    assert replay.load(path, NOW + 2, SKEW).floor == written + SKEW


def test_unreadable_record_from_the_future_is_capped_at_now(tmp_path: Path) -> None:
    path = tmp_path / replay.REPLAY_FILE
    path.write_text("garbage")
    os.utime(path, (NOW + 86400, NOW + 86400))  # a clock that was wrong when it was written
    assert replay.load(path, NOW, SKEW).floor == NOW + SKEW


def test_record_that_cannot_be_read_at_all(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    # NotADirectoryError: the data directory is a file
    assert replay.load(blocker / replay.REPLAY_FILE, NOW, SKEW).floor == NOW + SKEW


def test_a_larger_skew_than_written_sets_a_floor(tmp_path: Path) -> None:
    """Nonces pruned under 30 s may be fresh under 300 s: refuse what the record could have held."""
    path = tmp_path / replay.REPLAY_FILE
    replay.save(path, replay.ReplayState({"ab": NOW - 5}), SKEW)
    os.utime(path, (NOW - 5, NOW - 5))
    assert replay.load(path, NOW, SKEW).floor == 0.0
    assert replay.load(path, NOW, 300).floor == NOW - 5 + SKEW


def test_unwritable_record_raises(tmp_path: Path) -> None:
    """The caller refuses the command on OSError; the rules hold even for root."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError):
        replay.save(blocker / "data" / replay.REPLAY_FILE, replay.ReplayState({"ab": NOW}), SKEW)
    path = tmp_path / replay.REPLAY_FILE
    path.mkdir()
    (path / "keep").write_text("")
    with pytest.raises(IsADirectoryError):
        replay.save(path, replay.ReplayState({"ab": NOW}), SKEW)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["file", replay.REPLAY_FILE]


def test_an_older_snapshot_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / replay.REPLAY_FILE
    recorder = replay.Recorder(path, SKEW)
    state = replay.ReplayState({"a": NOW})
    older = recorder.snapshot(state)
    state.seen["b"] = NOW + 1
    newer = recorder.snapshot(state)
    recorder.write(newer)
    recorder.write(older)
    assert set(replay.load(path, NOW + 1, SKEW).seen) == {"a", "b"}


def test_a_hanging_disk_refuses_the_command_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that never returns neither stalls the agent nor lets the command through."""
    config = load(
        {
            "SMARTSERVER_BROKER_HOST": "127.0.0.1",
            "SMARTSERVER_SERVER_ID": "srv1",
            "SMARTSERVER_KEY": TEST_KEY,
            "SMARTSERVER_DATA_DIR": str(tmp_path),
        }
    )
    agent = Agent(config)
    release = threading.Event()
    monkeypatch.setattr(agent.recorder, "write", lambda _snapshot: release.wait(10))
    monkeypatch.setattr(session, "RECORD_TIMEOUT_S", 0.2)
    powered: list[bool] = []

    async def perform(action: logind.Action) -> None:
        powered.append(True)

    monkeypatch.setattr(logind, "perform", perform)
    verified = agent.verifier.verify(command(time.time()), time.time())
    agent.state = "SHUTTING_DOWN"
    started = time.monotonic()
    try:
        asyncio.run(agent._go_down("home/server/srv1/system", verified, logind.POWER_OFF, "ONLINE"))
    finally:
        release.set()
    assert time.monotonic() - started < 2
    assert powered == []
    assert agent.state == "ONLINE"
    assert verified.nonce not in agent.verifier.seen
    assert "cannot record it in" in caplog.text
    assert "no answer within 0.2 s" in caplog.text
