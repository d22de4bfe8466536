"""ESP32 nodes of the hub entry: the options, and the node managers wired together (one owner each).

NodeRegistry (devices, admission), LogIngest (logs), ConfigServer (configurations) and
NodeStates (entity state writes) each own one concern; the coordinator calls in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_send

from . import protocol
from .const import (
    CONF_EVENT_LEVEL,
    CONF_LOG_BACKUPS,
    CONF_LOG_MAX_KB,
    CONF_RATE_LIMIT,
    CONF_STORAGE,
    DEFAULT_EVENT_LEVEL,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_KB,
    DEFAULT_RATE_LIMIT,
    DEFAULT_STORAGE,
    DOMAIN,
    LOGGER,
)
from .log_process import LogProcess
from .log_writer import LogWriter
from .node_config import ConfigServer
from .node_logs import LogIngest
from .node_model import LEVEL_RANK
from .node_registry import NodeRegistry
from .node_states import NodeStates
from .servers import ServerConfig
from .storage import Storage

# Shortest time between two state writes of one node's entities (see state_interval).
STATE_INTERVAL_S: Final = 1.0
# The node entities a server's agent gets for its log lines, on the server's device.
SERVER_LOG_KEYS: Final = frozenset({"log", "last_log", "errors", "criticals", "suppressed"})


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """The node-related options of the hub entry."""

    base: str
    storage: Path
    max_bytes: int
    backups: int
    event_level: str
    rate: float

    @property
    def state_interval(self) -> float:
        """Shortest time between two state writes of a node's entities.

        At most one a second even when more events are allowed: the recorder stores
        every write, and a flooding node must not flood the database.
        """
        return max(STATE_INTERVAL_S, 1 / self.rate)

    @classmethod
    def from_entry(cls, hass: HomeAssistant, entry: ConfigEntry[Any], base: str) -> NodeOptions:
        """Read the options, with defaults for entries made before they existed."""
        options = entry.options
        return cls(
            base=base,
            storage=Path(hass.config.path(options.get(CONF_STORAGE, DEFAULT_STORAGE))),
            max_bytes=int(options.get(CONF_LOG_MAX_KB, DEFAULT_LOG_MAX_KB)) * 1024,
            backups=int(options.get(CONF_LOG_BACKUPS, DEFAULT_LOG_BACKUPS)),
            event_level=options.get(CONF_EVENT_LEVEL, DEFAULT_EVENT_LEVEL),
            rate=float(options.get(CONF_RATE_LIMIT, DEFAULT_RATE_LIMIT)),
        )

    def diagnostics(self) -> dict[str, Any]:
        """Return the options for the diagnostics download."""
        return {
            "base": self.base,
            "storage": str(self.storage),
            "max_bytes": self.max_bytes,
            "backups": self.backups,
            "event_level": self.event_level,
            "rate": self.rate,
        }


class NodeManager:
    """The nodes of one hub entry; nothing is written until the coordinator starts it."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[Any],
        options: NodeOptions,
        servers: Mapping[str, ServerConfig],
        served: Mapping[str, Mapping[str, Any]],
        *,
        connected: bool,
    ) -> None:
        """Wire the managers; `servers` by server id (their agents' lines go to the server).

        `served`: node id -> the sections HA adds to that node's configuration (wol, reach).
        """
        self.hass = hass
        self.options = options
        self.storage = Storage(options.storage)
        self.registry = NodeRegistry(hass, entry.entry_id, servers, self.storage)
        self.states = NodeStates(hass, entry.entry_id, options.state_interval)
        process = LogProcess(
            options.storage,
            options.max_bytes,
            options.backups,
            hass.config.time_zone,
            frozenset(servers),
            event_rank=LEVEL_RANK[options.event_level],
            rate=options.rate,
        )
        self.logs = LogIngest(hass, entry.entry_id, self.registry, self.states, LogWriter(process))
        self.config = ConfigServer(
            hass, entry, options.base, self.storage, self.registry, self.states, served
        )
        # node entities are unavailable while HA's MQTT client is disconnected
        self.connected = connected
        self.signal_connection = f"{DOMAIN}_{entry.entry_id}_mqtt_connection"
        self._stopped = False

    @callback
    def async_connection(self, connected: bool) -> None:
        """Follow HA's MQTT connection."""
        self.connected = connected
        async_dispatcher_send(self.hass, self.signal_connection)

    @callback
    def async_status(self, node_id: str, text: str) -> bool:
        """Take a valid id's `status`: ONLINE, OFFLINE or empty (cleared); return whether it is one."""
        if text not in (protocol.ONLINE, protocol.OFFLINE, ""):
            LOGGER.warning("Ignored status %r of node %s: expected ONLINE or OFFLINE", text[:40], node_id)
            return False
        if (node := self.registry.async_contact(node_id)) is None:
            return True
        node.online = None if not text else text == protocol.ONLINE
        if node.online is False and not node.offline_logged:
            node.offline_logged = True
            LOGGER.info("Node %s is offline", node_id)
        elif node.online and node.offline_logged:
            node.offline_logged = False
            LOGGER.info("Node %s is back online", node_id)
        self.states.async_changed(node)
        return True

    @callback
    def async_remove_node(self, node_id: str) -> bool:
        """Forget a stale node; refuse while it is online or was heard recently."""
        if not self.registry.async_forget(node_id):
            return False
        self.states.async_cancel(node_id)
        self.config.async_cancel(node_id)
        return True

    async def async_stop(self) -> None:
        """Stop answering, then write every queued log line and close the files."""
        if self._stopped:
            return
        self._stopped = True
        self.config.async_stop()
        self.states.async_stop()
        self.registry.async_stop()
        await self.logs.async_close()

    def diagnostics(self) -> dict[str, Any]:
        """State for the diagnostics download (redacted by the caller)."""
        nodes = self.registry.nodes
        return {
            "options": self.options.diagnostics(),
            "log_writer": self.logs.diagnostics(),
            "nodes": {node_id: nodes[node_id].diagnostics() for node_id in sorted(nodes)},
            "new_nodes": self.registry.diagnostics(),
        }
