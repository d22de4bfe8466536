"""Uptime and the replay check past ticks_ms wraps, on the 32-bit port.

ticks_ms wraps every 2**30 ms (12.4 days) on the ESP32 and on the 32-bit unix port, and
ticks_diff() is only right within 2**29 ms (6.2 days). Under libfaketime the port's
ticks follow the shifted wall clock: the board boots 20 s before a wrap, then its clocks
move 2.5 days ahead three times, a real wrap and 7.5 days of uptime.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from script.harness.board import NODE, Board, protocol, secrets_config, signed
from script.harness.clients import Peer
from script.harness.micropython import MicroPython
from script.harness.mosquitto import Broker
from script.harness.ntp import NtpServer

WRAP_MS = 2**30
STEP_S = 216000  # 2.5 days, each step well within ticks_diff's range
LATE_NTP = "127.123.0.2"  # answers only once the board has been up for 5 days
POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)


def test_uptime_and_replay_check_survive_ticks_wraps(
    make_board: Callable[..., Board], peer: Peer, mosquitto: Broker, micropython: MicroPython, tmp_path: Path
) -> None:
    if micropython.bits != 32:
        pytest.skip("needs the 32-bit port: its ticks wrap at 2**30 ms and its root holds libfaketime")
    offset_file = tmp_path / "clocks"
    now_ms = int(time.time() * 1000)
    offset = -(-((WRAP_MS - 20000 - now_ms % WRAP_MS) % WRAP_MS) // 1000)  # whole seconds
    set_offset(offset_file, offset)
    board = make_board(
        # plain MQTT: the test certificates are valid for 3 days, the board lives 7.5
        secrets=secrets_config(mosquitto, port=mosquitto.port, insecure_plain_mqtt=True),
        ntp_host=LATE_NTP,
        relay={"max_skew_s": 30 * 86400},  # so a command from before the boot is not just stale
    )
    board.env.update(micropython.shifted_clocks_env(offset_file))
    booted = int(time.time()) + offset  # the board's clock at power-up, at the latest
    servers: list[NtpServer] = []
    try:
        board.boot()
        board.wait_output("MQTT connected")
        time.sleep(1)  # NTP failed before the connect: the clock task now waits 60 s
        for step in range(3):
            # each step ends that wait: NTP is tried again (and answers after the last)
            if step == 2:
                servers.append(NtpServer(LATE_NTP).start())
            failed = board.output().count("NTP failed")
            offset += STEP_S
            set_offset(offset_file, offset)
            if step < 2:
                board.wait_output("NTP failed", count=failed + 1, timeout=30)
                # the clock task logs the failure, then starts its 60 s wait: a jump in
                # between would not end that wait (a race of the bed's jumps, not of a board)
                time.sleep(0.5)
        board.wait_output("clock set by NTP", timeout=30)
    finally:
        for server in servers:
            server.stop()
    time.sleep(1 - time.time() % 1)
    peer.publish(POWER_SET, signed(protocol.PRESS, ts=int(time.time()) + offset))
    board.wait_output("button pulsed", timeout=10)
    peer.publish(POWER_SET, signed(protocol.PRESS, ts=booted - 5))
    board.wait_output("refused: signed before the node's last boot", timeout=10)
    info_topic = protocol.node_topic("home", NODE, "info")
    peer.publish(protocol.node_topic("home", NODE, protocol.NODE_REFRESH), b"")
    peer.wait_for(lambda _: len(peer.received(info_topic)) >= 2, 10)
    uptime = json.loads(peer.received(info_topic)[-1].payload)["uptime_s"]
    assert 3 * STEP_S <= uptime < 3 * STEP_S + 120


def set_offset(path: Path, seconds: int) -> None:
    """Replace libfaketime's offset file at once: it reads the file on every clock call,
    and a half-written file makes it exit."""
    new = path.with_suffix(".new")
    new.write_text(f"+{seconds}\n")
    new.replace(path)
