"""The protocol module every part is checked against."""

from __future__ import annotations

import json

import pytest

from script.harness.protocol import load_protocol

p = load_protocol()


def test_log_never_matches_login() -> None:
    assert p.parse_log("home", "home/log/error/node1") == p.LogTopic("error", "node1")
    assert p.parse_log("home", "home/login/node1/set") is None
    assert p.parse_log("home", "home/login/node1") is None
    assert p.parse_log("home", "home/logx/error/node1") is None
    assert p.parse_log("home", "home/log/error/node1/extra") is None
    assert p.parse_log("home", "home/log//node1") is None
    assert p.parse_log("home", "other/log/error/node1") is None


@pytest.mark.parametrize(
    ("level", "canonical"),
    [("WARN", "warning"), ("warning", "warning"), ("Critical", "critical"), ("trace", "trace")],
)
def test_levels_normalized_unknown_kept(level: str, canonical: str) -> None:
    assert p.parse_log("home", f"home/log/{level}/n").level == canonical


def test_multi_level_base() -> None:
    assert p.parse_login_request("a/b", "a/b/login/n1/set") == "n1"
    assert p.parse_login_request("a/b", "a/login/n1/set") is None
    assert p.parse_node_topic("a/b", "a/b/node/n1/power/set", p.NODE_POWER_SET) == "n1"
    assert p.parse_node_topic("a/b", "a/b/node/n1/power", p.NODE_POWER_SET) is None
    assert p.parse_node_topic("a/b", "a/b/node/n1/power", p.NODE_POWER) == "n1"
    assert p.parse_server_topic("a/b", "a/b/server/s1/heartbeat", p.SERVER_HEARTBEAT) == "s1"


def test_builders_and_filters_agree() -> None:
    assert p.login_request("home", "n") == "home/login/n/set"
    assert p.login_answer("home", "n") == "home/login/n"
    assert p.login_component("home", "n", "c") == "home/login/n/c"
    assert p.log_topic("home", "info", "n") == "home/log/info/n"
    assert p.node_topic("home", "n", p.NODE_POWER_SET) == "home/node/n/power/set"
    assert p.server_topic("home", "s", p.SERVER_SYSTEM) == "home/server/s/system"
    assert p.login_request_filter("home") == "home/login/+/set"
    assert p.log_filter("home") == "home/log/+/+"


@pytest.mark.parametrize("node", ["../x", "+", "#", "a/b", "..", "%2e%2e", "x" * 65, "", "a b"])
def test_hostile_ids_refused(node: str) -> None:
    assert not p.valid_id(node)


def test_valid_ids() -> None:
    assert p.valid_id("esp32-node_1")
    assert p.valid_id("x" * 64)


def test_login_payloads() -> None:
    assert p.parse_login_payload(b'"1.2.0"') == p.LoginRequest("1.2.0")
    assert p.parse_login_payload(b"1.2.0") == p.LoginRequest("1.2.0")
    assert p.parse_login_payload(b'["5.1.0", "esp32", 0.5]') == p.LoginRequest("5.1.0", "esp32", 0.5)


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe", b"[1, 2]", b'["v", "esp32", -1]', b'["v", "esp32", 1e9]', b'["v", "esp32", true]',
     b"[not json", b"x" * 300, b'["v", 3, 1]'],
)  # fmt: skip
def test_bad_login_payloads(payload: bytes) -> None:
    with pytest.raises(ValueError, match=r"payload|wait_s|version"):
        p.parse_login_payload(payload)


def test_signed_command_round_trip() -> None:
    seen: dict[str, float] = {}
    payload = p.sign_command("k" * 32, "srv1", p.SHUTDOWN, 1000)
    cmd = p.verify_command("k" * 32, "srv1", payload, 1010, seen)
    assert cmd.cmd == p.SHUTDOWN
    with pytest.raises(p.CommandError, match="replayed"):
        p.verify_command("k" * 32, "srv1", payload, 1011, seen)


@pytest.mark.parametrize(
    ("key", "target", "now", "reason"),
    [
        ("other-key", "srv1", 1000, "bad signature"),
        ("k" * 32, "srv2", 1000, "bad signature"),
        ("k" * 32, "srv1", 1031, "stale"),
        ("k" * 32, "srv1", 969, "stale"),
    ],
)
def test_refused_commands(key: str, target: str, now: float, reason: str) -> None:
    payload = p.sign_command("k" * 32, "srv1", p.SHUTDOWN, 1000)
    with pytest.raises(p.CommandError, match=reason):
        p.verify_command(key, target, payload, now, {})


def test_unsigned_and_tampered_refused() -> None:
    body = json.loads(p.sign_command("k", "s", p.SHUTDOWN, 5))
    with pytest.raises(p.CommandError, match="unsigned"):
        p.verify_command("k", "s", json.dumps({**body, "sig": ""}), 5, {})
    with pytest.raises(p.CommandError, match="bad signature"):
        p.verify_command("k", "s", json.dumps({**body, "cmd": "REBOOT"}), 5, {})
    with pytest.raises(p.CommandError, match="not JSON"):
        p.verify_command("k", "s", "SHUTDOWN", 5, {})


def test_nonces_pruned_outside_window() -> None:
    seen = {"old": 0.0}
    p.verify_command("k", "s", p.sign_command("k", "s", p.SHUTDOWN, 1000), 1000, seen)
    assert "old" not in seen
    assert len(seen) == 1


@pytest.mark.parametrize("base", ["home", "a/b", "lab-1"])
def test_validate_base_ok(base: str) -> None:
    assert p.validate_base(base) == base


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "+", "#", "a#", "x\0y", "a" * 65, "ö" * 33, "\ud800"])
def test_unusable_names_refused(name: str) -> None:
    assert not p.valid_name(name)


@pytest.mark.parametrize(
    "name", ["garden light", "küche", "a.b", "...", "%2e%2e", "a" * 64, "ö" * 32, "esp32-node_1"]
)
def test_topic_level_names_accepted(name: str) -> None:
    """Nodes' config/log ids and component names."""
    assert p.valid_name(name)


def test_server_ids_stay_plain() -> None:
    assert not p.valid_id("garden light")
    assert not p.valid_id("küche")
