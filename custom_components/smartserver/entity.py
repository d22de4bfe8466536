"""Base entity of the SmartServer platforms."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .helpers import node_identifier, server_device_info
from .nodes import SERVER_LOG_KEYS
from .servers import Server

if TYPE_CHECKING:
    from .coordinator import SmartServerConfigEntry
    from .nodes import NodeHub


_UNSET = object()


class SmartServerEntity(Entity):
    """Pushed over MQTT, named after its device's translation key."""

    _attr_has_entity_name = True
    _attr_should_poll = False


class ServerEntity(SmartServerEntity):
    """An entity of one homelab server, on the server's device."""

    def __init__(self, hass: HomeAssistant, server: Server, description: EntityDescription) -> None:
        """Describe the entity and link it to the server's device."""
        self.entity_description = description
        self.server = server
        config = server.config
        self._attr_unique_id = f"server_{config.server_id}_{description.key}"
        self._attr_device_info = server_device_info(
            hass, server.entry_id, config.server_id, config.name, config.relay_node
        )

    @property
    def available(self) -> bool:
        """Unavailable while HA's MQTT client is disconnected."""
        return self.server.mqtt_connected

    async def async_added_to_hass(self) -> None:
        """Follow the server's evidence."""
        await super().async_added_to_hass()
        self.async_on_remove(self.server.async_add_listener(self.async_write_ha_state))


@callback
def async_add_server_entities(
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    build: Callable[[Server], list[Entity]],
) -> None:
    """Add each server's entities to its own subentry."""
    hub = entry.runtime_data.servers
    assert hub is not None
    for server in hub.servers.values():
        async_add_entities(build(server), config_subentry_id=server.config.subentry_id)


class NodeEntity(SmartServerEntity):
    """An entity of one ESP32 node; its state lives in the node hub."""

    def __init__(self, hub: NodeHub, node_id: str, key: str) -> None:
        """Attach to the node's device (created by the hub on first contact).

        A server agent's log entities go on the server's device instead.
        """
        self.hub = hub
        self._written: object = _UNSET
        if (config := hub.servers.get(node_id)) is not None:
            self.node = hub.server_logs[node_id]
            self._attr_unique_id = f"server_{node_id}_{key}"
            self._attr_device_info = server_device_info(
                hub.hass, hub.entry.entry_id, node_id, config.name, config.relay_node
            )
            return
        self.node = hub.nodes[node_id]
        self._attr_unique_id = f"node_{node_id}_{key}"
        self._attr_device_info = DeviceInfo(identifiers={node_identifier(node_id)})

    @property
    def available(self) -> bool:
        """Unavailable while HA's MQTT client is disconnected: the state may be stale."""
        return self.hub.mqtt_connected

    async def async_added_to_hass(self) -> None:
        """Follow HA's MQTT connection (through the hub) and the node."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self.hub.signal_connection, self.async_write_ha_state)
        )
        self._follow_node()

    def node_value(self) -> object:
        """Return what this entity shows of the node: its state is written when this changes."""
        raise NotImplementedError

    @callback
    def _follow_node(self) -> None:
        """Write the state when the hub says the node changed and this entity's value did."""
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self.hub.signal(self.node.node_id), self._node_changed)
        )

    @callback
    def _node_changed(self) -> None:
        # a node's change touches one to three of its 7 entities: the others' writes
        # would only repeat the same state
        value = self.node_value()
        if value != self._written:
            self._written = value
            self.async_write_ha_state()


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
    for server_id, config in hub.servers.items():
        # only the log entities: an agent has no status topic or configuration
        if server_entities := [
            e for e in make(hub, server_id) if e.entity_description.key in SERVER_LOG_KEYS
        ]:
            async_add_entities(server_entities, config_subentry_id=config.subentry_id)
    entry.async_on_unload(async_dispatcher_connect(hass, hub.signal_new_node, add))
