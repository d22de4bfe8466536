"""The real components the suites stand on, proven real: each check can fail."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest

from script.harness import procs
from script.harness.clients import Peer
from script.harness.micropython import POWER_UP, MicroPython
from script.harness.mosquitto import Broker
from script.harness.system_bus import SystemBus

MP_CLIENT = Path(__file__).parents[1] / "script" / "harness" / "mp_tls_publish.py"
FIRMWARE_SHIM = Path(__file__).parents[1] / "script" / "harness" / "shim"


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


def test_micropython_is_the_32_bit_port(micropython: MicroPython, tmp_path: Path) -> None:
    if os.environ.get("SMARTSERVER_MP_PORT") == "64":
        pytest.skip("the 64-bit run")
    script = tmp_path / "words.py"
    script.write_text("import sys, time\nprint(sys.maxsize, time.ticks_add(0, -1))\n")
    result = micropython.run(script)
    assert result.stdout.split() == [str(2**31 - 1), str(2**30 - 1)], result.stderr


def test_micropython_clock_starts_at_power_up_and_rtc_sets_it(
    micropython: MicroPython, tmp_path: Path
) -> None:
    if micropython.bits != 32:
        pytest.skip("libfaketime is in the 32-bit root")
    script = tmp_path / "clock.py"
    script.write_text(
        f"import sys, time\nsys.path.append({str(FIRMWARE_SHIM)!r})\nimport machine\n"
        "print(time.gmtime()[0])\nmachine.RTC().datetime((2031, 5, 4, 0, 3, 2, 1, 0))\n"
        "print(time.time() - time.mktime((2031, 5, 4, 3, 2, 1, 0, 0)))\n"
    )
    env = {**micropython.clock_env(tmp_path / "clock", POWER_UP), "SHIM_EVENTS": str(tmp_path / "events")}
    result = micropython.run(script, env=env)
    year, behind = result.stdout.split()
    assert year == "2000", result.stderr
    assert abs(float(behind)) <= 1  # whole seconds: libfaketime's offset


def test_free_ports_are_never_handed_out_twice(socket_enabled: None) -> None:
    # a broker's two listeners took the same port once (the kernel offers a port again
    # once its probe socket is closed): mosquitto then fails with "Address already in use"
    ports = [procs.free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
