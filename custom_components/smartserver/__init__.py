"""The SmartServer integration: ESP32 nodes and homelab servers over MQTT."""

from __future__ import annotations

from homeassistant.components import mqtt
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady

from .const import DOMAIN
from .coordinator import SmartServerConfigEntry, SmartServerData
from .servers import async_setup_servers

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.UPDATE,
]


async def async_setup_entry(hass: HomeAssistant, entry: SmartServerConfigEntry) -> bool:
    """Set up SmartServer from a config entry."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_ready")
    entry.runtime_data = SmartServerData.from_entry(entry)
    await async_setup_servers(hass, entry)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: SmartServerConfigEntry) -> bool:
    """Unload a config entry; subscriptions end through entry.async_on_unload."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
