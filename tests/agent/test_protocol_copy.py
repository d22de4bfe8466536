"""The agent's copy of the protocol can never drift from the integration's module."""

from __future__ import annotations

import json
import time

import pytest

from script.harness.protocol import load_protocol
from smartserver_agent import protocol as agent_protocol
from smartserver_agent.commands import CommandError, Verifier, command_signature

p = load_protocol()
KEY = "0123456789abcdef-key"
NOW = 1_763_780_000


def agent_signed(cmd: str, ts: int, nonce: str, arg: str = "", key: str = KEY, target: str = "srv1") -> str:
    body: dict[str, str | int] = {"cmd": cmd, "ts": ts, "nonce": nonce}
    if arg:
        body["arg"] = arg
    body["sig"] = command_signature(key, target, cmd, ts, nonce, arg)
    return json.dumps(body)


@pytest.mark.parametrize("base", ["home", "lab/east"])
@pytest.mark.parametrize("leaf", ["heartbeat", "state", "network", "system", "refresh"])
def test_topics_match(base: str, leaf: str) -> None:
    assert agent_protocol.server_topic(base, "srv1", leaf) == p.server_topic(base, "srv1", leaf)
    assert p.parse_server_topic(base, agent_protocol.server_topic(base, "srv1", leaf), leaf) == "srv1"
    assert agent_protocol.log_topic(base, "error", "srv1") == p.log_topic(base, "error", "srv1")


def test_constants_match() -> None:
    assert (agent_protocol.HEARTBEAT, agent_protocol.STATE, agent_protocol.NETWORK) == (
        p.SERVER_HEARTBEAT,
        p.SERVER_STATE,
        p.SERVER_NETWORK,
    )
    assert (agent_protocol.SYSTEM, agent_protocol.REFRESH) == (p.SERVER_SYSTEM, p.SERVER_REFRESH)
    states = (
        agent_protocol.STARTING,
        agent_protocol.ONLINE,
        agent_protocol.SHUTTING_DOWN,
        agent_protocol.OFFLINE,
    )
    assert states == p.ServerState.ALL
    assert (agent_protocol.ALIVE, agent_protocol.DEAD, agent_protocol.SHUTDOWN, agent_protocol.REBOOT) == (
        p.ALIVE,
        p.DEAD,
        p.SHUTDOWN,
        p.REBOOT,
    )
    assert agent_protocol.MAX_SKEW_S == p.MAX_SKEW_S
    assert agent_protocol.DEFAULT_BASE == p.DEFAULT_BASE
    assert agent_protocol.ID_PATTERN.pattern == p.ID_PATTERN.pattern


@pytest.mark.parametrize("base", ["home", "a/b", "", "/home", "home/", "a/+", "a/#", "a//b", "x" * 129])
def test_base_validation_matches(base: str) -> None:
    try:
        p.validate_base(base)
    except ValueError:
        assert agent_protocol.base_problem(base) is not None
    else:
        assert agent_protocol.base_problem(base) is None


@pytest.mark.parametrize("arg", ["", "now"])
def test_signed_by_integration_verified_by_agent(arg: str) -> None:
    payload = p.sign_command(KEY, "srv1", "SHUTDOWN", NOW, arg)
    command = Verifier(KEY, "srv1").verify(payload.encode(), NOW + 5)
    assert (command.cmd, command.ts, command.arg) == ("SHUTDOWN", NOW, arg)
    assert command.nonce == json.loads(payload)["nonce"]


@pytest.mark.parametrize("arg", ["", "now"])
def test_signed_by_agent_verified_by_integration(arg: str) -> None:
    payload = agent_signed("SHUTDOWN", NOW, "9f2c4e1a7b3d5e60", arg)
    command = p.verify_command(KEY, "srv1", payload, NOW - 5, {})
    assert (command.cmd, command.ts, command.nonce, command.arg) == ("SHUTDOWN", NOW, "9f2c4e1a7b3d5e60", arg)


def test_signatures_identical() -> None:
    cases: list[tuple[str, int, str, str]] = [
        ("SHUTDOWN", NOW, "ab", ""),
        ("PRESS", 0, "x" * 16, "a\nb"),
        ("é", -1, "", ""),
    ]
    for cmd, ts, nonce, arg in cases:
        assert command_signature(KEY, "srv1", cmd, ts, nonce, arg) == p.command_signature(
            KEY, "srv1", cmd, ts, nonce, arg
        )


REFUSALS = {
    "unsigned": json.dumps({"cmd": "SHUTDOWN", "ts": NOW, "nonce": "ab"}),
    "empty signature": json.dumps({"cmd": "SHUTDOWN", "ts": NOW, "nonce": "ab", "sig": ""}),
    "bad signature": agent_signed("SHUTDOWN", NOW, "ab", key="another-key-0123456"),
    "other server": agent_signed("SHUTDOWN", NOW, "ab", target="srv2"),
    "tampered command": agent_signed("SHUTDOWN", NOW, "ab").replace("SHUTDOWN", "REBOOT"),
    "stale": agent_signed("SHUTDOWN", NOW - 31, "ab"),
    "future": agent_signed("SHUTDOWN", NOW + 31, "ab"),
    "not JSON": "SHUTDOWN",
    "list": "[]",
    "bool timestamp": json.dumps({"cmd": "SHUTDOWN", "ts": True, "nonce": "ab", "sig": "00"}),
    "float timestamp": json.dumps({"cmd": "SHUTDOWN", "ts": 1.5, "nonce": "ab", "sig": "00"}),
    "number nonce": json.dumps({"cmd": "SHUTDOWN", "ts": NOW, "nonce": 5, "sig": "00"}),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_both_refuse_the_same(name: str) -> None:
    payload = REFUSALS[name]
    with pytest.raises(p.CommandError) as theirs:
        p.verify_command(KEY, "srv1", payload, NOW, {})
    with pytest.raises(CommandError) as ours:
        Verifier(KEY, "srv1").verify(payload.encode(), NOW)
    assert str(ours.value).split(" (")[0] == str(theirs.value)


def test_replay_refused_within_window_and_pruned_after() -> None:
    verifier = Verifier(KEY, "srv1")
    payload = p.sign_command(KEY, "srv1", "SHUTDOWN", NOW).encode()
    verifier.verify(payload, NOW)
    with pytest.raises(CommandError, match="replayed"):
        verifier.verify(payload, NOW + 30)
    with pytest.raises(CommandError, match="stale"):
        verifier.verify(payload, NOW + 31)
    later = p.sign_command(KEY, "srv1", "SHUTDOWN", NOW + 100).encode()
    verifier.verify(later, NOW + 100)
    assert list(verifier.seen) == [json.loads(later)["nonce"]]


def test_configurable_skew() -> None:
    payload = p.sign_command(KEY, "srv1", "SHUTDOWN", NOW).encode()
    with pytest.raises(CommandError, match="stale"):
        Verifier(KEY, "srv1", max_skew=5).verify(payload, NOW + 6)
    assert Verifier(KEY, "srv1", max_skew=120).verify(payload, NOW + 100).cmd == "SHUTDOWN"


def test_oversized_payload_refused_before_parsing() -> None:
    with pytest.raises(CommandError, match="too large"):
        Verifier(KEY, "srv1").verify(b"[" * 100_000, time.time())


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 1000,
        b"{" * 1000,
        b"[" * 512 + b"]" * 512,
        b'{"cmd": [[[[1]]]]}',
        b'{"a": "\\\\", "b": [[[[]]]]}',
    ],
)
def test_deep_nesting_refused_before_parsing(payload: bytes) -> None:
    with pytest.raises(CommandError, match="nested deeper than 4 levels"):
        Verifier(KEY, "srv1").verify(payload, NOW)


def test_brackets_inside_strings_are_not_nesting() -> None:
    arg = '[[[[[{{{{ \\" ]]'
    payload = p.sign_command(KEY, "srv1", "REBOOT", NOW, arg)
    command = Verifier(KEY, "srv1").verify(payload.encode(), NOW)
    assert (command.cmd, command.arg) == ("REBOOT", arg)
