"""Watchdog fed only while the broker answers; safe mode after crash boots."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

from smartserver_node.client import Connection, Node

from script.harness.board import (
    HARD_RESET,
    KEY,
    NODE,
    PWRON_RESET,
    RESET_EXIT,
    WDT_RESET,
    Board,
    ConfigServer,
    payloads,
    protocol,
)
from script.harness.clients import Peer
from script.harness.mosquitto import Broker

FAST = {"watchdog_s": 3, "mqtt": {"keepalive_s": 3, "timeout_s": 2, "backoff_max_s": 1}}


def test_watchdog_starves_when_the_round_trip_fails(
    start_board: Callable[..., Board], peer: Peer, mosquitto: Broker
) -> None:
    board = start_board(**FAST)
    # Fed while the broker answers: no reset for longer than the watchdog's 3 s.
    time.sleep(4.5)
    board.poll()
    assert board.boots == [PWRON_RESET]
    assert board.count_events("wdt", "feed") >= 3
    # A frozen broker keeps the TCP connection open but answers nothing.
    os.kill(mosquitto.pid, signal.SIGSTOP)
    try:
        board.wait(lambda: len(board.boots) >= 2, timeout=30, what="the watchdog reset")
        assert board.exits[0] == -signal.SIGALRM
        assert board.boots[1] == WDT_RESET
        assert "no PINGRESP" in board.output()
    finally:
        os.kill(mosquitto.pid, signal.SIGCONT)
    info = protocol.log_topic("home", "info", NODE)
    board.wait(
        lambda: any("reset cause: watchdog" in line for line in payloads(peer, info)),
        timeout=30,
        what="the watchdog reset to be logged",
    )
    # A reset while MQTT was down is an outage, not a crash.
    assert not (board.flash / "crash_count").exists()
    assert "it hung" not in board.output()


def test_safe_mode_after_crash_boots(
    make_board: Callable[..., Board],
    peer: Peer,
    config_server: Callable[..., ConfigServer],
) -> None:
    config_server({})
    # Pin 99 does not exist on an ESP32: starting the relay raises every boot.
    board = make_board(relay={"pin": 99}, safe_mode_after=3, stable_s=2)
    board.boot()
    board.wait_output("running: no modules", timeout=60)
    assert board.boots == [PWRON_RESET, HARD_RESET, HARD_RESET, HARD_RESET]
    assert board.exits == [RESET_EXIT] * 3  # main.py reset after each crash
    critical = protocol.log_topic("home", "critical", NODE)
    error = protocol.log_topic("home", "error", NODE)
    peer.wait_for(lambda msgs: any(m.topic == critical for m in msgs), 20)
    assert payloads(peer, critical) == [
        "safe mode after 3 crash boots: only network, MQTT, logging and configuration run"
    ]
    peer.wait_for(lambda msgs: any(b"invalid pin" in m.payload for m in msgs if m.topic == error), 20)
    info = json.loads(peer.received(protocol.node_topic("home", NODE, "info"))[-1].payload)
    assert (info["safe_mode"], info["modules"], info["crashes"]) == (True, [], 3)
    # A stable run clears the count: after fixing the board and a power cycle, all runs.
    board.wait(lambda: (board.flash / "crash_count").read_text() == "0", what="the crash count reset")
    board.stop()
    board.board["relay"]["pin"] = 25
    board.write_config()
    board.boot()
    board.wait_output("running: relay, power_sense")


def test_an_import_failure_loop_ends_in_safe_mode(
    make_board: Callable[..., Board], config_server: Callable[..., ConfigServer]
) -> None:
    # A corrupt module on flash: node.py cannot even be imported, every boot.
    config_server({})
    board = make_board()
    (board.flash / "mqtt.mpy").write_bytes(b"C\x06 not a module")
    board.boot()
    board.wait_output("stopped at the REPL", timeout=60)
    board.wait(lambda: not board.running, what="main.py to end")
    assert board.boots == [PWRON_RESET, HARD_RESET, HARD_RESET, HARD_RESET]
    assert board.exits == [RESET_EXIT, RESET_EXIT, RESET_EXIT, 0]
    assert (board.flash / "crash_count").read_text() == "4"
    assert board.count_events("pin", "25", "value", "1") == 0  # the relay stayed off


def test_panics_count_towards_safe_mode_but_planned_resets_do_not(
    make_board: Callable[..., Board], peer: Peer, config_server: Callable[..., ConfigServer]
) -> None:
    server = config_server({"relay": {"press_ms": 100}})
    board = make_board()
    board.boot()
    board.wait_output("running:")
    # A panic; then the node restarts on purpose for a new configuration from HA.
    server.components = {"relay": {"press_ms": 110}}
    board.panic()
    board.wait_output("configuration changed: restarting")
    board.wait_output("running:", count=3)
    board.panic()
    board.wait_output("running:", count=4)
    board.panic()
    board.wait_output("running: no modules")
    assert board.boots == [PWRON_RESET] + [HARD_RESET] * 4
    # (from the console: a panic can come before a boot's log lines reached the broker)
    causes = [line.split("reset cause: ")[1] for line in board.log_lines("reset cause: ")]
    assert causes == ["power on", "panic", "reset by the firmware", "panic", "panic"]
    critical = protocol.log_topic("home", "critical", NODE)
    peer.wait_for(lambda _: any("safe mode after 3 crash boots" in p for p in payloads(peer, critical)), 20)


def test_a_management_reboot_is_not_a_crash(start_board: Callable[..., Board], mosquitto: Broker) -> None:
    # machine.reset() reads HARD_RESET on the ESP32, as a panic does: the planned flag
    # (written by the disconnect before every deliberate reset) tells them apart.
    board = start_board()
    connection = Connection(
        "127.0.0.1", mosquitto.tls_port, str(mosquitto.certs.ca), mosquitto.username, mosquitto.password
    )
    with Node(connection, "home", NODE, KEY, timeout=10) as node:
        assert node.call("reboot") == b"rebooting"
    board.wait_output("running:", count=2)
    assert board.boots == [PWRON_RESET, HARD_RESET]
    assert board.log_lines("reset cause: ")[-1].endswith("reset cause: reset by the firmware")
    assert not (board.flash / "crash_count").exists()
