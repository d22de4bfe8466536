"""`smartserver-agent check`: configuration, broker, logind and network in one report."""

from __future__ import annotations

from pathlib import Path

from script.harness.agent import TEST_KEY, agent_env, run_agent
from script.harness.mosquitto import Broker
from script.harness.procs import free_port
from script.harness.system_bus import SystemBus


def test_check_ok(mosquitto: Broker, system_bus: SystemBus, tmp_path: Path) -> None:
    # lo reads "unknown" with a carrier: up, and present on every machine
    result = run_agent(agent_env(tmp_path, mosquitto, system_bus, interfaces="lo"), "check")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "configuration: ok" in out
    assert f"broker: 127.0.0.1:{mosquitto.tls_port} as {mosquitto.username}" in out
    assert "logind CanPowerOff: yes" in out
    assert "logind CanReboot: yes" in out
    assert "interface lo: up" in out
    assert f"reachability of 127.0.0.1:{mosquitto.port}: ok" in out
    assert out.rstrip().endswith("result: ok")
    # never PowerOff nor Reboot
    assert [c["method"] for c in system_bus.calls()] == ["CanPowerOff", "CanReboot"]
    assert mosquitto.password not in out + result.stderr
    assert TEST_KEY not in out + result.stderr
    # it really logged in, with its own client id (the running agent's stays untouched)
    assert "smartserver-agent-srv1-check" in mosquitto.log


def test_check_names_every_problem(mosquitto: Broker, system_bus: SystemBus, tmp_path: Path) -> None:
    system_bus.set_control(can_power_off="challenge", can_reboot="no")
    closed = free_port()
    env = agent_env(
        tmp_path,
        mosquitto,
        system_bus,
        interfaces="lo,nosuch0",
        target=f"127.0.0.1:{closed}",
        password="wrong",
    )
    result = run_agent(env, "check")
    assert result.returncode == 1
    out = result.stdout
    assert "the broker refused the connection: Not authorized" in out
    assert "logind CanPowerOff answered 'challenge': install the polkit rule" in out
    assert "logind CanReboot answered 'no': install the polkit rule" in out
    assert "network: nosuch0: link absent" in out
    assert f"network: 127.0.0.1:{closed} not reachable: Connection refused" in out
    assert "result: 5 problem(s)" in out


def test_check_without_broker_or_bus(mosquitto: Broker, tmp_path: Path) -> None:
    env = agent_env(tmp_path, mosquitto, interfaces="lo", broker_port=str(free_port()))
    env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-bus"
    result = run_agent(env, "check")
    assert result.returncode == 1
    assert "cannot connect to 127.0.0.1" in result.stdout
    assert "logind: cannot connect to the system bus" in result.stdout
    assert "logind CanReboot: unknown (cannot connect" in result.stdout


def test_check_wrong_ca_and_insecure(mosquitto: Broker, system_bus: SystemBus, tmp_path: Path) -> None:
    env = agent_env(tmp_path, mosquitto, system_bus, interfaces="lo", ca=str(mosquitto.certs.wrong_ca))
    result = run_agent(env, "check")
    assert result.returncode == 1
    assert "certificate verify failed" in result.stdout

    insecure = run_agent({**env, "SMARTSERVER_TLS_INSECURE": "1"}, "check")
    assert insecure.returncode == 1
    assert "TLS certificate verification is off" in insecure.stdout
    assert "certificate verify failed" not in insecure.stdout
    assert "TLS: NOT VERIFIED" in insecure.stdout


def test_check_bad_configuration(tmp_path: Path) -> None:
    result = run_agent(agent_env(tmp_path, server_id="a/b"), "check")
    assert result.returncode == 2
    assert "SMARTSERVER_BROKER_HOST is not set" in result.stderr
    assert "SMARTSERVER_SERVER_ID='a/b'" in result.stderr
