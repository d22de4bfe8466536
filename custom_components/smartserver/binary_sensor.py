"""Binary sensors: node availability, server agent connectivity and network checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import BinarySensorEntity, BinarySensorEntityDescription
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .entity import NodeEntity, ServerEntity, async_setup_platform
from .servers import PowerState, Server

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the binary sensors."""
    async_setup_platform(
        hass,
        entry,
        async_add_entities,
        node_entity=NodeStatusSensor,
        node_descriptions=NODE_BINARY_SENSORS,
        server_entity=ServerBinarySensor,
        server_descriptions=SERVER_BINARY_SENSORS,
    )


# Nodes --------------------------------------------------------------------------------

NODE_BINARY_SENSORS: tuple[BinarySensorEntityDescription, ...] = (
    BinarySensorEntityDescription(
        key="status",
        translation_key="node_status",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
    ),
)


class NodeStatusSensor(NodeEntity, BinarySensorEntity):
    """ONLINE/OFFLINE as published (retained, with the Will) by the node."""

    @property
    def is_on(self) -> bool | None:
        """Online, offline or not known yet."""
        return self.node.online

    def node_value(self) -> object:
        """Return online, offline or not known yet."""
        return self.is_on


# Servers ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerBinarySensorEntityDescription(BinarySensorEntityDescription):
    """A binary sensor of a server."""

    value_fn: Callable[[Server], bool | None]
    # The network results are retained: once the agent is gone they are history.
    available_fn: Callable[[Server], bool] = lambda server: server.agent_up


def _network_check(check: str) -> ServerBinarySensorEntityDescription:
    return ServerBinarySensorEntityDescription(
        key=check,
        translation_key=check,
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda server: server.network.get(check),
    )


def _agent_connected(server: Server) -> bool | None:
    # no heartbeat ever (a new agent) but the server is off: its agent is not connected
    if server.heartbeat is None and server.state is not PowerState.OFF:
        return None
    return server.agent_up


SERVER_BINARY_SENSORS: tuple[ServerBinarySensorEntityDescription, ...] = (
    ServerBinarySensorEntityDescription(
        key="agent",
        translation_key="agent",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        value_fn=_agent_connected,
        available_fn=lambda _server: True,
    ),
    # HA's check of the server's TCP port, for servers that have one
    ServerBinarySensorEntityDescription(
        key="reachable",
        translation_key="reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        value_fn=lambda server: server.reachable,
        available_fn=lambda server: bool(server.config.reach_host),
    ),
    _network_check("link"),
    _network_check("default_route"),
    _network_check("internet"),
)


class ServerBinarySensor(ServerEntity, BinarySensorEntity):
    """A server's binary sensor."""

    entity_description: ServerBinarySensorEntityDescription

    @property
    def available(self) -> bool:
        """Unavailable as described: network results without the agent, reachability without a port."""
        return super().available and self.entity_description.available_fn(self.server)

    @property
    def is_on(self) -> bool | None:
        """Return the described value."""
        return self.entity_description.value_fn(self.server)
