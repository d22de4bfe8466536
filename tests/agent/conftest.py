"""Fixtures for the agent's tests: agents as subprocesses, a peer watching the broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from script.harness.agent import TEST_KEY, AgentProcess, agent_env
from script.harness.clients import Peer
from script.harness.mosquitto import Broker
from script.harness.protocol import load_protocol
from script.harness.proxy import DelayProxy
from script.harness.system_bus import SystemBus

p = load_protocol()
SERVER = "srv1"


def topic(leaf: str, server: str = SERVER) -> str:
    return str(p.server_topic("home", server, leaf))


def signed(cmd: str = "SHUTDOWN", key: str = TEST_KEY, server: str = SERVER, age: float = 0) -> str:
    """A command signed by the integration's protocol module."""
    return str(p.sign_command(key, server, cmd, int(time.time() - age)))


def payloads(peer: Peer, leaf: str) -> list[bytes]:
    return [m.payload for m in peer.received(topic(leaf))]


# docs/broker.md's setting: without it mosquitto holds a small packet to the watcher
# behind the watcher's delayed ACK (~40 ms), and arrival times lag the broker by that
NODELAY = "set_tcp_nodelay true"


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker], request: pytest.FixtureRequest) -> Broker:
    """The harness's broker; indirect parametrization adds configuration lines."""
    return mosquitto_factory(extra_config=getattr(request, "param", ""))


class TimedPeer(Peer):
    """A Peer that notes when each message arrived, on the clock the fake logind records."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.arrivals: list[tuple[float, str, bytes]] = []

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        # noted before the message is visible to a waiter, so a waiter always finds it
        self.arrivals.append((time.time(), msg.topic, msg.payload))
        super()._on_message(client, userdata, msg)

    def arrived(self, topic_: str, payload: bytes) -> float:
        """When the first `payload` on `topic_` arrived."""
        return next(at for at, t, got in self.arrivals if t == topic_ and got == payload)


@pytest.fixture
def watcher(mosquitto: Broker) -> Iterator[TimedPeer]:
    """A client subscribed to everything under `home/` before any agent starts."""
    peer = TimedPeer(mosquitto)
    peer.connect()
    peer.subscribe("home/#")
    yield peer
    peer.close()


@pytest.fixture
def slow_link(mosquitto: Broker) -> Iterator[DelayProxy]:
    """The broker's TLS port behind 100 ms of delay each way.

    An agent connected through it gets a PUBACK 100 ms after the watcher got the
    message, so "HA heard DEAD before logind was asked" is checked with 100 ms of
    margin instead of racing the two processes' scheduling; and an agent that did
    not wait for the PUBACK would ask logind 100 ms before DEAD reached the broker.
    """
    proxy = DelayProxy(mosquitto.tls_port, 0.1)
    yield proxy
    proxy.close()


@pytest.fixture
def start_agent(
    mosquitto: Broker, system_bus: SystemBus, tmp_path: Path
) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents against the broker and the fake logind; all stopped at teardown."""
    agents: list[AgentProcess] = []

    def start(**settings: str | None) -> AgentProcess:
        directory = tmp_path / f"agent{len(agents)}"
        settings.setdefault("heartbeat", "1")
        agent = AgentProcess(agent_env(directory, mosquitto, system_bus, **settings), directory)
        agents.append(agent)
        return agent.start()

    yield start
    for agent in agents:
        agent.stop()
