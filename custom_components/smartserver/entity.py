"""Base entity of the SmartServer platforms."""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .helpers import server_device_info
from .servers import Server


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
