"""Sensors: per node its last log line, counters and config serving; per server its power state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .coordinator import SmartServerConfigEntry
from .entity import NodeEntity, ServerEntity, async_setup_platform
from .node_model import Node
from .servers import PowerState, Server

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors."""
    async_setup_platform(
        hass,
        entry,
        async_add_entities,
        node_entity=NodeSensor,
        node_descriptions=NODE_SENSORS,
        server_entity=ServerSensor,
        server_descriptions=SERVER_SENSORS,
    )


# Nodes --------------------------------------------------------------------------------


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else dt_util.utc_from_timestamp(value)


# what a sensor's restored native value can be
type RestoredValue = StateType | date | Decimal


def _count(last: RestoredValue) -> int | None:
    try:
        return int(float(str(last)))
    except ValueError:
        return None


def _set_errors(node: Node, last: RestoredValue) -> None:
    if (value := _count(last)) is not None:
        node.errors += value


def _set_criticals(node: Node, last: RestoredValue) -> None:
    if (value := _count(last)) is not None:
        node.criticals += value


def _set_last_message(node: Node, last: RestoredValue) -> None:
    # a reload (adding a server, changing options) must not blank the last line
    if node.last_message is None and isinstance(last, str):
        node.last_message = last


@dataclass(frozen=True, kw_only=True)
class NodeSensorDescription(SensorEntityDescription):
    """A node sensor: its value, and how a counter resumes after a restart."""

    value_fn: Callable[[Node], StateType | datetime]
    restore_fn: Callable[[Node, RestoredValue], None] | None = None


NODE_SENSORS: tuple[NodeSensorDescription, ...] = (
    NodeSensorDescription(
        key="last_log",
        translation_key="last_log",
        value_fn=lambda node: node.last_message,
        restore_fn=_set_last_message,
    ),
    NodeSensorDescription(
        key="errors",
        translation_key="errors",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda node: node.errors,
        restore_fn=_set_errors,
    ),
    NodeSensorDescription(
        key="criticals",
        translation_key="criticals",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda node: node.criticals,
        restore_fn=_set_criticals,
    ),
    NodeSensorDescription(
        key="config_served",
        translation_key="config_served",
        entity_registry_enabled_default=False,
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda node: _timestamp(node.served_at),
    ),
    NodeSensorDescription(
        key="config_hash",
        translation_key="config_hash",
        entity_registry_enabled_default=False,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda node: node.served_hash[:12] if node.served_hash else None,
    ),
    NodeSensorDescription(
        key="suppressed",
        translation_key="suppressed",
        entity_registry_enabled_default=False,
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda node: node.suppressed,
    ),
)


class NodeSensor(NodeEntity, RestoreSensor):
    """One value of a node."""

    entity_description: NodeSensorDescription

    async def async_added_to_hass(self) -> None:
        """Counters continue from their last value; the last line stays until a new one."""
        await super().async_added_to_hass()
        restore = self.entity_description.restore_fn
        last = await self.async_get_last_sensor_data() if restore is not None else None
        if restore is not None and last is not None and last.native_value is not None:
            restore(self.node, last.native_value)

    @property
    def native_value(self) -> StateType | datetime:
        """The value from the node."""
        return self.entity_description.value_fn(self.node)

    def node_value(self) -> object:
        """Return the value from the node."""
        return self.native_value


# Servers ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerSensorEntityDescription(SensorEntityDescription):
    """A sensor of a server, read from its state."""

    value_fn: Callable[[Server], str | None]


SERVER_SENSORS: tuple[ServerSensorEntityDescription, ...] = (
    ServerSensorEntityDescription(
        key="power_state",
        translation_key="power_state",
        device_class=SensorDeviceClass.ENUM,
        options=[state.value for state in PowerState],
        value_fn=lambda server: server.state,
    ),
)


class ServerSensor(ServerEntity, SensorEntity):
    """A server's sensor."""

    entity_description: ServerSensorEntityDescription

    @property
    def native_value(self) -> str | None:
        """Return the described value."""
        return self.entity_description.value_fn(self.server)
