"""pytest fixtures for the real components; loaded by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .certs import Certs, make_certs
from .micropython import MicroPython, micropython_port
from .mosquitto import Broker
from .ntp import NtpServer
from .system_bus import SystemBus

REAL_FIXTURES = {"mosquitto", "mosquitto_factory", "system_bus", "micropython", "ntp_server"}


@pytest.fixture(autouse=True)
def _real_sockets(request: pytest.FixtureRequest) -> None:
    """Lift pytest-socket's block (Home Assistant's harness) for real-component tests."""
    if REAL_FIXTURES.intersection(request.fixturenames) and request.config.pluginmanager.hasplugin("socket"):
        request.getfixturevalue("socket_enabled")


@pytest.fixture(scope="session")
def broker_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1, and a CA that signed nothing here."""
    return make_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mosquitto_factory(tmp_path: Path, broker_certs: Certs) -> Iterator[Callable[..., Broker]]:
    """Start brokers with extra configuration (or a queue limit); all are stopped at teardown."""
    brokers: list[Broker] = []

    def start(extra_config: str = "", max_queued_messages: int = 0) -> Broker:
        broker = Broker(
            tmp_path / f"broker{len(brokers)}",
            broker_certs,
            extra_config=extra_config,
            max_queued_messages=max_queued_messages,
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """A running broker: plain and TLS listeners on free loopback ports, password auth."""
    return mosquitto_factory()


@pytest.fixture
def ntp_server() -> Iterator[NtpServer]:
    """The boards' NTP server on a loopback address (board_config's ntp_host)."""
    server = NtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def system_bus(tmp_path: Path) -> Iterator[SystemBus]:
    """A private system bus with a fake org.freedesktop.login1 that records calls."""
    bus = SystemBus(tmp_path / "dbus")
    bus.start()
    yield bus
    bus.stop()


@pytest.fixture(scope="session")
def micropython() -> MicroPython:
    """MicroPython's unix port (32-bit unless SMARTSERVER_MP_PORT=64), limited to an
    ESP32-like heap by default."""
    return micropython_port()
