"""Binary sensors: per node its availability from `<base>/node/<node>/status`."""

from __future__ import annotations

from collections.abc import Iterable

from homeassistant.components.binary_sensor import BinarySensorEntity, BinarySensorEntityDescription
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .entity import NodeEntity, async_setup_node_entities
from .nodes import NodeHub

PARALLEL_UPDATES = 0

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

    def __init__(self, hub: NodeHub, node_id: str, description: BinarySensorEntityDescription) -> None:
        """Describe the node's availability."""
        super().__init__(hub, node_id, description.key)
        self.entity_description = description

    @property
    def is_on(self) -> bool | None:
        """Online, offline or not known yet."""
        return self.node.online


def _node_binary_sensors(hub: NodeHub, node_id: str) -> Iterable[NodeStatusSensor]:
    return [NodeStatusSensor(hub, node_id, description) for description in NODE_BINARY_SENSORS]


async def async_setup_entry(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Set up the binary sensors."""
    async_setup_node_entities(hass, entry, async_add_entities, _node_binary_sensors)
