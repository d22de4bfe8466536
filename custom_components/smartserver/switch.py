"""Switch platform: each homelab server's power."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.components.switch.const import SwitchDeviceClass
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartServerConfigEntry
from .entity import ServerEntity, async_setup_platform
from .servers import PowerState

# Commands are serialized per platform: one button press at a time.
PARALLEL_UPDATES = 1

POWER_DESCRIPTION = SwitchEntityDescription(
    key="power",
    translation_key="power",
    device_class=SwitchDeviceClass.SWITCH,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartServerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add one power switch per server subentry."""
    async_setup_platform(
        hass,
        entry,
        async_add_entities,
        server_entity=ServerPowerSwitch,
        server_descriptions=(POWER_DESCRIPTION,),
    )


class ServerPowerSwitch(ServerEntity, SwitchEntity):
    """On while the server is starting or on; off while it is stopping or off.

    Never optimistic: the state changes only when the agent or the power sense says so.
    """

    @property
    def is_on(self) -> bool | None:
        """Return where the server is heading; None while nothing is known."""
        state = self.server.state
        if state is None:
            return None
        return state in (PowerState.STARTING, PowerState.ON)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The fused state and the evidence behind it."""
        server = self.server
        return {
            "power_state": server.state.value if server.state else None,
            "heartbeat": server.heartbeat,
            "agent_state": server.agent_state,
            "power_sense": server.power,
        }

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Press the power button (nothing happens when on or starting)."""
        await self.server.async_turn_on()

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Ask the agent for a clean shutdown."""
        await self.server.async_turn_off()
