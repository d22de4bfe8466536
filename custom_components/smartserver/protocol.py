"""The smartserver MQTT protocol: topics, payloads and command signatures.

Pure Python on purpose (no Home Assistant imports): the agent's and the firmware's
tests load this file to check their topics against it. docs/protocol.md describes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Final

DEFAULT_BASE: Final = "home"

# Server ids and relay nodes (HA signs commands for them): kept plain.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Nodes' config/log ids and component names: any MQTT topic level SmartServer takes that
# is safe, up to MAX_NAME_BYTES of UTF-8; storage.file_name maps it to a file name.
MAX_NAME_BYTES: Final = 64

LEVELS: Final = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES: Final = {"warn": "warning"}

ONLINE: Final = "ONLINE"
OFFLINE: Final = "OFFLINE"
ALIVE: Final = "ALIVE"
DEAD: Final = "DEAD"
POWER_ON: Final = "ON"
POWER_OFF: Final = "OFF"
PRESS: Final = "PRESS"
HOLD: Final = "HOLD"
SHUTDOWN: Final = "SHUTDOWN"
REBOOT: Final = "REBOOT"
# Wake-on-LAN sent by the node; its arg is `wol_arg`'s "MAC ADDRESS PORT".
WOL: Final = "WOL"
WOL_ADDRESS: Final = "255.255.255.255"
WOL_PORT: Final = 9
_MAC_PATTERN: Final = re.compile(r"[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


class ServerState:
    """Values of `<base>/server/<srv>/state`."""

    STARTING: Final = "STARTING"
    ONLINE: Final = "ONLINE"
    SHUTTING_DOWN: Final = "SHUTTING_DOWN"
    OFFLINE: Final = "OFFLINE"
    ALL: Final = (STARTING, ONLINE, SHUTTING_DOWN, OFFLINE)


MAX_SKEW_S: Final = 30
MAX_LOGIN_PAYLOAD: Final = 256
MAX_WAIT_S: Final = 60.0


def valid_id(value: str) -> bool:
    """Return whether a node or server id is safe as a topic level and a file name."""
    return ID_PATTERN.fullmatch(value) is not None


def valid_name(value: str) -> bool:
    """Return whether a node's config/log id or a component name is usable (docs/protocol.md).

    One MQTT topic level (no `+`, `#`, `/`, NUL), not `.` or `..`, 1 to MAX_NAME_BYTES
    bytes of UTF-8.
    """
    if value in ("", ".", "..") or any(ch in value for ch in "+#/\0"):
        return False
    try:
        return len(value.encode()) <= MAX_NAME_BYTES
    except UnicodeEncodeError:  # lone surrogates
        return False


def validate_base(base: str) -> str:
    """Return the base topic, or raise ValueError if it cannot prefix our topics."""
    base = base.strip()
    if not base or base.startswith("/") or base.endswith("/"):
        raise ValueError("base topic must not be empty or start or end with '/'")
    if any(ch in base for ch in "+#\0") or "//" in base:
        raise ValueError("base topic must not contain wildcards or empty levels")
    if len(base) > 128:
        raise ValueError("base topic is too long")
    return base


def normalize_level(level: str) -> str:
    """Map a log level topic level to its canonical name; unknown ones are kept."""
    lowered = level.lower()
    lowered = _LEVEL_ALIASES.get(lowered, lowered)
    return lowered if lowered in LEVELS else level


# Topic builders -------------------------------------------------------------


def login_request(base: str, node: str) -> str:
    """Topic on which a node asks for its configuration."""
    return f"{base}/login/{node}/set"


def login_answer(base: str, node: str) -> str:
    """Topic of the whole configuration, or of the component count."""
    return f"{base}/login/{node}"


def login_component(base: str, node: str, component: str) -> str:
    """Topic of one component in a chunked answer."""
    return f"{base}/login/{node}/{component}"


def log_topic(base: str, level: str, node: str) -> str:
    """Topic a node or agent logs on."""
    return f"{base}/log/{level}/{node}"


def node_topic(base: str, node: str, leaf: str) -> str:
    """`<base>/node/<node>/<leaf>`: status, power, power/set, refresh, info."""
    return f"{base}/node/{node}/{leaf}"


def server_topic(base: str, server: str, leaf: str) -> str:
    """`<base>/server/<srv>/<leaf>`: heartbeat, state, network, system, refresh."""
    return f"{base}/server/{server}/{leaf}"


NODE_STATUS: Final = "status"
NODE_POWER: Final = "power"
NODE_POWER_SET: Final = "power/set"
# The node's check of a TCP port on its server: ON answered, OFF no answer (not retained)
NODE_REACH: Final = "reach"
REACH_ON: Final = "ON"
REACH_OFF: Final = "OFF"
NODE_REFRESH: Final = "refresh"
NODE_INFO: Final = "info"
# Remote management (docs/management.md): signed commands, file data, replies.
NODE_MGMT_CMD: Final = "mgmt/cmd"
NODE_MGMT_DATA: Final = "mgmt/data"
NODE_MGMT_REPLY: Final = "mgmt/reply"
SERVER_HEARTBEAT: Final = "heartbeat"
SERVER_STATE: Final = "state"
SERVER_NETWORK: Final = "network"
SERVER_SYSTEM: Final = "system"
SERVER_REFRESH: Final = "refresh"
# What HA sends on a refresh topic; nodes and agents read any payload as "republish".
REFRESH_PAYLOAD: Final = "refresh"

# Subscription filters ------------------------------------------------------


def login_request_filter(base: str) -> str:
    """Filter for every node's configuration request."""
    return f"{base}/login/+/set"


def log_filter(base: str) -> str:
    """Filter for every log line; `+/+` cannot match `login/...` (see parse_log)."""
    return f"{base}/log/+/+"


def node_filter(base: str, leaf: str) -> str:
    """Filter for one leaf of every node."""
    return f"{base}/node/+/{leaf}"


def server_filter(base: str, leaf: str) -> str:
    """Filter for one leaf of every server."""
    return f"{base}/server/+/{leaf}"


# Topic parsers: whole levels only --------------------------------------------


def _levels_after(base: str, topic: str, kind: str, count: int) -> list[str] | None:
    """Split `<base>/<kind>/<l1>/.../<lcount>` into its levels, or None."""
    prefix = f"{base}/{kind}/".split("/")[:-1]
    parts = topic.split("/")
    if parts[: len(prefix)] != prefix or len(parts) != len(prefix) + count:
        return None
    rest = parts[len(prefix) :]
    return rest if all(rest) else None


def parse_login_request(base: str, topic: str) -> str | None:
    """Return the node id of a configuration request topic."""
    levels = _levels_after(base, topic, "login", 2)
    if levels is None or levels[1] != "set":
        return None
    return levels[0]


@dataclass(frozen=True, slots=True)
class LogTopic:
    """A parsed log topic."""

    level: str
    node: str


def parse_log(base: str, topic: str) -> LogTopic | None:
    """Return level and node of `<base>/log/<level>/<node>`; never matches `login`."""
    levels = _levels_after(base, topic, "log", 2)
    if levels is None:
        return None
    return LogTopic(normalize_level(levels[0]), levels[1])


def parse_node_topic(base: str, topic: str, leaf: str) -> str | None:
    """Return the node id of `<base>/node/<node>/<leaf>`."""
    count = 1 + leaf.count("/") + 1
    levels = _levels_after(base, topic, "node", count)
    if levels is None or "/".join(levels[1:]) != leaf:
        return None
    return levels[0]


def parse_server_topic(base: str, topic: str, leaf: str) -> str | None:
    """Return the server id of `<base>/server/<srv>/<leaf>`."""
    levels = _levels_after(base, topic, "server", 2)
    if levels is None or levels[1] != leaf:
        return None
    return levels[0]


# Payloads ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """A node's configuration request."""

    version: str
    platform: str | None = None
    wait_s: float | None = None


def parse_login_payload(payload: bytes | str) -> LoginRequest:
    """Parse `"<version>"` or `[version, platform, wait_s]`; raise ValueError if bad."""
    if isinstance(payload, bytes):
        if len(payload) > MAX_LOGIN_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes is too large")
        try:
            text = payload.decode()
        except UnicodeDecodeError as err:
            raise ValueError("payload is not UTF-8") from err
    else:
        text = payload
    if len(text) > MAX_LOGIN_PAYLOAD:
        raise ValueError(f"payload of {len(text)} characters is too large")
    text = text.strip()
    if not text.startswith("["):
        return LoginRequest(version=text.strip('"'))
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError("payload is not valid JSON") from err
    if not isinstance(data, list) or len(data) != 3:
        raise ValueError("payload must be [version, platform, wait_s]")
    version, platform, wait_s = data
    if not isinstance(version, (str, int, float)) or not isinstance(platform, str):
        raise ValueError("version and platform must be strings")
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)):
        raise ValueError("wait_s must be a number")
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise ValueError(f"wait_s must be between 0 and {MAX_WAIT_S:g} seconds")
    return LoginRequest(str(version), platform, float(wait_s))


# Wake-on-LAN ---------------------------------------------------------------------


def normalize_mac(text: str) -> str:
    """Return a MAC address as `AA:BB:CC:DD:EE:FF`; raise ValueError if it is not one."""
    text = text.strip()
    if not _MAC_PATTERN.fullmatch(text):
        raise ValueError("not a MAC address (six bytes in hex, `:` or `-` between them or nothing)")
    digits = re.sub(r"[:-]", "", text).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def validate_ipv4(text: str) -> str:
    """Return a dotted IPv4 address; raise ValueError if it is not one."""
    parts = text.strip().split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        raise ValueError("not an IPv4 address")
    return ".".join(str(int(p)) for p in parts)


def wol_arg(mac: str, address: str = WOL_ADDRESS, port: int = WOL_PORT) -> str:
    """Return the signed `arg` of a WOL command: "MAC ADDRESS PORT"."""
    return f"{normalize_mac(mac)} {validate_ipv4(address)} {port}"


def parse_wol_arg(arg: str) -> tuple[bytes, str, int]:
    """Read a WOL `arg` ("MAC[ ADDRESS[ PORT]]"): the MAC's six bytes, the address, the port."""
    parts = arg.split(" ")
    if not 1 <= len(parts) <= 3:
        raise ValueError("WOL arg must be MAC[ ADDRESS[ PORT]]")
    mac = bytes.fromhex(normalize_mac(parts[0]).replace(":", ""))
    address = validate_ipv4(parts[1]) if len(parts) > 1 else WOL_ADDRESS
    port_text = parts[2] if len(parts) > 2 else str(WOL_PORT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("WOL port must be 1-65535")
    return mac, address, int(port_text)


# Signed commands ------------------------------------------------------------------


def _signed_text(target: str, cmd: str, ts: int, nonce: str, arg: str) -> bytes:
    return f"{target}\n{cmd}\n{ts}\n{nonce}\n{arg}".encode()


def command_signature(key: str, target: str, cmd: str, ts: int, nonce: str, arg: str = "") -> str:
    """HMAC-SHA256 (hex) of a command for one node or server."""
    return hmac.new(key.encode(), _signed_text(target, cmd, ts, nonce, arg), hashlib.sha256).hexdigest()


def sign_command(key: str, target: str, cmd: str, ts: int, arg: str = "") -> str:
    """Return the JSON payload `{cmd, ts, nonce, sig[, arg]}` of a signed command."""
    nonce = secrets.token_hex(8)
    body: dict[str, str | int] = {"cmd": cmd, "ts": ts, "nonce": nonce}
    if arg:
        body["arg"] = arg
    body["sig"] = command_signature(key, target, cmd, ts, nonce, arg)
    return json.dumps(body, separators=(",", ":"))


class CommandError(ValueError):
    """A command that must be refused."""


@dataclass(frozen=True, slots=True)
class Command:
    """A verified command."""

    cmd: str
    ts: int
    nonce: str
    arg: str = ""


def verify_command(
    key: str,
    target: str,
    payload: bytes | str,
    now: float,
    seen_nonces: dict[str, float],
    max_skew: float = MAX_SKEW_S,
) -> Command:
    """Check signature, age and nonce of a command; raise CommandError if refused.

    `seen_nonces` maps nonces to when they were accepted; entries older than the
    skew window are pruned, since a replay of them is refused as stale anyway.
    """
    try:
        data = json.loads(payload)
    except ValueError as err:
        raise CommandError("not JSON") from err
    if not isinstance(data, dict):
        raise CommandError("not a JSON object")
    cmd, ts, nonce, sig = (data.get(k) for k in ("cmd", "ts", "nonce", "sig"))
    arg = data.get("arg", "")
    if not isinstance(sig, str) or not sig:
        raise CommandError("unsigned")
    if not (isinstance(cmd, str) and isinstance(nonce, str) and isinstance(arg, str)):
        raise CommandError("malformed")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise CommandError("malformed timestamp")
    expected = command_signature(key, target, cmd, ts, nonce, arg)
    if not hmac.compare_digest(expected, sig):
        raise CommandError("bad signature")
    if abs(now - ts) > max_skew:
        raise CommandError("stale")
    for old in [n for n, at in seen_nonces.items() if now - at > 2 * max_skew]:
        del seen_nonces[old]
    if nonce in seen_nonces:
        raise CommandError("replayed")
    seen_nonces[nonce] = now
    return Command(cmd, ts, nonce, arg)
