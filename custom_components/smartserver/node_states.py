"""When node entities write their states: at most once per interval per node, the last change always."""

from __future__ import annotations

import time
from datetime import datetime
from functools import partial

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later

from .const import DOMAIN
from .node_model import Node


class NodeStates:
    """Tells a node's entities that it changed, rate-limited: HA's recorder stores every write."""

    def __init__(self, hass: HomeAssistant, entry_id: str, interval: float) -> None:
        """Signal at most once per `interval` seconds per node."""
        self.hass = hass
        self.entry_id = entry_id
        self.interval = interval
        self._timers: dict[str, CALLBACK_TYPE] = {}
        self._stopped = False

    def signal(self, node_id: str) -> str:
        """Dispatcher signal: the node's state changed."""
        return f"{DOMAIN}_{self.entry_id}_node_{node_id}"

    @callback
    def async_changed(self, node: Node) -> None:
        """Signal the change now, or once the interval since the last one is over."""
        if node.node_id in self._timers or self._stopped:
            return
        now = time.monotonic()
        due = node.written + self.interval
        if now >= due:
            node.written = now
            async_dispatcher_send(self.hass, self.signal(node.node_id))
        else:
            self._timers[node.node_id] = async_call_later(self.hass, due - now, partial(self._later, node))

    @callback
    def _later(self, node: Node, _now: datetime) -> None:
        del self._timers[node.node_id]
        node.written = time.monotonic()
        async_dispatcher_send(self.hass, self.signal(node.node_id))

    @callback
    def async_cancel(self, node_id: str) -> None:
        """Drop a pending write (the node is removed)."""
        if (cancel := self._timers.pop(node_id, None)) is not None:
            cancel()

    @callback
    def async_stop(self) -> None:
        """Drop every pending write; nothing is signalled from now on."""
        self._stopped = True
        for cancel in self._timers.values():
            cancel()
        self._timers.clear()
