"""The real components the suites stand on, proven real: each check can fail."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.harness.clients import Peer
from tests.harness.micropython import MicroPython
from tests.harness.mosquitto import Broker
from tests.harness.system_bus import SystemBus

MP_CLIENT = Path(__file__).parent / "harness" / "mp_tls_publish.py"


def test_mosquitto_tls_round_trip(mosquitto: Broker) -> None:
    sub = Peer(mosquitto).connect()
    pub = Peer(mosquitto, tls=False).connect()
    try:
        sub.subscribe("harness/#")
        pub.publish("harness/x", b"over tls")
        assert sub.wait_topic("harness/x").payload == b"over tls"
    finally:
        sub.close()
        pub.close()


def test_mosquitto_refuses_wrong_ca(mosquitto: Broker) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        Peer(mosquitto, ca=mosquitto.certs.wrong_ca).connect()


def test_mosquitto_refuses_wrong_password(mosquitto: Broker) -> None:
    with pytest.raises(ConnectionRefusedError, match=r"Not authorized|Bad user name or password"):
        Peer(mosquitto, password="wrong").connect()


def test_mosquitto_restart_keeps_ports(mosquitto: Broker) -> None:
    old_pid, port = mosquitto.pid, mosquitto.tls_port
    mosquitto.restart()
    assert mosquitto.pid != old_pid
    assert mosquitto.tls_port == port
    Peer(mosquitto).connect().close()


def test_system_bus_records_power_off(system_bus: SystemBus) -> None:
    call = [
        "dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.login1",
        "/org/freedesktop/login1",
    ]  # fmt: skip
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": system_bus.address}
    can = subprocess.run(
        [*call, "org.freedesktop.login1.Manager.CanPowerOff"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"yes"' in can.stdout
    subprocess.run([*call, "org.freedesktop.login1.Manager.PowerOff", "boolean:false"], env=env, check=True)
    assert [c["args"] for c in system_bus.calls("PowerOff")] == [[False]]

    system_bus.set_control(power_off_error="Interactive authentication required.")
    refused = subprocess.run(
        [*call, "org.freedesktop.login1.Manager.PowerOff", "boolean:false"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "Interactive authentication required" in refused.stderr


def test_micropython_publishes_over_tls(micropython: MicroPython, mosquitto: Broker) -> None:
    sub = Peer(mosquitto).connect()
    try:
        sub.subscribe("harness/mp")
        result = micropython.run(
            MP_CLIENT,
            str(mosquitto.tls_port),
            mosquitto.username,
            mosquitto.password,
            str(mosquitto.certs.ca),
            "hello from micropython",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert sub.wait_topic("harness/mp").payload == b"hello from micropython"
    finally:
        sub.close()


def test_micropython_rejects_wrong_ca(micropython: MicroPython, mosquitto: Broker) -> None:
    result = micropython.run(
        MP_CLIENT,
        str(mosquitto.tls_port),
        mosquitto.username,
        mosquitto.password,
        str(mosquitto.certs.wrong_ca),
        "must not arrive",
    )
    assert result.returncode != 0
    assert "not correctly signed by the trusted CA" in result.stderr
