"""The real agent against a real mosquitto (TLS) and the fake logind on a private bus."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from script.harness.agent import AgentProcess, agent_env
from script.harness.clients import Peer
from script.harness.mosquitto import Broker
from script.harness.proxy import DelayProxy
from script.harness.system_bus import SystemBus

from .conftest import NODELAY, SERVER, TimedPeer, p, payloads, signed, topic

LOG_WARNING = p.log_topic("home", "warning", SERVER)
LOG_ERROR = p.log_topic("home", "error", SERVER)
LOG_INFO = p.log_topic("home", "info", SERVER)
DOCS = Path(__file__).parents[2] / "docs"
# each command on `system`: the logind method asked first, the one that acts, the log's name
LOGIND = {"SHUTDOWN": ("CanPowerOff", "PowerOff", "power off"), "REBOOT": ("CanReboot", "Reboot", "reboot")}


def wait_payload(peer: Peer, topic_: str, payload: bytes, count: int = 1, timeout: float = 20) -> None:
    peer.wait_for(
        lambda msgs: sum(m.topic == topic_ and m.payload == payload for m in msgs) >= count, timeout
    )


def wait_log(peer: Peer, topic_: str, text: str, count: int = 1) -> None:
    peer.wait_for(lambda msgs: sum(m.topic == topic_ and text.encode() in m.payload for m in msgs) >= count)


def online(peer: Peer, count: int = 1) -> None:
    wait_payload(peer, topic(p.SERVER_STATE), b"ONLINE", count)


def methods(bus: SystemBus) -> list[str]:
    """The logind methods called so far, oldest first."""
    return [call["method"] for call in bus.calls()]


def assert_not_powering_off(peer: Peer, bus: SystemBus) -> None:
    """Nothing of a shutdown so far: no logind call, no SHUTTING_DOWN, no DEAD."""
    assert bus.calls() == []
    assert b"SHUTTING_DOWN" not in payloads(peer, p.SERVER_STATE)
    assert b"DEAD" not in payloads(peer, p.SERVER_HEARTBEAT)


def stopped(peer: Peer) -> None:
    """Last state OFFLINE, last heartbeat DEAD (the watcher may read them after the agent exits)."""

    def last(msgs: list[paho.MQTTMessage], topic_: str) -> bytes | None:
        matching = [m.payload for m in msgs if m.topic == topic_]
        return matching[-1] if matching else None

    peer.wait_for(
        lambda msgs: (
            last(msgs, topic(p.SERVER_STATE)) == b"OFFLINE"
            and last(msgs, topic(p.SERVER_HEARTBEAT)) == b"DEAD"
        )
    )


def assert_retained_online(broker: Broker) -> None:
    """A client arriving now reads ALIVE, ONLINE and a network report, all retained."""
    late = Peer(broker).connect()
    try:
        late.subscribe("home/server/#")
        late.wait_for(lambda msgs: len({m.topic for m in msgs if m.retain}) >= 3)
        retained = {m.topic: m.payload for m in late.received() if m.retain}
        assert retained[topic(p.SERVER_HEARTBEAT)] == b"ALIVE"
        assert retained[topic(p.SERVER_STATE)] == b"ONLINE"
        assert json.loads(retained[topic(p.SERVER_NETWORK)])["reachable"] is True
    finally:
        late.close()


def test_start_heartbeat_network_and_retained(
    start_agent: Callable[..., AgentProcess], watcher: Peer, mosquitto: Broker
) -> None:
    start_agent()
    online(watcher)
    assert payloads(watcher, p.SERVER_STATE) == [b"STARTING", b"ONLINE"]
    wait_payload(watcher, topic(p.SERVER_HEARTBEAT), b"ALIVE", count=3)  # every second
    assert set(payloads(watcher, p.SERVER_HEARTBEAT)) == {b"ALIVE"}
    report = json.loads(watcher.wait_topic(topic(p.SERVER_NETWORK)).payload)
    assert report["reachable"] is True
    assert report["target"] == f"127.0.0.1:{mosquitto.port}"
    assert {"link", "default_route", "interfaces", "routes", "problems"} <= report.keys()
    wait_log(watcher, LOG_INFO, "connected to 127.0.0.1")

    assert_retained_online(mosquitto)


@pytest.mark.parametrize("cmd", ["SHUTDOWN", "REBOOT"])
@pytest.mark.parametrize("mosquitto", [NODELAY], indirect=True)
def test_valid_command_runs_exactly_once(
    start_agent: Callable[..., AgentProcess],
    watcher: TimedPeer,
    system_bus: SystemBus,
    slow_link: DelayProxy,
    cmd: str,
) -> None:
    can, method, _name = LOGIND[cmd]
    agent = start_agent(broker_port=str(slow_link.port))
    online(watcher)
    command = signed(cmd)
    # two valid commands back to back (the second a SHUTDOWN): only the first runs
    watcher.client.publish(topic(p.SERVER_SYSTEM), command, qos=1)
    watcher.client.publish(topic(p.SERVER_SYSTEM), signed(), qos=1)
    wait_log(watcher, LOG_WARNING, "already in progress")
    wait_log(watcher, LOG_WARNING, f"{cmd} accepted")
    wait_payload(watcher, topic(p.SERVER_STATE), b"SHUTTING_DOWN")
    wait_payload(watcher, topic(p.SERVER_HEARTBEAT), b"DEAD")
    agent.wait_output(f"logind accepted {method}")
    assert methods(system_bus) == [can, method]
    assert system_bus.calls(method)[0]["args"] == [False]
    # HA heard of the shutdown before logind was even asked: a clean disconnect
    # discards the Will, so these are all HA gets from a server that goes down
    asked = system_bus.calls(can)[0]["time"]
    assert watcher.arrived(topic(p.SERVER_STATE), b"SHUTTING_DOWN") < asked
    assert watcher.arrived(topic(p.SERVER_HEARTBEAT), b"DEAD") < asked
    assert asked <= system_bus.calls(method)[0]["time"]

    # the same command again, and a fresh one while going down: nothing more
    watcher.publish(topic(p.SERVER_SYSTEM), command)
    wait_log(watcher, LOG_WARNING, "replayed")
    assert methods(system_bus) == [can, method]
    watcher.publish(topic(p.SERVER_SYSTEM), signed(cmd))
    wait_log(watcher, LOG_WARNING, "already in progress", count=2)
    assert methods(system_bus) == [can, method]

    assert agent.terminate() == 0
    stopped(watcher)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            lambda: json.dumps({"cmd": "SHUTDOWN", "ts": 1, "nonce": "ab"}), "unsigned", id="unsigned"
        ),
        pytest.param(
            lambda: json.dumps(json.loads(signed()) | {"sig": "0" * 64}), "bad signature", id="bad-sig"
        ),
        pytest.param(lambda: signed(age=120), "stale", id="stale"),
        pytest.param(lambda: signed(age=-120), "stale", id="future"),
        pytest.param(lambda: signed(key="another-key-0123456789"), "bad signature", id="wrong-key"),
        pytest.param(lambda: signed(server="srv2"), "bad signature", id="other-server"),
        pytest.param(lambda: "SHUTDOWN", "not JSON", id="plain-text"),
        pytest.param(lambda: "[1, 2]", "not a JSON object", id="not-object"),
        pytest.param(
            lambda: '{"cmd": "SHUTDOWN", "ts": "now", "nonce": "x", "sig": "ab"}', "malformed", id="ts"
        ),
        pytest.param(lambda: "x" * 5000, "too large", id="too-large"),
        # json.loads raised RecursionError on this one (Python 3.11), unhandled, per message
        pytest.param(lambda: "[" * 1000, "nested deeper than 4 levels", id="nested-1000"),
        # refused before parsing too, whatever the Python's recursion limit
        pytest.param(lambda: "[" * 512 + "]" * 512, "nested deeper than 4 levels", id="nested-closed"),
        pytest.param(
            lambda: json.dumps(json.loads(signed()) | {"x": [[[[[]]]]]}), "nested deeper", id="nested-field"
        ),
        pytest.param(
            lambda: json.dumps({"cmd": "REBOOT", "ts": 1, "nonce": "ab"}), "unsigned", id="reboot-unsigned"
        ),
        pytest.param(lambda: signed("REBOOT", age=120), "stale", id="reboot-stale"),
        pytest.param(
            lambda: signed("REBOOT", key="another-key-0123456789"), "bad signature", id="reboot-wrong-key"
        ),
    ],
)
def test_refused_commands_never_power_off(
    start_agent: Callable[..., AgentProcess],
    watcher: Peer,
    system_bus: SystemBus,
    payload: Callable[[], str],
    reason: str,
) -> None:
    agent = start_agent()
    online(watcher)
    watcher.publish(topic(p.SERVER_SYSTEM), payload())
    wait_log(watcher, LOG_WARNING, f"refused command on {topic(p.SERVER_SYSTEM)}: {reason}")
    agent.wait_output(reason)
    assert_not_powering_off(watcher, system_bus)
    assert "Traceback" not in agent.output
    # a valid command right after is served, once: the refused one was really refused
    watcher.publish(topic(p.SERVER_SYSTEM), signed())
    agent.wait_output("logind accepted PowerOff")
    assert methods(system_bus) == ["CanPowerOff", "PowerOff"]


def test_retained_and_unknown_commands_refused(
    start_agent: Callable[..., AgentProcess], watcher: Peer, system_bus: SystemBus
) -> None:
    watcher.publish(topic(p.SERVER_SYSTEM), signed(), retain=True)
    agent = start_agent()
    wait_log(watcher, LOG_WARNING, "retained")
    assert_not_powering_off(watcher, system_bus)
    online(watcher)
    watcher.publish(topic(p.SERVER_SYSTEM), signed("SUSPEND"))
    wait_log(watcher, LOG_WARNING, "unknown command 'SUSPEND'")
    assert_not_powering_off(watcher, system_bus)
    agent.wait_output("retained")


@pytest.mark.parametrize(
    ("cmd", "control", "error", "action_calls"),
    [
        ("SHUTDOWN", {"can_power_off": "no"}, "CanPowerOff answered 'no'", 0),
        ("SHUTDOWN", {"can_power_off": "challenge"}, "is the polkit rule installed?", 0),
        (
            "SHUTDOWN",
            {"power_off_error": "Interactive authentication required."},
            "Interactive authentication required",
            1,
        ),
        ("REBOOT", {"can_reboot": "no"}, "CanReboot answered 'no'", 0),
        ("REBOOT", {"can_reboot": "challenge"}, "is the polkit rule installed?", 0),
        ("REBOOT", {"reboot_error": "Operation inhibited by backup"}, "Operation inhibited by backup", 1),
    ],
)
@pytest.mark.parametrize("mosquitto", [NODELAY], indirect=True)
def test_refused_by_logind_restores_online(
    start_agent: Callable[..., AgentProcess],
    watcher: TimedPeer,
    system_bus: SystemBus,
    cmd: str,
    control: dict[str, str],
    error: str,
    action_calls: int,
    slow_link: DelayProxy,
) -> None:
    can, method, name = LOGIND[cmd]
    system_bus.set_control(**control)
    agent = start_agent(broker_port=str(slow_link.port))
    online(watcher)
    command = signed(cmd)
    watcher.publish(topic(p.SERVER_SYSTEM), command)
    wait_log(watcher, LOG_ERROR, error)
    online(watcher, count=2)
    wait_payload(watcher, topic(p.SERVER_HEARTBEAT), b"ALIVE", count=2)
    assert payloads(watcher, p.SERVER_STATE) == [b"STARTING", b"ONLINE", b"SHUTTING_DOWN", b"ONLINE"]
    beats = payloads(watcher, p.SERVER_HEARTBEAT)
    assert beats.index(b"DEAD") < len(beats) - 1
    assert beats[beats.index(b"DEAD") + 1 :] == [b"ALIVE"] * (len(beats) - beats.index(b"DEAD") - 1)
    assert methods(system_bus) == [can] + [method] * action_calls  # nothing else tried instead
    agent.wait_output(f"{name} failed: ")
    asked = system_bus.calls(can)[0]["time"]
    assert watcher.arrived(topic(p.SERVER_STATE), b"SHUTTING_DOWN") < asked
    assert watcher.arrived(topic(p.SERVER_HEARTBEAT), b"DEAD") < asked
    tried = methods(system_bus)

    # a replay of the failed command stays refused; a fresh one is tried again
    watcher.publish(topic(p.SERVER_SYSTEM), command)
    wait_log(watcher, LOG_WARNING, "replayed")
    assert methods(system_bus) == tried
    system_bus.set_control()
    watcher.publish(topic(p.SERVER_SYSTEM), signed(cmd))
    agent.wait_output(f"logind accepted {method}")
    assert len(system_bus.calls(method)) == action_calls + 1


def test_command_flood_is_refused_without_a_log_flood(
    start_agent: Callable[..., AgentProcess], watcher: Peer, system_bus: SystemBus
) -> None:
    agent = start_agent()
    online(watcher)
    for number in range(200):
        watcher.publish(topic(p.SERVER_SYSTEM), signed(age=120 + number), qos=0)
    agent.wait_output("refused command", count=200)
    assert_not_powering_off(watcher, system_bus)
    watcher.publish(topic(p.SERVER_SYSTEM), signed())
    agent.wait_output("logind accepted PowerOff")
    assert methods(system_bus) == ["CanPowerOff", "PowerOff"]
    lines = [m for m in watcher.received() if m.topic.startswith("home/log/")]
    assert len(lines) <= 20  # the journal has every line, MQTT at most 20 per 10 s


def test_refused_login_is_logged_and_retried(start_agent: Callable[..., AgentProcess], watcher: Peer) -> None:
    agent = start_agent(password="wrong")
    agent.wait_output("the broker refused the connection: Not authorized", count=2)
    assert watcher.received(topic(p.SERVER_STATE)) == []


def test_will_published_when_killed(
    start_agent: Callable[..., AgentProcess], watcher: Peer, mosquitto: Broker
) -> None:
    agent = start_agent()
    online(watcher)
    assert b"DEAD" not in payloads(watcher, p.SERVER_HEARTBEAT)
    agent.kill()
    wait_payload(watcher, topic(p.SERVER_HEARTBEAT), b"DEAD")
    assert payloads(watcher, p.SERVER_STATE)[-1] == b"ONLINE"  # only the Will speaks
    # the Will is retained: a client arriving later still reads DEAD
    late = Peer(mosquitto).connect()
    try:
        late.subscribe(topic(p.SERVER_HEARTBEAT))
        assert late.wait_topic(topic(p.SERVER_HEARTBEAT)).payload == b"DEAD"
    finally:
        late.close()


def test_stop_publishes_offline_and_dead(start_agent: Callable[..., AgentProcess], watcher: Peer) -> None:
    agent = start_agent()
    online(watcher)
    assert agent.terminate() == 0
    stopped(watcher)
    assert "stopping: state OFFLINE" in agent.output


def test_broker_restart_reconnects_and_republishes(
    start_agent: Callable[..., AgentProcess], watcher: Peer, mosquitto: Broker
) -> None:
    agent = start_agent()
    online(watcher)
    watcher.close()
    mosquitto.restart()  # no persistence: every retained message is gone
    agent.wait_output("reconnected to the broker")
    assert_retained_online(mosquitto)
    assert "lost the broker connection" in agent.output


def test_refresh_republishes(start_agent: Callable[..., AgentProcess], watcher: Peer) -> None:
    start_agent(heartbeat="3600")
    online(watcher)
    watcher.wait_topic(topic(p.SERVER_NETWORK))
    for _ in range(5):  # a burst is answered once
        watcher.publish(topic(p.SERVER_REFRESH), b"")
    online(watcher, count=2)
    wait_payload(watcher, topic(p.SERVER_HEARTBEAT), b"ALIVE", count=2)
    watcher.wait_for(lambda msgs: sum(m.topic == topic(p.SERVER_NETWORK) for m in msgs) >= 3)


def test_wrong_ca_is_refused_without_fallback(
    start_agent: Callable[..., AgentProcess], watcher: Peer, mosquitto: Broker
) -> None:
    agent = start_agent(ca=str(mosquitto.certs.wrong_ca))
    agent.wait_output("certificate verify failed", count=2)
    assert "retrying" in agent.output
    assert watcher.received(topic(p.SERVER_STATE)) == []
    assert watcher.received(topic(p.SERVER_HEARTBEAT)) == []


def test_system_trust_store_does_not_know_the_test_ca(
    start_agent: Callable[..., AgentProcess], watcher: Peer
) -> None:
    agent = start_agent(ca=None)
    agent.wait_output("certificate verify failed", count=2)
    assert watcher.received(topic(p.SERVER_STATE)) == []


def test_insecure_only_when_named(
    start_agent: Callable[..., AgentProcess], watcher: Peer, mosquitto: Broker
) -> None:
    agent = start_agent(ca=str(mosquitto.certs.wrong_ca), tls_insecure="1")
    online(watcher)
    wait_log(watcher, LOG_WARNING, "TLS certificate verification is OFF")
    assert "TLS certificate verification is OFF" in agent.output


def documented_acl(doc: str) -> list[str]:
    """The agent's ACL lines for the server `nas` in a doc: from `user agent-nas` to a blank line."""
    lines = [line.strip() for line in (DOCS / doc).read_text().splitlines()]
    start = lines.index("user agent-nas")
    end = next(i for i in range(start, len(lines)) if not lines[i] or lines[i].startswith("```"))
    return lines[start:end]


def test_works_with_the_documented_acl(
    mosquitto_factory: Callable[..., Broker], system_bus: SystemBus, tmp_path: Path
) -> None:
    """The ACL of docs/broker.md and docs/agent.md (own topics only) is all the agent needs."""
    documented = documented_acl("broker.md")
    assert documented_acl("agent.md") == documented
    assert any(line.startswith("topic") for line in documented)
    agent_acl = "\n".join(documented).replace("nas", SERVER)
    user = f"agent-{SERVER}"
    acl = tmp_path / "acl"
    acl.write_text("")  # mosquitto needs it at start; filled in once the users are known
    broker = mosquitto_factory(extra_config=f"acl_file {acl}")
    acl.write_text(f"user {broker.username}\ntopic readwrite #\n\n{agent_acl}\n")
    broker.restart()
    broker.add_user(user, "agent-password")
    watcher = Peer(broker).connect()
    env = agent_env(tmp_path / "agent", broker, system_bus, username=user, password="agent-password")
    agent = AgentProcess(env, tmp_path / "agent")
    try:
        watcher.subscribe("home/#")
        agent.start()
        online(watcher)
        watcher.wait_topic(topic(p.SERVER_NETWORK))
        wait_log(watcher, LOG_INFO, "connected to")
        watcher.publish(topic(p.SERVER_REFRESH), b"")  # read on refresh
        online(watcher, count=2)
        watcher.publish(topic(p.SERVER_SYSTEM), signed())
        agent.wait_output("logind accepted PowerOff")
        wait_log(watcher, LOG_WARNING, "SHUTDOWN accepted")
        wait_payload(watcher, topic(p.SERVER_HEARTBEAT), b"DEAD")
        assert methods(system_bus) == ["CanPowerOff", "PowerOff"]
    finally:
        agent.stop()
        watcher.close()


@pytest.mark.parametrize(
    ("stop", "cmd"), [("kill", "SHUTDOWN"), ("terminate", "SHUTDOWN"), ("terminate", "REBOOT")]
)
def test_replay_refused_after_a_restart(
    start_agent: Callable[..., AgentProcess], watcher: Peer, system_bus: SystemBus, stop: str, cmd: str
) -> None:
    """The accepted nonces outlive the process: a crash, or a reboot, reopens no replay window."""
    can, method, _name = LOGIND[cmd]
    agent = start_agent()
    online(watcher)
    command = signed(cmd)
    watcher.publish(topic(p.SERVER_SYSTEM), command)
    agent.wait_output(f"logind accepted {method}")
    assert methods(system_bus) == [can, method]
    record = agent.directory / "data" / "replay.json"
    assert json.loads(command)["nonce"] in json.loads(record.read_text())["nonces"]
    assert record.stat().st_mode & 0o777 == 0o600

    getattr(agent, stop)()  # systemd restarts a crashed agent within seconds
    agent.start()  # the same data directory
    online(watcher, count=2)
    watcher.publish(topic(p.SERVER_SYSTEM), command)  # well within the 30 s skew
    agent.wait_output(f"refused command on {topic(p.SERVER_SYSTEM)}: replayed")
    wait_log(watcher, LOG_WARNING, "replayed")
    assert methods(system_bus) == [can, method]
    assert payloads(watcher, p.SERVER_STATE)[-1] == b"ONLINE"

    watcher.publish(topic(p.SERVER_SYSTEM), signed(cmd))  # a fresh one is served
    agent.wait_output(f"logind accepted {method}", count=2)
    assert methods(system_bus) == [can, method] * 2


def test_command_refused_when_it_cannot_be_recorded(
    start_agent: Callable[..., AgentProcess], watcher: Peer, system_bus: SystemBus
) -> None:
    """An unwritable replay record refuses the command, loudly: the guard never falls open."""
    agent = start_agent()
    online(watcher)
    record = agent.directory / "data" / "replay.json"
    record.mkdir()  # the rename over it fails, even for root (a full disk fails the same way)
    (record / "keep").write_text("")
    watcher.publish(topic(p.SERVER_SYSTEM), signed())
    wait_log(watcher, LOG_ERROR, f"refused command on {topic(p.SERVER_SYSTEM)}: cannot record it in {record}")
    agent.wait_output("cannot record it in")
    assert_not_powering_off(watcher, system_bus)
    assert "SHUTDOWN accepted" not in agent.output
    assert not record.with_name("replay.json.tmp").exists()

    # once it can be written again, a fresh command is served, once
    (record / "keep").unlink()
    record.rmdir()
    watcher.publish(topic(p.SERVER_SYSTEM), signed())
    agent.wait_output("logind accepted PowerOff")
    assert methods(system_bus) == ["CanPowerOff", "PowerOff"]
