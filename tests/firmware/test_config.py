"""Remote configuration: both answer modes, re-requests, the cache on flash."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from script.harness.board import NODE, Board, ConfigServer, payloads, protocol, signed, wait_online
from script.harness.clients import Peer
from script.harness.mosquitto import Broker

CACHE = "remote_config.json"
POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)
STATUS = protocol.node_topic("home", NODE, protocol.NODE_STATUS)


def test_full_answer_is_applied_and_cached(
    make_board: Callable[..., Board], peer: Peer, config_server: Callable[..., ConfigServer]
) -> None:
    components = {"relay": {"press_ms": 90}, "log": {"level": "info"}, "_order": ["relay", "log"]}
    server = config_server(components)
    board = make_board(config={"wait_s": None})
    board.boot()
    board.wait_output("running: relay")
    board.wait_commands()
    assert board.read_flash(CACHE) == components
    request = server.requests[0]
    assert request.wait_s is None
    assert request.version == "0.1.0"
    # The relay runs with the served pulse time, not the board's 150 ms.
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait(lambda: len(board.pulses(25)) == 1, what="the PRESS pulse")
    assert 89 <= board.pulses(25)[0].ms < 150


def test_chunked_answer(
    make_board: Callable[..., Board], peer: Peer, config_server: Callable[..., ConfigServer]
) -> None:
    components = {"relay": {"press_ms": 90}, "power_sense": None, "_order": ["relay", "power_sense"]}
    server = config_server(components)
    board = make_board(config={"wait_s": 0.05})
    board.boot()
    board.wait_output("running: relay")
    assert "power_sense" not in board.log_lines("running:")[0]
    assert board.read_flash(CACHE) == components
    request = server.requests[0]
    assert (request.platform, request.wait_s) == ("esp32", 0.05)
    # Every component arrived on its own topic.
    for name in components:
        assert payloads(peer, protocol.login_component("home", NODE, name))
    assert "configuration received: 2 components" in board.output()


def test_rerequest_until_complete(
    make_board: Callable[..., Board], peer: Peer, config_server: Callable[..., ConfigServer]
) -> None:
    server = config_server({"relay": {"press_ms": 120}})
    server.answer = False
    board = make_board(config={"wait_s": 0.05, "retry_s": 1})
    board.boot()
    board.wait(lambda: len(server.requests) >= 2, what="a second request")
    server.answer = True
    board.wait_output("configuration received: 1 components")
    assert board.read_flash(CACHE) == {"relay": {"press_ms": 120}}


def test_cached_configuration_when_the_broker_is_down(
    make_board: Callable[..., Board],
    peer: Peer,
    mosquitto: Broker,
    config_server: Callable[..., ConfigServer],
) -> None:
    config_server({"relay": {"press_ms": 120}})
    board = make_board()
    board.boot()
    board.wait_output("running: relay")
    board.stop()
    mosquitto.stop()
    board.boot()
    board.wait_output("using the cached configuration")
    board.wait_output("MQTT connection to 127.0.0.1")  # failing, yet running:
    board.wait_output("running: relay", count=2)
    # Each boot: boot.py, then the relay drove the board's pin 25 inactive.
    assert board.count_events("pin", "25", "mode", "out", "0") == 4


def test_changed_configuration_restarts_cleanly(
    make_board: Callable[..., Board],
    peer: Peer,
    mosquitto: Broker,
    config_server: Callable[..., ConfigServer],
) -> None:
    server = config_server({"relay": {"press_ms": 100}})
    board = make_board()
    board.boot()
    board.wait_output("running: relay")
    wait_online(peer)
    board.stop()
    server.components = {"relay": {"press_ms": 110}}
    board.boot()
    board.wait_output("configuration changed: restarting")
    # OFFLINE before the planned disconnect, then a reset and ONLINE again.
    board.wait(lambda: len(board.boots) == 3, what="the reboot")
    wait_online(peer, count=3)
    statuses = payloads(peer, STATUS)
    assert "OFFLINE" in statuses[statuses.index("ONLINE", 1) :]
    # A clean DISCONNECT (the broker discards the Will): that OFFLINE was the node's own.
    assert f"Client {NODE} disconnected." in mosquitto.log
    assert board.read_flash(CACHE) == {"relay": {"press_ms": 110}}
    board.wait_output("running: relay", count=3)


def test_bad_answers_are_ignored(make_board: Callable[..., Board], peer: Peer) -> None:
    board = make_board(config={"wait_s": None, "retry_s": 1})
    board.boot()
    answer = protocol.login_answer("home", NODE)
    bad: list[Any] = [b"{not json", b"[1, 2]", b"99999"]
    board.wait(lambda: bool(payloads(peer, protocol.login_request("home", NODE))), what="a request")
    for payload in bad:
        peer.publish(answer, payload)
    board.wait_output("configuration answer is not JSON")
    board.wait_output("neither an object nor a count")
    board.wait_output("configuration has 99999 components, more than 16")
    assert not (board.flash / CACHE).exists()


def test_served_configuration_cannot_drive_pins(
    make_board: Callable[..., Board], peer: Peer, config_server: Callable[..., ConfigServer]
) -> None:
    # Whoever can publish an answer must not move, invert or hijack the relay's pin.
    config_server(
        {
            "relay": {"pin": 26, "active": 0, "max_skew_s": 3600, "press_ms": 90},
            "power_sense": {"pin": 25, "pull": "up"},
            "alarms": {"onrelay": {"pin": 25, "pull": "up"}, "ups": {"pin": 32, "pull": "up"}},
        }
    )
    board = make_board()
    board.boot()
    board.wait_output("running:")
    board.wait_commands()
    assert set(board.log_lines("running:")[0].split(": ")[1].split(", ")) == {
        "relay",
        "power_sense",
        "alarms",
    }
    for refused in ("relay.pin", "relay.active", "relay.max_skew_s", "power_sense", "alarm onrelay"):
        assert f"served {refused} refused" in board.output(), refused
    # The served pulse time is used, on the board's pin and polarity.
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait(lambda: len(board.pulses(25)) == 1, what="the PRESS pulse")
    assert 89 <= board.pulses(25)[0].ms < 150
    # Rebooted from the cache: boot.py drives the board's pin, never the served one.
    board.stop()
    board.boot()
    board.wait_output("running:", count=2)
    assert board.count_events("pin", "25", "mode", "out", "0") == 4
    assert board.count_events("pin", "25", "mode", "in") == 0
    assert board.count_events("pin", "26") == 0
    assert board.count_events("pin", "32", "mode", "in") == 2


@pytest.mark.parametrize("wait_s", [None, 0.05])
def test_retained_answers_are_ignored(
    make_board: Callable[..., Board], peer: Peer, wait_s: float | None
) -> None:
    # HA never retains answers: a retained one was left by another client.
    answer = protocol.login_answer("home", NODE)
    component = protocol.login_component("home", NODE, "relay")
    if wait_s is None:
        peer.publish(answer, json.dumps({"relay": {"press_ms": 90}}), retain=True)
    else:
        peer.publish(answer, b"1", retain=True)
        peer.publish(component, json.dumps({"press_ms": 90}), retain=True)
    board = make_board(config={"wait_s": wait_s, "boot_wait_s": 2})
    board.boot()
    board.wait_output("starting with the board configuration")
    board.wait_output(f"retained configuration message on {answer} ignored")
    assert "configuration received" not in board.output()
    assert not (board.flash / CACHE).exists()
    peer.publish(answer, b"", retain=True)
    peer.publish(component, b"", retain=True)


@pytest.mark.parametrize(("components", "restarts"), [({}, False), ({"relay": {"press_ms": 120}}, True)])
def test_late_answer_restarts_only_when_it_changes_something(
    make_board: Callable[..., Board],
    config_server: Callable[..., ConfigServer],
    components: dict[str, Any],
    restarts: bool,
) -> None:
    server = config_server(components)
    server.answer = False
    board = make_board(config={"boot_wait_s": 1, "retry_s": 1})
    board.boot()
    board.wait_output("starting with the board configuration")
    server.answer = True
    board.wait_output("configuration received")
    if restarts:
        board.wait(lambda: len(board.boots) == 2, what="the restart")
    else:
        time.sleep(1)  # a restart is logged 200 ms after the answer
        assert "restarting" not in board.output()
        assert board.boots == [1]
    assert board.read_flash(CACHE) == components


def test_inputs_without_pull_resistors_are_refused(
    make_board: Callable[..., Board], config_server: Callable[..., ConfigServer]
) -> None:
    # GPIO 34-39 have no pull resistors: the port accepts the pull, and the input floats.
    config_server(
        {
            "power_sense": {"pin": 35, "pull": "up"},
            "alarms": {"ups": {"pin": 36, "pull": "up"}, "door": {"pin": 32, "pull": "up"}},
        }
    )
    board = make_board(power_sense={"pin": 34, "pull": "up", "active": 0})
    board.boot()
    board.wait_output("running:")
    out = board.output()
    assert "power_sense refused: GPIO 34 has no pull resistor" in out
    assert "served power_sense refused: GPIO 35 has no pull resistor" in out
    assert "served alarm ups refused: GPIO 36 has no pull resistor" in out
    assert board.log_lines("running:")[0].endswith("running: relay, alarms")
    assert board.count_events("pin", "32", "mode", "in") == 1  # the good alarm runs
    for pin in (34, 35, 36):
        assert board.count_events("pin", str(pin)) == 0


def test_an_output_on_an_input_only_pin_is_refused(make_board: Callable[..., Board]) -> None:
    board = make_board(relay={"pin": 34})
    board.boot()
    board.wait_output("running:")
    assert "relay refused: GPIO 34 is input only" in board.output()
    assert board.log_lines("running:")[0].endswith("running: power_sense")
