"""Node devices: which nodes HA knows, new-node admission (budget and repair issue), renames, removal."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later

from .const import DOMAIN, ISSUE_NEW_NODES, LOGGER
from .helpers import (
    create_issue,
    node_device_link,
    node_id_of_device,
    node_identifier,
    server_device_info,
    server_identifier,
)
from .logs import GENERAL_LOG
from .node_model import Node, TokenBucket, new_node, server_log_source
from .servers import ServerConfig
from .storage import Storage

# A node heard from this recently (or online) is not stale: its device stays.
STALE_AFTER_S: Final = 300
# New node devices: this many at once, then NEW_NODES_PER_HOUR. Each brings a directory,
# a device_names.yaml entry, a device and 8 entities: a client that publishes under
# thousands of made-up ids (a broker without ACL) must not bury HA in devices.
NEW_NODES_BURST: Final = 200
NEW_NODES_PER_HOUR: Final = 60
# The repair issue about held-back nodes clears itself after this long without one.
NEW_NODES_QUIET_S: Final = 3600
MAX_HELD_BACK: Final = 10_000  # ids counted for the repair issue
# The issue's count follows at most this often: each update is a registry write and an
# event to every open repairs panel, and a flood of made-up ids brings thousands.
ISSUE_UPDATE_S: Final = 10.0
# Nodes on disk are never held back; a held-back id makes the folder be read again (a
# node set up by hand meanwhile), at most this often: made-up ids cannot keep it busy.
RESCAN_S: Final = 5.0


class NodeRegistry:
    """The entry's nodes and their devices; new ones are admitted within a budget."""

    def __init__(
        self, hass: HomeAssistant, entry_id: str, servers: Mapping[str, ServerConfig], storage: Storage
    ) -> None:
        """Load the known nodes from the device registry and make the relay nodes' devices."""
        self.hass = hass
        self.storage = storage
        # ids with a configuration folder or a device_names.yaml entry (storage.known_ids)
        self.on_disk: set[str] = set()
        self._scan: asyncio.Future[set[str]] | None = None
        self._scanned = -RESCAN_S
        self.entry_id = entry_id
        self.servers = servers
        self.signal_new_node = f"{DOMAIN}_{entry_id}_new_node"
        self.nodes: dict[str, Node] = {}
        # Each agent logs under its server id: those lines belong to the server, not a node.
        self.server_logs = {sid: server_log_source(sid, config.name) for sid, config in servers.items()}
        self._budget = TokenBucket(NEW_NODES_BURST, time.monotonic())
        self._held_back: set[str] = set()
        self._held_back_timer: CALLBACK_TYPE | None = None
        self._held_back_last = 0.0  # when a node was last held back (time.time())
        self._example = ""  # the first held-back id, shown in the issue
        self._issue_timer: CALLBACK_TYPE | None = None  # the issue's count is updated then
        registry = dr.async_get(hass)
        for device in dr.async_entries_for_config_entry(registry, entry_id):
            if (node_id := node_id_of_device(device)) is None:
                continue
            if node_id in servers:
                # made from the agent's log lines before its server was added
                LOGGER.info(
                    "Removed node device %s: the id is a server's, its agent's lines go to the server",
                    node_id,
                )
                registry.async_update_device(device.id, remove_config_entry_id=entry_id)
                continue
            self.nodes[node_id] = new_node(node_id, device.name, device.id)
        # the servers' devices link to their relay nodes' (no entities until a node talks)
        self._relay_devices = {
            node: node_device_link(hass, entry_id, node).id
            for config in servers.values()
            if (node := config.relay_node)
        }
        for config in servers.values():
            # a server reconfigured to have no node keeps no link to its old one
            server = registry.async_get_device_by_identifier(server_identifier(config.server_id), entry_id)
            if config.relay_node is None and server is not None and server.via_device_id is not None:
                registry.async_update_device(server.id, via_device_id=None)

    async def async_scan(self) -> None:
        """Read which nodes are on disk (at start; again for a held-back id, see RESCAN_S)."""
        if self._scan is None:
            self._scan = self.hass.async_add_executor_job(self.storage.known_ids)
        scan = self._scan
        try:
            self.on_disk = await asyncio.shield(scan)
        finally:
            if self._scan is scan:
                self._scan, self._scanned = None, time.monotonic()

    @property
    def scan_pending(self) -> bool:
        """Whether the nodes on disk are being read (a held-back id may be among them)."""
        return self._scan is not None

    async def async_on_disk(self, node_id: str) -> bool:
        """Whether a held-back node is on disk after all (the folder read again if due)."""
        due = self._scan is not None or time.monotonic() - self._scanned >= RESCAN_S
        if node_id not in self.on_disk and due:
            await self.async_scan()
        return node_id in self.on_disk

    def server_device_info(self, config: ServerConfig) -> DeviceInfo:
        """Return the device of a server's entities, linked via its relay node if it has one."""
        via = self._relay_devices[config.relay_node] if config.relay_node else None
        return server_device_info(config.server_id, config.name, via)

    def device_info(self, node: Node) -> DeviceInfo:
        """Return the device a node's entities go on: its own, or the server's for an agent."""
        if node.is_server:
            return self.server_device_info(self.servers[node.node_id])
        return DeviceInfo(identifiers={node_identifier(node.node_id)})

    @callback
    def async_link_server_devices(self) -> None:
        """Give the agents' log sources their server's device id (made by the platforms)."""
        registry = dr.async_get(self.hass)
        for server_id, node in self.server_logs.items():
            if device := registry.async_get_device_by_identifier(server_identifier(server_id), self.entry_id):
                node.device_id = device.id

    def log_node(self, node_id: str) -> Node | None:
        """Return the node (or server agent) a log line is of, if known; never adds one."""
        return self.server_logs.get(node_id) or self.nodes.get(node_id)

    @callback
    def async_contact(self, node_id: str, *, force: bool = False) -> Node | None:
        """Return the node, created (with its device) on first contact.

        None while new nodes are held back (see NEW_NODES_BURST); `force` is for the
        user's own actions.
        """
        node = self.nodes.get(node_id)
        now = time.monotonic()
        if node is None:
            if not force and not self._admit(node_id, now):
                return None
            device = node_device_link(self.hass, self.entry_id, node_id)
            node = self.nodes[node_id] = new_node(node_id, device.name, device.id)
            self._held_back.discard(node_id)
            async_dispatcher_send(self.hass, self.signal_new_node, node)
        node.seen = now
        return node

    @callback
    def _admit(self, node_id: str, now: float) -> bool:
        """Admit a node on disk, or take a new node's token; else hold the node back and say so."""
        if node_id in self.on_disk or self._budget.take(now, NEW_NODES_PER_HOUR / 3600, NEW_NODES_BURST):
            return True
        if node_id not in self._held_back and len(self._held_back) < MAX_HELD_BACK:
            first = not self._held_back
            self._held_back.add(node_id)
            if first:
                LOGGER.warning(
                    "Node %s is not added to Home Assistant yet: more than %s new nodes got in "
                    "touch, and new ones are added at %s an hour. Its log lines go to %s only; "
                    "its requests are answered once it is added",
                    node_id,
                    NEW_NODES_BURST,
                    NEW_NODES_PER_HOUR,
                    GENERAL_LOG,
                )
                self._example = node_id
                self._update_issue()
            elif self._issue_timer is None:
                self._issue_timer = async_call_later(self.hass, ISSUE_UPDATE_S, self._update_issue)
        self._held_back_last = time.time()
        if self._scan is None and now - self._scanned >= RESCAN_S:
            self.hass.async_create_background_task(self.async_scan(), "smartserver nodes on disk")
        if self._held_back_timer is None:
            self._held_back_timer = async_call_later(self.hass, NEW_NODES_QUIET_S, self._held_back_over)
        return False

    @callback
    def _held_back_over(self, now: datetime) -> None:
        if (remaining := self._held_back_last + NEW_NODES_QUIET_S - now.timestamp()) > 0:
            self._held_back_timer = async_call_later(self.hass, remaining, self._held_back_over)
            return
        self._held_back_timer = None
        self._clear_issue()

    @callback
    def _update_issue(self, _now: datetime | None = None) -> None:
        """Raise the issue, or bring its count up to date."""
        self._stop_issue_timer()
        if not self._held_back:  # all added since: the issue clears itself after the hour
            return
        placeholders = {
            "count": str(len(self._held_back)),
            "example": self._example,
            "burst": str(NEW_NODES_BURST),
            "per_hour": str(NEW_NODES_PER_HOUR),
        }
        create_issue(self.hass, ISSUE_NEW_NODES, ISSUE_NEW_NODES, placeholders)

    @callback
    def _stop_issue_timer(self) -> None:
        if self._issue_timer is not None:  # cancelling one that has just run is harmless
            self._issue_timer()
            self._issue_timer = None

    @callback
    def _clear_issue(self) -> None:
        self._stop_issue_timer()
        self._held_back.clear()
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_NEW_NODES)

    @callback
    def async_rename(self, names: Mapping[str, str]) -> None:
        """Rename devices whose name in device_names.yaml changed."""
        registry = dr.async_get(self.hass)
        for node_id, name in names.items():
            node = self.nodes.get(node_id)
            if node is None or node.name == name:
                continue
            node.name = name
            if device := registry.async_get_device_by_identifier(node_identifier(node_id), self.entry_id):
                registry.async_update_device(device.id, name=name)

    @callback
    def async_forget(self, node_id: str) -> bool:
        """Forget a stale node; refuse while it is online or was heard recently."""
        node = self.nodes.get(node_id)
        if node is not None and (node.online or (node.seen and time.monotonic() - node.seen < STALE_AFTER_S)):
            return False
        self.nodes.pop(node_id, None)
        return True

    @callback
    def async_stop(self) -> None:
        """Forget the held-back nodes: a restart starts with the whole budget."""
        if self._held_back_timer is not None:
            self._held_back_timer()
            self._held_back_timer = None
            self._clear_issue()

    def diagnostics(self) -> dict[str, Any]:
        """Return the new-node budget."""
        return {"budget_left": math.floor(self._budget.tokens), "held_back": len(self._held_back)}
