"""The agent's side of the smartserver MQTT protocol (docs/protocol.md).

The agent is installed on servers without Home Assistant, so it carries this small
copy; tests/agent checks it against the integration's protocol module.
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_BASE: Final = "home"
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

ALIVE: Final = "ALIVE"
DEAD: Final = "DEAD"
SHUTDOWN: Final = "SHUTDOWN"
REBOOT: Final = "REBOOT"

STARTING: Final = "STARTING"
ONLINE: Final = "ONLINE"
SHUTTING_DOWN: Final = "SHUTTING_DOWN"
OFFLINE: Final = "OFFLINE"

HEARTBEAT: Final = "heartbeat"
STATE: Final = "state"
NETWORK: Final = "network"
SYSTEM: Final = "system"
REFRESH: Final = "refresh"

MAX_SKEW_S: Final = 30


def server_topic(base: str, server: str, leaf: str) -> str:
    """`<base>/server/<srv>/<leaf>`."""
    return f"{base}/server/{server}/{leaf}"


def log_topic(base: str, level: str, server: str) -> str:
    """`<base>/log/<level>/<srv>`: where the agent's own log lines go."""
    return f"{base}/log/{level}/{server}"


def base_problem(base: str) -> str | None:
    """Say what is wrong with a base topic, or None if it can prefix our topics."""
    if not base or base.startswith("/") or base.endswith("/"):
        return "must not be empty or start or end with '/'"
    if any(ch in base for ch in "+#\0") or "//" in base:
        return "must not contain wildcards or empty levels"
    if len(base) > 128:
        return "is longer than 128 characters"
    return None
