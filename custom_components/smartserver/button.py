"""Button platform: reboot a server through its agent, or force it off by holding its power button."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .entity import ServerEntity, async_setup_platform
from .servers import Server

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class ServerButtonDescription(ButtonEntityDescription):
    """A server button and the command it sends."""

    press: Callable[[Server], Awaitable[None]]
    # the command goes to the server's node: a server without one gets no such button
    needs_node: bool = False


DESCRIPTIONS = (
    # A signed REBOOT to the agent: refused while the agent is not connected.
    ServerButtonDescription(key="reboot", translation_key="reboot", press=Server.async_reboot),
    # A signed HOLD to the relay node, as destructive as pulling the plug: disabled
    # until the user enables it.
    ServerButtonDescription(
        key="force_off",
        translation_key="force_off",
        entity_registry_enabled_default=False,
        press=Server.async_force_off,
        needs_node=True,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a reboot and (for a server with a node) a force-off button per server subentry."""
    async_setup_platform(
        hass,
        entry,
        async_add_entities,
        server_entity=ServerButton,
        server_descriptions=DESCRIPTIONS,
        server_has=lambda server, description: bool(server.config.relay_node) or not description.needs_node,
    )


class ServerButton(ServerEntity, ButtonEntity):
    """Sends its description's command to the server."""

    entity_description: ServerButtonDescription

    async def async_press(self) -> None:
        """Send the command."""
        await self.entity_description.press(self.server)
