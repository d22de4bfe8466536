"""What HA knows about a node or a server agent's log lines: plain data, no Home Assistant imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LEVEL_RANK: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
UNKNOWN_LEVEL: Final = "unknown"
UNKNOWN_RANK: Final = 20
CRITICAL_RANK: Final = LEVEL_RANK["critical"]
# Characters of a message kept in HA states and events; the files get all of it.
MAX_HA_TEXT: Final = 255


@dataclass(slots=True)
class TokenBucket:
    """Tokens that refill at a rate up to a burst; `take` spends one if there is one.

    By default last refilled at time 0 (long ago): the first take finds it full. A clock
    that steps back refills nothing.
    """

    tokens: float = 0.0
    refilled: float = 0.0

    def take(self, now: float, rate: float, burst: float) -> bool:
        """Spend a token at `now` (seconds); False if none is left."""
        self.tokens = min(burst, self.tokens + max(0.0, now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class Node:
    """One node, or the log lines of a server's agent (`ident` says which device they go to)."""

    node_id: str
    name: str
    # the device identifier's second half, and the prefix of the entities' unique ids
    ident: str
    device_id: str | None = None
    online: bool | None = None
    # Whether going offline was logged: logged once, and its return once.
    offline_logged: bool = False
    last_level: str | None = None
    last_message: str | None = None
    last_log_ts: float | None = None
    errors: int = 0
    criticals: int = 0
    suppressed: int = 0
    served_at: float | None = None
    served_hash: str | None = None
    wait_s: float | None = None
    seen: float = 0.0
    written: float = 0.0  # when its entities' states were last written (monotonic)

    @property
    def is_server(self) -> bool:
        """Whether these are a server agent's lines (on the server's device)."""
        return self.ident.startswith("server_")

    def logged(
        self, level: str, text: str, received: float, *, errors: int, criticals: int, suppressed: int
    ) -> None:
        """Take a batch of this node's lines: its last line (text cut to MAX_HA_TEXT) and counts."""
        self.last_level, self.last_message, self.last_log_ts = level, text, received
        self.errors += errors
        self.criticals += criticals
        self.suppressed += suppressed

    def diagnostics(self) -> dict[str, object]:
        """Return the node's state for the diagnostics download."""
        return {
            "name": self.name,
            "online": self.online,
            "last_level": self.last_level,
            "last_message": self.last_message,
            "errors": self.errors,
            "criticals": self.criticals,
            "suppressed": self.suppressed,
            "config_served_at": self.served_at,
            "config_hash": self.served_hash,
            "wait_s": self.wait_s,
        }


def new_node(node_id: str, name: str | None = None, device_id: str | None = None) -> Node:
    """Return a node of its own device."""
    return Node(node_id, name or node_id, f"node_{node_id}", device_id)


def server_log_source(server_id: str, name: str) -> Node:
    """Return the log source of a server's agent (its lines go on the server's device)."""
    return Node(server_id, name, f"server_{server_id}")
