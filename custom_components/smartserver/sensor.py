"""Sensor platform."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.sensor import SensorDeviceClass, SensorEntity, SensorEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .entity import ServerEntity, async_add_server_entities
from .servers import PowerState, Server

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors."""
    _async_setup_servers(hass, entry, async_add_entities)


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


@callback
def _async_setup_servers(
    hass: HomeAssistant, entry: SmartServerConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_server_entities(
        entry, async_add_entities, lambda server: [ServerSensor(hass, server, d) for d in SERVER_SENSORS]
    )


class ServerSensor(ServerEntity, SensorEntity):
    """A server's sensor."""

    entity_description: ServerSensorEntityDescription

    @property
    def native_value(self) -> str | None:
        """Return the described value."""
        return self.entity_description.value_fn(self.server)
