"""Event entities: per node, one event per log line at or above the event level."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import protocol
from .coordinator import SmartServerConfigEntry
from .entity import NodeEntity, async_setup_platform
from .node_model import UNKNOWN_LEVEL

PARALLEL_UPDATES = 0

NODE_LOG_EVENT = EventEntityDescription(
    key="log",
    translation_key="log",
    event_types=[*protocol.LEVELS, UNKNOWN_LEVEL],
)


class NodeLogEvent(NodeEntity, EventEntity):
    """Fires with the level as event type and the message as data."""

    @callback
    def _follow_node(self) -> None:
        """Listen for the node's (rate-limited) log events; no state writes otherwise."""
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self.nodes.logs.event_signal(self.node.node_id), self._on_log)
        )

    @callback
    def _on_log(self, level: str, message: str) -> None:
        event_type = level if level in protocol.LEVELS else UNKNOWN_LEVEL
        self._trigger_event(event_type, {"level": level, "message": message})
        self.async_write_ha_state()


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Set up the event entities."""
    async_setup_platform(
        hass, entry, async_add_entities, node_entity=NodeLogEvent, node_descriptions=(NODE_LOG_EVENT,)
    )
