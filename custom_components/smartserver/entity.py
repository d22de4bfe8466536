"""Base entities of the SmartServer platforms, and the one setup every platform uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .node_model import Node
from .nodes import SERVER_LOG_KEYS, NodeManager
from .servers import Server

_UNSET = object()


class SmartServerEntity(Entity):
    """Pushed over MQTT, named after its device's translation key."""

    _attr_has_entity_name = True
    _attr_should_poll = False


class ServerEntity(SmartServerEntity):
    """An entity of one homelab server, on the server's device."""

    def __init__(self, server: Server, description: EntityDescription, device_info: DeviceInfo) -> None:
        """Describe the entity of the server, on the server's device."""
        self.entity_description = description
        self.server = server
        self._attr_unique_id = f"server_{server.config.server_id}_{description.key}"
        self._attr_device_info = device_info

    @property
    def available(self) -> bool:
        """Unavailable while HA's MQTT client is disconnected."""
        return self.server.mqtt_connected

    async def async_added_to_hass(self) -> None:
        """Follow the server's evidence."""
        await super().async_added_to_hass()
        self.async_on_remove(self.server.async_add_listener(self.async_write_ha_state))


class NodeEntity(SmartServerEntity):
    """One value of a node (or of a server agent's log lines); the state lives in the node model."""

    def __init__(self, nodes: NodeManager, node: Node, description: EntityDescription) -> None:
        """Describe the entity; its device is the node's (or, for an agent, the server's)."""
        self.entity_description = description
        self.nodes = nodes
        self.node = node
        self._written: object = _UNSET
        self._attr_unique_id = f"{node.ident}_{description.key}"
        self._attr_device_info = nodes.registry.device_info(node)

    @property
    def available(self) -> bool:
        """Unavailable while HA's MQTT client is disconnected: the state may be stale."""
        return self.nodes.connected

    async def async_added_to_hass(self) -> None:
        """Follow HA's MQTT connection and the node."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self.nodes.signal_connection, self.async_write_ha_state)
        )
        self._follow_node()

    def node_value(self) -> object:
        """Return what this entity shows of the node: its state is written when this changes."""
        raise NotImplementedError

    @callback
    def _follow_node(self) -> None:
        """Write the state when the node's states are due and this entity's value changed."""
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass, self.nodes.states.signal(self.node.node_id), self._node_changed
            )
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
def async_setup_platform[N: EntityDescription, S: EntityDescription](
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    *,
    node_entity: Callable[[NodeManager, Node, N], Entity] | None = None,
    node_descriptions: Sequence[N] = (),
    server_entity: Callable[[Server, S, DeviceInfo], Entity] | None = None,
    server_descriptions: Sequence[S] = (),
    server_has: Callable[[Server, S], bool] = lambda _server, _description: True,
) -> None:
    """Add a platform's entities: per node known or new, per agent's log lines, per server.

    An agent has no status or configuration: its log lines get the descriptions in
    SERVER_LOG_KEYS only, on its server's subentry. `server_has` says which of the
    server descriptions a server gets (a server without a node has no force off).
    """
    nodes, servers = entry.runtime_data.nodes, entry.runtime_data.servers.servers.values()
    if node_entity is not None:

        @callback
        def add(node: Node, subentry_id: str | None = None) -> None:
            descriptions = [d for d in node_descriptions if not node.is_server or d.key in SERVER_LOG_KEYS]
            if descriptions:
                entities = [node_entity(nodes, node, d) for d in descriptions]
                async_add_entities(entities, config_subentry_id=subentry_id)

        for node in list(nodes.registry.nodes.values()):
            add(node)
        for server in servers:
            add(nodes.registry.server_logs[server.config.server_id], server.config.subentry_id)
        entry.async_on_unload(async_dispatcher_connect(hass, nodes.registry.signal_new_node, add))
    if server_entity is not None:
        for server in servers:
            device_info = nodes.registry.server_device_info(server.config)
            entities = [
                server_entity(server, d, device_info) for d in server_descriptions if server_has(server, d)
            ]
            async_add_entities(entities, config_subentry_id=server.config.subentry_id)
