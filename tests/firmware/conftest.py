"""Fixtures for the firmware tests: a simulated ESP32 and HA's side of the protocol."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from tests.harness.clients import Peer
from tests.harness.micropython import MicroPython
from tests.harness.mosquitto import Broker
from tests.harness.protocol import load_protocol

from .board import KEY, NODE, Board, board_config, secrets_config

protocol = load_protocol()


@pytest.fixture
def make_board(
    micropython: MicroPython, mosquitto: Broker, tmp_path: Path
) -> Iterator[Callable[..., Board]]:
    """Create boards (not booted); all are stopped at teardown."""
    boards: list[Board] = []

    def make(secrets: dict[str, Any] | None = None, heapsize: str | None = None, **board: Any) -> Board:
        made = Board(
            micropython,
            tmp_path / f"board{len(boards)}",
            board_config(mosquitto, **board),
            secrets or secrets_config(mosquitto),
            mosquitto.certs.ca_pem,
            heapsize=heapsize,
        )
        boards.append(made)
        return made

    yield make
    for made in boards:
        made.stop()


@pytest.fixture
def peer(mosquitto: Broker) -> Iterator[Peer]:
    """HA's side of the broker, subscribed to everything under home/."""
    client = Peer(mosquitto).connect()
    try:
        client.subscribe("home/#")
        yield client
    finally:
        client.close()


class ConfigServer:
    """Answers configuration requests like the integration (docs/protocol.md)."""

    def __init__(self, peer: Peer, components: dict[str, Any]) -> None:
        self.peer = peer
        self.components = components
        self.requests: list[Any] = []
        self.answer = True
        self._lock = threading.Lock()
        self._previous = peer.client.on_message
        peer.client.message_callback_add(protocol.login_request_filter("home"), self._on_request)

    def _on_request(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        node = protocol.parse_login_request("home", msg.topic)
        request = protocol.parse_login_payload(msg.payload)
        with self._lock:
            self.requests.append(request)
        if not self.answer or node is None:
            return
        threading.Thread(target=self._serve, args=(node, request), daemon=True).start()

    def _serve(self, node: str, request: Any) -> None:
        answer = protocol.login_answer("home", node)
        if request.wait_s is None:
            self.peer.client.publish(answer, json.dumps(self.components), qos=1)
            return
        self.peer.client.publish(answer, str(len(self.components)), qos=1)
        for name, value in self.components.items():
            threading.Event().wait(request.wait_s)
            self.peer.client.publish(protocol.login_component("home", node, name), json.dumps(value), qos=1)


@pytest.fixture
def config_server(peer: Peer) -> Callable[[dict[str, Any]], ConfigServer]:
    """Serve a configuration to every node that asks."""
    return lambda components: ConfigServer(peer, components)


def signed(cmd: str, *, ts: int | None = None, key: str = KEY, node: str = NODE) -> str:
    """A command signed like the integration signs it."""
    return str(protocol.sign_command(key, node, cmd, int(time.time()) if ts is None else ts))


def payloads(peer: Peer, topic: str) -> list[str]:
    """Payloads received on a topic, as text."""
    return [m.payload.decode() for m in peer.received(topic)]


def wait_online(peer: Peer, count: int = 1, timeout: float = 20) -> None:
    """Wait until the node has said ONLINE `count` times."""
    topic = protocol.node_topic("home", NODE, protocol.NODE_STATUS)
    peer.wait_for(lambda msgs: sum(m.topic == topic and m.payload == b"ONLINE" for m in msgs) >= count, timeout)
