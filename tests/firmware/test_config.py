"""Remote configuration: both answer modes, re-requests, the cache on flash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.harness.clients import Peer
from tests.harness.mosquitto import Broker

from .board import NODE, Board, ConfigServer, payloads, protocol, signed, wait_online

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
    components = {"relay": {"pin": 26}, "power_sense": None, "_order": ["relay", "power_sense"]}
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
    assert board.count_events("pin", "26", "mode", "out", "0") == 1


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
    config_server({"relay": {"pin": 27}})
    board = make_board()
    board.boot()
    board.wait_output("running: relay")
    board.stop()
    mosquitto.stop()
    board.boot()
    board.wait_output("using the cached configuration")
    board.wait_output("MQTT connection to 127.0.0.1")  # failing, yet running:
    board.wait_output("running: relay", count=2)
    # First boot: boot.py drove the board's pin 25, the relay then ran on the served 27.
    # Second boot: boot.py and the relay both drove the cached pin 27 only.
    assert board.count_events("pin", "25", "mode", "out", "0") == 1
    assert board.count_events("pin", "27", "mode", "out", "0") == 3


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
