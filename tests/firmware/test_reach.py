"""Reachability from the node: it checks a TCP port (a listener the test opens and closes on loopback)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from script.harness.board import NODE, Board, ConfigServer, protocol, signed
from script.harness.clients import Peer
from script.harness.procs import free_port, tcp_listener

REACH = protocol.node_topic("home", NODE, protocol.NODE_REACH)
POWER_SET = protocol.node_topic("home", NODE, protocol.NODE_POWER_SET)


def reports(peer: Peer) -> list[str]:
    return [m.payload.decode() for m in peer.received(REACH)]


def wait_report(board: Board, peer: Peer, payload: str, after: int) -> None:
    board.wait(lambda: payload in reports(peer)[after:], what=f"reach {payload}")


def test_node_checks_the_port(make_board: Callable[..., Board], peer: Peer) -> None:
    port = free_port()
    board = make_board(
        relay=None, power_sense=None, reach={"host": "127.0.0.1", "port": port, "interval_s": 1}
    )
    board.boot()
    board.wait_output("running: reach")
    # nobody listens: no answer
    wait_report(board, peer, protocol.REACH_OFF, 0)
    server = tcp_listener(port)
    try:
        # the port answers (nothing accepted, nothing sent: the connect alone counts)
        wait_report(board, peer, protocol.REACH_ON, len(reports(peer)))
        board.wait_output(f"reach: 127.0.0.1:{port} answers")
    finally:
        server.close()
    wait_report(board, peer, protocol.REACH_OFF, len(reports(peer)))
    board.wait_output(f"reach: 127.0.0.1:{port} does not answer", count=2)
    # one report per interval, never retained
    seen = len(reports(peer))
    time.sleep(2.5)
    assert 2 <= len(reports(peer)) - seen <= 4
    assert not [m for m in peer.received(REACH) if m.retain]
    # the checks left no socket open: the broker link is the only one
    assert board.open_sockets() == 1


def test_names_and_bad_settings_are_refused(make_board: Callable[..., Board], peer: Peer) -> None:
    # no name lookups on the loop: a host name is refused, logged, and the node runs on
    board = make_board(relay=None, power_sense=None, reach={"host": "nas.lan", "port": 22})
    board.boot()
    board.wait_output("running: no modules")
    assert "reach refused: host 'nas.lan' is not an IPv4 address (no name lookups)" in board.output()
    assert board.count_events("dns", "nas.lan") == 0


def test_served_by_home_assistant(
    make_board: Callable[..., Board], config_server: Callable[[dict[str, Any]], ConfigServer], peer: Peer
) -> None:
    """HA serves `reach` and `wol` to a server's node that needs them; without a relay it runs both."""
    port = free_port()
    config_server(
        {"reach": {"host": "127.0.0.1", "port": port, "interval_s": 1, "timeout_ms": 500}, "wol": {}}
    )
    board = make_board(relay=None, power_sense=None)
    board.boot()
    board.wait_output("running: reach, wol")
    wait_report(board, peer, protocol.REACH_OFF, 0)
    board.wait_commands()
    peer.publish(POWER_SET, signed(protocol.PRESS))
    board.wait_output("power command refused: PRESS needs a relay")
