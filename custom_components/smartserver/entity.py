"""Base entity of the SmartServer platforms."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .helpers import node_identifier

if TYPE_CHECKING:
    from .coordinator import SmartServerConfigEntry
    from .nodes import NodeHub


class SmartServerEntity(Entity):
    """Pushed over MQTT, named after its device's translation key."""

    _attr_has_entity_name = True
    _attr_should_poll = False


class NodeEntity(SmartServerEntity):
    """An entity of one ESP32 node; its state lives in the node hub."""

    def __init__(self, hub: NodeHub, node_id: str, key: str) -> None:
        """Attach to the node's device (created by the hub on first contact)."""
        self.hub = hub
        self.node = hub.nodes[node_id]
        self._attr_unique_id = f"node_{node_id}_{key}"
        self._attr_device_info = DeviceInfo(identifiers={node_identifier(node_id)})

    async def async_added_to_hass(self) -> None:
        """Write the state whenever the hub says the node changed."""
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self.hub.signal(self.node.node_id), self.async_write_ha_state)
        )


@callback
def async_setup_node_entities(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    make: Callable[[NodeHub, str], Iterable[Entity]],
) -> None:
    """Add a platform's entities for every known node and each new one."""
    hub = entry.runtime_data.nodes

    @callback
    def add(node_id: str) -> None:
        async_add_entities(make(hub, node_id))

    for node_id in list(hub.nodes):
        add(node_id)
    entry.async_on_unload(async_dispatcher_connect(hass, hub.signal_new_node, add))
