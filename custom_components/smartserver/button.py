"""Button platform: force a server off by holding its power button."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .entity import ServerEntity, async_setup_platform

PARALLEL_UPDATES = 1

# As destructive as pulling the plug: disabled until the user enables it.
FORCE_OFF_DESCRIPTION = ButtonEntityDescription(
    key="force_off",
    translation_key="force_off",
    entity_registry_enabled_default=False,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add one force-off button per server subentry."""
    async_setup_platform(
        hass,
        entry,
        async_add_entities,
        server_entity=ServerForceOffButton,
        server_descriptions=(FORCE_OFF_DESCRIPTION,),
    )


class ServerForceOffButton(ServerEntity, ButtonEntity):
    """Holds the power button through the relay node (signed HOLD)."""

    async def async_press(self) -> None:
        """Send the signed HOLD."""
        await self.server.async_force_off()
