"""Alarm inputs: a contact that becomes active logs its line; HA's config sets them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from script.harness.board import NODE, Board, ConfigServer, payloads, protocol
from script.harness.clients import Peer

UPS = {"pin": 35, "active": 0, "debounce_ms": 50, "poll_ms": 10, "message": "UPS on battery"}
LEAK = {"pin": 36, "active": 1, "level": "error", "message": "water under the rack"}


def log_topic(level: str) -> str:
    return str(protocol.log_topic("home", level, NODE))


def test_alarms_from_ha_log_at_their_level_and_clear(
    make_board: Callable[..., Board], config_server: Callable[[dict[str, Any]], ConfigServer], peer: Peer
) -> None:
    # the alarms come from Home Assistant's configuration, not from board.py
    config_server({"alarms": {"ups": UPS, "leak": {**LEAK, "debounce_ms": 50, "poll_ms": 10}}})
    board = make_board()
    board.set_input(35, 1)  # mains present: the UPS contact is open (pulled up)
    board.set_input(36, 0)
    board.boot()
    board.wait_output("running:")
    board.wait_output("configuration received")

    board.set_input(35, 0)
    peer.wait_for(lambda _: "UPS on battery" in payloads(peer, log_topic("critical")), 10)
    board.set_input(36, 1)
    peer.wait_for(lambda _: "water under the rack" in payloads(peer, log_topic("error")), 10)
    board.set_input(35, 1)
    peer.wait_for(lambda _: "UPS on battery: cleared" in payloads(peer, log_topic("info")), 10)
    # one line per change: an idle input at boot said nothing, the active ones said it once
    assert payloads(peer, log_topic("critical")) == ["UPS on battery"]
    assert payloads(peer, log_topic("error")) == ["water under the rack"]


def test_bouncing_contact_logs_once(start_board: Callable[..., Board], peer: Peer) -> None:
    board = start_board(inputs={35: 1}, alarms={"ups": {**UPS, "debounce_ms": 300}})
    for level in (0, 1, 0, 1, 0):
        board.set_input(35, level)
        time.sleep(0.03)
    peer.wait_for(lambda _: "UPS on battery" in payloads(peer, log_topic("critical")), 10)
    time.sleep(0.6)
    assert payloads(peer, log_topic("critical")) == ["UPS on battery"]


def test_active_at_boot_is_reported(start_board: Callable[..., Board], peer: Peer) -> None:
    start_board(inputs={35: 0, 36: 1}, alarms={"ups": UPS, "rack_door": {"pin": 36, "active": 1}})
    peer.wait_for(lambda _: "UPS on battery" in payloads(peer, log_topic("critical")), 10)
    # without a message, the alarm's name is the line
    peer.wait_for(lambda _: "rack_door" in payloads(peer, log_topic("critical")), 10)


def test_bad_alarms_are_named_and_skipped(start_board: Callable[..., Board], peer: Peer) -> None:
    board = start_board(
        inputs={35: 1},
        alarms={
            "a": {"pin": "35", "message": "x"},
            "b": {"pin": 4, "level": "fatal", "message": "x"},
            "c": {"pin": 4, "message": 7},
            "d": "UPS",
            "ups": UPS,
        },
    )
    board.wait_output("alarm a ignored: no pin number")
    board.wait_output("alarm b ignored: level must be one of debug, info, warning, error, critical")
    board.wait_output("alarm c ignored: message is not text")
    board.wait_output("alarm d ignored: not an object")
    # the good one still runs
    board.set_input(35, 0)
    peer.wait_for(lambda _: "UPS on battery" in payloads(peer, log_topic("critical")), 10)


def test_alarms_not_an_object(start_board: Callable[..., Board]) -> None:
    board = start_board(alarms=[UPS])
    board.wait_output("alarms must be an object of named inputs: ignored")
    assert "running:" in board.output()
